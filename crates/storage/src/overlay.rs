//! The overlay driver: a layer is a directory of its own files (with
//! overlay's whiteouts: 0/0 character devices and the opaque xattr); a
//! container is an overlay mount of its image's layers under a writable
//! upper directory of its own.
//!
//! Mounting uses the new mount API (fsopen, one `lowerdir+` per layer,
//! fsmount, move_mount): no page-sized option string, so hundreds of layers
//! mount. mount(2) with `lowerdir=a:b:c` is the fallback where fsopen does
//! not exist.

use std::ffi::{CStr, CString};
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_image::{Digest, Whiteouts};
use nix::errno::Errno;
use nix::mount::MsFlags;

use crate::driver::{container_path, layer_path, layers_in_dir, Driver};
use crate::store::mkdir_private;
use crate::vfs::{
    create_layer_dir, detach, get_xattr, is_dir, lstat, make_root_dir, make_target, mount_undoing,
    read_through, remove_layer_dir, remove_tree, unmount_ours, Found, MountEntry,
};
use crate::{io_err, DriverKind, Result, StorageError};

const OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";
/// `layers/overlay/HEX/NO_ROOT_ENTRY`: the layer's tar had no `./` entry,
/// so its root's owner and mode are a default, not the image's.
const NO_ROOT_ENTRY: &str = "no-root-entry";
/// The owner a layer's root has while it is filled.
const UNSET_ID: u32 = u32::MAX - 1;

fn chown(p: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))
        .map_err(io_err(format!("chown {}", p.display())))
}

pub(crate) struct Overlay {
    root: PathBuf,
}

impl Overlay {
    pub(crate) fn new(root: &Path) -> Overlay {
        Overlay {
            root: root.to_path_buf(),
        }
    }

    /// `layers/overlay/HEX`: holds `diff`, the layer's files.
    fn layer(&self, chain: &Digest) -> PathBuf {
        layer_path(&self.root, DriverKind::Overlay, chain)
    }

    fn diff(&self, chain: &Digest) -> PathBuf {
        self.layer(chain).join("diff")
    }

    /// What `rel` is in the merged view of `layers` (bottom first).
    fn lookup(&self, layers: &[Digest], rel: &Path) -> Result<Found> {
        let comps: Vec<_> = rel.components().collect();
        let Some((_, parents)) = comps.split_last() else {
            return Ok(Found::Dir);
        };
        for chain in layers.iter().rev() {
            let diff = self.diff(chain);
            let mut dir = diff.clone();
            // Below an opaque directory of this layer, lower layers show nothing.
            let mut opaque = false;
            let mut parents_here = true;
            for c in parents {
                dir.push(c);
                match lstat(&dir)? {
                    None => {
                        parents_here = false;
                        break;
                    }
                    Some(md) if md.is_dir() => {
                        if get_xattr(&dir, &OPAQUE_XATTR.to_owned())?.as_deref() == Some(b"y") {
                            opaque = true;
                        }
                    }
                    // A whiteout or any non-directory hides the lower layers' directory.
                    Some(_) => return Ok(Found::Missing),
                }
            }
            if parents_here {
                let full = diff.join(rel);
                if let Some(md) = lstat(&full)? {
                    if is_whiteout(&md) {
                        return Ok(Found::Missing);
                    }
                    return Found::from_metadata(&md, full);
                }
            }
            if opaque {
                return Ok(Found::Missing);
            }
        }
        Ok(Found::Missing)
    }
}

