//! Detached mounts (the mount API of open_tree(2), move_mount(2) and
//! mount_setattr(2)): bind sources and idmapped mounts that `berth create`
//! prepares before it forks.
//!
//! The container init resolves paths as the container's root. In a user
//! namespace that root may not reach a bind source at all (a bundle
//! directory of mode 0700 owned by host root, say), and an idmapped mount
//! needs CAP_SYS_ADMIN over the source filesystem's user namespace, which
//! only the host's root has. So when berth runs as root, every bind source
//! of a container with a user namespace, and every idmapped one, is cloned
//! here with open_tree(OPEN_TREE_CLONE), given its id mapping with
//! mount_setattr(MOUNT_ATTR_IDMAP), and the init, which inherits the
//! descriptors, attaches it beneath the rootfs with move_mount. A clone
//! that is never attached (create failed) is dissolved by the kernel when
//! its last descriptor closes: nothing is left behind.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::plan::{Idmap, MountKind, Plan};
use crate::sys::MountAttr;
use crate::{userns, LinuxError};

/// open_tree(2) of `path` beneath `dirfd` (close-on-exec added).
pub fn open_tree(dirfd: RawFd, path: &CStr, flags: u32) -> io::Result<OwnedFd> {
    let flags = flags | libc::OPEN_TREE_CLOEXEC;
    // SAFETY: path is NUL-terminated; the flags are plain integers.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, dirfd, path.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn move_mount_raw(from: RawFd, to_dir: RawFd, to_path: &CStr, flags: u32) -> io::Result<()> {
    // SAFETY: both paths are NUL-terminated ("" with the EMPTY_PATH flags).
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from,
            c"".as_ptr(),
            to_dir,
            to_path.as_ptr(),
            flags | libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Attach the mount `from` (an open_tree clone) on the file or directory
/// `to` refers to.
pub fn move_mount(from: RawFd, to: RawFd) -> io::Result<()> {
    move_mount_raw(from, to, c"", libc::MOVE_MOUNT_T_EMPTY_PATH)
}

/// Attach the mount `from` on `to_path` beneath `to_dir`.
pub fn move_mount_to(from: RawFd, to_dir: RawFd, to_path: &CStr) -> io::Result<()> {
    move_mount_raw(from, to_dir, to_path, 0)
}

/// Give the detached mount `tree` (and, when `recursive`, every mount
/// beneath it) the id mapping of the user namespace `userns`.
pub fn set_idmap(tree: RawFd, userns: RawFd, recursive: bool) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: libc::MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns as u64,
    };
    let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: attr is a valid mount_attr of the size passed; "" with
    // AT_EMPTY_PATH names `tree` itself.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree,
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// User namespaces made for idmapped mounts, by (uid_map, gid_map).
type Made = Vec<((Vec<u8>, Vec<u8>), OwnedFd)>;

/// Whether this process is root in the host's sense (it may clone mounts).
fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// Clone the bind sources the init cannot mount itself (see the module
/// notes) into `plan`'s mount steps. Before the fork.
pub fn clone_sources(plan: &mut Plan) -> Result<(), LinuxError> {
    let userns = plan.in_userns();
    let root = is_root();
    // One user namespace per distinct mapping, for as long as this runs.
    let mut namespaces: Made = Vec::new();
    for i in 0..plan.mounts.len() {
        let m = &plan.mounts[i];
        let MountKind::Bind { recursive } = m.kind else {
            continue;
        };
        if m.idmap.is_some() && !root {
            return Err(LinuxError::Plan(format!(
                "mount {}: idmapped mounts need berth to run as root (CAP_SYS_ADMIN in the host's user namespace)",
                m.display
            )));
        }
        if !root || (!userns && m.idmap.is_none()) {
            continue;
        }
        let src = m.source.as_deref().unwrap_or(c"");
        let what =
            |step: &str| format!("mount {:?} on {}: {step}", src.to_string_lossy(), m.display);
        let mut flags = libc::OPEN_TREE_CLONE;
        if recursive {
            flags |= libc::AT_RECURSIVE as u32;
        }
        let tree = open_tree(libc::AT_FDCWD, src, flags).map_err(|source| LinuxError::Io {
            what: what("clone the bind source (open_tree)"),
            source,
        })?;
        if let Some(idmap) = &m.idmap {
            let ns = idmap_userns(plan, idmap, &mut namespaces)?;
            set_idmap(tree.as_raw_fd(), ns, idmap.recursive).map_err(|source| {
                let why = match source.raw_os_error() {
                    Some(libc::EINVAL) => {
                        "its filesystem does not support idmapped mounts, it is idmapped already, or the user namespace has no mappings"
                    }
                    Some(libc::EPERM) => {
                        "the user namespace is the host's, or berth is not privileged over the filesystem's user namespace"
                    }
                    _ => "",
                };
                let step = if why.is_empty() {
                    "idmap the bind source (mount_setattr)".to_string()
                } else {
                    format!("idmap the bind source (mount_setattr): {why}")
                };
                LinuxError::Io {
                    what: what(&step),
                    source,
                }
            })?;
        }
        plan.mounts[i].detached = Some(tree);
    }
    Ok(())
}

/// The user namespace an idmapped mount maps through: the one the
/// container joins, or one carrying the mount's (or the container's)
/// mappings, made for the purpose.
fn idmap_userns(plan: &Plan, idmap: &Idmap, made: &mut Made) -> Result<RawFd, LinuxError> {
    let maps = match &idmap.maps {
        Some(maps) => maps.clone(),
        None => {
            if let Some(j) = plan.joins.iter().find(|j| j.flag == libc::CLONE_NEWUSER) {
                return Ok(j.fd.as_raw_fd());
            }
            if !plan.new_userns {
                return Err(LinuxError::Plan(
                    "an \"idmap\" mount without uidMappings/gidMappings needs a user namespace in linux.namespaces".into(),
                ));
            }
            (plan.uid_map.clone(), plan.gid_map.clone())
        }
    };
    if let Some((_, fd)) = made.iter().find(|(m, _)| *m == maps) {
        return Ok(fd.as_raw_fd());
    }
    let fd = userns::temporary(&maps.0, &maps.1)?;
    made.push((maps, fd));
    Ok(made.last().expect("just pushed").1.as_raw_fd())
}
