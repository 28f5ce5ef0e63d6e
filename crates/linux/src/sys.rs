//! Thin wrappers over the syscalls the native backend uses that nix does not
//! cover (or covers with allocation). Each returns `io::Result` with errno.
//! They are used between fork and exec, so none of them allocates.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn check_int(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
pub const RESOLVE_IN_ROOT: u64 = 0x10;

/// openat2(2): open `path` beneath `dirfd` with `resolve` restrictions.
pub fn openat2(
    dirfd: RawFd,
    path: &CStr,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: mode as u64,
        resolve,
    };
    loop {
        // SAFETY: `how` is a valid open_how of the size passed; `path` is NUL-terminated.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                path.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        match check(r) {
            Ok(fd) => {
                // SAFETY: the kernel returned a new descriptor that we now own.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
            }
            Err(e)
                if e.raw_os_error() == Some(libc::EAGAIN)
                    || e.raw_os_error() == Some(libc::EINTR) =>
            {
                continue
            }
            Err(e) => return Err(e),
        }
    }
}

/// openat(2) returning an owned fd (O_CLOEXEC added).
pub fn openat(dirfd: RawFd, path: &CStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: `path` is NUL-terminated; the returned fd is new and ours.
    let fd =
        check_int(unsafe { libc::openat(dirfd, path.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    // SAFETY: fd was just returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A "/proc/self/fd/N" path for `fd`, formatted into a stack buffer.
pub struct FdPath {
    buf: [u8; 32],
}

impl FdPath {
    pub fn new(fd: RawFd) -> FdPath {
        let mut buf = [0u8; 32];
        let prefix = b"/proc/self/fd/";
        buf[..prefix.len()].copy_from_slice(prefix);
        let mut digits = [0u8; 12];
        let mut n = fd as u32;
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for i in 0..len {
            buf[prefix.len() + i] = digits[len - 1 - i];
        }
        FdPath { buf }
    }

    pub fn as_cstr(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.buf).expect("NUL-terminated")
    }
}

/// mount(2) with optional arguments.
pub fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    let p = |c: Option<&CStr>| c.map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is NUL-terminated or null, as mount(2) accepts.
    check_int(unsafe {
        libc::mount(
            p(source),
            target.as_ptr(),
            p(fstype),
            flags,
            p(data) as *const libc::c_void,
        )
    })?;
    Ok(())
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
pub(crate) struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

/// mount_setattr(2) on the mount at `fd`, recursively.
pub fn mount_setattr_recursive(fd: RawFd, set: u64, clr: u64) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `attr` is a valid mount_attr of the size passed; "" with AT_EMPTY_PATH names fd.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(r).map(drop)
}

pub fn umount_detach(target: &CStr) -> io::Result<()> {
    // SAFETY: target is NUL-terminated.
    check_int(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) }).map(drop)
}

pub fn pivot_root(new_root: &CStr, put_old: &CStr) -> io::Result<()> {
    // SAFETY: both paths are NUL-terminated.
    check(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) })
        .map(drop)
}

pub fn fchdir(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain syscall on a descriptor.
    check_int(unsafe { libc::fchdir(fd) }).map(drop)
}

