//! The vfs driver: every layer is a whole tree (a copy of its parent with
//! the layer applied), a container gets a copy of its top layer, bind
//! mounted at the target. Slow and big, but it works on any filesystem.
//!
//! Also the file-tree helpers the directory drivers share: the copy that
//! preserves everything, xattrs, unmounting, and reading a file through a
//! stack of layers.

use std::collections::{HashMap, VecDeque};
use std::ffi::{CString, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use berth_image::{Digest, Whiteouts};
use nix::errno::Errno;
use nix::fcntl::{OFlag, AT_FDCWD};
use nix::mount::MntFlags;
use nix::sys::stat::{Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, Whence};

use crate::driver::{container_path, layer_path, layers_in_dir, top_layer, Driver};
use crate::fsutil::{bind, unescape_octal};
use crate::store::{mkdir_private, temp_suffix};
use crate::{io_err, DriverKind, Result, StorageError};

pub(crate) struct Vfs {
    root: PathBuf,
}

impl Vfs {
    pub(crate) fn new(root: &Path) -> Vfs {
        Vfs {
            root: root.to_path_buf(),
        }
    }

    fn layer(&self, chain: &Digest) -> PathBuf {
        layer_path(&self.root, DriverKind::Vfs, chain)
    }
}

impl Driver for Vfs {
    fn kind(&self) -> DriverKind {
        DriverKind::Vfs
    }

    fn whiteouts(&self) -> Whiteouts {
        Whiteouts::Apply
    }

    fn has_layer(&self, chain: &Digest) -> bool {
        is_dir(&self.layer(chain))
    }
    fn mounted_layers<'a>(&self, layers: &'a [Digest]) -> &'a [Digest] {
        // Each layer is the whole tree: the container is made from the top one.
        top_layer(layers)
    }

    fn create_layer(
        &self,
        chain: &Digest,
        parent: Option<&Digest>,
        fill: &mut dyn FnMut(&Path) -> Result<()>,
    ) -> Result<()> {
        create_layer_dir(&self.layer(chain), chain, |tmp| {
            match parent {
                Some(p) => {
                    let from = self.layer(p);
                    if !is_dir(&from) {
                        return Err(StorageError::Invalid(format!(
                            "layer {chain}: its parent layer {p} is not in the store ({})",
                            from.display()
                        )));
                    }
                    copy_tree(&from, tmp)?;
                }
                None => make_root_dir(tmp)?,
            }
            fill(tmp)
        })
    }

    fn remove_layer(&self, chain: &Digest) -> Result<()> {
        remove_layer_dir(&self.layer(chain))
    }

    fn layers(&self) -> Result<Vec<Digest>> {
        let dir = self.root.join("layers").join(DriverKind::Vfs.as_str());
        layers_in_dir(&dir, is_dir)
    }

    fn has_container(&self, key: &str) -> Result<bool> {
        let cdir = container_path(&self.root, DriverKind::Vfs, key);
        Ok(lstat(&cdir)?.is_some())
    }

    fn read_file(&self, layers: &[Digest], path: &Path) -> Result<Option<Vec<u8>>> {
        let Some(top) = layers.last() else {
            return Ok(None);
        };
        let top = self.layer(top);
        read_through(path, |rel| {
            Ok(match lstat(&top.join(rel))? {
                None => Found::Missing,
                Some(md) => Found::from_metadata(&md, top.join(rel))?,
            })
        })
    }

    fn mount(&self, key: &str, layers: &[Digest], target: &Path) -> Result<()> {
        let cdir = container_path(&self.root, DriverKind::Vfs, key);
        mount_undoing(&cdir, || self.mount_in(&cdir, layers, target))
    }

    fn unmount(&self, key: &str, target: &Path) -> Result<()> {
        let cdir = container_path(&self.root, DriverKind::Vfs, key);
        let rootfs = cdir.join("rootfs");
        unmount_ours(target, &|m| is_bind_of(m, &rootfs), &mut detach)?;
        remove_tree(&cdir)
    }
}

impl Vfs {
    /// [`Driver::mount`] into container directory `cdir`; the bind mount
    /// is the last step, so an error leaves nothing mounted.
    fn mount_in(&self, cdir: &Path, layers: &[Digest], target: &Path) -> Result<()> {
        mkdir_private(cdir)?;
        let rootfs = cdir.join("rootfs");
        if !is_dir(&rootfs) {
            // Copied under a temporary name: a rootfs that is there is whole.
            let tmp = cdir.join(format!("rootfs.{}", temp_suffix()));
            let made = match layers.last() {
                Some(top) => copy_tree(&self.layer(top), &tmp),
                None => make_root_dir(&tmp),
            };
            if let Err(e) = made {
                let _ = remove_tree(&tmp);
                return Err(e);
            }
            fs::rename(&tmp, &rootfs).map_err(io_err(format!(
                "renaming {} to {}",
                tmp.display(),
                rootfs.display()
            )))?;
        }
        make_target(target)?;
        bind(&rootfs, target)
    }
}

/// Make the layer directory `dest` (`layers/DRIVER/HEX`): `build` makes
/// and fills a temporary directory beside it, which becomes `dest` only
/// if `build` succeeded and is removed otherwise.
pub(crate) fn create_layer_dir(
    dest: &Path,
    chain: &Digest,
    build: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let dir = dest.parent().expect("layer path has a parent");
    mkdir_private(dir)?;
    let tmp = dir.join(format!("{}.{}", chain.hex(), temp_suffix()));
    if let Err(e) = build(&tmp) {
        let _ = remove_tree(&tmp);
        return Err(e);
    }
    commit_dir(&tmp, dest)
}

