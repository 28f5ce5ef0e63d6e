//! The zfs driver: a dataset per layer, a clone per container.
//!
//! Everything goes through the `zfs` command (as containerd's and Docker's
//! ZFS drivers do), reading only `-H` output (and `zfs get -p` numbers),
//! never the human tables. Layout under the `zfs.dataset=POOL/PATH` option:
//!
//! ```text
//! DATASET/layers            mountpoint=none
//! DATASET/layers/HEX        a layer: the bottom one a new filesystem, each
//!                           later one a clone of its parent's @layer
//! DATASET/layers/HEX@layer  the finished layer (has_layer looks for this)
//! DATASET/layers/tmp-PID-N-HEX   a layer being made (renamed when done)
//! DATASET/containers        mountpoint=none
//! DATASET/containers/KEY    a container's rootfs: a clone of the top
//!                           layer's @layer, mountpoint=TARGET
//! DATASET/containers/KEY@NAME    the container's snapshots
//! ```
//!
//! A layer dataset is not mounted except while it is filled (at
//! `STORE/layers/zfs/.tmp/NAME`) and once `read_file` needs it
//! (at `STORE/layers/zfs/HEX`, where it stays until the layer is removed).
//!
//! Works with OpenZFS and with Debian's zfs-fuse 0.7 (a userspace daemon);
//! the differences that matter here:
//! - `zfs list -p` does not exist in zfs-fuse (`zfs get -p` does): numbers
//!   come from `zfs get -H -p -o ...`.
//! - `zfs get -t TYPE` does not exist in zfs-fuse: snapshots are told apart
//!   by the `@` in their name.
//! - zfs-fuse unmounts asynchronously when `destroy`/`rename` has to
//!   unmount first, and then fails with "dataset is busy": datasets are
//!   unmounted with `zfs umount` before they are renamed or destroyed, and
//!   `destroy` is retried a few times on "busy".
//! - zfs-fuse has no `.zfs/snapshot` directory, so a layer is read from a
//!   mount of its dataset, not from its snapshot.
//! - zfs-fuse refuses to mount on a non-empty directory ("directory is not
//!   empty"); OpenZFS ≥ 2.2 mounts over it. The target must be empty.
//! - zfs-fuse mounts from its daemon, in the daemon's mount namespace; the
//!   caller must share it (OpenZFS mounts from the `zfs` process itself).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use berth_image::{Digest, Whiteouts};

use crate::driver::Driver;
use crate::{DriverKind, Result, Snapshot, StorageError};

/// The option naming the parent dataset.
pub(crate) const DATASET_OPTION: &str = "zfs.dataset";
/// The snapshot that marks a finished layer.
const LAYER_SNAP: &str = "layer";
/// How often `zfs destroy` / `zfs umount` are tried on "busy".
const BUSY_TRIES: u32 = 10;
const BUSY_SLEEP: Duration = Duration::from_millis(200);

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

pub(crate) struct Zfs {
    root: PathBuf,
    /// `zfs.dataset`, e.g. `pool/berth`.
    dataset: String,
}

impl Zfs {
    /// Check that `options` names an existing dataset and make its
    /// `layers` and `containers` children (mountpoint=none) if missing.
    pub(crate) fn new(root: &Path, options: &BTreeMap<String, String>) -> Result<Zfs> {
        for key in options.keys() {
            if key.starts_with("zfs.") && key != DATASET_OPTION {
                return Err(StorageError::Invalid(format!(
                    "storage option {key:?}: unknown to the zfs driver (known: {DATASET_OPTION})"
                )));
            }
        }
        let dataset = options.get(DATASET_OPTION).ok_or_else(|| {
            StorageError::Invalid(format!(
                "the zfs storage driver needs the storage option {DATASET_OPTION}=POOL/PATH \
                 (the parent dataset for layers and containers)"
            ))
        })?;
        let dataset = dataset.trim_end_matches('/').to_string();
        if dataset.is_empty() || dataset.contains('@') || dataset.starts_with('/') {
            return Err(StorageError::Invalid(format!(
                "storage option {DATASET_OPTION}={dataset:?}: not a dataset name (POOL/PATH)"
            )));
        }
        let zfs = Zfs {
            root: root.to_path_buf(),
            dataset,
        };
        // One command answers for the dataset and both children.
        let out = zfs_cmd(&["list", "-H", "-o", "name", "-r", "-d", "1", &zfs.dataset])?;
        let have: Vec<&str> = out.lines().collect();
        for child in ["layers", "containers"] {
            let name = format!("{}/{child}", zfs.dataset);
            if have.contains(&name.as_str()) {
                continue;
            }
            if let Err(e) = zfs_cmd(&["create", "-o", "mountpoint=none", &name]) {
                // Another process may have made it meanwhile.
                if !dataset_exists(&name)? {
                    return Err(e);
                }
            }
        }
        Ok(zfs)
    }

