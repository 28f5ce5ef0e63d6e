//! berth's layer store and the drivers that turn a stack of layers into a
//! container's root filesystem: overlay (a mount of the layer directories),
//! zfs (a clone of the top layer's snapshot), btrfs (a snapshot of the top
//! layer's subvolume) and vfs (a plain copy).
//!
//! Layout of the store (`--store`, default /var/lib/berth):
//! ```text
//! images.json                 name:tag → manifest digest, config digest, layers
//! blobs/sha256/HEX            manifests and configs, as imported
//! layers/DRIVER/CHAINID/      one layer (overlay: its own files; vfs: the whole tree)
//! containers/DRIVER/KEY/      a container's writable layer (overlay upper/work)
//! containers/refs/KEY.json    the RootfsRecord of each mounted container
//! .lock                       flock held (briefly) while the store changes
//! .import.lock                flock serialising imports and `image rm`
//! ```
//! See store.rs for what each lock guards.
//! zfs keeps its layers as datasets under the `zfs.dataset` option, btrfs as
//! subvolumes under layers/btrfs (the store must be on btrfs).

mod btrfs;
mod driver;
mod fsutil;
mod overlay;
mod store;
mod vfs;
mod zfs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use berth_image::{Digest, ImageError};
pub use store::{ImageRecord, Store};

/// config.json annotation naming the image a bundle's rootfs comes from.
pub const IMAGE_ANNOTATION: &str = "run.berth.image";
/// config.json annotation with that image's manifest digest (so a tag that
/// moves later does not change what the bundle runs).
pub const MANIFEST_ANNOTATION: &str = "run.berth.image.manifest";
/// The store's default location.
pub const DEFAULT_STORE: &str = "/var/lib/berth";

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// A command (zfs, zpool, btrfs) that failed: its argv and stderr.
    #[error("{cmd}: {msg}")]
    Command { cmd: String, msg: String },
    #[error("image {0:?} not found in the store")]
    NoImage(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the {driver} driver cannot {op}")]
    Unsupported {
        driver: &'static str,
        op: &'static str,
    },
}

pub type Result<T> = std::result::Result<T, StorageError>;

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StorageError {
    let what = what.into();
    move |source| StorageError::Io { what, source }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    Overlay,
    Zfs,
    Btrfs,
    Vfs,
}

impl DriverKind {
    pub const ALL: [DriverKind; 4] = [
        DriverKind::Overlay,
        DriverKind::Zfs,
        DriverKind::Btrfs,
        DriverKind::Vfs,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            DriverKind::Overlay => "overlay",
            DriverKind::Zfs => "zfs",
            DriverKind::Btrfs => "btrfs",
            DriverKind::Vfs => "vfs",
        }
    }
}

impl std::str::FromStr for DriverKind {
    type Err = StorageError;
    fn from_str(s: &str) -> Result<DriverKind> {
        DriverKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                StorageError::Invalid(format!(
                    "unknown storage driver {s:?}; known: overlay, zfs, btrfs, vfs"
                ))
            })
    }
}

/// Which store and driver (from `--store`, `--storage-driver`,
/// `--storage-opt`, or /etc/berth/config.toml).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreConfig {
    pub root: PathBuf,
    pub driver: DriverKind,
    /// `--storage-opt KEY=VALUE` (e.g. `zfs.dataset` → `pool/berth`).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// What a container's root filesystem is made of, saved in its state
/// record *before* anything is mounted or cloned, so `delete --force`
/// can undo a half-made one after a crash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RootfsRecord {
    pub store: StoreConfig,
    /// The container's name in the store (see [`container_key`]).
    pub key: String,
    /// Where the root filesystem is mounted: the bundle's root.path.
    pub target: PathBuf,
    /// The image reference as the bundle named it.
    pub image: String,
    pub manifest: Digest,
    /// Chain IDs, bottom layer first.
    pub layers: Vec<Digest>,
}

/// A container's name in the store: unique per state root and id, and
/// safe as a file name and a ZFS dataset name (hex).
pub fn container_key(state_root: &Path, id: &str) -> String {
    let mut bytes = state_root.as_os_str().as_encoded_bytes().to_vec();
    bytes.push(0);
    bytes.extend_from_slice(id.as_bytes());
    Digest::sha256_of(&bytes).hex()[..32].to_string()
}

/// Mount (or clone) the root filesystem `rec` describes at `rec.target`.
///
/// First, under the store's lock, the layers are checked to still be there
/// and the container's reference (`containers/refs/KEY.json`) is written, so
/// no `image rm` can take a layer away from under it and [`teardown`] can
/// find what to undo. A mount that fails undoes only what it made (a
/// container the key already had, say from an earlier create, is left
/// alone); the reference goes only if the container has nothing left in
/// the store, else it stays for [`teardown`].
pub fn mount_rootfs(rec: &RootfsRecord) -> Result<()> {
    store::check_key(&rec.key)?;
    let drv = driver::open(&rec.store)?;
    store::add_ref(&rec.store.root, drv.as_ref(), rec)?;
    if let Err(e) = drv.mount(&rec.key, &rec.layers, &rec.target) {
        let cleanup = match drv.has_container(&rec.key) {
            Ok(false) => store::remove_ref(&rec.store.root, &rec.key),
            Ok(true) => Ok(()),
            Err(c) => Err(c),
        };
        return Err(with_cleanup(e, cleanup));
    }
    Ok(())
}

/// `e`, and what went wrong undoing after it if anything did: the cause
/// first ("X (and cleaning up after it failed: Y)").
pub(crate) fn with_cleanup(e: StorageError, cleanup: Result<()>) -> StorageError {
    match cleanup {
        Ok(()) => e,
        Err(c) => StorageError::Invalid(format!("{e} (and cleaning up after it failed: {c})")),
    }
}

