//! The btrfs driver: a subvolume per layer, a snapshot per container.
//!
//! Layout (the store must be on btrfs):
//!
//! ```text
//! STORE/layers/btrfs/HEX                  a layer: read-only subvolume; the bottom
//!                                         one made empty, each later one a
//!                                         snapshot of its parent
//! STORE/layers/btrfs/.tmp-PID-N-HEX       a layer being made (renamed when done)
//! STORE/containers/btrfs/KEY/rootfs       writable snapshot of the top layer,
//!                                         bind-mounted at the target
//! STORE/containers/btrfs/KEY/snapshots/NAME   read-only snapshots of rootfs
//! ```
//!
//! Everything is done with btrfs ioctls (no btrfs-progs): creating a
//! container's rootfs is one snapshot ioctl and one bind mount, whatever the
//! number of layers.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_image::Digest;
use nix::errno::Errno;

use crate::driver::HexDriver;
use crate::fsutil::{
    bind, check_absolute_target, check_snapshot_name, is_stale_tmp, read_in_root, rfc3339,
    tmp_layer_name,
};
use crate::{DriverKind, Result, Snapshot, StorageError};

/// The inode number of every subvolume's root directory.
const SUBVOL_ROOT_INO: u64 = 256;
const BUSY_TRIES: u32 = 10;
const BUSY_SLEEP: Duration = Duration::from_millis(100);

pub(crate) struct Btrfs {
    root: PathBuf,
}

impl Btrfs {
    /// Check that the store is on btrfs and make `layers/btrfs` and
    /// `containers/btrfs`.
    pub(crate) fn new(root: &Path, options: &BTreeMap<String, String>) -> Result<Btrfs> {
        if let Some(key) = options.keys().find(|k| k.starts_with("btrfs.")) {
            return Err(StorageError::Invalid(format!(
                "storage option {key:?}: the btrfs driver has no options"
            )));
        }
        // The store may not exist yet: look at what it will be made in.
        let mut probe = root;
        while !probe.exists() {
            probe = probe.parent().unwrap_or(Path::new("/"));
        }
        let st = nix::sys::statfs::statfs(probe).map_err(|e| StorageError::Io {
            what: format!("statfs {}", probe.display()),
            source: e.into(),
        })?;
        let fs = st.filesystem_type();
        if fs != nix::sys::statfs::BTRFS_SUPER_MAGIC {
            return Err(StorageError::Invalid(format!(
                "the btrfs storage driver needs the store on btrfs; {} is on {}",
                root.display(),
                fs_name(fs.0 as i64)
            )));
        }
        let b = Btrfs {
            root: root.to_path_buf(),
        };
        for dir in [b.layers_dir(), b.containers_dir()] {
            std::fs::create_dir_all(&dir)
                .map_err(crate::io_err(format!("creating {}", dir.display())))?;
        }
        Ok(b)
    }

    fn layers_dir(&self) -> PathBuf {
        self.root.join("layers").join(DriverKind::Btrfs.as_str())
    }

    fn containers_dir(&self) -> PathBuf {
        self.root
            .join("containers")
            .join(DriverKind::Btrfs.as_str())
    }

    fn container_dir(&self, key: &str) -> PathBuf {
        self.containers_dir().join(key)
    }

    /// Delete `.tmp-PID-*` subvolumes whose process is gone. Best effort.
    fn sweep_stale_tmp(&self) {
        let dir = self.layers_dir();
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return;
        };
        let Ok(dirf) = open_dir(&dir) else { return };
        for ent in rd.flatten() {
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.strip_prefix('.').is_some_and(is_stale_tmp) {
                let _ = delete_subvol(&dirf, &dir, name);
            }
        }
    }

    fn rootfs_of(&self, key: &str) -> Result<PathBuf> {
        check_component("container key", key)?;
        let rootfs = self.container_dir(key).join("rootfs");
        if !is_subvolume(&rootfs) {
            return Err(StorageError::Invalid(format!(
                "container {key} has no btrfs root filesystem ({} is not a subvolume)",
                rootfs.display()
            )));
        }
        Ok(rootfs)
    }

    fn snapshot_path(&self, key: &str, name: &str) -> Result<PathBuf> {
        check_snapshot_name(name)?;
        let p = self.container_dir(key).join("snapshots").join(name);
        if !is_subvolume(&p) {
            return Err(StorageError::Invalid(format!(
                "container {key} has no snapshot {name:?}"
            )));
        }
        Ok(p)
    }
}

impl HexDriver for Btrfs {
    const KIND: DriverKind = DriverKind::Btrfs;

    fn has_layer_hex(&self, hex: &str) -> bool {
        check_component("layer", hex).is_ok() && is_subvolume(&self.layers_dir().join(hex))
    }