/// Mount a container whose files are under `cdir` (`containers/DRIVER/KEY`)
/// with `mount_in`. If that fails, `cdir` is removed only if it was not
/// there before: a container that was (mounted by an earlier create)
/// stays for unmount.
pub(crate) fn mount_undoing(cdir: &Path, mount_in: impl FnOnce() -> Result<()>) -> Result<()> {
    let fresh = lstat(cdir)?.is_none();
    mount_in().map_err(|e| {
        let undo = if fresh { remove_tree(cdir) } else { Ok(()) };
        crate::with_cleanup(e, undo)
    })
}

pub(crate) fn is_dir(p: &Path) -> bool {
    fs::symlink_metadata(p).map(|m| m.is_dir()).unwrap_or(false)
}

/// lstat; None if there is nothing there (or a parent is not a directory).
pub(crate) fn lstat(p: &Path) -> Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(p) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => {
            Ok(None)
        }
        Err(e) => Err(io_err(format!("lstat {}", p.display()))(e)),
    }
}

/// A new, empty layer root: 0755 root:root as a tar without a `./` entry
/// leaves it (the layer's `./` entry, if any, sets its own).
pub(crate) fn make_root_dir(p: &Path) -> Result<()> {
    let what = || format!("creating {}", p.display());
    fs::create_dir(p).map_err(io_err(what()))?;
    fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(io_err(what()))
}

/// Create the mount target (and its parents) if missing.
pub(crate) fn make_target(target: &Path) -> Result<()> {
    if is_dir(target) {
        return Ok(());
    }
    fs::create_dir_all(target).map_err(io_err(format!(
        "creating the rootfs mount point {}",
        target.display()
    )))
}

/// Rename a finished temporary layer into place. If the layer appeared
/// meanwhile, the one there wins and the temporary copy goes.
pub(crate) fn commit_dir(tmp: &Path, dest: &Path) -> Result<()> {
    match fs::rename(tmp, dest) {
        Ok(()) => Ok(()),
        Err(e)
            if (e.raw_os_error() == Some(libc::ENOTEMPTY)
                || e.raw_os_error() == Some(libc::EEXIST))
                && is_dir(dest) =>
        {
            remove_tree(tmp)
        }
        Err(e) => {
            let _ = remove_tree(tmp);
            Err(io_err(format!(
                "renaming {} to {}",
                tmp.display(),
                dest.display()
            ))(e))
        }
    }
}

/// `rm -rf`, never following symlinks; a missing path is fine.
pub(crate) fn remove_tree(p: &Path) -> Result<()> {
    let md = match lstat(p)? {
        None => return Ok(()),
        Some(md) => md,
    };
    let r = if md.is_dir() {
        fs::remove_dir_all(p)
    } else {
        fs::remove_file(p)
    };
    match r {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            Err(io_err(format!("removing {}", p.display()))(e))
        }
        _ => Ok(()),
    }
}

/// Remove the layer directory `layer` (`layers/DRIVER/HEX`) so that no
/// crash leaves a half-deleted layer under its name (has_layer would take
/// it for whole): it is first renamed, atomically, to
/// `HEX.tmp-trash-PID-N`, then deleted. If the deletion fails the layer is
/// gone all the same and the error says where its files are left; the
/// next import's sweep of `*.tmp-*` names tries again. Missing is fine.
pub(crate) fn remove_layer_dir(layer: &Path) -> Result<()> {
    if lstat(layer)?.is_none() {
        return Ok(());
    }
    let trash = trash_path(layer);
    match fs::rename(layer, &trash) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(io_err(format!(
                "removing layer {}: renaming it to {}",
                layer.display(),
                trash.display()
            ))(e))
        }
    }
    // The rename reaches the disk before any of the deletions.
    if let Some(dir) = layer.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(format!("syncing {}", dir.display())))?;
    }
    remove_tree(&trash).map_err(|e| {
        StorageError::Invalid(format!(
            "layer {} is removed from the store, but deleting its files (now {}) failed: {e}; the next import tries again",
            layer.display(),
            trash.display()
        ))
    })
}

/// `DIR/HEX` → `DIR/HEX.tmp-trash-PID-N`.
pub(crate) fn trash_path(layer: &Path) -> PathBuf {
    let name = layer.file_name().unwrap_or_default().to_string_lossy();
    let suffix = temp_suffix().replacen("tmp-", "tmp-trash-", 1);
    layer.with_file_name(format!("{name}.{suffix}"))
}

/// One line of /proc/self/mountinfo.
#[derive(Debug, Clone)]
pub(crate) struct MountEntry {
    pub(crate) id: u64,
    pub(crate) parent: u64,
    /// The directory of its filesystem that is mounted (a bind mount's
    /// source), octal escapes decoded.
    pub(crate) root: PathBuf,
    pub(crate) point: PathBuf,
    pub(crate) fstype: String,
    pub(crate) source: String,
    /// As the kernel prints them (a filesystem's own escapes kept).
    pub(crate) super_opts: String,
}

