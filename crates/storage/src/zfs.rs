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
//!                           layer's @layer, mountpoint=TARGET,
//!                           canmount=noauto (mounted by `mount`, not at boot)
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
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_image::Digest;

use crate::driver::HexDriver;
use crate::fsutil::{
    check_absolute_target, check_snapshot_name, is_mounted_here, is_stale_tmp, read_in_root,
    rfc3339, tmp_layer_name,
};
use crate::{DriverKind, Result, Snapshot, StorageError};

/// The option naming the parent dataset.
pub(crate) const DATASET_OPTION: &str = "zfs.dataset";
/// The snapshot that marks a finished layer.
const LAYER_SNAP: &str = "layer";
/// How often `zfs destroy` / `zfs umount` are tried on "busy".
const BUSY_TRIES: u32 = 10;
const BUSY_SLEEP: Duration = Duration::from_millis(200);

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

    /// Destroy `tmp-PID-*` layer datasets whose process is gone (a crash
    /// while a layer was made). Best effort.
    fn sweep_stale_tmp(&self) {
        let parent = format!("{}/layers", self.dataset);
        let Ok(out) = zfs_cmd(&["list", "-H", "-o", "name", "-r", "-d", "1", &parent]) else {
            return;
        };
        for name in out.lines() {
            let Some(base) = name.strip_prefix(&format!("{parent}/")) else {
                continue;
            };
            if is_stale_tmp(base) && destroy_ds(name, true).is_ok() {
                let _ = std::fs::remove_dir(self.layers_dir().join(".tmp").join(base));
            }
        }
    }
}

impl HexDriver for Zfs {
    const KIND: DriverKind = DriverKind::Zfs;

    fn has_layer_hex(&self, hex: &str) -> bool {
        check_component("layer", hex).is_ok()
            && dataset_exists(&self.layer_snap(hex)).unwrap_or(false)
    }

    fn create_layer_hex(
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
        let tmp_base = tmp_layer_name(hex);
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
        retry_busy(|| zfs_cmd(&["inherit", "mountpoint", &tmp]))?;
        retry_busy(|| zfs_cmd(&["snapshot", &format!("{tmp}@{LAYER_SNAP}")]))?;
        let fin = self.layer_ds(hex);
        // zfs-fuse may still be finishing the unmount: "busy" for a moment.
        if let Err(e) = retry_busy(|| zfs_cmd(&["rename", &tmp, &fin])) {
            if self.has_layer_hex(hex) {
                // Made by someone else meanwhile: theirs is as good.
                return Ok(());
            }
            return Err(e);
        }
        guard.ds = None;
        Ok(())
    }

    /// The layer datasets (`layers/HEX`, finished or not), each after the
    /// layer whose snapshot it is a clone of.
    fn layers_ordered(&self) -> Result<Vec<Digest>> {
        let parent = format!("{}/layers", self.dataset);
        let out = zfs_cmd(&[
            "get",
            "-H",
            "-o",
            "name,value",
            "-r",
            "-d",
            "1",
            "origin",
            &parent,
        ])?;
        let prefix = format!("{parent}/");
        // hex → the hex of the layer it is a clone of (if a layer).
        let mut origin: BTreeMap<String, Option<String>> = BTreeMap::new();
        for line in out.lines() {
            let Some((name, value)) = line.split_once('\t') else {
                continue;
            };
            let Some(hex) = name.strip_prefix(&prefix) else {
                continue;
            };
            if hex.contains('@') || crate::driver::chain_of_hex(hex).is_none() {
                continue;
            }
            let from = value
                .strip_prefix(&prefix)
                .and_then(|o| o.split_once('@'))
                .map(|(h, _)| h.to_string());
            origin.insert(hex.to_string(), from);
        }
        // Parents first: take, over and over, the layers whose origin is
        // not (or no longer) waiting.
        let mut out = Vec::with_capacity(origin.len());
        while !origin.is_empty() {
            let ready: Vec<String> = origin
                .iter()
                .filter(|(_, from)| from.as_ref().is_none_or(|f| !origin.contains_key(f)))
                .map(|(h, _)| h.clone())
                .collect();
            // A cycle cannot happen in zfs; stop rather than spin.
            let ready = if ready.is_empty() {
                origin.keys().cloned().collect()
            } else {
                ready
            };
            for h in ready {
                origin.remove(&h);
                out.extend(crate::driver::chain_of_hex(&h));
            }
        }
        Ok(out)
    }