    fn create_layer_hex(
        &self,
        hex: &str,
        parent: Option<&str>,
        fill: &mut dyn FnMut(&Path) -> Result<()>,
    ) -> Result<()> {
        check_component("layer", hex)?;
        self.sweep_stale_tmp();
        let dir = self.layers_dir();
        let dirf = open_dir(&dir)?;
        let tmp_name = format!(".{}", tmp_layer_name(hex));
        let tmp = dir.join(&tmp_name);
        match parent {
            None => {
                subvol_create(&dirf, &tmp_name).map_err(ioctl_err("creating subvolume", &tmp))?
            }
            Some(p) => {
                check_component("parent layer", p)?;
                let src_path = dir.join(p);
                let src = open_dir(&src_path)?;
                snap_create(&dirf, &tmp_name, &src, false).map_err(ioctl_err(
                    &format!("snapshotting {} as", src_path.display()),
                    &tmp,
                ))?;
            }
        }
        let mut guard = TmpSubvol {
            dir: dirf.try_clone().map_err(crate::io_err("dup"))?,
            name: Some(tmp_name.clone()),
        };
        fill(&tmp)?;
        let sub = open_dir(&tmp)?;
        // On disk before it gets its final name.
        nix::unistd::syncfs(&sub).map_err(|e| StorageError::Io {
            what: format!("syncfs {}", tmp.display()),
            source: e.into(),
        })?;
        set_readonly(&sub, true).map_err(ioctl_err("making read-only", &tmp))?;
        drop(sub);
        let fin = dir.join(hex);
        if let Err(e) = std::fs::rename(&tmp, &fin) {
            if self.has_layer_hex(hex) {
                return Ok(()); // made meanwhile by someone else; the guard removes ours
            }
            return Err(StorageError::Io {
                what: format!("renaming {} to {}", tmp.display(), fin.display()),
                source: e,
            });
        }
        guard.name = None;
        Ok(())
    }

    fn remove_layer_hex(&self, hex: &str) -> Result<()> {
        check_component("layer", hex)?;
        let dir = self.layers_dir();
        delete_subvol(&open_dir(&dir)?, &dir, hex)
    }

    fn read_file_hex(&self, layers: &[&str], path: &Path) -> Result<Option<Vec<u8>>> {
        let Some(top) = layers.last() else {
            return Ok(None);
        };
        check_component("layer", top)?;
        read_in_root(&self.layers_dir().join(top), path)
    }

