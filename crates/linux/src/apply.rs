//! Applying a [`ProcessPlan`] in a forked child: the steps the container
//! init and a process `berth exec` starts share, in the same order.
//!
//! 1. [`open_lsm`] while the host's /proc is still reachable;
//! 2. [`console`] when the process has a terminal;
//! 3. [`prepare`]: LSM labels, session keyring, rlimits, scheduler, I/O
//!    priority, credentials and capabilities, and the program to run;
//! 4. [`install_notify`] (a NOTIFY filter's listener goes to berth);
//! 5. [`exec`]: descriptors closed, personality, seccomp, execve.
//!
//! Like the rest of the child's code this only walks the plan and makes
//! syscalls; messages are formatted only when something fails.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::plan::ProcessPlan;
use crate::rootfs::{Context, Failed, Res};
use crate::sync;
use crate::sys;

const CAP_SYS_ADMIN: u32 = 21;

/// The process's LSM attribute files, opened ahead of time.
pub struct LsmFds([Option<OwnedFd>; 3]);

/// Open the LSM attribute files now, through the host's /proc: once the
/// process is in the container's mount namespace, a volume over the
/// container's /proc could turn the writes into writes to a plain file and
/// leave the process unconfined.
pub fn open_lsm(p: &ProcessPlan) -> Res<LsmFds> {
    let mut fds: [Option<OwnedFd>; 3] = [None, None, None];
    if let Some(label) = &p.extras.lsm {
        for (slot, w) in fds.iter_mut().zip(&label.writes) {
            *slot = Some(
                sys::openat(libc::AT_FDCWD, &w.path, libc::O_WRONLY | libc::O_CLOEXEC, 0)
                    .ctx(|| format!("{}: open {}", w.what, w.path.to_string_lossy()))?,
            );
        }
    }
    Ok(LsmFds(fds))
}

/// A pty for the process: the master goes to `sock` (the console socket, or
/// berth's end when it proxies the terminal itself); the slave becomes the
/// controlling terminal and stdio. The container init also binds it on
/// /dev/console (`bind_dev_console`), as runc does; an exec'd process doesn't.
pub fn console(p: &ProcessPlan, sock: Option<RawFd>, bind_dev_console: bool) -> Res<()> {
    let Some(sock) = sock else {
        return Err(Failed {
            what: "process.terminal: no console socket".into(),
            err: None,
        });
    };
    let (master, slave) =
        sys::open_pty(c"/dev/ptmx").ctx(|| "process.terminal: open /dev/ptmx".into())?;
    if let Some((rows, cols)) = p.console_size {
        sys::set_winsize(master.as_raw_fd(), rows, cols)
            .ctx(|| format!("process.consoleSize: set {cols}x{rows}"))?;
    }
    if bind_dev_console {
        let slave_at = sys::FdPath::new(slave.as_raw_fd());
        match sys::openat(
            libc::AT_FDCWD,
            c"/dev/console",
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW,
            0o600,
        ) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => {
                return Err(Failed {
                    what: "create /dev/console".into(),
                    err: Some(e),
                })
            }
        }
        sys::mount(
            Some(slave_at.as_cstr()),
            c"/dev/console",
            None,
            libc::MS_BIND,
            None,
        )
        .ctx(|| "bind the pty on /dev/console".into())?;
    }
    sync::send_file(sock, master.as_raw_fd(), b"/dev/ptmx")
        .ctx(|| "send the pty master to the console socket".into())?;
    drop(master);
    sys::make_controlling_tty(slave.as_raw_fd())
        .ctx(|| "make the pty the controlling terminal".into())
}