/// The mounts of this mount namespace.
pub(crate) fn mountinfo() -> Result<Vec<MountEntry>> {
    let text = fs::read_to_string("/proc/self/mountinfo")
        .map_err(io_err("reading /proc/self/mountinfo"))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(dash) = f.iter().position(|x| *x == "-") else {
            continue;
        };
        if f.len() < 5 || f.len() < dash + 4 {
            continue;
        }
        let (Ok(id), Ok(parent)) = (f[0].parse(), f[1].parse()) else {
            continue;
        };
        out.push(MountEntry {
            id,
            parent,
            root: unescape_octal(f[3].as_bytes()),
            point: unescape_octal(f[4].as_bytes()),
            fstype: f[dash + 1].to_string(),
            source: f[dash + 2].to_string(),
            super_opts: f[dash + 3].to_string(),
        });
    }
    Ok(out)
}

/// The mounts at `point`, bottom first (each one mounted over the one
/// before it is its parent).
pub(crate) fn stack_at<'a>(all: &'a [MountEntry], point: &Path) -> Vec<&'a MountEntry> {
    let mut here: Vec<&MountEntry> = all.iter().filter(|m| m.point == point).collect();
    let mut out: Vec<&MountEntry> = Vec::with_capacity(here.len());
    while !here.is_empty() {
        let below = out.last().map(|m| m.id);
        let next = here
            .iter()
            .position(|m| Some(m.parent) == below)
            .or_else(|| {
                // The bottom one: its parent is not at this point.
                here.iter()
                    .position(|m| !here.iter().any(|o| o.id == m.parent))
            })
            .unwrap_or(0);
        out.push(here.remove(next));
    }
    out
}

/// Unmount the mounts at `target` that `ours` says berth made, from the
/// top down, with `umount`. A mount that is not berth's stops it: one
/// that was there before berth mounted stays (and is no error); one
/// mounted over berth's is an error that says so, and nothing is
/// unmounted under it. Nothing mounted, or no target, is fine.
pub(crate) fn unmount_ours(
    target: &Path,
    ours: &dyn Fn(&MountEntry) -> bool,
    umount: &mut dyn FnMut(&Path) -> Result<()>,
) -> Result<()> {
    // mountinfo names mount points by their resolved path.
    let point = match fs::canonicalize(target) {
        Ok(p) => p,
        Err(e) if e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => {
            return Ok(())
        }
        Err(e) => return Err(io_err(format!("resolving {}", target.display()))(e)),
    };
    const MAX: usize = 64;
    for _ in 0..MAX {
        let all = mountinfo()?;
        let stack = stack_at(&all, &point);
        let Some(top) = stack.last() else {
            return Ok(());
        };
        if ours(top) {
            umount(target)?;
            continue;
        }
        if stack.iter().any(|m| ours(m)) {
            return Err(StorageError::Invalid(format!(
                "unmounting {}: berth's root filesystem there is under another mount ({} on {}, type {}); unmount that first",
                target.display(),
                top.source,
                top.point.display(),
                top.fstype
            )));
        }
        return Ok(());
    }
    Err(StorageError::Invalid(format!(
        "unmounting {}: still mounted after {MAX} unmounts",
        target.display()
    )))
}

/// umount2(MNT_DETACH) of `target`; already gone is fine.
pub(crate) fn detach(target: &Path) -> Result<()> {
    match nix::mount::umount2(target, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(io_err(format!("unmounting {}", target.display()))(e.into())),
    }
}

/// Whether `m` is a bind mount of the directory `.../containers/DRIVER/KEY/rootfs`
/// of this store (matched by its trailing components: the key is unique).
pub(crate) fn is_bind_of(m: &MountEntry, rootfs: &Path) -> bool {
    let tail: PathBuf = rootfs
        .components()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    m.root.ends_with(&tail)
}

// ---- reading a file through layers ----

/// What a path is in the merged view of an image.
pub(crate) enum Found {
    Missing,
    Dir,
    Symlink(PathBuf),
    /// A regular file, at this real path.
    File(PathBuf),
    Other,
}

impl Found {
    pub(crate) fn from_metadata(md: &fs::Metadata, real: PathBuf) -> Result<Found> {
        let ft = md.file_type();
        Ok(if ft.is_dir() {
            Found::Dir
        } else if ft.is_file() {
            Found::File(real)
        } else if ft.is_symlink() {
            Found::Symlink(
                fs::read_link(&real).map_err(io_err(format!("readlink {}", real.display())))?,
            )
        } else {
            Found::Other
        })
    }
}

/// Read `path` of an image whose merged view `lookup` gives (called with
/// paths relative to the image's root, whose parents are directories).
/// Symlinks are resolved inside the image (an absolute target starts at
/// the image's root), never on the host.
pub(crate) fn read_through(
    path: &Path,
    mut lookup: impl FnMut(&Path) -> Result<Found>,
) -> Result<Option<Vec<u8>>> {
    let mut todo: VecDeque<OsString> = VecDeque::new();
    push_front(&mut todo, path);
    let mut resolved = PathBuf::new();
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let cand = resolved.join(&c);
        match lookup(&cand)? {
            Found::Missing => return Ok(None),
            Found::Dir => resolved = cand,
            Found::Symlink(t) => {
                hops += 1;
                if hops > 40 {
                    return Err(StorageError::Invalid(format!(
                        "{} in the image: too many levels of symbolic links",
                        path.display()
                    )));
                }
                if t.is_absolute() {
                    resolved = PathBuf::new();
                }
                push_front(&mut todo, &t);
            }
            Found::File(real) => {
                if !todo.is_empty() {
                    return Ok(None);
                }
                let shown = format!("{} in the image ({})", path.display(), real.display());
                let fd = nix::fcntl::open(
                    &real,
                    OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| io_err(format!("opening {shown}"))(e.into()))?;
                return read_regular(fd, &shown).map(Some);
            }
            Found::Other if !todo.is_empty() => return Ok(None),
            Found::Other => {
                return Err(StorageError::Invalid(format!(
                    "{} in the image is not a regular file",
                    path.display()
                )))
            }
        }
    }
    Err(StorageError::Invalid(format!(
        "{} in the image is a directory",
        path.display()
    )))
}