/// Undo [`mount_rootfs`], whatever part of it happened: unmount, destroy
/// the writable layer, drop the container's reference. Idempotent.
pub fn teardown(rec: &RootfsRecord) -> Result<()> {
    store::check_key(&rec.key)?;
    driver::open(&rec.store)?.unmount(&rec.key, &rec.target)?;
    store::remove_ref(&rec.store.root, &rec.key)
}

/// One snapshot of a container's writable layer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    pub name: String,
    /// RFC 3339 UTC.
    pub created: String,
}

/// Snapshot the writable layer as `name`; then, with `keep_last`, delete
/// the oldest snapshots beyond that many. The caller has checked that the
/// container is stopped or paused.
pub fn snapshot_create(rec: &RootfsRecord, name: &str, keep_last: Option<usize>) -> Result<()> {
    if keep_last == Some(0) {
        return Err(StorageError::Invalid(format!(
            "snapshot {name:?}: keep-last must be at least 1 (0 would delete the snapshot just taken)"
        )));
    }
    let drv = driver::open(&rec.store)?;
    drv.snapshot_create(&rec.key, name)?;
    if let Some(keep) = keep_last {
        let all = drv.snapshot_list(&rec.key)?;
        for old in beyond_keep(&all, keep) {
            drv.snapshot_delete(&rec.key, &old.name)?;
        }
    }
    Ok(())
}

/// The snapshots (listed oldest first) that keeping the newest `keep`
/// leaves over.
fn beyond_keep(oldest_first: &[Snapshot], keep: usize) -> &[Snapshot] {
    &oldest_first[..oldest_first.len().saturating_sub(keep)]
}

/// Oldest first.
pub fn snapshot_list(rec: &RootfsRecord) -> Result<Vec<Snapshot>> {
    driver::open(&rec.store)?.snapshot_list(&rec.key)
}

/// Roll the writable layer back to `name` (the container is stopped).
pub fn snapshot_restore(rec: &RootfsRecord, name: &str) -> Result<()> {
    driver::open(&rec.store)?.snapshot_restore(&rec.key, name, &rec.target)
}

pub fn snapshot_delete(rec: &RootfsRecord, name: &str) -> Result<()> {
    driver::open(&rec.store)?.snapshot_delete(&rec.key, name)
}

/// Helpers for the crate's own tests. The temporary directories, mount
/// checks and loop-mounted filesystems come from the test harness
/// (berth-integration's `storage` module), shared with tests/.
#[cfg(test)]
pub(crate) mod testutil {
    use std::path::{Path, PathBuf};

    use berth_image::Digest;
    pub(crate) use berth_integration::storage::{is_mounted, mounts_under, names, TempDir};

    use crate::driver::HexDriver;

    /// A chain ID unique to this test run.
    pub(crate) fn chain(tag: &str) -> Digest {
        Digest::sha256_of(format!("{tag}-{}", crate::store::temp_suffix()).as_bytes())
    }

    /// Write `content` to `dir/rel`, making its parents.
    pub(crate) fn write(dir: &Path, rel: &str, content: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    /// `n` as 64 hex digits: a layer name.
    pub(crate) fn hex(n: u64) -> String {
        format!("{n:064x}")
    }

    /// Make layer `hex` on `parent`: write `files`, delete `delete`.
    pub(crate) fn hex_layer(
        d: &impl HexDriver,
        hex: &str,
        parent: Option<&str>,
        files: &[(&str, &str)],
        delete: &[&str],
    ) {
        d.create_layer_hex(hex, parent, &mut |dir| {
            for (p, content) in files {
                write(dir, p, content);
            }
            for p in delete {
                std::fs::remove_file(dir.join(p)).unwrap();
            }
            Ok(())
        })
        .unwrap();
    }

    /// `base/bundles/NAME`, made: a rootfs mount target.
    pub(crate) fn target(base: &Path, name: &str) -> PathBuf {
        let t = base.join("bundles").join(name);
        std::fs::create_dir_all(&t).unwrap();
        t
    }

    /// Seconds since the epoch.
    pub(crate) fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(name: &str) -> Snapshot {
        Snapshot {
            name: name.into(),
            created: String::new(),
        }
    }

    #[test]
    fn keep_last_deletes_the_oldest() {
        let all = [snap("a"), snap("b"), snap("c"), snap("d")];
        let names = |s: &[Snapshot]| s.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(beyond_keep(&all, 1)), ["a", "b", "c"]);
        assert_eq!(names(beyond_keep(&all, 3)), ["a"]);
        assert!(beyond_keep(&all, 4).is_empty());
        assert!(beyond_keep(&all, 10).is_empty());
        assert!(beyond_keep(&[], 2).is_empty());
    }

    #[test]
    fn cleanup_errors_follow_the_cause() {
        let cause = || StorageError::Invalid("mounting x: busy".into());
        assert_eq!(
            with_cleanup(cause(), Ok(())).to_string(),
            "mounting x: busy"
        );
        let both = with_cleanup(
            cause(),
            Err(StorageError::Invalid("removing y: EPERM".into())),
        );
        assert_eq!(
            both.to_string(),
            "mounting x: busy (and cleaning up after it failed: removing y: EPERM)"
        );
    }

    #[test]
    fn driver_names_round_trip() {
        for k in DriverKind::ALL {
            assert_eq!(k.as_str().parse::<DriverKind>().unwrap(), k);
        }
        let e = "ext4".parse::<DriverKind>().unwrap_err().to_string();
        assert!(e.contains("\"ext4\"") && e.contains("overlay"), "{e}");
    }
}
