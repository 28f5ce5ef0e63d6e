//! The few raw syscalls the runner needs, each in a small function.

use std::ffi::{c_char, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A program to exec, with every pointer array built before `fork`
/// (the child may not allocate).
pub struct Program {
    pub path: CString,
    _args: Vec<CString>,
    argv: Vec<*const c_char>,
    _env: Vec<CString>,
    envp: Vec<*const c_char>,
}

impl Program {
    pub fn new(path: CString, args: Vec<CString>, env: Vec<CString>) -> Program {
        // A CString's bytes live on the heap, so these pointers stay valid
        // when the vectors are moved into the struct.
        let argv = args
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let envp = env
            .iter()
            .map(|e| e.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        Program {
            path,
            _args: args,
            argv,
            _env: env,
            envp,
        }
    }
}

/// The fds the child puts on 0, 1 and 2, and the pipe it reports an exec
/// failure on.
pub struct ChildFds {
    pub stdin: RawFd,
    pub stdout: RawFd,
    pub stderr: RawFd,
    pub report: RawFd,
}

/// Fork. `Ok(None)` in the child, `Ok(Some(pid))` in the parent.
///
/// The caller must only do async-signal-safe work in the child: use
/// [`exec_child`] right away.
pub fn fork() -> io::Result<Option<libc::pid_t>> {
    // SAFETY: fork has no memory preconditions; the child side is restricted
    // to `exec_child`, which only makes async-signal-safe calls.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Some(pid)),
    }
}

/// In the forked child: wire stdio, clear the signal mask, restore SIGPIPE,
/// mark every other fd close-on-exec and exec. On failure the errno goes to
/// `fds.report` and the child exits 127. Never returns.
pub fn exec_child(prog: &Program, fds: &ChildFds) -> ! {
    // SAFETY: only async-signal-safe calls on fds and memory prepared before
    // fork (`prog` is fully built; `set` is a local); no allocation, no locks.
    unsafe {
        if libc::dup2(fds.stdin, 0) < 0
            || libc::dup2(fds.stdout, 1) < 0
            || libc::dup2(fds.stderr, 2) < 0
        {
            report_and_exit(fds.report);
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        // Rust ignores SIGPIPE; the hook should get the default.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        // Do not leak the runtime's fds into the hook (failure is harmless:
        // older kernels, and berth's own fds are close-on-exec anyway).
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        libc::execve(prog.path.as_ptr(), prog.argv.as_ptr(), prog.envp.as_ptr());
        report_and_exit(fds.report)
    }
}

/// SAFETY (for callers): async-signal-safe; only for the forked child.
unsafe fn report_and_exit(report: RawFd) -> ! {
    let errno: i32 = *libc::__errno_location();
    let bytes = errno.to_ne_bytes();
    libc::write(report, bytes.as_ptr().cast(), bytes.len());
    libc::_exit(127)
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a writable array of two ints, as pipe2 requires.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just returned these two fds; nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Move `fd` above 2 (close-on-exec) so `dup2` onto 0..=2 in the child always
/// makes a fresh, inheritable copy, even if the runtime was started with
/// stdio closed.
pub fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC on an fd we own; returns a new fd or -1.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fcntl just returned this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

pub fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on an fd we own; no memory is passed.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: `fds` is a valid, writable slice of pollfd of the given length.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Keeps SIGPIPE blocked in this thread while a hook's stdin is written, so a
/// hook that closes stdin early yields EPIPE instead of killing the runtime
/// (whatever disposition the embedding program chose). On drop, a SIGPIPE
/// raised meanwhile is discarded and the old mask comes back.
pub struct SigpipeBlocked {
    old: libc::sigset_t,
    already_pending: bool,
}

fn sigpipe_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        set
    }
}

fn sigpipe_pending() -> bool {
    // SAFETY: sigpending fills a local sigset_t; sigismember reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigpending(&mut set) == 0 && libc::sigismember(&set, libc::SIGPIPE) == 1
    }
}

impl SigpipeBlocked {
    pub fn new() -> SigpipeBlocked {
        let set = sigpipe_set();
        // SAFETY: both sigset_t pointers are valid locals.
        let old = unsafe {
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            old
        };
        SigpipeBlocked {
            old,
            already_pending: sigpipe_pending(),
        }
    }
}

impl Drop for SigpipeBlocked {
    fn drop(&mut self) {
        let set = sigpipe_set();
        if !self.already_pending && sigpipe_pending() {
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: valid set and timespec; consumes one pending SIGPIPE.
            unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) };
        }
        // SAFETY: restores the mask saved in `new`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}