    fn layer_ds(&self, hex: &str) -> String {
        format!("{}/layers/{hex}", self.dataset)
    }

    fn layer_snap(&self, hex: &str) -> String {
        format!("{}/layers/{hex}@{LAYER_SNAP}", self.dataset)
    }

    fn container_ds(&self, key: &str) -> String {
        format!("{}/containers/{key}", self.dataset)
    }

    /// `STORE/layers/zfs`.
    fn layers_dir(&self) -> PathBuf {
        self.root.join("layers").join(DriverKind::Zfs.as_str())
    }

    pub(crate) fn has_layer_hex(&self, hex: &str) -> bool {
        check_component("layer", hex).is_ok()
            && dataset_exists(&self.layer_snap(hex)).unwrap_or(false)
    }

    pub(crate) fn create_layer_hex(
        &self,
        hex: &str,
        parent: Option<&str>,
        fill: &mut dyn FnMut(&Path) -> Result<()>,
    ) -> Result<()> {
        check_component("layer", hex)?;
        if let Some(p) = parent {
            check_component("parent layer", p)?;
        }
        self.sweep_stale_tmp();
        let seq = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let short = &hex[..hex.len().min(16)];
        let tmp_base = format!("tmp-{}-{seq}-{short}", std::process::id());
        let tmp = format!("{}/layers/{tmp_base}", self.dataset);
        let mnt = self.layers_dir().join(".tmp").join(&tmp_base);
        std::fs::create_dir_all(&mnt).map_err(crate::io_err(format!(
            "creating the layer mount point {}",
            mnt.display()
        )))?;
        let mp = format!("mountpoint={}", mnt.display());
        let made = match parent {
            None => zfs_cmd(&["create", "-o", &mp, &tmp]),
            Some(p) => zfs_cmd(&["clone", "-o", &mp, &self.layer_snap(p), &tmp]),
        };
        let mut guard = TmpLayer {
            ds: Some(tmp.clone()),
            mnt: mnt.clone(),
        };
        made?;
        check_mounted(&mnt, &tmp)?;
        fill(&mnt)?;
        // Unmount first: all writes reach the pool before the snapshot, and
        // zfs-fuse cannot rename a mounted dataset.
        umount_ds(&tmp)?;
        zfs_cmd(&["inherit", "mountpoint", &tmp])?;
        zfs_cmd(&["snapshot", &format!("{tmp}@{LAYER_SNAP}")])?;
        let fin = self.layer_ds(hex);
        if let Err(e) = zfs_cmd(&["rename", &tmp, &fin]) {
            if self.has_layer_hex(hex) {
                // Made by someone else meanwhile: theirs is as good.
                return Ok(());
            }
            return Err(e);
        }
        guard.ds = None;
        Ok(())
    }

    /// Destroy `tmp-PID-*` layer datasets whose process is gone (a crash
    /// while a layer was made). Best effort.
    fn sweep_stale_tmp(&self) {
        let parent = format!("{}/layers", self.dataset);
        let Ok(out) = zfs_cmd(&["list", "-H", "-o", "name", "-r", "-d", "1", &parent]) else {
            return;
        };
        for name in out.lines() {
            let Some(base) = name.strip_prefix(&format!("{parent}/tmp-")) else {
                continue;
            };
            let Some(pid) = base.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            if destroy_ds(name, true).is_ok() {
                let _ =
                    std::fs::remove_dir(self.layers_dir().join(".tmp").join(format!("tmp-{base}")));
            }
        }
    }