pub fn chdir(path: &CStr) -> io::Result<()> {
    // SAFETY: path is NUL-terminated.
    check_int(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
}

pub fn chroot(path: &CStr) -> io::Result<()> {
    // SAFETY: path is NUL-terminated.
    check_int(unsafe { libc::chroot(path.as_ptr()) }).map(drop)
}

pub fn setns(fd: RawFd, nstype: i32) -> io::Result<()> {
    // SAFETY: plain syscall on a descriptor.
    check_int(unsafe { libc::setns(fd, nstype) }).map(drop)
}

pub fn unshare(flags: i32) -> io::Result<()> {
    // SAFETY: plain syscall.
    check_int(unsafe { libc::unshare(flags) }).map(drop)
}

pub fn mkdirat(dirfd: RawFd, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: name is NUL-terminated.
    check_int(unsafe { libc::mkdirat(dirfd, name.as_ptr(), mode) }).map(drop)
}

pub fn mknodat(dirfd: RawFd, name: &CStr, mode: u32, dev: u64) -> io::Result<()> {
    // SAFETY: name is NUL-terminated.
    check_int(unsafe { libc::mknodat(dirfd, name.as_ptr(), mode, dev) }).map(drop)
}

pub fn fchownat(dirfd: RawFd, name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: name is NUL-terminated.
    check_int(unsafe { libc::fchownat(dirfd, name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) })
        .map(drop)
}

pub fn symlinkat(target: &CStr, dirfd: RawFd, name: &CStr) -> io::Result<()> {
    // SAFETY: both strings are NUL-terminated.
    check_int(unsafe { libc::symlinkat(target.as_ptr(), dirfd, name.as_ptr()) }).map(drop)
}

pub fn unlinkat(dirfd: RawFd, name: &CStr) -> io::Result<()> {
    // SAFETY: name is NUL-terminated.
    check_int(unsafe { libc::unlinkat(dirfd, name.as_ptr(), 0) }).map(drop)
}

/// fstatat(2) of `name` beneath `dirfd` (or of `dirfd` itself with an empty name).
pub fn fstatat(dirfd: RawFd, name: &CStr, flags: i32) -> io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: name is NUL-terminated and `st` is writable.
    check_int(unsafe { libc::fstatat(dirfd, name.as_ptr(), &mut st, flags) })?;
    Ok(st)
}

/// Mount flags (MS_*) the mount at `path` carries, from statvfs(3).
pub fn mount_flags(path: &CStr) -> io::Result<libc::c_ulong> {
    // SAFETY: a zeroed statvfs is valid to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: path is NUL-terminated, st writable.
    check_int(unsafe { libc::statvfs(path.as_ptr(), &mut st) })?;
    let pairs = [
        (libc::ST_RDONLY, libc::MS_RDONLY),
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ];
    Ok(pairs
        .iter()
        .filter(|(st_flag, _)| st.f_flag & st_flag != 0)
        .fold(0, |acc, (_, ms)| acc | ms))
}

pub fn write_all_fd(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: buf is a valid slice.
        let n = unsafe { libc::write(fd, buf.as_ptr() as *const libc::c_void, buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Write `data` to the file at `path` (which must exist).
pub fn write_file(path: &CStr, data: &[u8]) -> io::Result<()> {
    let fd = openat(libc::AT_FDCWD, path, libc::O_WRONLY, 0)?;
    write_all_fd(fd.as_raw_fd(), data)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// capset(2) of this thread's effective, permitted and inheritable sets.
pub fn capset(effective: u64, permitted: u64, inheritable: u64) -> io::Result<()> {
    let header = CapHeader {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let lo = |v: u64| v as u32;
    let hi = |v: u64| (v >> 32) as u32;
    let data = [
        CapData {
            effective: lo(effective),
            permitted: lo(permitted),
            inheritable: lo(inheritable),
        },
        CapData {
            effective: hi(effective),
            permitted: hi(permitted),
            inheritable: hi(inheritable),
        },
    ];
    // SAFETY: header and two data structs as capset(2) with version 3 expects.
    check(unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) })
        .map(drop)
}

/// capget(2): this thread's (effective, permitted, inheritable) sets.
pub fn capget() -> io::Result<(u64, u64, u64)> {
    let mut header = CapHeader {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and room for two data structs, as capget(2) v3 fills.
    check(unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapHeader,
            data.as_mut_ptr(),
        )
    })?;
    let join = |lo: u32, hi: u32| u64::from(lo) | u64::from(hi) << 32;
    Ok((
        join(data[0].effective, data[1].effective),
        join(data[0].permitted, data[1].permitted),
        join(data[0].inheritable, data[1].inheritable),
    ))
}

pub fn prctl(option: i32, arg2: libc::c_ulong, arg3: libc::c_ulong) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    check_int(unsafe { libc::prctl(option, arg2, arg3, 0, 0) }).map(drop)
}

/// Whether getcwd(2) gives a path under the current root: the kernel
/// prefixes a directory it cannot reach from the root with "(unreachable)"
/// or fails with ENOENT.
pub fn cwd_is_under_root() -> bool {
    let mut buf = [0u8; 4096];
    // SAFETY: the buffer is writable for its length.
    let ret = unsafe { libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len()) };
    // A path too long for the buffer (ERANGE) is under the root as far as we
    // can tell; anything else that fails is not.
    if ret < 0 {
        return io::Error::last_os_error().raw_os_error() == Some(libc::ERANGE);
    }
    buf[0] == b'/'
}