    fn mount_hex(&self, key: &str, layers: &[&str], target: &Path) -> Result<()> {
        check_component("container key", key)?;
        check_absolute_target(target)?;
        let cdir = self.container_dir(key);
        let made_cdir = match std::fs::create_dir(&cdir) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if cdir.join("rootfs").exists() {
                    return Err(StorageError::Invalid(format!(
                        "container {key} already has a root filesystem ({})",
                        cdir.join("rootfs").display()
                    )));
                }
                false
            }
            Err(e) => {
                return Err(StorageError::Io {
                    what: format!("creating {}", cdir.display()),
                    source: e,
                })
            }
        };
        // Undo only what this call made: never unmount the target (what
        // is mounted there is not ours) nor touch what was there before.
        let undo = |rootfs_made: bool| -> Result<()> {
            if rootfs_made {
                delete_subvol(&open_dir(&cdir)?, &cdir, "rootfs")?;
            }
            if made_cdir {
                std::fs::remove_dir_all(&cdir)
                    .map_err(crate::io_err(format!("removing {}", cdir.display())))?;
            }
            Ok(())
        };
        let rootfs = cdir.join("rootfs");
        let snap = (|| {
            let cdirf = open_dir(&cdir)?;
            match layers.last() {
                None => subvol_create(&cdirf, "rootfs")
                    .map_err(ioctl_err("creating subvolume", &rootfs)),
                Some(top) => {
                    check_component("layer", top)?;
                    let src_path = self.layers_dir().join(top);
                    let src = open_dir(&src_path)?;
                    snap_create(&cdirf, "rootfs", &src, false).map_err(ioctl_err(
                        &format!("snapshotting {} as", src_path.display()),
                        &rootfs,
                    ))
                }
            }
        })();
        if let Err(e) = snap {
            return Err(crate::with_cleanup(e, undo(false)));
        }
        if let Err(e) = bind(&rootfs, target) {
            return Err(crate::with_cleanup(e, undo(true)));
        }
        Ok(())
    }

    fn unmount_key(&self, key: &str, target: &Path) -> Result<()> {
        check_component("container key", key)?;
        let cdir = self.container_dir(key);
        if cdir.exists() {
            unbind(target, &cdir.join("rootfs"))?;
        }
        let Ok(cdirf) = open_dir(&cdir) else {
            return Ok(()); // gone already
        };
        let snaps = cdir.join("snapshots");
        if let Ok(rd) = std::fs::read_dir(&snaps) {
            let snapsf = open_dir(&snaps)?;
            for ent in rd.flatten() {
                if let Some(name) = ent.file_name().to_str() {
                    delete_subvol(&snapsf, &snaps, name)?;
                }
            }
        }
        for name in ["rootfs", ".rootfs-new", ".rootfs-old"] {
            delete_subvol(&cdirf, &cdir, name)?;
        }
        drop(cdirf);
        match std::fs::remove_dir_all(&cdir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StorageError::Io {
                what: format!("removing {}", cdir.display()),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    fn snapshot_create_key(&self, key: &str, name: &str) -> Result<()> {
        check_snapshot_name(name)?;
        let rootfs = self.rootfs_of(key)?;
        let snaps = self.container_dir(key).join("snapshots");
        std::fs::create_dir_all(&snaps)
            .map_err(crate::io_err(format!("creating {}", snaps.display())))?;
        let snapsf = open_dir(&snaps)?;
        let src = open_dir(&rootfs)?;
        snap_create(&snapsf, name, &src, true).map_err(|e| match e {
            Errno::EEXIST => {
                StorageError::Invalid(format!("container {key} already has a snapshot {name:?}"))
            }
            e => ioctl_err(
                &format!("snapshotting {} as", rootfs.display()),
                &snaps.join(name),
            )(e),
        })
    }

    fn snapshot_list_key(&self, key: &str) -> Result<Vec<Snapshot>> {
        self.rootfs_of(key)?;
        let snaps = self.container_dir(key).join("snapshots");
        let rd = match std::fs::read_dir(&snaps) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(StorageError::Io {
                    what: format!("reading {}", snaps.display()),
                    source: e,
                })
            }
        };
        let mut list = Vec::new();
        for ent in rd {
            let ent = ent.map_err(crate::io_err(format!("reading {}", snaps.display())))?;
            let Some(name) = ent.file_name().to_str().map(String::from) else {
                continue;
            };
            let p = snaps.join(&name);
            let info = subvol_info(&open_dir(&p)?).map_err(ioctl_err("subvolume info of", &p))?;
            // otransid orders snapshots made within the same clock tick.
            list.push((info.otransid, info.otime.sec, info.otime.nsec, name));
        }
        list.sort();
        Ok(list
            .into_iter()
            .map(|(_, sec, _, name)| Snapshot {
                name,
                created: rfc3339(sec as i64),
            })
            .collect())
    }

    /// Replace rootfs with a writable snapshot of `name`. Other snapshots,
    /// older or newer, stay.
    fn snapshot_restore_key(&self, key: &str, name: &str, target: &Path) -> Result<()> {
        let rootfs = self.rootfs_of(key)?;
        let snap = self.snapshot_path(key, name)?;
        let cdir = self.container_dir(key);
        let cdirf = open_dir(&cdir)?;
        // Leftovers of an interrupted restore.
        delete_subvol(&cdirf, &cdir, ".rootfs-new")?;
        delete_subvol(&cdirf, &cdir, ".rootfs-old")?;
        let new = cdir.join(".rootfs-new");
        snap_create(&cdirf, ".rootfs-new", &open_dir(&snap)?, false).map_err(ioctl_err(
            &format!("snapshotting {} as", snap.display()),
            &new,
        ))?;
        unbind(target, &rootfs)?;
        let old = cdir.join(".rootfs-old");
        std::fs::rename(&rootfs, &old).map_err(crate::io_err(format!(
            "renaming {} to {}",
            rootfs.display(),
            old.display()
        )))?;
        std::fs::rename(&new, &rootfs).map_err(crate::io_err(format!(
            "renaming {} to {}",
            new.display(),
            rootfs.display()
        )))?;
        bind(&rootfs, target)?;
        delete_subvol(&cdirf, &cdir, ".rootfs-old")
    }

    fn snapshot_delete_key(&self, key: &str, name: &str) -> Result<()> {
        check_component("container key", key)?;
        self.snapshot_path(key, name)?;
        let snaps = self.container_dir(key).join("snapshots");
        delete_subvol(&open_dir(&snaps)?, &snaps, name)
    }

    fn layers_ordered(&self) -> Result<Vec<Digest>> {
        // Snapshots of a subvolume do not depend on it: any order.
        crate::driver::layers_in_dir(&self.layers_dir(), is_subvolume)
    }

    fn has_container_key(&self, key: &str) -> Result<bool> {
        check_component("container key", key)?;
        Ok(std::fs::symlink_metadata(self.container_dir(key)).is_ok())
    }
}