    pub(crate) fn remove_layer_hex(&self, hex: &str) -> Result<()> {
        check_component("layer", hex)?;
        let ds = self.layer_ds(hex);
        destroy_ds(&ds, true)?;
        let dir = self.layers_dir().join(hex);
        match std::fs::remove_dir(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StorageError::Io {
                what: format!("removing the layer mount point {}", dir.display()),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    pub(crate) fn read_file_hex(&self, layers: &[&str], path: &Path) -> Result<Option<Vec<u8>>> {
        let Some(top) = layers.last() else {
            return Ok(None);
        };
        check_component("layer", top)?;
        let ds = self.layer_ds(top);
        let dir = self.layers_dir().join(top);
        // `zfs get -o value P1,P2` prints one line a property, in order.
        let out = zfs_cmd(&["get", "-H", "-o", "value", "mountpoint,mounted", &ds])?;
        let mut it = out.lines();
        let (mp, mounted) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
        if Path::new(mp) != dir {
            std::fs::create_dir_all(&dir).map_err(crate::io_err(format!(
                "creating the layer mount point {}",
                dir.display()
            )))?;
            zfs_cmd(&["set", &format!("mountpoint={}", dir.display()), &ds])?;
        } else if mounted != "yes" {
            if let Err(e) = zfs_cmd(&["mount", &ds]) {
                // A concurrent reader may have mounted it.
                if !is_mounted_here(&dir) {
                    return Err(e);
                }
            }
        }
        check_mounted(&dir, &ds)?;
        read_in_root(&dir, path)
    }

    pub(crate) fn mount_hex(&self, key: &str, layers: &[&str], target: &Path) -> Result<()> {
        check_component("container key", key)?;
        if !target.is_absolute() {
            return Err(StorageError::Invalid(format!(
                "rootfs target {}: not an absolute path",
                target.display()
            )));
        }
        let ds = self.container_ds(key);
        let mp = format!("mountpoint={}", target.display());
        let made = match layers.last() {
            None => zfs_cmd(&["create", "-o", &mp, &ds]),
            Some(top) => {
                check_component("layer", top)?;
                zfs_cmd(&["clone", "-o", &mp, &self.layer_snap(top), &ds])
            }
        };
        let res = made.and_then(|_| check_mounted(target, &ds));
        if let Err(e) = res {
            // Made but not mounted (e.g. a non-empty target): undo. A clone
            // that was never made ("dataset already exists" is someone
            // else's) is left alone.
            if !matches!(&e, StorageError::Command { msg, .. } if msg.contains("already exists")) {
                let _ = destroy_ds(&ds, true);
            }
            return Err(e);
        }
        Ok(())
    }

    pub(crate) fn unmount_key(&self, key: &str, target: &Path) -> Result<()> {
        check_component("container key", key)?;
        let ds = self.container_ds(key);
        destroy_ds(&ds, true)?;
        // The mount point directory itself belongs to the bundle; leave it.
        let _ = target;
        Ok(())
    }

    pub(crate) fn snapshot_create_key(&self, key: &str, name: &str) -> Result<()> {
        check_component("container key", key)?;
        check_snapshot_name(name)?;
        let ds = self.container_ds(key);
        zfs_cmd(&["snapshot", &format!("{ds}@{name}")])?;
        Ok(())
    }

    pub(crate) fn snapshot_list_key(&self, key: &str) -> Result<Vec<Snapshot>> {
        check_component("container key", key)?;
        let ds = self.container_ds(key);
        // `zfs get -t snapshot` is OpenZFS only: take everything one level
        // down and keep the names with '@'.
        let out = zfs_cmd(&[
            "get",
            "-H",
            "-p",
            "-o",
            "name,property,value",
            "-r",
            "-d",
            "1",
            "creation,createtxg",
            &ds,
        ])?;
        let prefix = format!("{ds}@");
        // name → (createtxg, creation)
        let mut snaps: BTreeMap<String, (u64, i64)> = BTreeMap::new();
        for line in out.lines() {
            let mut f = line.split('\t');
            let (Some(name), Some(prop), Some(value)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let Some(snap) = name.strip_prefix(&prefix) else {
                continue;
            };
            let e = snaps.entry(snap.to_string()).or_default();
            let bad = || StorageError::Command {
                cmd: format!("zfs get creation,createtxg {ds}"),
                msg: format!("unexpected {prop} value {value:?} for {name}"),
            };
            match prop {
                "createtxg" => e.0 = value.parse().map_err(|_| bad())?,
                "creation" => e.1 = value.parse().map_err(|_| bad())?,
                _ => {}
            }
        }
        let mut list: Vec<(u64, i64, String)> =
            snaps.into_iter().map(|(n, (txg, t))| (txg, t, n)).collect();
        list.sort();
        Ok(list
            .into_iter()
            .map(|(_, t, name)| Snapshot {
                name,
                created: rfc3339_utc(t, 0),
            })
            .collect())
    }

    pub(crate) fn snapshot_restore_key(&self, key: &str, name: &str, target: &Path) -> Result<()> {
        check_component("container key", key)?;
        check_snapshot_name(name)?;
        let ds = self.container_ds(key);
        let snap = format!("{ds}@{name}");
        if !dataset_exists(&snap)? {
            return Err(StorageError::Invalid(format!(
                "container {key} has no snapshot {name:?}"
            )));
        }
        // -r: snapshots newer than NAME are destroyed (zfs cannot roll
        // back past them otherwise).
        zfs_cmd(&["rollback", "-r", &snap])?;
        if !is_mounted_here(target) {
            zfs_cmd(&["mount", &ds])?;
        }
        check_mounted(target, &ds)
    }

    pub(crate) fn snapshot_delete_key(&self, key: &str, name: &str) -> Result<()> {
        check_component("container key", key)?;
        check_snapshot_name(name)?;
        let snap = format!("{}@{name}", self.container_ds(key));
        if !dataset_exists(&snap)? {
            return Err(StorageError::Invalid(format!(
                "container {key} has no snapshot {name:?}"
            )));
        }
        destroy_ds(&snap, false)
    }
}

/// Destroys a half-made layer dataset and its mount point on drop.
struct TmpLayer {
    ds: Option<String>,
    mnt: PathBuf,
}

impl Drop for TmpLayer {
    fn drop(&mut self) {
        if let Some(ds) = self.ds.take() {
            let _ = destroy_ds(&ds, true);
        }
        let _ = std::fs::remove_dir(&self.mnt);
    }
}

impl Driver for Zfs {
    fn kind(&self) -> DriverKind {
        DriverKind::Zfs
    }
    fn whiteouts(&self) -> Whiteouts {
        Whiteouts::Apply
    }
    fn has_layer(&self, chain: &Digest) -> bool {
        self.has_layer_hex(chain.hex())
    }
    fn create_layer(
        &self,
        chain: &Digest,
        parent: Option<&Digest>,
        fill: &mut dyn FnMut(&Path) -> Result<()>,
    ) -> Result<()> {
        self.create_layer_hex(chain.hex(), parent.map(|p| p.hex()), fill)
    }
    fn remove_layer(&self, chain: &Digest) -> Result<()> {
        self.remove_layer_hex(chain.hex())
    }
    fn read_file(&self, layers: &[Digest], path: &Path) -> Result<Option<Vec<u8>>> {
        let hex: Vec<&str> = layers.iter().map(|d| d.hex()).collect();
        self.read_file_hex(&hex, path)
    }
    fn mount(&self, key: &str, layers: &[Digest], target: &Path) -> Result<()> {
        let hex: Vec<&str> = layers.iter().map(|d| d.hex()).collect();
        self.mount_hex(key, &hex, target)
    }
    fn unmount(&self, key: &str, target: &Path) -> Result<()> {
        self.unmount_key(key, target)
    }
    fn snapshot_create(&self, key: &str, name: &str) -> Result<()> {
        self.snapshot_create_key(key, name)
    }
    fn snapshot_list(&self, key: &str) -> Result<Vec<Snapshot>> {
        self.snapshot_list_key(key)
    }
    fn snapshot_restore(&self, key: &str, name: &str, target: &Path) -> Result<()> {
        self.snapshot_restore_key(key, name, target)
    }
    fn snapshot_delete(&self, key: &str, name: &str) -> Result<()> {
        self.snapshot_delete_key(key, name)
    }
}

// ---- the zfs command ----

/// The `zfs` program: from PATH, else where Debian and OpenZFS put it.
fn zfs_bin() -> &'static OsStr {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let in_path = std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("zfs"))
                .find(|f| f.is_file())
        });
        in_path
            .or_else(|| {
                ["/usr/sbin/zfs", "/sbin/zfs"]
                    .iter()
                    .map(PathBuf::from)
                    .find(|f| f.is_file())
            })
            .unwrap_or_else(|| PathBuf::from("zfs"))
    })
    .as_os_str()
}