/// The most [`read_regular`] reads: `read_file` is for small files
/// (/etc/passwd, /etc/group), and an image must not make berth read
/// gigabytes into memory.
pub(crate) const MAX_READ: u64 = 16 << 20;

/// Read the file open as `O_PATH` in `fd` (`shown` names it in errors).
/// It is opened for reading only once fstat says it is a regular file: a
/// FIFO would block the reader forever and a device node would open a
/// device of the host. More than [`MAX_READ`] bytes is an error.
pub(crate) fn read_regular(fd: OwnedFd, shown: &str) -> Result<Vec<u8>> {
    let st = nix::sys::stat::fstat(&fd).map_err(|e| io_err(format!("stat {shown}"))(e.into()))?;
    let kind = match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFREG => None,
        SFlag::S_IFIFO => Some("a FIFO"),
        SFlag::S_IFCHR => Some("a character device"),
        SFlag::S_IFBLK => Some("a block device"),
        SFlag::S_IFSOCK => Some("a socket"),
        SFlag::S_IFDIR => Some("a directory"),
        SFlag::S_IFLNK => Some("a symbolic link"),
        _ => Some("of an unknown type"),
    };
    if let Some(kind) = kind {
        return Err(StorageError::Invalid(format!(
            "{shown}: not a regular file (it is {kind})"
        )));
    }
    // Reopen the very inode the O_PATH descriptor names, for reading.
    let f = File::from(
        nix::fcntl::open(
            format!("/proc/self/fd/{}", fd.as_raw_fd()).as_str(),
            OFlag::O_RDONLY | OFlag::O_NOCTTY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err(format!("opening {shown} for reading"))(e.into()))?,
    );
    let mut buf = Vec::new();
    f.take(MAX_READ + 1)
        .read_to_end(&mut buf)
        .map_err(io_err(format!("reading {shown}")))?;
    if buf.len() as u64 > MAX_READ {
        return Err(StorageError::Invalid(format!(
            "{shown}: larger than {} MiB, more than berth reads from an image",
            MAX_READ >> 20
        )));
    }
    Ok(buf)
}

fn push_front(todo: &mut VecDeque<OsString>, p: &Path) {
    let comps: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    for c in comps.into_iter().rev() {
        todo.push_front(c);
    }
}

// ---- xattrs ----

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| StorageError::Invalid(format!("path {} contains a NUL byte", p.display())))
}

/// The xattr names of `p` (not following a symlink).
pub(crate) fn list_xattrs(p: &Path) -> Result<Vec<CString>> {
    let c = cpath(p)?;
    let mut buf = vec![0u8; 1024];
    loop {
        match llistxattr(&c, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf
                    .split(|b| *b == 0)
                    .filter(|n| !n.is_empty())
                    .map(|n| CString::new(n).expect("split at NUL"))
                    .collect());
            }
            Err(Errno::ERANGE) => buf.resize(buf.len() * 4, 0),
            Err(Errno::ENOTSUP) => return Ok(Vec::new()),
            Err(e) => {
                return Err(io_err(format!("listing xattrs of {}", p.display()))(
                    e.into(),
                ))
            }
        }
    }
}

/// One xattr of `p` (not following a symlink); None if it has none.
pub(crate) fn get_xattr(p: &Path, name: &CString) -> Result<Option<Vec<u8>>> {
    let c = cpath(p)?;
    let mut buf = vec![0u8; 256];
    loop {
        match lgetxattr(&c, name, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(Errno::ERANGE) => buf.resize(buf.len() * 4, 0),
            Err(Errno::ENODATA) | Err(Errno::ENOTSUP) => return Ok(None),
            Err(e) => {
                return Err(io_err(format!(
                    "reading xattr {} of {}",
                    name.to_string_lossy(),
                    p.display()
                ))(e.into()))
            }
        }
    }
}

pub(crate) fn set_xattr(p: &Path, name: &CString, value: &[u8]) -> Result<()> {
    let c = cpath(p)?;
    lsetxattr(&c, name, value).map_err(|e| {
        io_err(format!(
            "setting xattr {} on {}",
            name.to_string_lossy(),
            p.display()
        ))(e.into())
    })
}

fn llistxattr(p: &CString, buf: &mut [u8]) -> nix::Result<usize> {
    // SAFETY: p is NUL-terminated; the kernel writes at most buf.len()
    // bytes into buf.
    let n = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    Errno::result(n).map(|n| n as usize)
}