/// Deletes a half-made layer subvolume on drop.
struct TmpSubvol {
    dir: File,
    name: Option<String>,
}

impl Drop for TmpSubvol {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            let _ = delete_subvol(&self.dir, Path::new("layers dir"), &name);
        }
    }
}

fn check_component(what: &str, s: &str) -> Result<()> {
    crate::fsutil::check_component(what, s, "a file name")
}

fn fs_name(magic: i64) -> String {
    let name = match magic {
        0xEF53 => "ext2/3/4",
        0x5846_5342 => "xfs",
        0x0102_1994 => "tmpfs",
        0x794c_7630 => "overlayfs",
        0x2fc1_2fc1 => "zfs",
        0x6573_5546 => "fuse",
        0x6969 => "nfs",
        0x0027_e0eb => "cgroup",
        0x9fa0 => "proc",
        _ => "",
    };
    if name.is_empty() {
        format!("a filesystem with magic {magic:#x}")
    } else {
        format!("{name} (magic {magic:#x})")
    }
}

fn open_dir(p: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(p)
        .map_err(crate::io_err(format!("opening {}", p.display())))
}

fn is_subvolume(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir() && m.ino() == SUBVOL_ROOT_INO)
}

fn ioctl_err(what: &str, p: &Path) -> impl FnOnce(Errno) -> StorageError {
    let what = format!("{what} {}", p.display());
    move |e| StorageError::Io {
        what,
        source: e.into(),
    }
}

/// Delete subvolume `dir/name` (read-only or not); gone already is fine.
fn delete_subvol(dirf: &File, dir: &Path, name: &str) -> Result<()> {
    let mut tries = 1;
    loop {
        match snap_destroy(dirf, name) {
            Ok(()) | Err(Errno::ENOENT) => return Ok(()),
            Err(Errno::EBUSY) if tries < BUSY_TRIES => {
                tries += 1;
                std::thread::sleep(BUSY_SLEEP);
            }
            Err(e) => return Err(ioctl_err("deleting subvolume", &dir.join(name))(e)),
        }
    }
}

/// Unmount berth's bind mounts of `rootfs` at `target` (retrying on
/// EBUSY), never a mount that is not berth's (see
/// [`crate::vfs::unmount_ours`]); not mounted or missing is fine.
fn unbind(target: &Path, rootfs: &Path) -> Result<()> {
    use nix::mount::{umount2, MntFlags};
    let ours =
        |m: &crate::vfs::MountEntry| m.fstype == "btrfs" && crate::vfs::is_bind_of(m, rootfs);
    crate::vfs::unmount_ours(target, &ours, &mut |t| {
        let mut tries = 1;
        loop {
            match umount2(t, MntFlags::UMOUNT_NOFOLLOW) {
                Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => return Ok(()),
                Err(Errno::EBUSY) if tries < BUSY_TRIES => {
                    tries += 1;
                    std::thread::sleep(BUSY_SLEEP);
                }
                Err(e) => {
                    return Err(StorageError::Io {
                        what: format!("unmounting {}", t.display()),
                        source: e.into(),
                    })
                }
            }
        }
    })
}

// ---- btrfs ioctls (linux/btrfs.h) ----

const BTRFS_IOCTL_MAGIC: u8 = 0x94;
const BTRFS_SUBVOL_RDONLY: u64 = 1 << 1;
const BTRFS_PATH_NAME_MAX: usize = 4087;
const BTRFS_SUBVOL_NAME_MAX: usize = 4039;

/// struct btrfs_ioctl_vol_args
#[repr(C)]
struct VolArgs {
    fd: i64,
    name: [u8; BTRFS_PATH_NAME_MAX + 1],
}

/// struct btrfs_ioctl_vol_args_v2 (the unions as their first members).
#[repr(C)]
struct VolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; BTRFS_SUBVOL_NAME_MAX + 1],
}

/// struct btrfs_ioctl_timespec
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Timespec {
    sec: u64,
    nsec: u32,
}

/// struct btrfs_ioctl_get_subvol_info_args
#[repr(C)]
struct SubvolInfo {
    treeid: u64,
    name: [u8; 256],
    parent_id: u64,
    dirid: u64,
    generation: u64,
    flags: u64,
    uuid: [u8; 16],
    parent_uuid: [u8; 16],
    received_uuid: [u8; 16],
    ctransid: u64,
    otransid: u64,
    stransid: u64,
    rtransid: u64,
    ctime: Timespec,
    otime: Timespec,
    stime: Timespec,
    rtime: Timespec,
    reserved: [u64; 8],
}