fn is_whiteout(md: &fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

impl Driver for Overlay {
    fn kind(&self) -> DriverKind {
        DriverKind::Overlay
    }

    fn whiteouts(&self) -> Whiteouts {
        Whiteouts::Overlay
    }

    fn has_layer(&self, chain: &Digest) -> bool {
        is_dir(&self.diff(chain))
    }

    fn create_layer(
        &self,
        chain: &Digest,
        _parent: Option<&Digest>,
        fill: &mut dyn FnMut(&Path) -> Result<()>,
    ) -> Result<()> {
        create_layer_dir(&self.layer(chain), chain, |tmp| {
            fs::create_dir(tmp).map_err(io_err(format!("creating {}", tmp.display())))?;
            let diff = tmp.join("diff");
            make_root_dir(&diff)?;
            // Owned by UNSET_ID until the layer's `./` entry (if any) gives
            // the root its owner and mode.
            chown(&diff, UNSET_ID, UNSET_ID)?;
            fill(&diff)?;
            let md =
                fs::symlink_metadata(&diff).map_err(io_err(format!("lstat {}", diff.display())))?;
            if md.uid() == UNSET_ID && md.gid() == UNSET_ID {
                // No `./` entry: the root keeps tar's default, and the
                // marker says its metadata is not the layer's.
                chown(&diff, 0, 0)?;
                let marker = tmp.join(NO_ROOT_ENTRY);
                fs::write(&marker, b"")
                    .map_err(io_err(format!("creating {}", marker.display())))?;
            }
            Ok(())
        })
    }

    fn remove_layer(&self, chain: &Digest) -> Result<()> {
        remove_layer_dir(&self.layer(chain))
    }

    fn layers(&self) -> Result<Vec<Digest>> {
        let dir = self.root.join("layers").join(DriverKind::Overlay.as_str());
        layers_in_dir(&dir, is_dir)
    }

    fn has_container(&self, key: &str) -> Result<bool> {
        let cdir = container_path(&self.root, DriverKind::Overlay, key);
        Ok(lstat(&cdir)?.is_some())
    }

    fn read_file(&self, layers: &[Digest], path: &Path) -> Result<Option<Vec<u8>>> {
        read_through(path, |rel| self.lookup(layers, rel))
    }

    fn mount(&self, key: &str, layers: &[Digest], target: &Path) -> Result<()> {
        let cdir = container_path(&self.root, DriverKind::Overlay, key);
        mount_undoing(&cdir, || self.mount_in(&cdir, layers, target))
    }

    fn unmount(&self, key: &str, target: &Path) -> Result<()> {
        let cdir = container_path(&self.root, DriverKind::Overlay, key);
        let upper = cdir.join("upper");
        unmount_ours(target, &|m| is_overlay_of(m, &upper), &mut detach)?;
        remove_tree(&cdir)
    }
}

/// Whether `m` is an overlay whose upper directory is `upper`.
fn is_overlay_of(m: &MountEntry, upper: &Path) -> bool {
    if m.fstype != "overlay" {
        return false;
    }
    // The path as berth passed it, and resolved.
    let mut forms = vec![upper.to_path_buf()];
    if let Ok(real) = fs::canonicalize(upper) {
        forms.push(real);
    }
    forms.iter().any(|p| {
        let want = format!("upperdir={}", escape_option(p.as_os_str().as_bytes()));
        m.super_opts.split(',').any(|o| o == want)
    })
}

/// A mount option value as the kernel shows it (seq_show_option: ',', '=',
/// space, tab, newline and backslash as octal escapes).
fn escape_option(v: &[u8]) -> String {
    let mut out = Vec::with_capacity(v.len());
    for &b in v {
        if b",= \t\n\\".contains(&b) {
            out.extend_from_slice(format!("\\{b:03o}").as_bytes());
        } else {
            out.push(b);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Overlay {
    /// [`Driver::mount`] into container directory `cdir`; the mount is
    /// the last step, so an error leaves nothing mounted.
    fn mount_in(&self, cdir: &Path, layers: &[Digest], target: &Path) -> Result<()> {
        let cdir = cdir.to_path_buf();
        let upper = cdir.join("upper");
        let work = cdir.join("work");
        mkdir_private(&cdir)?;
        for d in [&upper, &work] {
            if !is_dir(d) {
                fs::create_dir(d).map_err(io_err(format!("creating {}", d.display())))?;
            }
        }
        // The merged root directory shows the upper directory's owner and
        // mode: give it the image's, from the topmost layer that has a
        // `./` entry (else the bottom layer's default).
        let mut lowers: Vec<PathBuf> = layers.iter().rev().map(|l| self.diff(l)).collect();
        let root_meta = layers
            .iter()
            .rev()
            .find(|l| {
                lstat(&self.layer(l).join(NO_ROOT_ENTRY))
                    .ok()
                    .flatten()
                    .is_none()
            })
            .or(layers.first())
            .map(|l| self.diff(l));
        if lowers.is_empty() {
            let empty = cdir.join("empty");
            if !is_dir(&empty) {
                make_root_dir(&empty)?;
            }
            lowers.push(empty);
        }
        copy_owner_mode(root_meta.as_ref().unwrap_or(&lowers[0]), &upper)?;
        make_target(target)?;
        match mount_new_api(&lowers, &upper, &work, target) {
            Err(MountError::NoApi) => mount_legacy(&lowers, &upper, &work, target),
            Err(MountError::Failed(e)) => Err(e),
            Ok(()) => Ok(()),
        }
    }
}

fn copy_owner_mode(from: &Path, to: &Path) -> Result<()> {
    let md = fs::symlink_metadata(from).map_err(io_err(format!("lstat {}", from.display())))?;
    std::os::unix::fs::lchown(to, Some(md.uid()), Some(md.gid()))
        .map_err(io_err(format!("chown {}", to.display())))?;
    fs::set_permissions(to, fs::Permissions::from_mode(md.mode() & 0o7777))
        .map_err(io_err(format!("chmod {}", to.display())))
}

enum MountError {
    /// fsopen(2) does not exist here.
    NoApi,
    Failed(StorageError),
}

fn cstring(p: &Path) -> std::result::Result<CString, MountError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| {
        MountError::Failed(StorageError::Invalid(format!(
            "path {} contains a NUL byte",
            p.display()
        )))
    })
}

fn mount_new_api(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> std::result::Result<(), MountError> {
    let fs = match fsopen(c"overlay") {
        Ok(fd) => fd,
        Err(Errno::ENOSYS) => return Err(MountError::NoApi),
        Err(e) => {
            return Err(MountError::Failed(io_err("fsopen(\"overlay\")")(e.into())));
        }
    };
    let failed = |what: String, e: Errno| {
        let log = fs_log(&fs);
        let why = std::io::Error::from(e);
        MountError::Failed(StorageError::Invalid(if log.is_empty() {
            format!("{what}: {why}")
        } else {
            format!("{what}: {why} ({log})")
        }))
    };
    for l in lowers {
        fsconfig_string(&fs, c"lowerdir+", &cstring(l)?).map_err(|e| {
            failed(
                format!("overlay on {}: lowerdir+ {}", target.display(), l.display()),
                e,
            )
        })?;
    }
    for (key, dir) in [(c"upperdir", upper), (c"workdir", work)] {
        fsconfig_string(&fs, key, &cstring(dir)?).map_err(|e| {
            failed(
                format!(
                    "overlay on {}: {} {}",
                    target.display(),
                    key.to_string_lossy(),
                    dir.display()
                ),
                e,
            )
        })?;
    }
    let n = lowers.len();
    fsconfig_create(&fs).map_err(|e| {
        failed(
            format!("creating the overlay for {} ({n} layers)", target.display()),
            e,
        )
    })?;
    let mnt = fsmount(&fs).map_err(|e| failed(format!("fsmount for {}", target.display()), e))?;
    move_mount(&mnt, &cstring(target)?).map_err(|e| {
        MountError::Failed(io_err(format!(
            "moving the overlay mount to {}",
            target.display()
        ))(e.into()))
    })
}

/// mount(2) with the layers in one option string, where the new API is
/// missing. The string must fit in a page.
fn mount_legacy(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<()> {
    let esc = |p: &Path| -> Result<String> {
        let s = p.to_str().ok_or_else(|| {
            StorageError::Invalid(format!("overlay layer path {} is not UTF-8", p.display()))
        })?;
        if s.contains(',') {
            return Err(StorageError::Invalid(format!(
                "overlay path {s}: a ',' cannot be passed to mount(2) (this kernel has no fsopen)"
            )));
        }
        Ok(s.replace('\\', "\\\\").replace(':', "\\:"))
    };
    let lower: Vec<String> = lowers.iter().map(|l| esc(l)).collect::<Result<_>>()?;
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        esc(upper)?,
        esc(work)?
    );
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as usize;
    if data.len() >= page {
        return Err(StorageError::Invalid(format!(
            "overlay on {}: the mount options for {} layers are {} bytes, more than a page ({page}); this kernel has no fsopen(2) to pass them one by one",
            target.display(),
            lowers.len(),
            data.len()
        )));
    }
    nix::mount::mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| {
        io_err(format!(
            "mounting overlay ({} layers) on {}",
            lowers.len(),
            target.display()
        ))(e.into())
    })
}

fn fsopen(fs: &CStr) -> nix::Result<OwnedFd> {
    // SAFETY: fs is NUL-terminated; fsopen returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_fsopen, fs.as_ptr(), libc::FSOPEN_CLOEXEC) };
    let fd = Errno::result(fd)?;
    // SAFETY: the fd was just returned by the kernel and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn fsconfig_string(fs: &OwnedFd, key: &CStr, value: &CStr) -> nix::Result<()> {
    // SAFETY: key and value are NUL-terminated and outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            libc::FSCONFIG_SET_STRING,
            key.as_ptr(),
            value.as_ptr(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

fn fsconfig_create(fs: &OwnedFd) -> nix::Result<()> {
    // SAFETY: FSCONFIG_CMD_CREATE takes no key or value.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            libc::FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

fn fsmount(fs: &OwnedFd) -> nix::Result<OwnedFd> {
    // SAFETY: plain integer arguments; fsmount returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), libc::FSMOUNT_CLOEXEC, 0) };
    let fd = Errno::result(fd)?;
    // SAFETY: the fd was just returned by the kernel and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn move_mount(mnt: &OwnedFd, target: &CStr) -> nix::Result<()> {
    // SAFETY: the empty path and target are NUL-terminated and outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    Errno::result(r).map(drop)
}

/// The messages the filesystem left in its context's log ("e overlayfs:
/// ..."), joined; reading stops when the log is empty (ENODATA).
fn fs_log(fs: &OwnedFd) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    for _ in 0..16 {
        match nix::unistd::read(fs, &mut buf) {
            Ok(n) if n > 0 => {
                out.push(String::from_utf8_lossy(&buf[..n]).trim_end().to_string());
            }
            _ => break,
        }
    }
    out.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{chain, is_mounted, mounts_under, names, write, TempDir};
    use crate::vfs::set_xattr;
    use berth_integration::storage::remount_readonly;
    use nix::sys::stat::{Mode, SFlag};

    fn whiteout(dir: &Path, rel: &str) {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        nix::sys::stat::mknod(&p, SFlag::S_IFCHR, Mode::empty(), 0).unwrap();
    }

    fn opaque(dir: &Path, rel: &str) {
        let p = dir.join(rel);
        fs::create_dir_all(&p).unwrap();
        set_xattr(&p, &OPAQUE_XATTR.to_owned(), b"y").unwrap();
    }

    /// Two layers: the second deletes a/x, makes d opaque and shadows f.
    fn two_layers(ov: &Overlay) -> Vec<Digest> {
        let (l1, l2) = (chain("l1"), chain("l2"));
        ov.create_layer(&l1, None, &mut |d| {
            write(d, "a/x", "x");
            write(d, "a/y", "y");
            write(d, "d/old", "old");
            write(d, "f", "bottom");
            Ok(())
        })
        .unwrap();
        ov.create_layer(&l2, Some(&l1), &mut |d| {
            whiteout(d, "a/x");
            opaque(d, "d");
            write(d, "d/new", "new");
            write(d, "f", "top");
            Ok(())
        })
        .unwrap();
        vec![l1, l2]
    }

    #[test]
    fn layers_whiteouts_and_containers() {
        let store = TempDir::new("ovl");
        let ov = Overlay::new(store.path());
        let layers = two_layers(&ov);
        assert!(layers.iter().all(|l| ov.has_layer(l)));
        let t1 = store.path().join("bundle1/rootfs");
        let t2 = store.path().join("bundle2/rootfs");
        ov.mount("k1", &layers, &t1).unwrap();
        assert!(is_mounted(&t1));
        assert_eq!(fs::read_to_string(t1.join("f")).unwrap(), "top");
        assert_eq!(names(&t1.join("a")), ["y"]);
        assert_eq!(names(&t1.join("d")), ["new"]);
        // read_file sees what the container sees.
        let read = |p: &str| ov.read_file(&layers, Path::new(p)).unwrap();
        assert_eq!(read("/f").unwrap(), b"top");
        assert_eq!(read("/a/y").unwrap(), b"y");
        assert!(read("/a/x").is_none());
        assert!(read("/d/old").is_none());
        assert_eq!(read("d/new").unwrap(), b"new");
        assert_eq!(
            ov.read_file(&layers[..1], Path::new("/d/old"))
                .unwrap()
                .unwrap(),
            b"old"
        );

        // Writes stay in their container.
        fs::write(t1.join("written"), "1").unwrap();
        fs::remove_file(t1.join("a/y")).unwrap();
        ov.mount("k2", &layers, &t2).unwrap();
        assert!(!t2.join("written").exists());
        assert!(t2.join("a/y").exists());
        assert!(ov.diff(&layers[0]).join("a/y").exists(), "a layer changed");

        ov.unmount("k1", &t1).unwrap();
        assert!(!is_mounted(&t1));
        assert!(!container_path(store.path(), DriverKind::Overlay, "k1").exists());
        ov.unmount("k1", &t1).unwrap();
        ov.unmount("k2", &t2).unwrap();
        assert!(mounts_under(store.path()).is_empty());
        // Never mounted: fine too.
        ov.unmount("k3", &store.path().join("nowhere")).unwrap();
    }

    #[test]
    fn two_hundred_layers_top_wins() {
        let store = TempDir::new("ovl200");
        let ov = Overlay::new(store.path());
        let mut layers: Vec<Digest> = Vec::new();
        for i in 0..200 {
            let c = chain(&format!("l{i}"));
            ov.create_layer(&c, layers.last(), &mut |d| {
                write(d, "n", &i.to_string());
                write(d, &format!("only-{i}"), "");
                Ok(())
            })
            .unwrap();
            layers.push(c);
        }
        let t = store.path().join("rootfs");
        ov.mount("k", &layers, &t).unwrap();
        assert_eq!(fs::read_to_string(t.join("n")).unwrap(), "199");
        assert!(t.join("only-0").exists() && t.join("only-199").exists());
        assert_eq!(fs::read_dir(&t).unwrap().count(), 201);
        ov.unmount("k", &t).unwrap();
        assert!(!is_mounted(&t));
    }

    #[test]
    fn single_layer_read_only_and_mounted_twice() {
        let store = TempDir::new("ovl1");
        let ov = Overlay::new(store.path());
        let l = chain("one");
        ov.create_layer(&l, None, &mut |d| {
            write(d, "etc/hostname", "h");
            fs::set_permissions(d, fs::Permissions::from_mode(0o751)).unwrap();
            Ok(())
        })
        .unwrap();
        let t = store.path().join("rootfs");
        ov.mount("k", std::slice::from_ref(&l), &t).unwrap();
        // The root directory has the image's mode, not the upper dir's 0700.
        assert_eq!(fs::metadata(&t).unwrap().mode() & 0o7777, 0o751);
        remount_readonly(&t);
        let e = fs::write(t.join("x"), "").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS));
        assert_eq!(fs::read_to_string(t.join("etc/hostname")).unwrap(), "h");
        // A retried create mounts again on top; teardown takes both off.
        ov.mount("k", std::slice::from_ref(&l), &t).unwrap();
        ov.unmount("k", &t).unwrap();
        assert!(!is_mounted(&t));
    }

    #[test]
    fn failed_fill_leaves_nothing() {
        let store = TempDir::new("ovlfail");
        let ov = Overlay::new(store.path());
        let l = chain("bad");
        let e = ov
            .create_layer(&l, None, &mut |d| {
                write(d, "half", "written");
                Err(StorageError::Invalid("entry x: broken".into()))
            })
            .unwrap_err();
        assert!(e.to_string().contains("entry x: broken"));
        assert!(!ov.has_layer(&l));
        let dir = store.path().join("layers/overlay");
        assert!(names(&dir).is_empty(), "{:?}", names(&dir));
    }

    /// A layer without a `./` entry does not decide the root directory's
    /// owner and mode; the topmost layer that has one does.
    #[test]
    fn root_metadata_from_the_topmost_layer_that_has_it() {
        use std::os::unix::fs::MetadataExt;
        let store = TempDir::new("ovlroot");
        let ov = Overlay::new(store.path());
        // What the unpacker does with a `./` entry: chown, then chmod.
        let root_entry = |d: &Path, uid: u32, mode: u32| {
            chown(d, uid, uid).unwrap();
            fs::set_permissions(d, fs::Permissions::from_mode(mode)).unwrap();
        };
        let (l1, l2, l3) = (chain("r1"), chain("r2"), chain("r3"));
        ov.create_layer(&l1, None, &mut |d| {
            root_entry(d, 1000, 0o750);
            write(d, "a", "");
            Ok(())
        })
        .unwrap();
        ov.create_layer(&l2, Some(&l1), &mut |d| {
            write(d, "b", "");
            Ok(())
        })
        .unwrap();
        ov.create_layer(&l3, Some(&l2), &mut |d| {
            root_entry(d, 0, 0o755);
            Ok(())
        })
        .unwrap();
        // The layer without a `./` entry has tar's default root.
        let md = fs::metadata(ov.diff(&l2)).unwrap();
        assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (0, 0, 0o755));
        let meta = |layers: &[Digest], k: &str| {
            let t = store.path().join(k);
            ov.mount(k, layers, &t).unwrap();
            let md = fs::metadata(&t).unwrap();
            ov.unmount(k, &t).unwrap();
            (md.uid(), md.gid(), md.mode() & 0o7777)
        };
        assert_eq!(meta(&[l1.clone(), l2.clone()], "k1"), (1000, 1000, 0o750));
        assert_eq!(
            meta(&[l1.clone(), l2.clone(), l3.clone()], "k2"),
            (0, 0, 0o755)
        );
        assert_eq!(meta(std::slice::from_ref(&l2), "k3"), (0, 0, 0o755));
    }

    #[test]
    fn no_layers_is_an_empty_root() {
        let store = TempDir::new("ovl0");
        let ov = Overlay::new(store.path());
        let t = store.path().join("rootfs");
        ov.mount("k", &[], &t).unwrap();
        assert!(names(&t).is_empty());
        fs::write(t.join("x"), "").unwrap();
        ov.unmount("k", &t).unwrap();
        assert!(!is_mounted(&t));
    }
}