    fn remove_layer_hex(&self, hex: &str) -> Result<()> {
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

    fn read_file_hex(&self, layers: &[&str], path: &Path) -> Result<Option<Vec<u8>>> {
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

    fn mount_hex(&self, key: &str, layers: &[&str], target: &Path) -> Result<()> {
        check_component("container key", key)?;
        check_absolute_target(target)?;
        let ds = self.container_ds(key);
        // Refused before anything is made: the dataset there is another
        // mount's (an earlier create of this container) and must stay.
        if dataset_exists(&ds)? {
            return Err(StorageError::Invalid(format!(
                "container {key} already has a root filesystem (dataset {ds})"
            )));
        }
        let mp = format!("mountpoint={}", target.display());
        // canmount=noauto: mounted here, by this call, and never again by
        // `zfs mount -a` (at boot) onto a bundle path nobody asked for.
        let noauto = "canmount=noauto";
        let made = match layers.last() {
            None => zfs_cmd(&["create", "-o", noauto, "-o", &mp, &ds]),
            Some(top) => {
                check_component("layer", top)?;
                zfs_cmd(&["clone", "-o", noauto, "-o", &mp, &self.layer_snap(top), &ds])
            }
        };
        // (zfs-fuse mounts a clone at once all the same.)
        let res = made
            .and_then(|_| match retry_busy(|| zfs_cmd(&["mount", &ds])) {
                Err(StorageError::Command { msg, .. }) if msg.contains("already mounted") => {
                    Ok(String::new())
                }
                r => r,
            })
            .and_then(|_| check_mounted(target, &ds));
        if let Err(e) = res {
            // Made but not mounted (e.g. a non-empty target): undo. A clone
            // that was never made ("dataset already exists" is someone
            // else's) is left alone.
            if !matches!(&e, StorageError::Command { msg, .. } if msg.contains("already exists")) {
                return Err(crate::with_cleanup(e, destroy_ds(&ds, true)));
            }
            return Err(e);
        }
        Ok(())
    }

    fn unmount_key(&self, key: &str, target: &Path) -> Result<()> {
        check_component("container key", key)?;
        let ds = self.container_ds(key);
        destroy_ds(&ds, true)?;
        // The mount point directory itself belongs to the bundle; leave it.
        let _ = target;
        Ok(())
    }

    fn snapshot_create_key(&self, key: &str, name: &str) -> Result<()> {
        check_component("container key", key)?;
        check_snapshot_name(name)?;
        let ds = self.container_ds(key);
        zfs_cmd(&["snapshot", &format!("{ds}@{name}")])?;
        Ok(())
    }

    fn snapshot_list_key(&self, key: &str) -> Result<Vec<Snapshot>> {
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
                created: rfc3339(t),
            })
            .collect())
    }

    fn snapshot_restore_key(&self, key: &str, name: &str, target: &Path) -> Result<()> {
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

    fn snapshot_delete_key(&self, key: &str, name: &str) -> Result<()> {
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

    fn has_container_key(&self, key: &str) -> Result<bool> {
        check_component("container key", key)?;
        dataset_exists(&self.container_ds(key))
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

/// Refuse a name that would change the dataset path it is put in.
fn check_component(what: &str, s: &str) -> Result<()> {
    crate::fsutil::check_component(what, s, "a dataset or file name")
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

/// `op`, tried again (up to [`BUSY_TRIES`] times) while zfs says "busy".
fn retry_busy<T>(mut op: impl FnMut() -> Result<T>) -> Result<T> {
    let mut tries = 1;
    loop {
        match op() {
            Err(e) if is_busy(&e) && tries < BUSY_TRIES => {
                tries += 1;
                std::thread::sleep(BUSY_SLEEP);
            }
            res => return res,
        }
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

#[cfg(test)]
mod tests {
    //! Against a real zfs-fuse pool (hack/zfs-fuse.sh), as root. Each test
    //! has its own child dataset and store directory.

    use super::*;
    use crate::testutil::{hex, hex_layer, is_mounted, mounts_under, now, target};
    use berth_integration::storage::{ZfsDataset, ZfsPool, ZFS_POOL as POOL};
    use std::time::Instant;

    /// A test's own dataset (see [`ZfsDataset`]) and store directory, and
    /// the driver on them.
    struct Env {
        zfs: Zfs,
        ds: ZfsDataset,
        store: tempfile::TempDir,
    }

    impl Env {
        fn new(name: &str) -> Env {
            let ds = ZfsDataset::new(name);
            let store = tempfile::Builder::new()
                .prefix("berth-zfs-test-")
                .tempdir_in("/tmp")
                .unwrap();
            let opts = BTreeMap::from([(DATASET_OPTION.to_string(), ds.name().to_string())]);
            let zfs = Zfs::new(store.path(), &opts).unwrap();
            Env { zfs, ds, store }
        }

        /// The test's dataset.
        fn ds(&self) -> &str {
            self.ds.name()
        }

        fn target(&self, name: &str) -> PathBuf {
            target(self.store.path(), name)
        }

        /// A layer that writes `files` and deletes `delete`.
        fn layer(&self, hex: &str, parent: Option<&str>, files: &[(&str, &str)], delete: &[&str]) {
            hex_layer(&self.zfs, hex, parent, files, delete);
        }
    }

    #[test]
    fn layers_containers_isolation_and_cleanup() {
        let env = Env::new("basic");
        let (l1, l2) = (hex(1), hex(2));
        assert!(!env.zfs.has_layer_hex(&l1));
        env.layer(
            &l1,
            None,
            &[
                ("a", "from l1"),
                ("etc/passwd", "root:x:0:0::/:/bin/sh\n"),
                ("keep", "k"),
            ],
            &[],
        );
        // The second layer sees the first's files and deletes one (what
        // Whiteouts::Apply does).
        env.layer(&l2, Some(&l1), &[("b", "from l2")], &["a"]);
        assert!(env.zfs.has_layer_hex(&l1) && env.zfs.has_layer_hex(&l2));
        // Renamed into place; no temporary dataset or mount left.
        let layers = ZfsDataset::datasets(&format!("{}/layers", env.ds()));
        assert_eq!(layers.len(), 3, "{layers:?}");
        assert!(!layers.iter().any(|l| l.contains("/tmp-")), "{layers:?}");
        let origin =
            zfs_cmd(&["get", "-H", "-o", "value", "origin", &env.zfs.layer_ds(&l2)]).unwrap();
        assert_eq!(origin.trim(), env.zfs.layer_snap(&l1));

        // read_file from the top layer, confined to it.
        let stack = [l1.as_str(), l2.as_str()];
        let got = env
            .zfs
            .read_file_hex(&stack, Path::new("/etc/passwd"))
            .unwrap();
        assert_eq!(got.as_deref(), Some(&b"root:x:0:0::/:/bin/sh\n"[..]));
        assert_eq!(
            env.zfs.read_file_hex(&stack, Path::new("/a")).unwrap(),
            None
        );
        assert_eq!(
            env.zfs
                .read_file_hex(&[l1.as_str()], Path::new("a"))
                .unwrap()
                .as_deref(),
            Some(&b"from l1"[..])
        );

        let (t1, t2) = (env.target("c1"), env.target("c2"));
        env.zfs.mount_hex("c1", &stack, &t1).unwrap();
        env.zfs.mount_hex("c2", &stack, &t2).unwrap();
        assert!(is_mounted(&t1) && is_mounted(&t2));
        // Mounted by mount, never by `zfs mount -a` at boot.
        let canmount = zfs_cmd(&[
            "get",
            "-H",
            "-o",
            "value",
            "canmount",
            &env.zfs.container_ds("c1"),
        ])
        .unwrap();
        assert_eq!(canmount.trim(), "noauto");
        assert_eq!(std::fs::read_to_string(t1.join("b")).unwrap(), "from l2");
        assert_eq!(std::fs::read_to_string(t1.join("keep")).unwrap(), "k");
        assert!(!t1.join("a").exists(), "l2 deleted a");
        std::fs::write(t1.join("only-c1"), "x").unwrap();
        std::fs::write(t1.join("keep"), "changed in c1").unwrap();
        assert!(!t2.join("only-c1").exists());
        assert_eq!(std::fs::read_to_string(t2.join("keep")).unwrap(), "k");
        // The layers did not change either.
        assert_eq!(
            env.zfs
                .read_file_hex(&stack, Path::new("keep"))
                .unwrap()
                .as_deref(),
            Some(&b"k"[..])
        );

        // A second mount of the same key is refused and does not destroy
        // the first.
        assert!(env.zfs.mount_hex("c1", &stack, &env.target("c1b")).is_err());
        assert_eq!(std::fs::read_to_string(t1.join("only-c1")).unwrap(), "x");

        env.zfs.snapshot_create_key("c1", "s1").unwrap();
        env.zfs.unmount_key("c1", &t1).unwrap();
        env.zfs.unmount_key("c2", &t2).unwrap();
        assert!(!is_mounted(&t1) && !is_mounted(&t2));
        let containers = format!("{}/containers", env.ds());
        assert_eq!(ZfsDataset::datasets(&containers), vec![containers.clone()]);
        assert!(
            ZfsDataset::snapshots(&containers).is_empty(),
            "snapshots go with the container"
        );
        // Idempotent.
        env.zfs.unmount_key("c1", &t1).unwrap();
        env.zfs.unmount_key("never", &t1).unwrap();

        // The store removes top-down; a layer with a child cannot go first.
        assert!(
            env.zfs.remove_layer_hex(&l1).is_err(),
            "l2 is a clone of l1@layer"
        );
        assert!(env.zfs.has_layer_hex(&l1));
        env.zfs.remove_layer_hex(&l2).unwrap();
        env.zfs.remove_layer_hex(&l1).unwrap();
        env.zfs.remove_layer_hex(&l1).unwrap();
        let layers_ds = format!("{}/layers", env.ds());
        assert_eq!(ZfsDataset::datasets(&layers_ds), vec![layers_ds.clone()]);
        assert!(!env.store.path().join("layers/zfs").join(&l2).exists());
        assert!(mounts_under(env.store.path()).is_empty());
    }

    #[test]
    fn failed_fill_leaves_nothing() {
        let env = Env::new("fill");
        let l1 = hex(1);
        let err = env
            .zfs
            .create_layer_hex(&l1, None, &mut |dir| {
                std::fs::write(dir.join("half"), "x").unwrap();
                Err(StorageError::Invalid("bad tar".into()))
            })
            .unwrap_err();
        assert!(err.to_string().contains("bad tar"), "{err}");
        assert!(!env.zfs.has_layer_hex(&l1));
        let layers = format!("{}/layers", env.ds());
        assert_eq!(ZfsDataset::datasets(&layers), vec![layers.clone()]);
        assert!(ZfsDataset::snapshots(&layers).is_empty());
        let tmp = env.store.path().join("layers/zfs/.tmp");
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
        // A missing parent is zfs's error, and nothing is left either.
        let err = env
            .zfs
            .create_layer_hex(&hex(2), Some(&hex(9)), &mut |_| Ok(()))
            .unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        assert_eq!(ZfsDataset::datasets(&layers), vec![layers.clone()]);

        // A temporary layer left by a dead process is swept by the next
        // create_layer; one a live process makes is not.
        let stale = format!("{layers}/tmp-999999999-0-{}", &l1[..16]);
        let live = format!("{layers}/tmp-{}-999-{}", std::process::id(), &l1[..16]);
        zfs_cmd(&["create", &stale]).unwrap();
        zfs_cmd(&["create", &live]).unwrap();
        env.layer(&l1, None, &[("f", "1")], &[]);
        let now = ZfsDataset::datasets(&layers);
        assert!(!now.contains(&stale), "{now:?}");
        assert!(now.contains(&live), "{now:?}");
        destroy_ds(&live, true).unwrap();
    }

    #[test]
    fn snapshots_create_list_restore_delete() {
        let env = Env::new("snap");
        let l1 = hex(1);
        env.layer(&l1, None, &[("f", "v0")], &[]);
        let t = env.target("c");
        env.zfs.mount_hex("c", &[&l1], &t).unwrap();
        for bad in ["", "-x", "a/b", "a@b", "a b", &"x".repeat(65), ".."] {
            let err = env.zfs.snapshot_create_key("c", bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        let ok64 = "A-z_0.9:".repeat(8);
        check_snapshot_name(&ok64).unwrap();

        let start = now();
        for (i, name) in ["one", "two", "three", "four"].iter().enumerate() {
            std::fs::write(t.join("f"), format!("v{}", i + 1)).unwrap();
            env.zfs.snapshot_create_key("c", name).unwrap();
        }
        assert!(env.zfs.snapshot_create_key("c", "two").is_err(), "exists");
        let list = env.zfs.snapshot_list_key("c").unwrap();
        let names: Vec<&str> = list.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["one", "two", "three", "four"], "oldest first");
        for s in &list {
            assert_eq!(s.created.len(), 20, "{}", s.created);
            assert!(s.created.ends_with('Z'));
            assert!(s.created >= rfc3339(start - 1), "{} vs start", s.created);
        }

        // keep-last 2, as lib.rs does it: delete the oldest beyond 2.
        let list = env.zfs.snapshot_list_key("c").unwrap();
        for s in &list[..list.len() - 2] {
            env.zfs.snapshot_delete_key("c", &s.name).unwrap();
        }
        let names: Vec<String> = env
            .zfs
            .snapshot_list_key("c")
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["three", "four"]);
        let err = env.zfs.snapshot_delete_key("c", "one").unwrap_err();
        assert!(err.to_string().contains("\"one\""), "{err}");

        // Restore "three": its content, later snapshots gone, still mounted.
        std::fs::write(t.join("f"), "v9").unwrap();
        std::fs::write(t.join("new"), "n").unwrap();
        env.zfs.snapshot_restore_key("c", "three", &t).unwrap();
        assert!(is_mounted(&t));
        assert_eq!(std::fs::read_to_string(t.join("f")).unwrap(), "v3");
        assert!(!t.join("new").exists());
        let names: Vec<String> = env
            .zfs
            .snapshot_list_key("c")
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["three"]);
        let err = env.zfs.snapshot_restore_key("c", "four", &t).unwrap_err();
        assert!(err.to_string().contains("\"four\""), "{err}");

        env.zfs.unmount_key("c", &t).unwrap();
        assert!(ZfsDataset::snapshots(&format!("{}/containers", env.ds())).is_empty());
    }

    #[test]
    fn unmount_retries_while_busy() {
        let env = Env::new("busy");
        let l1 = hex(1);
        env.layer(&l1, None, &[("f", "x")], &[]);
        let t = env.target("c");
        env.zfs.mount_hex("c", &[&l1], &t).unwrap();
        // An open file keeps the mount busy for a while.
        let f = std::fs::File::open(t.join("f")).unwrap();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(700));
            drop(f);
        });
        let start = Instant::now();
        env.zfs.unmount_key("c", &t).unwrap();
        closer.join().unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(500),
            "did not wait for the busy mount"
        );
        assert!(!is_mounted(&t));
        assert!(!dataset_exists(&env.zfs.container_ds("c")).unwrap());
    }

    #[test]
    fn options_are_checked() {
        let store = tempfile::tempdir().unwrap();
        let err = Zfs::new(store.path(), &BTreeMap::new()).err().unwrap();
        assert!(err.to_string().contains("zfs.dataset"), "{err}");
        let opts = BTreeMap::from([
            (DATASET_OPTION.to_string(), "p/x".to_string()),
            ("zfs.bogus".to_string(), "1".to_string()),
        ]);
        let err = Zfs::new(store.path(), &opts).err().unwrap();
        assert!(err.to_string().contains("zfs.bogus"), "{err}");

        let _pool = ZfsPool::acquire();
        let opts = BTreeMap::from([(DATASET_OPTION.to_string(), format!("{POOL}/no-such-ds"))]);
        let err = Zfs::new(store.path(), &opts).err().unwrap();
        let msg = err.to_string();
        assert!(
            msg.contains("no-such-ds") && msg.contains("does not exist"),
            "{msg}"
        );
    }

    /// Rootfs assembly time (mount) on 1, 20 and 100 layers; printed, not
    /// asserted (`cargo test -- --nocapture`).
    #[test]
    #[ignore = "a measurement, ~3 min on zfs-fuse (100 layers): cargo test -p berth-storage --lib -- --ignored --nocapture mount_time"]
    fn mount_time_by_depth() {
        let env = Env::new("depth");
        let mut made = 0u64;
        let mut stack: Vec<String> = Vec::new();
        for depth in [1usize, 20, 100] {
            while stack.len() < depth {
                made += 1;
                let h = hex(made);
                let name = format!("f{made}");
                env.layer(&h, stack.last().map(String::as_str), &[(&name, "x")], &[]);
                stack.push(h);
            }
            let refs: Vec<&str> = stack.iter().map(String::as_str).collect();
            let t = env.target(&format!("d{depth}"));
            let start = Instant::now();
            env.zfs.mount_hex(&format!("d{depth}"), &refs, &t).unwrap();
            let took = start.elapsed();
            assert!(t.join(format!("f{depth}")).exists() && t.join("f1").exists());
            let start = Instant::now();
            env.zfs.unmount_key(&format!("d{depth}"), &t).unwrap();
            println!(
                "zfs (zfs-fuse): {depth:3} layers: mount {:?}, unmount {:?}",
                took,
                start.elapsed()
            );
        }
        for h in stack.iter().rev() {
            env.zfs.remove_layer_hex(h).unwrap();
        }
    }
}