const IOC_SUBVOL_CREATE: libc::c_ulong =
    nix::request_code_write!(BTRFS_IOCTL_MAGIC, 14, std::mem::size_of::<VolArgs>()) as _;
const IOC_SNAP_DESTROY: libc::c_ulong =
    nix::request_code_write!(BTRFS_IOCTL_MAGIC, 15, std::mem::size_of::<VolArgs>()) as _;
const IOC_SNAP_CREATE_V2: libc::c_ulong =
    nix::request_code_write!(BTRFS_IOCTL_MAGIC, 23, std::mem::size_of::<VolArgsV2>()) as _;
const IOC_SUBVOL_GETFLAGS: libc::c_ulong =
    nix::request_code_read!(BTRFS_IOCTL_MAGIC, 25, std::mem::size_of::<u64>()) as _;
const IOC_SUBVOL_SETFLAGS: libc::c_ulong =
    nix::request_code_write!(BTRFS_IOCTL_MAGIC, 26, std::mem::size_of::<u64>()) as _;
const IOC_GET_SUBVOL_INFO: libc::c_ulong =
    nix::request_code_read!(BTRFS_IOCTL_MAGIC, 60, std::mem::size_of::<SubvolInfo>()) as _;

/// A subvolume name: one path component, NUL-free, short enough.
fn name_bytes(name: &str, max: usize) -> nix::Result<&[u8]> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > max || b.contains(&0) || b.contains(&b'/') {
        return Err(Errno::EINVAL);
    }
    Ok(b)
}

/// ioctl(fd, req, arg) → 0 or errno.
///
/// # Safety
/// `arg` must point to a value of the type and size `req` encodes, valid
/// (and writable for a read request) for the duration of the call.
unsafe fn ioctl_ptr<T>(fd: BorrowedFd<'_>, req: libc::c_ulong, arg: *mut T) -> nix::Result<()> {
    // SAFETY: the caller guarantees `arg` matches `req`; `fd` is open
    // (borrowed for the call).
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, arg) };
    Errno::result(r).map(drop)
}

/// BTRFS_IOC_SUBVOL_CREATE: a new empty subvolume `dir/name`.
fn subvol_create(dir: &File, name: &str) -> nix::Result<()> {
    let b = name_bytes(name, BTRFS_PATH_NAME_MAX)?;
    let mut args = Box::new(VolArgs {
        fd: 0,
        name: [0; BTRFS_PATH_NAME_MAX + 1],
    });
    args.name[..b.len()].copy_from_slice(b);
    // SAFETY: `args` is a live, NUL-terminated btrfs_ioctl_vol_args, the
    // type IOC_SUBVOL_CREATE encodes.
    unsafe { ioctl_ptr(dir.as_fd(), IOC_SUBVOL_CREATE, &mut *args) }
}

/// BTRFS_IOC_SNAP_DESTROY: delete subvolume `dir/name`.
fn snap_destroy(dir: &File, name: &str) -> nix::Result<()> {
    let b = name_bytes(name, BTRFS_PATH_NAME_MAX)?;
    let mut args = Box::new(VolArgs {
        fd: 0,
        name: [0; BTRFS_PATH_NAME_MAX + 1],
    });
    args.name[..b.len()].copy_from_slice(b);
    // SAFETY: as in subvol_create; the kernel only reads `args`.
    unsafe { ioctl_ptr(dir.as_fd(), IOC_SNAP_DESTROY, &mut *args) }
}

/// BTRFS_IOC_SNAP_CREATE_V2: snapshot the subvolume open as `src` as
/// `dir/name`, read-only if asked.
fn snap_create(dir: &File, name: &str, src: &File, readonly: bool) -> nix::Result<()> {
    let b = name_bytes(name, BTRFS_SUBVOL_NAME_MAX)?;
    let mut args = Box::new(VolArgsV2 {
        fd: i64::from(src.as_raw_fd()),
        transid: 0,
        flags: if readonly { BTRFS_SUBVOL_RDONLY } else { 0 },
        unused: [0; 4],
        name: [0; BTRFS_SUBVOL_NAME_MAX + 1],
    });
    args.name[..b.len()].copy_from_slice(b);
    // SAFETY: `args` is a live btrfs_ioctl_vol_args_v2 (no qgroup_inherit
    // pointer: the union's other member is zero), `src` stays open.
    unsafe { ioctl_ptr(dir.as_fd(), IOC_SNAP_CREATE_V2, &mut *args) }
}

