//! User namespace id maps: writing the container's, and short-lived user
//! namespaces that carry an idmapped mount's mappings.
//!
//! As root, berth writes /proc/PID/{uid,gid}_map itself. Run by an
//! unprivileged user (rootless), the kernel lets it write only one mapping
//! of its own effective id (and a gid map only after setgroups is denied);
//! anything else goes through the setuid helpers newuidmap/newgidmap
//! (Debian package `uidmap`), which check the user's ranges in /etc/subuid
//! and /etc/subgid.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::Command;

use crate::{sys, LinuxError};

fn ids() -> (u32, u32) {
    // SAFETY: geteuid and getegid cannot fail and touch no memory.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// The (container, host, size) lines of uid_map/gid_map text.
fn parse(map: &[u8]) -> Vec<[u32; 3]> {
    String::from_utf8_lossy(map)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(|v| v.parse::<u32>().ok());
            Some([f.next()??, f.next()??, f.next()??])
        })
        .collect()
}

/// "0 100000 65536, 65536 1000 1" for messages.
fn shown(map: &[u8]) -> String {
    parse(map)
        .iter()
        .map(|[c, h, s]| format!("{c} {h} {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Write the container's id maps for the user namespace of `pid` (stage 1,
/// waiting for them).
pub fn write_id_maps(pid: i32, uid_map: &[u8], gid_map: &[u8]) -> Result<(), LinuxError> {
    let (euid, egid) = ids();
    for (kind, map, own) in [("uid", uid_map, euid), ("gid", gid_map, egid)] {
        let field = format!("linux.{kind}Mappings");
        let own_only = matches!(parse(map)[..], [[_, host, 1]] if host == own);
        if euid == 0 || own_only {
            if euid != 0 && kind == "gid" {
                // An unprivileged writer may map its gid only once nobody
                // in the namespace can drop groups with setgroups(2).
                write_proc(pid, "setgroups", b"deny").map_err(io_error(format!(
                    "{field}: deny setgroups in /proc/{pid}/setgroups"
                )))?;
            }
            write_proc(pid, &format!("{kind}_map"), map)
                .map_err(io_error(format!("{field}: write /proc/{pid}/{kind}_map")))?;
        } else {
            helper(pid, kind, map, &field)?;
        }
    }
    Ok(())
}

fn io_error(what: String) -> impl FnOnce(io::Error) -> LinuxError {
    move |source| LinuxError::Io { what, source }
}

fn write_proc(pid: i32, file: &str, data: &[u8]) -> io::Result<()> {
    // One write: the kernel takes a map only whole, in a single write(2).
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{pid}/{file}"))?
        .write_all(data)
}

/// newuidmap/newgidmap PID C H S...: the setuid helpers write what an
/// unprivileged user may not, within its /etc/subuid or /etc/subgid ranges.
fn helper(pid: i32, kind: &str, map: &[u8], field: &str) -> Result<(), LinuxError> {
    let tool = format!("new{kind}map");
    let mut cmd = Command::new(&tool);
    cmd.arg(pid.to_string());
    for line in parse(map) {
        cmd.args(line.iter().map(u32::to_string));
    }
    let (euid, _) = ids();
    let out = cmd.output().map_err(|e| {
        let why = if e.kind() == io::ErrorKind::NotFound {
            format!(
                "{tool} is not installed (Debian package uidmap); berth runs as uid {euid}, not root"
            )
        } else {
            format!("run {tool}: {e}")
        };
        LinuxError::Plan(format!("{field}: cannot write mapping {}: {why}", shown(map)))
    })?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let user = user_name(euid).unwrap_or_else(|| euid.to_string());
    let ranges = if kind == "uid" {
        "/etc/subuid"
    } else {
        "/etc/subgid"
    };
    Err(LinuxError::Plan(format!(
        "{field}: {tool} refused mapping {} ({}; the host ids must be {user}'s own or in its {ranges} ranges)",
        shown(map),
        if said.is_empty() {
            format!("{}", out.status)
        } else {
            said
        }
    )))
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are new and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A child that holds a user namespace open; killed and reaped on drop.
struct Holder(libc::pid_t);

impl Drop for Holder {
    fn drop(&mut self) {
        // SAFETY: kill(2) of the child we forked, then reap it.
        unsafe { libc::kill(self.0, libc::SIGKILL) };
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.0), None);
    }
}

/// The child's side: create the namespace, report, wait for the parent to
/// be done (EOF on `hold`, also when berth dies), exit. Async-signal-safe only.
fn hold_namespace(ready: RawFd, hold: RawFd, parent_ends: [RawFd; 2]) -> ! {
    for fd in parent_ends {
        // SAFETY: closing this process's copies of the parent's pipe ends.
        unsafe { libc::close(fd) };
    }
    let _ = sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0);
    let err: i32 = match sys::unshare(libc::CLONE_NEWUSER) {
        Ok(()) => 0,
        Err(e) => e.raw_os_error().unwrap_or(libc::EINVAL),
    };
    let _ = sys::write_all_fd(ready, &err.to_le_bytes());
    let mut b = [0u8; 1];
    // SAFETY: reading into a valid one-byte buffer.
    unsafe { libc::read(hold, b.as_mut_ptr() as *mut libc::c_void, 1) };
    sys::exit_now(0)
}

/// A user namespace with these maps, for mount_setattr(MOUNT_ATTR_IDMAP):
/// a child unshares it, berth writes its maps and opens it, the child is
/// killed and reaped (the descriptor keeps the namespace).
pub fn temporary(uid_map: &[u8], gid_map: &[u8]) -> Result<OwnedFd, LinuxError> {
    let what = || {
        format!(
            "idmapped mount: create a user namespace for uid map {}",
            shown(uid_map)
        )
    };
    let (ready_r, ready_w) = pipe().map_err(io_error(what()))?;
    let (hold_r, hold_w) = pipe().map_err(io_error(what()))?;
    // See sys::fork for the threads berth may have here.
    let pid = sys::fork().map_err(io_error(what()))?;
    if pid == 0 {
        hold_namespace(
            ready_w.as_raw_fd(),
            hold_r.as_raw_fd(),
            [ready_r.as_raw_fd(), hold_w.as_raw_fd()],
        );
    }
    let child = Holder(pid);
    drop((ready_w, hold_r));
    let mut code = [0u8; 4];
    (&std::fs::File::from(ready_r))
        .read_exact(&mut code)
        .map_err(io_error(what()))?;
    let err = i32::from_le_bytes(code);
    if err != 0 {
        return Err(io_error(what())(io::Error::from_raw_os_error(err)));
    }
    write_proc(pid, "uid_map", uid_map).map_err(io_error(format!(
        "idmapped mount: write uid map {} to /proc/{pid}/uid_map",
        shown(uid_map)
    )))?;
    write_proc(pid, "gid_map", gid_map).map_err(io_error(format!(
        "idmapped mount: write gid map {} to /proc/{pid}/gid_map",
        shown(gid_map)
    )))?;
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/user")).map_err(io_error(format!(
        "idmapped mount: open /proc/{pid}/ns/user"
    )))?;
    drop(hold_w);
    drop(child);
    Ok(ns.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_shows_maps() {
        let map = b"0 100000 65536\n65536 1000 1\n";
        assert_eq!(parse(map), vec![[0, 100000, 65536], [65536, 1000, 1]]);
        assert_eq!(shown(map), "0 100000 65536, 65536 1000 1");
        assert!(parse(b"").is_empty());
    }
}

/// The name /etc/passwd gives `uid`, read directly: berth is linked
/// statically, and glibc's NSS would load shared modules (systemd, sss)
/// into it, which crashes a static binary.
fn user_name(uid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd_name(&text, uid)
}

fn passwd_name(text: &str, uid: u32) -> Option<String> {
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id = f.nth(1)?.parse::<u32>().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_string())
    })
}

#[cfg(test)]
mod passwd_tests {
    use super::passwd_name;

    #[test]
    fn names_come_from_the_passwd_text() {
        let text = "root:x:0:0:root:/root:/bin/sh\n# comment\nbad line\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        assert_eq!(passwd_name(text, 0).as_deref(), Some("root"));
        assert_eq!(passwd_name(text, 1000).as_deref(), Some("alice"));
        assert_eq!(passwd_name(text, 54321), None);
    }
}