pub fn sched_setattr(attr: &crate::process::SchedAttr) -> io::Result<()> {
    // SAFETY: attr is a valid struct sched_attr whose size field is set.
    check(unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            0,
            attr as *const crate::process::SchedAttr,
            0,
        )
    })
    .map(drop)
}

/// sched_setaffinity(2) of `pid` (0: the caller).
pub fn sched_setaffinity(pid: libc::pid_t, set: &libc::cpu_set_t) -> io::Result<()> {
    // SAFETY: set points to a whole cpu_set_t of the size passed.
    check_int(unsafe { libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), set) })
        .map(drop)
}

/// pidfd_send_signal(2): signal the process behind a pidfd (never a
/// process that reused its pid).
pub fn pidfd_kill(pidfd: RawFd, sig: i32) -> io::Result<()> {
    // SAFETY: no siginfo is passed (NULL), flags 0.
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd,
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
    .map(drop)
}

pub fn ioprio_set(prio: libc::c_int) -> io::Result<()> {
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    // SAFETY: integer arguments only.
    check(unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, prio) }).map(drop)
}

pub fn personality(persona: libc::c_ulong) -> io::Result<()> {
    // SAFETY: integer argument only.
    check_int(unsafe { libc::personality(persona) }).map(drop)
}

pub fn setrlimit(resource: u32, soft: u64, hard: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: lim is a valid rlimit.
    check_int(unsafe { libc::setrlimit(resource as _, &lim) }).map(drop)
}

pub fn setgroups(gids: &[libc::gid_t]) -> io::Result<()> {
    // SAFETY: the slice pointer and length describe valid memory.
    check_int(unsafe { libc::setgroups(gids.len(), gids.as_ptr()) }).map(drop)
}

pub fn setresgid(gid: u32) -> io::Result<()> {
    // SAFETY: raw syscall so that it applies to this (only) thread without libc's broadcast.
    check(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) }).map(drop)
}

pub fn setresuid(uid: u32) -> io::Result<()> {
    // SAFETY: as setresgid.
    check(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) }).map(drop)
}

/// Close every descriptor from `first` on, except `keep`.
pub fn close_all_from(first: u32, keep: RawFd) -> io::Result<()> {
    let close = |lo: u32, hi: u32| -> io::Result<()> {
        if lo > hi {
            return Ok(());
        }
        // SAFETY: close_range(2) on descriptors this process owns.
        check(unsafe { libc::syscall(libc::SYS_close_range, lo, hi, 0) }).map(drop)
    };
    let keep = keep as u32;
    if keep >= first {
        close(first, keep - 1)?;
        close(keep + 1, u32::MAX)
    } else {
        close(first, u32::MAX)
    }
}

/// A close-on-exec duplicate of `fd` numbered at least `min`.
pub fn dup_above(fd: RawFd, min: u32) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor we own.
    let new = check_int(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min as libc::c_int) })?;
    // SAFETY: as above.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Start a new session (fails harmlessly if already a session leader).
pub fn setsid() {
    // SAFETY: setsid has no memory arguments.
    unsafe { libc::setsid() };
}

/// Join a new session keyring named `name`.
pub fn join_session_keyring(name: &CStr) -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: keyctl with a NUL-terminated name.
    check(unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) })
        .map(drop)
}