/// BTRFS_IOC_SUBVOL_SETFLAGS with RDONLY set or cleared (other flags kept).
fn set_readonly(sub: &File, ro: bool) -> nix::Result<()> {
    let mut flags: u64 = 0;
    // SAFETY: GETFLAGS writes one u64 into `flags`.
    unsafe { ioctl_ptr(sub.as_fd(), IOC_SUBVOL_GETFLAGS, &mut flags) }?;
    flags = if ro {
        flags | BTRFS_SUBVOL_RDONLY
    } else {
        flags & !BTRFS_SUBVOL_RDONLY
    };
    // SAFETY: SETFLAGS reads one u64 from `flags`.
    unsafe { ioctl_ptr(sub.as_fd(), IOC_SUBVOL_SETFLAGS, &mut flags) }
}

/// BTRFS_IOC_GET_SUBVOL_INFO of the subvolume open as `sub`.
fn subvol_info(sub: &File) -> nix::Result<Box<SubvolInfo>> {
    let mut info = Box::new(SubvolInfo {
        treeid: 0,
        name: [0; 256],
        parent_id: 0,
        dirid: 0,
        generation: 0,
        flags: 0,
        uuid: [0; 16],
        parent_uuid: [0; 16],
        received_uuid: [0; 16],
        ctransid: 0,
        otransid: 0,
        stransid: 0,
        rtransid: 0,
        ctime: Timespec::default(),
        otime: Timespec::default(),
        stime: Timespec::default(),
        rtime: Timespec::default(),
        reserved: [0; 8],
    });
    // SAFETY: the kernel fills one btrfs_ioctl_get_subvol_info_args, the
    // type and size IOC_GET_SUBVOL_INFO encodes, into the boxed value.
    unsafe { ioctl_ptr(sub.as_fd(), IOC_GET_SUBVOL_INFO, &mut *info) }?;
    Ok(info)
}

#[cfg(test)]
mod tests {
    //! On a real btrfs: a sparse file, mkfs.btrfs, loop-mounted at a temp
    //! directory per test; as root.

    use super::*;
    use crate::testutil::{hex, hex_layer, is_mounted, now, target};
    use berth_integration::storage::BtrfsLoop;
    use std::process::Command;
    use std::time::Instant;

    /// A fresh 512 MiB btrfs, loop-mounted at a temp dir (see [`BtrfsLoop`]).
    struct Fs(BtrfsLoop);

    impl Fs {
        fn new() -> Fs {
            Fs(BtrfsLoop::new(512 << 20))
        }

        fn store(&self) -> PathBuf {
            self.0.path().join("store")
        }

        fn target(&self, name: &str) -> PathBuf {
            target(self.0.path(), name)
        }

        /// Subvolume paths, relative to the mount.
        fn subvolumes(&self) -> Vec<String> {
            self.0.subvolumes()
        }
    }

    #[test]
    fn ioctl_numbers_match_linux_btrfs_h() {
        // Values of the macros in linux/btrfs.h (x86_64).
        assert_eq!(IOC_SUBVOL_CREATE, 0x5000_940e);
        assert_eq!(IOC_SNAP_DESTROY, 0x5000_940f);
        assert_eq!(IOC_SNAP_CREATE_V2, 0x5000_9417);
        assert_eq!(IOC_SUBVOL_SETFLAGS, 0x4008_941a);
        assert_eq!(IOC_GET_SUBVOL_INFO, 0x81f8_943c);
        assert_eq!(std::mem::size_of::<SubvolInfo>(), 504);
    }