/// Everything up to the program's lookup, while errors can still be
/// reported normally: LSM labels (after the container's /proc is in place,
/// before the session keyring, which takes the keycreate label), the
/// session keyring, rlimits, scheduler and I/O priority (still privileged:
/// real-time classes need CAP_SYS_NICE), then credentials. Returns the
/// path to exec.
pub fn prepare(p: &ProcessPlan, lsm: LsmFds) -> Res<&CStr> {
    if let Some(label) = &p.extras.lsm {
        for (fd, w) in lsm.0.iter().zip(&label.writes) {
            if let Some(fd) = fd {
                sys::write_all_fd(fd.as_raw_fd(), &w.data)
                    .ctx(|| format!("{}: write {}", w.what, w.path.to_string_lossy()))?;
            }
        }
    }
    drop(lsm);
    if let Some(k) = &p.keyring {
        match sys::join_session_keyring(k) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {}
            other => {
                other.ctx(|| "join a new session keyring (use --no-new-keyring to skip)".into())?
            }
        }
    }
    for (res, soft, hard, name) in &p.rlimits {
        sys::setrlimit(*res, *soft, *hard)
            .ctx(|| format!("process.rlimits: set {name} to {soft}/{hard}"))?;
    }
    if let Some(attr) = &p.extras.sched {
        sys::sched_setattr(attr).ctx(|| {
            format!(
                "process.scheduler: sched_setattr(policy {}, nice {}, priority {})",
                attr.policy, attr.nice, attr.priority
            )
        })?;
    }
    if let Some(prio) = p.extras.ioprio {
        sys::ioprio_set(prio).ctx(|| {
            format!(
                "process.ioPriority: ioprio_set(class {}, priority {})",
                prio >> 13,
                prio & 0x1fff
            )
        })?;
    }
    credentials(p)?;
    p.exec_candidates
        .iter()
        .find(|c| sys::is_executable(c))
        .map(|c| c.as_c_str())
        .ok_or_else(|| not_found(p))
}

/// runc's wording, which callers (the CRI, probes) match on.
fn not_found(p: &ProcessPlan) -> Failed {
    let why = if p.arg0.contains('/') {
        "no such executable file"
    } else {
        "executable file not found in $PATH"
    };
    Failed {
        what: format!("exec: {:?}", p.arg0),
        err: Some(std::io::Error::new(std::io::ErrorKind::NotFound, why)),
    }
}

/// A NOTIFY filter goes in before the process reports it is ready, as runc
/// does it: its listener descriptor must reach berth, which hands it to the
/// listener socket. Every other filter waits until right before exec.
pub fn install_notify(p: &ProcessPlan) -> Res<Option<OwnedFd>> {
    match (&p.extras.seccomp, p.extras.notify.is_some()) {
        (Some(filter), true) => Ok(Some(
            berth_seccomp::install(filter)
                .ctx(|| "linux.seccomp: load the filter".into())?
                .ok_or_else(|| Failed {
                    what: "linux.seccomp: the kernel returned no notify listener".into(),
                    err: None,
                })?,
        )),
        _ => Ok(None),
    }
}

/// The last steps, with nothing left to report to but `keep` (close-on-exec,
/// so the caller sees EOF once the program runs): close every descriptor
/// above stdio and the preserved ones except `keep`, so nothing of berth's
/// reaches the program; the personality; the seccomp filter, as late as
/// possible so a profile need not allow what berth does before exec; then
/// execve. Returns why the program could not run.
pub fn exec(p: &ProcessPlan, exe: &CStr, keep: RawFd) -> String {
    if let Err(e) = sys::close_all_from(3 + p.preserve_fds, keep) {
        return format!("close descriptors before exec: {e}");
    }
    if let Some(persona) = p.extras.personality {
        if let Err(e) = sys::personality(persona) {
            return format!("linux.personality: personality({persona:#x}): {e}");
        }
    }
    if let (Some(filter), false) = (&p.extras.seccomp, p.extras.notify.is_some()) {
        if let Err(e) = berth_seccomp::install(filter) {
            return format!("linux.seccomp: load the filter: {e}");
        }
    }
    let err = sys::execve(exe, &p.argv_ptrs, &p.envp_ptrs);
    format!("exec {:?}: {err}", p.arg0)
}

