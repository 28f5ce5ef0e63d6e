//! Waiting for a container `run` started in the foreground: berth is the
//! child subreaper, so the container init becomes its child; signals berth
//! receives are forwarded to it; with a terminal, berth copies between its
//! own stdio and the pty master.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::signal::SigSet;
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Every signal berth takes through its signalfd: all but those that
/// cannot be caught and the faults a process raises on itself.
fn caught_signals() -> SigSet {
    // SAFETY: sigemptyset initialises the set before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: set is a valid sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    for sig in 1..=libc::SIGRTMAX() {
        if !berth_linux::is_uncatchable_or_fault(sig) {
            // SAFETY: set is initialised; glibc refuses its reserved
            // real-time signals with EINVAL, which is fine.
            unsafe { libc::sigaddset(&mut set, sig) };
        }
    }
    // SAFETY: `set` was initialised by sigemptyset and sigaddset above.
    unsafe { SigSet::from_sigset_t_unchecked(set) }
}

pub struct Foreground {
    mask: SigSet,
}

impl Foreground {
    /// Before create: become subreaper and block the forwarded signals (the
    /// container init unblocks them for itself).
    pub fn prepare() -> io::Result<Foreground> {
        nix::sys::prctl::set_child_subreaper(true)?;
        let mask = caught_signals();
        mask.thread_block()?;
        Ok(Foreground { mask })
    }

    /// Wait for `pid` to exit; its status as a shell reports it (128+N for signal N).
    pub fn wait(self, pid: i32, master: Option<OwnedFd>) -> io::Result<i32> {
        let sfd = SignalFd::with_flags(&self.mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?;
        let stdin = unsafe_stdin();
        let _raw = match &master {
            Some(m) => {
                copy_winsize(stdin, m.as_raw_fd());
                RawMode::enter(stdin)
            }
            None => None,
        };
        let mut stdin_open = master.is_some();
        // Cleared when the pty closes; the process may still run.
        let mut master = master;
        loop {
            if let Some(code) = reap(pid)? {
                if let Some(m) = &master {
                    drain(m.as_raw_fd());
                }
                return Ok(code);
            }
            let mut fds = vec![libc::pollfd {
                fd: sfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            if let Some(m) = &master {
                fds.push(libc::pollfd {
                    fd: m.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
                if stdin_open {
                    fds.push(libc::pollfd {
                        fd: 0,
                        events: libc::POLLIN,
                        revents: 0,
                    });
                }
            }
            // SAFETY: fds is a valid array of pollfds of the length passed.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(e);
            }
            if fds[0].revents & libc::POLLIN != 0 {
                while let Ok(Some(info)) = sfd.read_signal() {
                    let sig = info.ssi_signo as i32;
                    match (sig, &master) {
                        (libc::SIGCHLD | libc::SIGURG, _) => {}
                        (libc::SIGWINCH, Some(m)) => copy_winsize(stdin, m.as_raw_fd()),
                        _ => {
                            // SAFETY: kill(2) of our child, the container init.
                            unsafe { libc::kill(pid, sig) };
                        }
                    }
                }
            }
            let mut pty_closed = false;
            if let Some(m) = &master {
                // The pty closing does not mean the process exited: keep
                // forwarding signals until it does.
                pty_closed = fds[1].revents != 0 && !copy(m.as_raw_fd(), 1);
                if !pty_closed
                    && stdin_open
                    && fds.len() > 2
                    && fds[2].revents != 0
                    && !copy(0, m.as_raw_fd())
                {
                    stdin_open = false;
                }
            }
            if pty_closed {
                master = None;
            }
        }
    }
}

fn unsafe_stdin() -> BorrowedFd<'static> {
    // SAFETY: descriptor 0 stays open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(0) }
}

/// Reap children (orphans of the container reparent to us too); the init's
/// exit code once it has exited.
fn reap(pid: i32) -> io::Result<Option<i32>> {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(status) => {
                if status.pid() == Some(Pid::from_raw(pid)) {
                    if let Some(code) = exit_code(status) {
                        return Ok(Some(code));
                    }
                }
            }
            Err(nix::errno::Errno::ECHILD) => {
                return Err(io::Error::other(format!(
                    "container init {pid} is not berth's child"
                )))
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Copy what is readable from `from` to `to`; false at EOF or error.
fn copy(from: i32, to: i32) -> bool {
    let mut buf = [0u8; 8192];
    // SAFETY: buf is a valid buffer of its length.
    let n = unsafe { libc::read(from, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
    if n <= 0 {
        return false;
    }
    let mut out = &buf[..n as usize];
    while !out.is_empty() {
        // SAFETY: out is a valid slice.
        let w = unsafe { libc::write(to, out.as_ptr() as *const libc::c_void, out.len()) };
        if w <= 0 {
            return false;
        }
        out = &out[w as usize..];
    }
    true
}

/// What is left in the pty after the process exited.
fn drain(master: i32) {
    // SAFETY: fcntl on our own descriptor.
    unsafe { libc::fcntl(master, libc::F_SETFL, libc::O_NONBLOCK) };
    while copy(master, 1) {}
}

fn copy_winsize(from: BorrowedFd<'_>, to: i32) {
    // SAFETY: zeroed winsize is valid; the ioctls read/write that struct.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(from.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(to, libc::TIOCSWINSZ, &ws);
        }
    }
}

/// berth's terminal in raw mode while it proxies a container's pty.
struct RawMode {
    fd: BorrowedFd<'static>,
    saved: termios::Termios,
}

impl RawMode {
    fn enter(fd: BorrowedFd<'static>) -> Option<RawMode> {
        let saved = termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, termios::SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd, termios::SetArg::TCSANOW, &self.saved);
    }
}