fn lgetxattr(p: &CString, name: &CString, buf: &mut [u8]) -> nix::Result<usize> {
    // SAFETY: p and name are NUL-terminated; the kernel writes at most
    // buf.len() bytes into buf.
    let n = unsafe {
        libc::lgetxattr(
            p.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    Errno::result(n).map(|n| n as usize)
}

fn lsetxattr(p: &CString, name: &CString, value: &[u8]) -> nix::Result<()> {
    // SAFETY: p and name are NUL-terminated; the kernel reads value.len()
    // bytes from value.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

fn copy_file_range(
    sf: &File,
    off_in: &mut i64,
    df: &File,
    off_out: &mut i64,
    len: usize,
) -> nix::Result<usize> {
    // SAFETY: both fds are open for the call; the offsets are valid i64s the
    // kernel advances by what it copied.
    let n =
        unsafe { libc::copy_file_range(sf.as_raw_fd(), off_in, df.as_raw_fd(), off_out, len, 0) };
    Errno::result(n).map(|n| n as usize)
}

fn ficlone(dst: &File, src: &File) -> nix::Result<()> {
    // SAFETY: FICLONE takes the source fd as its argument; both fds are
    // open for the duration of the call.
    let r = unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) };
    Errno::result(r).map(drop)
}

// ---- the copy ----

/// Copy the directory tree `src` to `dst` (which must not exist), keeping
/// type, owner, mode (setuid/setgid/sticky too), xattrs, times, hardlinks,
/// symlinks, devices, fifos, sockets and holes of sparse files. Symlinks
/// are copied, never followed. File data is reflinked where the
/// filesystem can (FICLONE), else copied with copy_file_range.
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let md = fs::symlink_metadata(src).map_err(io_err(format!("lstat {}", src.display())))?;
    if !md.is_dir() {
        return Err(StorageError::Invalid(format!(
            "copying {}: not a directory",
            src.display()
        )));
    }
    let mut c = Copier {
        links: HashMap::new(),
        buf: Vec::new(),
    };
    c.entry(src, dst, &md)
}

struct Copier {
    /// (dev, ino) of a multiply-linked source → the copy made of it.
    links: HashMap<(u64, u64), PathBuf>,
    /// For copies copy_file_range cannot do.
    buf: Vec<u8>,
}

impl Copier {
    fn entry(&mut self, src: &Path, dst: &Path, md: &fs::Metadata) -> Result<()> {
        let ft = md.file_type();
        if ft.is_dir() {
            fs::create_dir(dst).map_err(io_err(format!("creating {}", dst.display())))?;
            let entries =
                fs::read_dir(src).map_err(io_err(format!("listing {}", src.display())))?;
            for e in entries {
                let e = e.map_err(io_err(format!("listing {}", src.display())))?;
                let s = e.path();
                let cmd =
                    fs::symlink_metadata(&s).map_err(io_err(format!("lstat {}", s.display())))?;
                self.entry(&s, &dst.join(e.file_name()), &cmd)?;
            }
            return set_meta(src, dst, md);
        }
        if md.nlink() > 1 {
            if let Some(first) = self.links.get(&(md.dev(), md.ino())) {
                return fs::hard_link(first, dst).map_err(io_err(format!(
                    "linking {} to {}",
                    dst.display(),
                    first.display()
                )));
            }
        }
        if ft.is_file() {
            self.file(src, dst, md)?;
        } else if ft.is_symlink() {
            let t = fs::read_link(src).map_err(io_err(format!("readlink {}", src.display())))?;
            std::os::unix::fs::symlink(&t, dst)
                .map_err(io_err(format!("creating symlink {}", dst.display())))?;
        } else {
            let kind = if ft.is_char_device() {
                SFlag::S_IFCHR
            } else if ft.is_block_device() {
                SFlag::S_IFBLK
            } else if ft.is_fifo() {
                SFlag::S_IFIFO
            } else if ft.is_socket() {
                SFlag::S_IFSOCK
            } else {
                return Err(StorageError::Invalid(format!(
                    "copying {}: unknown file type",
                    src.display()
                )));
            };
            nix::sys::stat::mknod(dst, kind, Mode::from_bits_truncate(0o600), md.rdev())
                .map_err(|e| io_err(format!("creating {}", dst.display()))(e.into()))?;
        }
        set_meta(src, dst, md)?;
        if md.nlink() > 1 {
            self.links.insert((md.dev(), md.ino()), dst.to_path_buf());
        }
        Ok(())
    }

    fn file(&mut self, src: &Path, dst: &Path, md: &fs::Metadata) -> Result<()> {
        let sf = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(src)
            .map_err(io_err(format!("opening {}", src.display())))?;
        let df = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(dst)
            .map_err(io_err(format!("creating {}", dst.display())))?;
        let size = md.len();
        if size == 0 || ficlone(&df, &sf).is_ok() {
            return Ok(());
        }
        let what = || format!("copying {} to {}", src.display(), dst.display());
        let mut off: i64 = 0;
        let size = size as i64;
        while off < size {
            let data = match nix::unistd::lseek(sf.as_fd(), off, Whence::SeekData) {
                Ok(d) => d,
                Err(Errno::ENXIO) => break,
                // No SEEK_DATA here: all of it is data.
                Err(Errno::EINVAL) | Err(Errno::EOPNOTSUPP) if off == 0 => 0,
                Err(e) => return Err(io_err(what())(e.into())),
            };
            let hole = match nix::unistd::lseek(sf.as_fd(), data, Whence::SeekHole) {
                Ok(h) => h.min(size),
                Err(_) => size,
            };
            self.range(&sf, &df, data, hole - data)
                .map_err(io_err(what()))?;
            off = hole;
        }
        df.set_len(size as u64).map_err(io_err(what()))
    }