/// Credentials and capabilities, in the order the kernel needs: the
/// bounding set while still privileged, ids with capabilities kept, the
/// working directory as the user, then the capability sets and
/// no_new_privs.
fn credentials(p: &ProcessPlan) -> Res<()> {
    if let Some(caps) = &p.caps {
        for cap in 0..=p.last_cap {
            if caps.bounding & (1 << cap) == 0 {
                sys::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0)
                    .ctx(|| format!("drop capability {cap} from the bounding set"))?;
            }
        }
    }
    sys::prctl(libc::PR_SET_KEEPCAPS, 1, 0).ctx(|| "keep capabilities across setuid".into())?;
    match sys::setgroups(&p.additional_gids) {
        // A user namespace with setgroups "deny" refuses even an empty list;
        // only an error when groups were asked for.
        Err(e) if e.raw_os_error() == Some(libc::EPERM) && p.additional_gids.is_empty() => {}
        other => other.ctx(|| "process.user.additionalGids: setgroups".into())?,
    }
    sys::setresgid(p.gid).ctx(|| format!("process.user.gid: setgid {}", p.gid))?;
    sys::setresuid(p.uid).ctx(|| format!("process.user.uid: setuid {}", p.uid))?;
    sys::prctl(libc::PR_SET_KEEPCAPS, 0, 0).ctx(|| "reset keep-capabilities".into())?;
    sys::chdir(&p.cwd).ctx(|| format!("process.cwd: chdir to {}", p.cwd.to_string_lossy()))?;
    // A cwd through a descriptor still open here (/proc/self/fd/N/..) could
    // land outside the container (the CVE-2024-21626 class): the kernel
    // reports such a directory as unreachable from the root.
    if !sys::cwd_is_under_root() {
        return Err(Failed {
            what: format!(
                "process.cwd: {} resolves outside the container's root",
                p.cwd.to_string_lossy()
            ),
            err: None,
        });
    }
    if let Some(caps) = &p.caps {
        // Without no_new_privs, loading a seccomp filter needs CAP_SYS_ADMIN.
        // It stays in the effective and permitted sets until exec, which
        // drops it: exec recomputes both from the bounding, inheritable and
        // ambient sets, none of which gain it here.
        let keep = if p.extras.seccomp.is_some() && !p.no_new_privs {
            1u64 << CAP_SYS_ADMIN
        } else {
            0
        };
        sys::capset(
            caps.effective | keep,
            caps.permitted | keep,
            caps.inheritable,
        )
        .ctx(|| "process.capabilities: capset".into())?;
        sys::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
        )
        .ctx(|| "clear ambient capabilities".into())?;
        // Only a capability both permitted and inheritable can be raised
        // (validation warned about the others); runc leaves them out too.
        let raisable = caps.ambient & caps.permitted & caps.inheritable;
        for cap in 0..=p.last_cap {
            if raisable & (1 << cap) != 0 {
                sys::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    cap as libc::c_ulong,
                )
                .ctx(|| format!("process.capabilities.ambient: raise capability {cap}"))?;
            }
        }
    }
    if p.caps.is_none() && p.uid != 0 && p.extras.seccomp.is_some() && !p.no_new_privs {
        // No capabilities object: setuid emptied the effective set, and the
        // filter still needs CAP_SYS_ADMIN to load (exec drops it again).
        let (_, permitted, inheritable) =
            sys::capget().ctx(|| "linux.seccomp: read capabilities".into())?;
        sys::capset(1 << CAP_SYS_ADMIN, permitted, inheritable)
            .ctx(|| "linux.seccomp: keep CAP_SYS_ADMIN to load the filter".into())?;
    }
    if p.no_new_privs {
        sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0).ctx(|| "process.noNewPrivileges".into())?;
    }
    sys::umask(p.umask);
    Ok(())
}