    #[test]
    fn store_not_on_btrfs_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Btrfs::new(&dir.path().join("store"), &BTreeMap::new())
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("needs the store on btrfs") && err.contains("magic"),
            "{err}"
        );
        assert!(
            !dir.path().join("store").exists(),
            "nothing made on the wrong fs"
        );
        let fs = Fs::new();
        let opts = BTreeMap::from([("btrfs.x".to_string(), "1".to_string())]);
        let err = Btrfs::new(&fs.store(), &opts).err().unwrap().to_string();
        assert!(err.contains("btrfs.x"), "{err}");
    }

    #[test]
    fn layers_containers_isolation_and_cleanup() {
        let fs = Fs::new();
        let b = Btrfs::new(&fs.store(), &BTreeMap::new()).unwrap();
        let (l1, l2) = (hex(1), hex(2));
        assert!(!b.has_layer_hex(&l1));
        hex_layer(
            &b,
            &l1,
            None,
            &[
                ("a", "from l1"),
                ("etc/passwd", "root:x:0:0::/:/bin/sh\n"),
                ("keep", "k"),
            ],
            &[],
        );
        hex_layer(&b, &l2, Some(&l1), &[("b", "from l2")], &["a"]);
        assert!(b.has_layer_hex(&l1) && b.has_layer_hex(&l2));
        assert_eq!(
            fs.subvolumes(),
            [
                format!("store/layers/btrfs/{l1}"),
                format!("store/layers/btrfs/{l2}")
            ]
        );
        // Layers are read-only.
        let err = std::fs::write(b.layers_dir().join(&l2).join("x"), "x").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS));

        let stack = [l1.as_str(), l2.as_str()];
        assert_eq!(
            b.read_file_hex(&stack, Path::new("/etc/passwd"))
                .unwrap()
                .as_deref(),
            Some(&b"root:x:0:0::/:/bin/sh\n"[..])
        );
        assert_eq!(b.read_file_hex(&stack, Path::new("a")).unwrap(), None);
        // A symlink cannot lead read_file out of the layer.
        let l3 = hex(3);
        b.create_layer_hex(&l3, Some(&l2), &mut |dir| {
            std::os::unix::fs::symlink("../../../../../../../etc/hostname", dir.join("escape"))
                .unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(b.read_file_hex(&[&l3], Path::new("escape")).unwrap(), None);
        b.remove_layer_hex(&l3).unwrap();

        let (t1, t2) = (fs.target("c1"), fs.target("c2"));
        b.mount_hex("c1", &stack, &t1).unwrap();
        b.mount_hex("c2", &stack, &t2).unwrap();
        assert!(is_mounted(&t1) && is_mounted(&t2));
        assert_eq!(std::fs::read_to_string(t1.join("b")).unwrap(), "from l2");
        assert!(!t1.join("a").exists(), "l2 deleted a");
        std::fs::write(t1.join("only-c1"), "x").unwrap();
        std::fs::write(t1.join("keep"), "changed").unwrap();
        assert!(!t2.join("only-c1").exists());
        assert_eq!(std::fs::read_to_string(t2.join("keep")).unwrap(), "k");
        assert_eq!(
            b.read_file_hex(&stack, Path::new("keep"))
                .unwrap()
                .as_deref(),
            Some(&b"k"[..])
        );
        let err = b.mount_hex("c1", &stack, &fs.target("c1b")).unwrap_err();
        assert!(
            err.to_string().contains("already has a root filesystem"),
            "{err}"
        );
        assert!(t1.join("only-c1").exists());

        b.snapshot_create_key("c1", "s1").unwrap();
        b.unmount_key("c1", &t1).unwrap();
        b.unmount_key("c2", &t2).unwrap();
        assert!(!is_mounted(&t1) && !is_mounted(&t2));
        assert_eq!(
            fs.subvolumes(),
            [
                format!("store/layers/btrfs/{l1}"),
                format!("store/layers/btrfs/{l2}")
            ]
        );
        assert_eq!(std::fs::read_dir(b.containers_dir()).unwrap().count(), 0);
        b.unmount_key("c1", &t1).unwrap();
        b.unmount_key("never", &t1).unwrap();

        b.remove_layer_hex(&l2).unwrap();
        b.remove_layer_hex(&l1).unwrap();
        b.remove_layer_hex(&l1).unwrap();
        assert!(fs.subvolumes().is_empty());
    }

    #[test]
    fn failed_fill_leaves_nothing() {
        let fs = Fs::new();
        let b = Btrfs::new(&fs.store(), &BTreeMap::new()).unwrap();
        let err = b
            .create_layer_hex(&hex(1), None, &mut |dir| {
                std::fs::write(dir.join("half"), "x").unwrap();
                Err(StorageError::Invalid("bad tar".into()))
            })
            .unwrap_err();
        assert!(err.to_string().contains("bad tar"));
        assert!(!b.has_layer_hex(&hex(1)));
        assert!(fs.subvolumes().is_empty());
        assert_eq!(std::fs::read_dir(b.layers_dir()).unwrap().count(), 0);
        let err = b
            .create_layer_hex(&hex(2), Some(&hex(9)), &mut |_| Ok(()))
            .unwrap_err();
        assert!(err.to_string().contains(&hex(9)), "{err}");
        assert!(fs.subvolumes().is_empty());

        // A temporary layer left by a dead process goes on the next create.
        let dirf = open_dir(&b.layers_dir()).unwrap();
        subvol_create(&dirf, ".tmp-999999999-0-x").unwrap();
        hex_layer(&b, &hex(1), None, &[("f", "1")], &[]);
        assert_eq!(fs.subvolumes(), [format!("store/layers/btrfs/{}", hex(1))]);
    }

    #[test]
    fn snapshots_create_list_restore_delete() {
        let fs = Fs::new();
        let b = Btrfs::new(&fs.store(), &BTreeMap::new()).unwrap();
        hex_layer(&b, &hex(1), None, &[("f", "v0")], &[]);
        let t = fs.target("c");
        b.mount_hex("c", &[&hex(1)], &t).unwrap();
        for bad in ["", "-x", "a/b", "a b", &"x".repeat(65), ".."] {
            let err = b.snapshot_create_key("c", bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        assert!(b.snapshot_create_key("nope", "s").is_err());
        for (i, name) in ["one", "two", "three", "four"].iter().enumerate() {
            std::fs::write(t.join("f"), format!("v{}", i + 1)).unwrap();
            b.snapshot_create_key("c", name).unwrap();
        }
        let err = b.snapshot_create_key("c", "two").unwrap_err();
        assert!(err.to_string().contains("already has a snapshot"), "{err}");
        let list = b.snapshot_list_key("c").unwrap();
        let names: Vec<&str> = list.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["one", "two", "three", "four"]);
        let now = now();
        for s in &list {
            assert!(
                s.created <= rfc3339(now) && s.created >= rfc3339(now - 60),
                "{}",
                s.created
            );
        }
        // Snapshots are read-only.
        let snap_f = b.container_dir("c").join("snapshots/two/f");
        assert_eq!(
            std::fs::write(&snap_f, "x").unwrap_err().raw_os_error(),
            Some(libc::EROFS)
        );

        // keep-last 3 by hand.
        let list = b.snapshot_list_key("c").unwrap();
        b.snapshot_delete_key("c", &list[0].name).unwrap();
        let err = b.snapshot_delete_key("c", "one").unwrap_err();
        assert!(err.to_string().contains("\"one\""), "{err}");

        std::fs::write(t.join("f"), "v9").unwrap();
        std::fs::write(t.join("new"), "n").unwrap();
        b.snapshot_restore_key("c", "two", &t).unwrap();
        assert!(is_mounted(&t));
        assert_eq!(std::fs::read_to_string(t.join("f")).unwrap(), "v2");
        assert!(!t.join("new").exists());
        // Writable again, and the snapshot itself unchanged.
        std::fs::write(t.join("f"), "after").unwrap();
        assert_eq!(std::fs::read_to_string(&snap_f).unwrap(), "v2");
        let names: Vec<String> = b
            .snapshot_list_key("c")
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(
            names,
            ["two", "three", "four"],
            "btrfs keeps later snapshots"
        );
        let err = b.snapshot_restore_key("c", "one", &t).unwrap_err();
        assert!(err.to_string().contains("\"one\""), "{err}");

        b.unmount_key("c", &t).unwrap();
        assert_eq!(fs.subvolumes(), [format!("store/layers/btrfs/{}", hex(1))]);
    }

    #[test]
    fn unmount_retries_while_busy() {
        let fs = Fs::new();
        let b = Btrfs::new(&fs.store(), &BTreeMap::new()).unwrap();
        hex_layer(&b, &hex(1), None, &[("f", "x")], &[]);
        let t = fs.target("c");
        b.mount_hex("c", &[&hex(1)], &t).unwrap();
        // A process with its cwd in the mount keeps it busy a while.
        let mut child = Command::new("sh")
            .args(["-c", "sleep 0.5"])
            .current_dir(&t)
            .spawn()
            .unwrap();
        let start = Instant::now();
        b.unmount_key("c", &t).unwrap();
        child.wait().unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(300),
            "did not wait"
        );
        assert!(!is_mounted(&t));
        assert!(fs.subvolumes().len() == 1);
    }

    /// Rootfs assembly time (mount) on 1, 20 and 100 layers; printed, not
    /// asserted (`cargo test -- --nocapture`).
    #[test]
    fn mount_time_by_depth() {
        let fs = Fs::new();
        let b = Btrfs::new(&fs.store(), &BTreeMap::new()).unwrap();
        let mut stack: Vec<String> = Vec::new();
        for depth in [1usize, 20, 100] {
            while stack.len() < depth {
                let h = hex(stack.len() as u64 + 1);
                let name = format!("f{}", stack.len() + 1);
                hex_layer(
                    &b,
                    &h,
                    stack.last().map(String::as_str),
                    &[(&name, "x")],
                    &[],
                );
                stack.push(h);
            }
            let refs: Vec<&str> = stack.iter().map(String::as_str).collect();
            let t = fs.target(&format!("d{depth}"));
            let start = Instant::now();
            b.mount_hex(&format!("d{depth}"), &refs, &t).unwrap();
            let took = start.elapsed();
            assert!(t.join(format!("f{depth}")).exists() && t.join("f1").exists());
            let start = Instant::now();
            b.unmount_key(&format!("d{depth}"), &t).unwrap();
            println!(
                "btrfs: {depth:3} layers: mount {took:?}, unmount {:?}",
                start.elapsed()
            );
        }
        for h in stack.iter().rev() {
            b.remove_layer_hex(h).unwrap();
        }
        assert!(fs.subvolumes().is_empty());
    }
}