/// fork(2). No other thread of the caller may hold a lock the child needs.
pub fn fork() -> io::Result<libc::pid_t> {
    // SAFETY: the only thread berth may run beside the caller is the cgroup
    // primer (berth_cgroups::prime_migration), which takes none of berth's
    // locks; glibc's fork holds the malloc locks across the fork, so the
    // child's allocator is consistent. The child only runs code written for
    // that context.
    check_int(unsafe { libc::fork() })
}

/// The calling process's `_exit(2)`, without running destructors or atexit.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}

/// Set `handler` for `sig` (or SIG_DFL when None).
pub fn set_signal(sig: i32, handler: Option<extern "C" fn(libc::c_int)>) {
    // SAFETY: zeroed sigaction is a valid "no flags, empty mask" value.
    let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
    sa.sa_sigaction = handler.map_or(libc::SIG_DFL, |h| h as usize);
    // SAFETY: sa is valid; the old action is not needed.
    unsafe { libc::sigaction(sig, &sa, std::ptr::null_mut()) };
}

/// Replace the signal mask with `set` (None: unblock everything).
pub fn set_sigmask(set: Option<&libc::sigset_t>) {
    // SAFETY: an empty set is initialised by sigemptyset before use.
    let mut empty: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: empty is a valid sigset_t to initialise.
    unsafe { libc::sigemptyset(&mut empty) };
    let set = set.unwrap_or(&empty);
    // SAFETY: set points to an initialised sigset_t.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, set, std::ptr::null_mut()) };
}

pub fn execve(
    path: &CStr,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> io::Error {
    // SAFETY: argv and envp are NULL-terminated arrays of NUL-terminated
    // strings that live until exec replaces the process image.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    io::Error::last_os_error()
}

/// faccessat(2) with X_OK on a regular file.
pub fn is_executable(path: &CStr) -> bool {
    match fstatat(libc::AT_FDCWD, path, 0) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG => {
            // SAFETY: path is NUL-terminated.
            unsafe {
                libc::faccessat(libc::AT_FDCWD, path.as_ptr(), libc::X_OK, libc::AT_EACCESS) == 0
            }
        }
        _ => false,
    }
}

/// Open a pseudo-terminal master on the devpts instance behind `ptmx`, and
/// its peer (the slave) through TIOCGPTPEER so no path lookup is needed.
pub fn open_pty(ptmx: &CStr) -> io::Result<(OwnedFd, OwnedFd)> {
    let master = openat(libc::AT_FDCWD, ptmx, libc::O_RDWR | libc::O_NOCTTY, 0)?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK takes a pointer to an int.
    check_int(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) })?;
    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor.
    let slave = check_int(unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: the ioctl returned a new descriptor we own.
    Ok((master, unsafe { OwnedFd::from_raw_fd(slave) }))
}

/// Set a terminal's window size.
pub fn set_winsize(fd: RawFd, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct.
    check_int(unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) }).map(drop)
}

/// Make `fd` the controlling terminal (of the session the init leads) and stdio.
pub fn make_controlling_tty(fd: RawFd) -> io::Result<()> {
    // SAFETY: plain syscalls on descriptors.
    unsafe {
        check_int(libc::ioctl(fd, libc::TIOCSCTTY, 0))?;
        for target in 0..3 {
            check_int(libc::dup2(fd, target))?;
        }
    }
    Ok(())
}

pub fn sethostname(name: &[u8]) -> io::Result<()> {
    // SAFETY: pointer and length describe `name`.
    check_int(unsafe { libc::sethostname(name.as_ptr() as *const libc::c_char, name.len()) })
        .map(drop)
}

pub fn setdomainname(name: &[u8]) -> io::Result<()> {
    // SAFETY: pointer and length describe `name`.
    check_int(unsafe { libc::setdomainname(name.as_ptr() as *const libc::c_char, name.len()) })
        .map(drop)
}

pub fn umask(mask: u32) {
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(mask) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_path_formats_without_allocation() {
        assert_eq!(
            FdPath::new(0).as_cstr().to_str().unwrap(),
            "/proc/self/fd/0"
        );
        assert_eq!(
            FdPath::new(1234).as_cstr().to_str().unwrap(),
            "/proc/self/fd/1234"
        );
    }
}