/// Run `zfs ARGS`; its stdout, or an error with the argv and zfs's stderr.
pub(crate) fn zfs_cmd(args: &[&str]) -> Result<String> {
    let cmd_line = || format!("zfs {}", args.join(" "));
    let out = Command::new(zfs_bin())
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| StorageError::Command {
            cmd: cmd_line(),
            msg: format!("cannot run zfs: {e}"),
        })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let msg = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    Err(StorageError::Command {
        cmd: cmd_line(),
        msg: if msg.is_empty() {
            format!("exited with {}", out.status)
        } else {
            msg
        },
    })
}

fn is_not_found(e: &StorageError) -> bool {
    matches!(e, StorageError::Command { msg, .. } if msg.contains("does not exist"))
}

fn is_busy(e: &StorageError) -> bool {
    matches!(e, StorageError::Command { msg, .. } if msg.contains("busy"))
}

fn is_not_mounted(e: &StorageError) -> bool {
    matches!(e, StorageError::Command { msg, .. } if msg.contains("not currently mounted") || msg.contains("not mounted"))
}

/// Whether a dataset or snapshot exists.
pub(crate) fn dataset_exists(name: &str) -> Result<bool> {
    match zfs_cmd(&["list", "-H", "-o", "name", name]) {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `zfs umount DS`, retried while busy; a dataset that is not mounted or
/// does not exist is fine.
fn umount_ds(ds: &str) -> Result<()> {
    let mut tries = 0;
    loop {
        match zfs_cmd(&["umount", ds]) {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) || is_not_mounted(&e) => return Ok(()),
            Err(e) if is_busy(&e) && tries + 1 < BUSY_TRIES => {
                tries += 1;
                std::thread::sleep(BUSY_SLEEP);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Unmount and destroy `ds` (with `recursive`: its snapshots too),
/// retrying on "dataset is busy". Gone already is fine.
pub(crate) fn destroy_ds(ds: &str, recursive: bool) -> Result<()> {
    if !ds.contains('@') {
        umount_ds(ds)?;
    }
    let mut tries = 0;
    loop {
        let res = if recursive {
            zfs_cmd(&["destroy", "-r", ds])
        } else {
            zfs_cmd(&["destroy", ds])
        };
        match res {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) if is_busy(&e) && tries + 1 < BUSY_TRIES => {
                tries += 1;
                std::thread::sleep(BUSY_SLEEP);
                if !ds.contains('@') {
                    let _ = umount_ds(ds);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Refuse a name that would change the dataset path it is put in.
fn check_component(what: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
        && !s.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(StorageError::Invalid(format!(
            "{what} {s:?}: not usable as a dataset or file name (letters, digits, _ - . :)"
        )))
    }
}

// ---- helpers shared with the btrfs driver (candidates for lib.rs) ----

/// A snapshot name: `[A-Za-z0-9_.:-]`, at most 64 bytes, not starting
/// with '-'.
pub(crate) fn check_snapshot_name(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(StorageError::Invalid(format!(
            "snapshot name {name:?}: {why}"
        )))
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 64 {
        return bad("longer than 64 characters");
    }
    if name.starts_with('-') {
        return bad("starts with '-'");
    }
    if name == "." || name == ".." {
        return bad("not a name");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')))
    {
        return bad(&format!("{c:?} is not allowed (letters, digits, _ . : -)"));
    }
    Ok(())
}

/// Seconds (and nanoseconds) since the epoch as RFC 3339 UTC
/// (`2024-05-01T12:00:00Z`, `…:00.123456789Z` when `nanos` ≠ 0).
pub(crate) fn rfc3339_utc(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from a day count (proleptic Gregorian, 400-year eras).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    if nanos == 0 {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
    } else {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}.{nanos:09}Z")
    }
}

/// Read `path` of the tree at `root`, resolving every component (symlinks
/// included) inside `root`. None if it does not exist.
pub(crate) fn read_in_root(root: &Path, path: &Path) -> Result<Option<Vec<u8>>> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    use nix::sys::stat::Mode;
    let shown = || format!("{} in {}", path.display(), root.display());
    let dir =
        std::fs::File::open(root).map_err(crate::io_err(format!("opening {}", root.display())))?;
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY)
        .mode(Mode::empty())
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = match openat2(&dir, rel, how) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::ENOTDIR) => return Ok(None),
        Err(e) => {
            return Err(StorageError::Io {
                what: format!("opening {}", shown()),
                source: e.into(),
            })
        }
    };
    let mut f = std::fs::File::from(fd);
    let meta = f
        .metadata()
        .map_err(crate::io_err(format!("stat {}", shown())))?;
    if !meta.is_file() {
        return Err(StorageError::Invalid(format!(
            "{}: not a regular file",
            shown()
        )));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut buf)
        .map_err(crate::io_err(format!("reading {}", shown())))?;
    Ok(Some(buf))
}

/// Whether `dir` is a mount point: on another device than its parent,
/// or listed as one in /proc/self/mountinfo (a bind of the same fs).
pub(crate) fn is_mounted_here(dir: &Path) -> bool {
    let (Ok(me), Some(parent)) = (std::fs::symlink_metadata(dir), dir.parent()) else {
        return false;
    };
    if let Ok(up) = std::fs::metadata(parent) {
        if up.dev() != me.dev() {
            return true;
        }
    }
    mount_points().iter().any(|m| m == dir)
}

/// Mount points of /proc/self/mountinfo, octal escapes decoded.
pub(crate) fn mount_points() -> Vec<PathBuf> {
    let Ok(s) = std::fs::read("/proc/self/mountinfo") else {
        return Vec::new();
    };
    s.split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(|field| {
            let mut out = Vec::with_capacity(field.len());
            let mut i = 0;
            while i < field.len() {
                if field[i] == b'\\'
                    && i + 3 < field.len()
                    && field[i + 1..i + 4]
                        .iter()
                        .all(|c| (b'0'..=b'7').contains(c))
                {
                    out.push(
                        (field[i + 1] - b'0') * 64
                            + (field[i + 2] - b'0') * 8
                            + (field[i + 3] - b'0'),
                    );
                    i += 4;
                } else {
                    out.push(field[i]);
                    i += 1;
                }
            }
            PathBuf::from(OsStr::from_bytes(&out))
        })
        .collect()
}

/// An error unless `dir` is a mount point now (so nothing is ever written
/// into the directory underneath by mistake).
fn check_mounted(dir: &Path, ds: &str) -> Result<()> {
    if is_mounted_here(dir) {
        Ok(())
    } else {
        Err(StorageError::Invalid(format!(
            "dataset {ds}: zfs reported success but {} is not a mount point",
            dir.display()
        )))
    }
}
