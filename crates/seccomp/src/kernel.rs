//! The seccomp(2) calls: loading a filter, and asking the running kernel
//! which flags and actions it knows.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use oci_spec::runtime::LinuxSeccompAction;

use crate::compile::{action_base, action_name};
use crate::{Filter, SeccompError};

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong;
const SECCOMP_GET_ACTION_AVAIL: libc::c_ulong = libc::SECCOMP_GET_ACTION_AVAIL as libc::c_ulong;

/// Loads `f` into the calling thread with seccomp(2).
///
/// Async-signal-safe: no allocation and no locks, only the syscall on the
/// program built by [`crate::compile()`], so it can run in a forked child right
/// before `execve`. The caller has set `no_new_privs` or holds
/// `CAP_SYS_ADMIN` (the kernel refuses with `EACCES` otherwise).
///
/// Returns the notification listener (close-on-exec) when the filter has
/// `SCMP_ACT_NOTIFY` rules ([`Filter::notify`]), `None` otherwise.
pub fn install(f: &Filter) -> io::Result<Option<OwnedFd>> {
    let prog = libc::sock_fprog {
        // The compiler never emits more than BPF_MAXINSNS (4096).
        len: f.prog.len() as libc::c_ushort,
        filter: f.prog.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `f.prog`, which outlives the call; the kernel
    // only reads it. seccomp(2) takes (operation, flags, pointer).
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(f.flags),
            &prog as *const libc::sock_fprog,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if f.flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32 != 0 {
        // SAFETY: with NEW_LISTENER the kernel returns a new fd we now own.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(r as RawFd) }))
    } else {
        Ok(None)
    }
}

/// Whether the running kernel accepts these `SECCOMP_FILTER_FLAG_*` bits.
///
/// The kernel checks the flags before it reads the program, so a null
/// program pointer answers the question without loading anything: `EFAULT`
/// means the flags are known, `EINVAL` that they are not.
pub(crate) fn flag_bit_available(bits: u32) -> bool {
    // SAFETY: a null program is never dereferenced: the kernel fails with
    // EFAULT (or EINVAL for unknown flags) before installing anything.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(bits),
            std::ptr::null::<libc::sock_fprog>(),
        )
    };
    r < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT)
}

/// Whether the running kernel knows this `SECCOMP_RET_*` action.
pub(crate) fn action_base_available(base: u32) -> bool {
    let action = base;
    // SAFETY: the kernel reads one u32 from a valid pointer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_GET_ACTION_AVAIL,
            0 as libc::c_ulong,
            &action as *const u32,
        )
    };
    if r == 0 {
        return true;
    }
    // Kernels before 4.14 have no SECCOMP_GET_ACTION_AVAIL (EINVAL); they know
    // the actions seccomp started with.
    io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL)
        && matches!(
            base,
            libc::SECCOMP_RET_KILL_THREAD
                | libc::SECCOMP_RET_TRAP
                | libc::SECCOMP_RET_ERRNO
                | libc::SECCOMP_RET_TRACE
                | libc::SECCOMP_RET_ALLOW
        )
}

pub(crate) fn require_action(a: LinuxSeccompAction, path: &str) -> Result<(), SeccompError> {
    if action_base_available(action_base(a)) {
        Ok(())
    } else {
        Err(SeccompError::ActionUnsupported {
            path: path.to_string(),
            action: action_name(a),
        })
    }
}
