//! Waiting for a process to exit through a pidfd.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Open a pidfd for `pid` (Linux 5.3+). The fd is close-on-exec.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no
    // memory is passed.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Wait until the process behind `pidfd` exits, for at most `timeout`
/// (`None`: forever). `Ok(true)` once it has exited, `Ok(false)` on timeout.
/// Exiting is enough: the process need not be reaped yet.
pub fn wait_exit(pidfd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<bool> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up so a sub-millisecond remainder does not spin.
                left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32
            }
        };
        match poll_in(pidfd.as_raw_fd(), ms) {
            Ok(true) => return Ok(true),
            Ok(false) if deadline.is_some_and(|d| Instant::now() >= d) => return Ok(false),
            Ok(false) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn poll_in(fd: i32, timeout_ms: i32) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid, writable pollfd and a count of 1.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n > 0 && pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::process::Command;

    #[test]
    fn times_out_then_sees_exit() {
        let mut child = Command::new("sleep").arg("0.3").spawn().unwrap();
        let fd = pidfd_open(child.id() as i32).unwrap();
        let t = Instant::now();
        assert!(!wait_exit(fd.as_fd(), Some(Duration::from_millis(50))).unwrap());
        assert!(t.elapsed() >= Duration::from_millis(50));
        assert!(wait_exit(fd.as_fd(), Some(Duration::from_secs(10))).unwrap());
        // Exited but not yet reaped: still reported as exited.
        assert!(wait_exit(fd.as_fd(), Some(Duration::ZERO)).unwrap());
        child.wait().unwrap();
    }

    #[test]
    fn no_such_process() {
        assert!(pidfd_open(-1).is_err());
    }
}