    /// Copy `len` bytes at `off` from `sf` to the same offset of `df`.
    fn range(&mut self, sf: &File, df: &File, off: i64, len: i64) -> std::io::Result<()> {
        let (mut i, mut o) = (off, off);
        let end = off + len;
        while i < end {
            let want = (end - i).min(1 << 30) as usize;
            match copy_file_range(sf, &mut i, df, &mut o, want) {
                Ok(0) => return Ok(()), // the file shrank
                Ok(_) => {}
                Err(Errno::EXDEV)
                | Err(Errno::EINVAL)
                | Err(Errno::ENOSYS)
                | Err(Errno::EOPNOTSUPP) => return self.range_rw(sf, df, i, end - i),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn range_rw(&mut self, sf: &File, df: &File, off: i64, len: i64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        if self.buf.is_empty() {
            self.buf = vec![0; 1 << 20];
        }
        let mut done = 0i64;
        while done < len {
            let want = (len - done).min(self.buf.len() as i64) as usize;
            let n = sf.read_at(&mut self.buf[..want], (off + done) as u64)?;
            if n == 0 {
                break;
            }
            df.write_all_at(&self.buf[..n], (off + done) as u64)?;
            done += n as i64;
        }
        Ok(())
    }
}

/// Give `dst` the owner, mode, xattrs and times of `src`, in the order
/// that keeps them: chown (which clears setuid and file capabilities),
/// then chmod, then xattrs, then times.
fn set_meta(src: &Path, dst: &Path, md: &fs::Metadata) -> Result<()> {
    let symlink = md.file_type().is_symlink();
    nix::unistd::fchownat(
        AT_FDCWD,
        dst,
        Some(Uid::from_raw(md.uid())),
        Some(Gid::from_raw(md.gid())),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| io_err(format!("chown {}", dst.display()))(e.into()))?;
    if !symlink {
        nix::sys::stat::fchmodat(
            AT_FDCWD,
            dst,
            Mode::from_bits_truncate(md.mode() & 0o7777),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| io_err(format!("chmod {}", dst.display()))(e.into()))?;
    }
    for name in list_xattrs(src)? {
        if let Some(v) = get_xattr(src, &name)? {
            set_xattr(dst, &name, &v)?;
        }
    }
    let atime = TimeSpec::new(md.atime(), md.atime_nsec());
    let mtime = TimeSpec::new(md.mtime(), md.mtime_nsec());
    nix::sys::stat::utimensat(
        AT_FDCWD,
        dst,
        &atime,
        &mtime,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| io_err(format!("setting the times of {}", dst.display()))(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    use crate::testutil::TempDir;

    fn tmp() -> TempDir {
        TempDir::new("vfs-unit")
    }

    #[test]
    fn copy_preserves_everything() {
        use std::os::unix::fs::symlink;
        let t = TempDir::new("vfscopy");
        let src = t.path().join("src");
        fs::create_dir(&src).unwrap();
        fs::create_dir(src.join("dir")).unwrap();
        fs::write(src.join("dir/f"), b"data").unwrap();
        std::os::unix::fs::chown(src.join("dir/f"), Some(1000), Some(1001)).unwrap();
        fs::set_permissions(src.join("dir/f"), fs::Permissions::from_mode(0o6711)).unwrap();
        set_xattr(&src.join("dir/f"), &c"user.note".to_owned(), b"hello").unwrap();
        // cap_net_raw+ep as a v2 file capability.
        let mut cap = Vec::new();
        for w in [0x0200_0001u32, 1 << 13, 0, 0, 0] {
            cap.extend_from_slice(&w.to_le_bytes());
        }
        fs::write(src.join("ping"), b"p").unwrap();
        set_xattr(&src.join("ping"), &c"security.capability".to_owned(), &cap).unwrap();
        fs::hard_link(src.join("dir/f"), src.join("link")).unwrap();
        symlink("/no/such/target", src.join("dangling")).unwrap();
        symlink("dir", src.join("dirlink")).unwrap();
        nix::sys::stat::mknod(
            &src.join("null"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .unwrap();
        nix::unistd::mkfifo(&src.join("fifo"), Mode::from_bits_truncate(0o620)).unwrap();
        // Past the umask.
        for (p, m) in [("null", 0o666), ("fifo", 0o620)] {
            fs::set_permissions(src.join(p), fs::Permissions::from_mode(m)).unwrap();
        }
        fs::set_permissions(src.join("dir"), fs::Permissions::from_mode(0o1750)).unwrap();
        let old = TimeSpec::new(1_000_000_000, 123_456_789);
        for p in ["dir/f", "dir", "dangling"] {
            nix::sys::stat::utimensat(
                AT_FDCWD,
                &src.join(p),
                &old,
                &old,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .unwrap();
        }

        let dst = t.path().join("dst");
        copy_tree(&src, &dst).unwrap();
        let md = |p: &str| fs::symlink_metadata(dst.join(p)).unwrap();
        let f = md("dir/f");
        assert_eq!((f.uid(), f.gid(), f.mode() & 0o7777), (1000, 1001, 0o6711));
        assert_eq!(fs::read(dst.join("dir/f")).unwrap(), b"data");
        assert_eq!((f.mtime(), f.mtime_nsec()), (1_000_000_000, 123_456_789));
        assert_eq!(
            get_xattr(&dst.join("dir/f"), &c"user.note".to_owned())
                .unwrap()
                .unwrap(),
            b"hello"
        );
        assert_eq!(
            get_xattr(&dst.join("ping"), &c"security.capability".to_owned())
                .unwrap()
                .unwrap(),
            cap
        );
        assert_eq!(md("link").ino(), f.ino(), "hardlink not kept");
        assert_ne!(f.ino(), fs::metadata(src.join("dir/f")).unwrap().ino());
        assert_eq!(
            fs::read_link(dst.join("dangling")).unwrap(),
            Path::new("/no/such/target")
        );
        assert_eq!(md("dangling").mtime(), 1_000_000_000);
        assert!(md("dirlink").file_type().is_symlink());
        let null = md("null");
        assert!(null.file_type().is_char_device());
        assert_eq!(
            (null.rdev(), null.mode() & 0o7777),
            (nix::sys::stat::makedev(1, 3), 0o666)
        );
        assert!(md("fifo").file_type().is_fifo());
        assert_eq!(md("fifo").mode() & 0o7777, 0o620);
        let d = md("dir");
        assert_eq!((d.mode() & 0o7777, d.mtime()), (0o1750, 1_000_000_000));
    }

    #[test]
    fn read_through_resolves_symlinks_inside_the_image() {
        let t = tmp();
        let r = t.path();
        fs::create_dir_all(r.join("etc/real")).unwrap();
        fs::write(r.join("etc/real/passwd"), b"root:x:0:0\n").unwrap();
        std::os::unix::fs::symlink("/etc/real/passwd", r.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("real", r.join("etc/alias")).unwrap();
        std::os::unix::fs::symlink("/../../../../etc", r.join("escape")).unwrap();
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        let look = |rel: &Path| -> Result<Found> {
            Ok(match lstat(&r.join(rel))? {
                None => Found::Missing,
                Some(md) => Found::from_metadata(&md, r.join(rel))?,
            })
        };
        let read = |p: &str| read_through(Path::new(p), look);
        assert_eq!(read("/etc/passwd").unwrap().unwrap(), b"root:x:0:0\n");
        assert_eq!(read("/etc/alias/passwd").unwrap().unwrap(), b"root:x:0:0\n");
        // Absolute and .. targets stay inside the image's root.
        assert_eq!(
            read("/escape/real/passwd").unwrap().unwrap(),
            b"root:x:0:0\n"
        );
        assert!(read("/etc/group").unwrap().is_none());
        assert!(read("/etc/passwd/x").unwrap().is_none());
        assert!(read("/etc").is_err());
        assert!(read("/loop").is_err());
    }

    #[test]
    fn read_through_reads_only_small_regular_files() {
        let t = tmp();
        let r = t.path().to_path_buf();
        let big = File::create(r.join("big")).unwrap();
        big.set_len(MAX_READ + 1).unwrap();
        nix::unistd::mkfifo(&r.join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
        fs::write(r.join("small"), b"ok").unwrap();
        // What lstat saw a moment ago: a lookup that says "file" for all
        // (as if a FIFO replaced the file after the lookup).
        let r2 = r.clone();
        let stale = move |rel: &Path| -> Result<Found> {
            Ok(match lstat(&r2.join(rel))? {
                Some(md) if md.is_dir() => Found::Dir,
                Some(_) => Found::File(r2.join(rel)),
                None => Found::Missing,
            })
        };
        assert_eq!(
            read_through(Path::new("/small"), &stale).unwrap().unwrap(),
            b"ok"
        );
        let err = read_through(Path::new("/big"), &stale)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/big") && err.contains("16 MiB"), "{err}");
        let (tx, rx) = std::sync::mpsc::channel();
        let h = std::thread::spawn(move || {
            tx.send(read_through(Path::new("/fifo"), stale).map(drop))
                .unwrap()
        });
        let res = rx.recv_timeout(std::time::Duration::from_secs(10));
        if res.is_err() {
            // Let the blocked reader go before failing.
            let _ = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(r.join("fifo"));
        }
        h.join().unwrap();
        let err = res
            .expect("reading a FIFO blocked")
            .unwrap_err()
            .to_string();
        assert!(err.contains("FIFO"), "{err}");
    }

    #[test]
    fn copy_keeps_sparse_files_sparse_and_modes_exact() {
        let t = tmp();
        let src = t.join("src");
        fs::create_dir(&src).unwrap();
        let f = File::create(src.join("sparse")).unwrap();
        f.set_len(64 << 20).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"tail", (64 << 20) - 4).unwrap();
        drop(f);
        fs::write(src.join("suid"), b"x").unwrap();
        fs::set_permissions(src.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
        copy_tree(&src, &t.join("dst")).unwrap();
        let md = fs::metadata(t.join("dst/sparse")).unwrap();
        assert_eq!(md.len(), 64 << 20);
        assert!(md.blocks() < 1024, "{} blocks: not sparse", md.blocks());
        let data = fs::read(t.join("dst/sparse")).unwrap();
        assert_eq!(&data[data.len() - 4..], b"tail");
        assert!(data[..data.len() - 4].iter().all(|b| *b == 0));
        let m = fs::metadata(t.join("dst/suid")).unwrap().mode();
        assert_eq!(m & 0o7777, 0o4755);
    }
}

#[cfg(test)]
mod driver_tests {
    use super::*;
    use crate::testutil::{chain, is_mounted, mounts_under, names, write, TempDir};

    #[test]
    fn layers_are_whole_trees_and_containers_are_copies() {
        let store = TempDir::new("vfs");
        let v = Vfs::new(store.path());
        let (l1, l2) = (chain("v1"), chain("v2"));
        v.create_layer(&l1, None, &mut |d| {
            write(d, "a/x", "x");
            write(d, "a/y", "y");
            write(d, "d/old", "old");
            write(d, "f", "bottom");
            Ok(())
        })
        .unwrap();
        // The second layer starts from the first's tree (Apply whiteouts).
        v.create_layer(&l2, Some(&l1), &mut |d| {
            assert_eq!(fs::read_to_string(d.join("f")).unwrap(), "bottom");
            fs::remove_file(d.join("a/x")).unwrap();
            fs::remove_dir_all(d.join("d")).unwrap();
            write(d, "d/new", "new");
            write(d, "f", "top");
            Ok(())
        })
        .unwrap();
        let layers = [l1.clone(), l2.clone()];
        assert_eq!(
            fs::read_to_string(v.layer(&l1).join("f")).unwrap(),
            "bottom"
        );

        let t1 = store.path().join("b1/rootfs");
        let t2 = store.path().join("b2/rootfs");
        v.mount("k1", &layers, &t1).unwrap();
        assert!(is_mounted(&t1));
        assert_eq!(fs::read_to_string(t1.join("f")).unwrap(), "top");
        assert_eq!(names(&t1.join("a")), ["y"]);
        assert_eq!(names(&t1.join("d")), ["new"]);
        assert_eq!(
            v.read_file(&layers, Path::new("/f")).unwrap().unwrap(),
            b"top"
        );
        assert!(v.read_file(&layers, Path::new("/a/x")).unwrap().is_none());

        fs::write(t1.join("written"), "1").unwrap();
        v.mount("k2", &layers, &t2).unwrap();
        assert!(!t2.join("written").exists());
        assert!(!v.layer(&l2).join("written").exists());

        v.unmount("k1", &t1).unwrap();
        v.unmount("k1", &t1).unwrap();
        v.unmount("k2", &t2).unwrap();
        assert!(mounts_under(store.path()).is_empty());
        assert!(names(&store.path().join("containers/vfs")).is_empty());
        v.unmount("never", &store.path().join("nowhere")).unwrap();
    }

    /// Clears the immutable flag under a directory on drop (before the
    /// directory's own guard removes it).
    struct Mutable(PathBuf);
    impl Drop for Mutable {
        fn drop(&mut self) {
            let _ = std::process::Command::new("chattr")
                .arg("-R")
                .arg("-i")
                .arg(&self.0)
                .status();
        }
    }

    fn chattr(flag: &str, p: &Path) {
        let st = std::process::Command::new("chattr")
            .arg(flag)
            .arg(p)
            .status()
            .unwrap();
        assert!(st.success(), "chattr {flag} {}", p.display());
    }

    /// A layer whose deletion stops half-way (an immutable directory in
    /// it, as a crash would stop it) is no longer a layer: has_layer must
    /// not accept the remains, and the next sweep removes them.
    #[test]
    fn interrupted_layer_removal_leaves_no_layer() {
        let store = TempDir::new("rmhalf");
        let drivers: [Box<dyn Driver>; 2] = [
            Box::new(Vfs::new(store.path())),
            Box::new(crate::overlay::Overlay::new(store.path())),
        ];
        let _mutable = Mutable(store.path().to_path_buf());
        for d in &drivers {
            let l = chain("half");
            d.create_layer(&l, None, &mut |dir| {
                for i in 0..20 {
                    write(dir, &format!("f{i}"), "x");
                }
                write(dir, "stuck/inside", "x");
                Ok(())
            })
            .unwrap();
            let hex = l.hex().to_string();
            let ldir = store.path().join("layers").join(d.kind().as_str());
            let stuck = if d.kind() == DriverKind::Overlay {
                ldir.join(&hex).join("diff/stuck")
            } else {
                ldir.join(&hex).join("stuck")
            };
            chattr("+i", &stuck);
            let err = d.remove_layer(&l).unwrap_err().to_string();
            assert!(err.contains("next import tries again"), "{err}");
            assert!(
                !d.has_layer(&l),
                "{}: half-deleted layer accepted",
                d.kind().as_str()
            );
            let left = names(&ldir);
            assert_eq!(left.len(), 1, "{left:?}");
            assert!(
                left[0].starts_with(&format!("{hex}.tmp-trash-")),
                "{left:?}"
            );
            // The sweep (what an import starts with) removes the remains.
            chattr(
                "-i",
                &ldir
                    .join(&left[0])
                    .join(stuck.strip_prefix(ldir.join(&hex)).unwrap()),
            );
            crate::store::remove_stale_temps(store.path());
            assert!(names(&ldir).is_empty(), "{:?}", names(&ldir));
            // Removing it again, or one never made, is fine.
            d.remove_layer(&l).unwrap();
        }
    }

    #[test]
    fn failed_fill_leaves_nothing() {
        let store = TempDir::new("vfsfail");
        let v = Vfs::new(store.path());
        let l1 = chain("ok");
        v.create_layer(&l1, None, &mut |d| {
            write(d, "base", "");
            Ok(())
        })
        .unwrap();
        let l2 = chain("bad");
        assert!(v
            .create_layer(&l2, Some(&l1), &mut |_| Err(StorageError::Invalid(
                "no".into()
            )))
            .is_err());
        assert!(!v.has_layer(&l2));
        assert_eq!(
            names(&store.path().join("layers/vfs")),
            [l1.hex().to_string()]
        );
    }
}
