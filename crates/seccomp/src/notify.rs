//! Seccomp user notification: the listener side of `SCMP_ACT_NOTIFY`.
//!
//! A filter with NOTIFY rules gives, when installed, a listener fd
//! ([`crate::install`]). Each syscall that hits such a rule stops the calling
//! thread and queues a notification on the listener; a supervisor (the
//! seccomp agent a container's `listenerPath` names, or a test) takes it with
//! [`recv`], decides, and answers with [`respond`]: a return value, an errno,
//! or "let the syscall run" ([`Response::Continue`]).
//!
//! The listener is readable (`POLLIN`) when a notification is waiting and
//! reports `POLLHUP` once every process using the filter is gone; poll it
//! before [`recv`], which otherwise blocks.
//!
//! Between [`recv`] and [`respond`] the target may die or its syscall may be
//! interrupted by a signal; [`respond`] then fails with
//! [`NotifyError::Gone`]. A supervisor that reads the target's memory (its
//! `/proc/PID/mem`, say) must call [`id_valid`] after reading and before
//! trusting what it read, because the pid may have been reused in between.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use thiserror::Error;

/// A syscall waiting on the supervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notification {
    /// Identifies this notification in [`respond`] and [`id_valid`].
    pub id: u64,
    /// The calling thread, in the listener's pid namespace (0 when it is not
    /// visible there).
    pub pid: u32,
    /// `seccomp_notif.flags` (none are defined yet).
    pub flags: u32,
    /// The syscall number, as the filter saw it (x32 numbers include
    /// `__X32_SYSCALL_BIT`).
    pub nr: i32,
    /// `AUDIT_ARCH_*` of the call.
    pub arch: u32,
    /// Where the call was made.
    pub instruction_pointer: u64,
    /// The six raw argument registers.
    pub args: [u64; 6],
}

/// How to finish a notified syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response {
    /// The syscall returns this value without running.
    Value(i64),
    /// The syscall fails with this errno (1..=4095) without running.
    Errno(i32),
    /// The syscall runs as if the filter had allowed it
    /// (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`). Unsafe as a security decision:
    /// the target can change its memory between the notification and the
    /// syscall; use it only to let a call through that would be harmless
    /// anyway.
    Continue,
}

/// A failed listener operation, with the fd and the kernel's reason.
#[derive(Debug, Error)]
pub enum NotifyError {
    /// `SECCOMP_IOCTL_NOTIF_RECV` failed.
    #[error("seccomp listener fd {fd}: receiving a notification: {source}")]
    Recv {
        fd: i32,
        #[source]
        source: io::Error,
    },
    /// `SECCOMP_IOCTL_NOTIF_SEND` failed for a reason other than [`NotifyError::Gone`].
    #[error("seccomp listener fd {fd}: answering notification {id}: {source}")]
    Send {
        fd: i32,
        id: u64,
        #[source]
        source: io::Error,
    },
    /// `SECCOMP_IOCTL_NOTIF_ID_VALID` failed for a reason other than "not valid".
    #[error("seccomp listener fd {fd}: checking notification {id}: {source}")]
    IdValid {
        fd: i32,
        id: u64,
        #[source]
        source: io::Error,
    },
    /// The notification is no longer pending: the target died, or a signal
    /// interrupted its syscall.
    #[error("seccomp listener fd {fd}: notification {id} is gone (the process died or its syscall was interrupted)")]
    Gone { fd: i32, id: u64 },
    /// [`Response::Errno`] outside 1..=4095.
    #[error("seccomp notification {id}: errno {errno} is out of range (1 to 4095)")]
    BadErrno { id: u64, errno: i32 },
}

/// Waits for the next notification on `listener` (blocking; poll first to
/// wait with a timeout). Interrupted waits are restarted.
pub fn recv(listener: impl AsFd) -> Result<Notification, NotifyError> {
    let fd = listener.as_fd().as_raw_fd();
    loop {
        // The kernel requires a zeroed buffer.
        let mut n: libc::seccomp_notif = unsafe_zeroed_notif();
        // SAFETY: `n` is a seccomp_notif the ioctl fills; the request number
        // encodes exactly its size.
        let r = unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_RECV, &mut n) };
        if r == 0 {
            return Ok(Notification {
                id: n.id,
                pid: n.pid,
                flags: n.flags,
                nr: n.data.nr,
                arch: n.data.arch,
                instruction_pointer: n.data.instruction_pointer,
                args: n.data.args,
            });
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(NotifyError::Recv { fd, source: e });
        }
    }
}

fn unsafe_zeroed_notif() -> libc::seccomp_notif {
    // SAFETY: seccomp_notif is plain integers, for which all-zero is valid.
    unsafe { std::mem::zeroed() }
}

/// Answers notification `id`.
pub fn respond(listener: impl AsFd, id: u64, response: Response) -> Result<(), NotifyError> {
    let fd = listener.as_fd().as_raw_fd();
    let (val, error, flags) = match response {
        Response::Value(v) => (v, 0, 0),
        Response::Errno(e) => {
            if !(1..=4095).contains(&e) {
                return Err(NotifyError::BadErrno { id, errno: e });
            }
            (0, -e, 0)
        }
        Response::Continue => (0, 0, libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32),
    };
    let mut resp = libc::seccomp_notif_resp {
        id,
        val,
        error,
        flags,
    };
    // SAFETY: `resp` is a seccomp_notif_resp the ioctl reads.
    let r = unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_SEND, &mut resp) };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENOENT) {
        return Err(NotifyError::Gone { fd, id });
    }
    Err(NotifyError::Send { fd, id, source: e })
}

/// Whether notification `id` is still pending (its target alive and still in
/// the syscall).
pub fn id_valid(listener: impl AsFd, id: u64) -> Result<bool, NotifyError> {
    let fd = listener.as_fd().as_raw_fd();
    let mut v = id;
    // SAFETY: the ioctl reads one u64.
    let r = unsafe { libc::ioctl(fd, libc::SECCOMP_IOCTL_NOTIF_ID_VALID, &mut v) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENOENT) {
        return Ok(false);
    }
    Err(NotifyError::IdValid { fd, id, source: e })
}
