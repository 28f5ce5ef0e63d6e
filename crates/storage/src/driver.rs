//! The seam between the store and a filesystem: what each driver does with
//! a layer and with a container's writable layer.

use std::path::{Path, PathBuf};

use berth_image::{Digest, Whiteouts};

use crate::{DriverKind, Result, Snapshot, StorageError, StoreConfig};

pub(crate) trait Driver {
    fn kind(&self) -> DriverKind;

    /// How layers are unpacked for this driver.
    fn whiteouts(&self) -> Whiteouts;

    fn has_layer(&self, chain: &Digest) -> bool;

    /// Make layer `chain` on top of `parent` (None: the bottom layer):
    /// prepare a directory (overlay: empty; others: the parent's contents),
    /// call `fill` to unpack the layer into it, and commit it under
    /// `chain` only if `fill` succeeded; otherwise remove what was made.
    fn create_layer(
        &self,
        chain: &Digest,
        parent: Option<&Digest>,
        fill: &mut dyn FnMut(&Path) -> Result<()>,
    ) -> Result<()>;

    /// Remove a layer nothing uses any more (the store checks that).
    fn remove_layer(&self, chain: &Digest) -> Result<()>;

    /// A file of the image whose layers are `layers` (bottom first), for
    /// `bundle create` (/etc/passwd, /etc/group); None if absent.
    fn read_file(&self, layers: &[Digest], path: &Path) -> Result<Option<Vec<u8>>>;

    /// Make container `key`'s writable layer on top of `layers` and mount
    /// it at `target`.
    fn mount(&self, key: &str, layers: &[Digest], target: &Path) -> Result<()>;

    /// Unmount `target` if mounted and remove container `key`'s writable
    /// layer (and its snapshots). Idempotent: parts already gone are fine.
    fn unmount(&self, key: &str, target: &Path) -> Result<()>;

    fn snapshot_create(&self, _key: &str, _name: &str) -> Result<()> {
        Err(self.unsupported("take snapshots"))
    }
    /// Oldest first.
    fn snapshot_list(&self, _key: &str) -> Result<Vec<Snapshot>> {
        Err(self.unsupported("take snapshots"))
    }
    fn snapshot_restore(&self, _key: &str, _name: &str, _target: &Path) -> Result<()> {
        Err(self.unsupported("take snapshots"))
    }
    fn snapshot_delete(&self, _key: &str, _name: &str) -> Result<()> {
        Err(self.unsupported("take snapshots"))
    }

    fn unsupported(&self, op: &'static str) -> StorageError {
        StorageError::Unsupported {
            driver: self.kind().as_str(),
            op,
        }
    }
}

/// The driver `cfg` names, rooted in its store.
pub(crate) fn open(cfg: &StoreConfig) -> Result<Box<dyn Driver>> {
    Ok(match cfg.driver {
        DriverKind::Overlay => Box::new(crate::overlay::Overlay::new(&cfg.root)),
        DriverKind::Vfs => Box::new(crate::vfs::Vfs::new(&cfg.root)),
        DriverKind::Btrfs => Box::new(crate::btrfs::Btrfs::new(&cfg.root, &cfg.options)?),
        DriverKind::Zfs => Box::new(crate::zfs::Zfs::new(&cfg.root, &cfg.options)?),
    })
}

/// `STORE/layers/DRIVER/HEX`.
pub(crate) fn layer_path(root: &Path, kind: DriverKind, chain: &Digest) -> PathBuf {
    root.join("layers").join(kind.as_str()).join(chain.hex())
}

/// `STORE/containers/DRIVER/KEY`.
pub(crate) fn container_path(root: &Path, kind: DriverKind, key: &str) -> PathBuf {
    root.join("containers").join(kind.as_str()).join(key)
}
