//! Keeps the container from reaching a writable berth binary (the
//! CVE-2019-5736 class).
//!
//! The container's init is a fork of `berth create`, so until it execs the
//! user's program its /proc/PID/exe is berth's own binary; a program whose
//! interpreter is `#!/proc/self/exe` even gets berth executed inside the
//! container. If that file were the host's writable binary, the container
//! could open it through /proc/PID/exe and overwrite it.
//!
//! Before `create` and `run` fork anything, berth re-executes itself from a
//! read-only view of its binary: a detached clone of the bind mount of the
//! file (open_tree OPEN_TREE_CLONE), made read-only with mount_setattr. The
//! mount is never attached anywhere and goes away with the last process
//! using it. Writes through /proc/PID/exe then fail with EROFS. When berth
//! already runs from a read-only mount (an image-based host, or an operator's
//! read-only bind mount of the binary), there is nothing to do and no cost.
//!
//! Without CAP_SYS_ADMIN (rootless), a binary the caller cannot write needs
//! nothing either (the container acts with at most the caller's rights on
//! host files); a writable one is copied into a sealed memfd instead.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;

fn cvt(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Re-executes berth from a read-only copy of itself when needed. Returns
/// only when berth already runs from one: after the re-exec the same checks
/// find the read-only mount (or the sealed memfd) and return at once.
pub fn ensure() -> io::Result<()> {
    let exe = open_self()?;
    if on_readonly_mount(exe.as_raw_fd())? || is_sealed_memfd(exe.as_raw_fd()) {
        name_after_argv0();
        return Ok(());
    }
    // The detached read-only bind costs no copy; the sealed memfd is the
    // fallback when it is refused (no CAP_SYS_ADMIN, an old kernel, an LSM).
    // The clone's descriptor is close-on-exec: it must not outlive the exec,
    // or its holder could still clear the mount's read-only flag.
    let image = match readonly_clone(exe.as_raw_fd()) {
        Ok(fd) => fd,
        Err(clone_err) => {
            if !writable(exe.as_raw_fd()) {
                return Ok(());
            }
            sealed_copy(exe.as_raw_fd()).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("read-only bind: {clone_err}; sealed copy: {e}"),
                )
            })?
        }
    };
    reexec(image.as_raw_fd())
}

/// execveat names the process after the descriptor number; ps and top
/// should show the name berth was called by (runc, when installed as runc).
fn name_after_argv0() {
    let Some(arg0) = std::env::args_os().next() else {
        return;
    };
    let base = std::path::Path::new(&arg0)
        .file_name()
        .map(|b| b.as_encoded_bytes().to_vec())
        .unwrap_or_default();
    let mut name = [0u8; 16];
    let n = base.len().min(15);
    name[..n].copy_from_slice(&base[..n]);
    if n > 0 && !name[..n].contains(&0) {
        // SAFETY: PR_SET_NAME with a pointer to a NUL-terminated 16-byte buffer.
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
    }
}

fn open_self() -> io::Result<OwnedFd> {
    // SAFETY: open(2) of a constant path; the fd is owned below.
    let fd = unsafe { libc::open(c"/proc/self/exe".as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    cvt(fd as libc::c_long)?;
    // SAFETY: a descriptor we just opened.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn on_readonly_mount(fd: RawFd) -> io::Result<bool> {
    // SAFETY: statvfs is plain data; all zeroes is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: fstatvfs fills st.
    cvt(unsafe { libc::fstatvfs(fd, &mut st) } as libc::c_long)?;
    Ok(st.f_flag & libc::ST_RDONLY != 0)
}

fn is_sealed_memfd(fd: RawFd) -> bool {
    // O_PATH descriptors don't support F_GET_SEALS; reopen for reading.
    let Ok(f) = std::fs::File::open(format!("/proc/self/fd/{fd}")) else {
        return false;
    };
    // SAFETY: fcntl with an integer command on a descriptor we own.
    let seals = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) };
    let want = libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    seals >= 0 && seals & want == want
}

/// Whether the caller could change the file: write access, or ownership
/// (an owner can chmod it first; the container's root may map to the owner).
fn writable(fd: RawFd) -> bool {
    // SAFETY: stat is plain data; all zeroes is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat fills st.
    let owned = unsafe { libc::fstat(fd, &mut st) } == 0
        // SAFETY: geteuid cannot fail.
        && st.st_uid == unsafe { libc::geteuid() };
    // SAFETY: faccessat on a descriptor with an empty path.
    owned
        || unsafe {
            libc::faccessat(
                fd,
                c"".as_ptr(),
                libc::W_OK,
                libc::AT_EMPTY_PATH | libc::AT_EACCESS,
            ) == 0
        }
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached, read-only bind mount of the file behind `fd`.
fn readonly_clone(fd: RawFd) -> io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const MOUNT_ATTR_RDONLY: u64 = 1;
    // SAFETY: open_tree(2) with an empty path on our descriptor.
    let tree = cvt(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            fd,
            c"".as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_EMPTY_PATH as libc::c_uint,
        )
    })? as RawFd;
    // SAFETY: the descriptor open_tree returned.
    let tree = unsafe { OwnedFd::from_raw_fd(tree) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr(2) on the detached mount with a valid attr.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })?;
    Ok(tree)
}

/// The binary copied into a memfd sealed against every change.
fn sealed_copy(fd: RawFd) -> io::Result<OwnedFd> {
    let mut src = std::fs::File::open(format!("/proc/self/fd/{fd}"))?;
    // MFD_EXEC where the kernel knows it (vm.memfd_noexec may otherwise
    // make the memfd non-executable); older kernels refuse the flag.
    const MFD_EXEC: libc::c_uint = 0x10;
    let create = |flags| {
        // SAFETY: memfd_create with a constant name.
        unsafe { libc::memfd_create(c"berth".as_ptr(), flags) }
    };
    let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    let mut m = create(base | MFD_EXEC);
    if m < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        m = create(base);
    }
    cvt(m as libc::c_long)?;
    // SAFETY: the descriptor memfd_create returned.
    let mut dst = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(m) });
    io::copy(&mut src, &mut dst)?;
    let seals = libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: fcntl with integer arguments on our memfd.
    cvt(unsafe { libc::fcntl(dst.as_raw_fd(), libc::F_ADD_SEALS, seals) } as libc::c_long)?;
    Ok(dst.into())
}

fn cstrings(v: impl Iterator<Item = OsString>) -> io::Result<Vec<CString>> {
    v.map(|s| {
        CString::new(s.into_vec()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    })
    .collect()
}

fn reexec(image: RawFd) -> io::Result<()> {
    let argv = cstrings(std::env::args_os())?;
    let env = cstrings(std::env::vars_os().map(|(k, v)| {
        let mut kv = k;
        kv.push("=");
        kv.push(v);
        kv
    }))?;
    let ptrs = |v: &[CString]| -> Vec<*const libc::c_char> {
        v.iter()
            .map(|c| c.as_ptr())
            .chain([std::ptr::null()])
            .collect()
    };
    let (argv_p, env_p) = (ptrs(&argv), ptrs(&env));
    // SAFETY: execveat(2) with NULL-terminated arrays of live C strings.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            image,
            c"".as_ptr(),
            argv_p.as_ptr(),
            env_p.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Err(io::Error::last_os_error())
}
