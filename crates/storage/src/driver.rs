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

    /// Which of `layers` (bottom first) a container's rootfs is made from
    /// and so must exist: every one for overlay (the default); only the
    /// top for drivers whose layers each hold the whole tree (checking one
    /// instead of a hundred is one `zfs list` instead of a hundred).
    fn mounted_layers<'a>(&self, layers: &'a [Digest]) -> &'a [Digest] {
        layers
    }

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

    /// Every layer this driver holds in the store (for the store's sweep
    /// of layers nothing uses), whole or not: one left half-made under its
    /// final name is listed too, so it can be removed. A layer comes after
    /// the layer it was made from where removal order matters (zfs: a
    /// clone after its origin); remove them in reverse.
    fn layers(&self) -> Result<Vec<Digest>> {
        Err(self.unsupported("list its layers"))
    }

    /// Whether container `key` has anything of its own here (a writable
    /// layer, a clone, a snapshot directory): after a failed mount, the
    /// store keeps the container's reference while something is left.
    /// Unknown (the default) counts as yes.
    fn has_container(&self, _key: &str) -> Result<bool> {
        Ok(true)
    }

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

/// The chain ID a layer's file or dataset name (its hex) stands for:
/// 64 hex digits are sha256, 128 sha512; anything else is not a layer.
pub(crate) fn chain_of_hex(name: &str) -> Option<Digest> {
    let alg = match name.len() {
        64 => "sha256",
        128 => "sha512",
        _ => return None,
    };
    if !name
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    Digest::parse(&format!("{alg}:{name}")).ok()
}

/// The layers named in directory `dir` (`layers/DRIVER`) for which `is_layer`
/// holds; a missing directory has none.
pub(crate) fn layers_in_dir(dir: &Path, is_layer: impl Fn(&Path) -> bool) -> Result<Vec<Digest>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(crate::io_err(format!("listing {}", dir.display()))(e)),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(crate::io_err(format!("listing {}", dir.display())))?;
        let name = e.file_name();
        if let Some(d) = name.to_str().and_then(chain_of_hex) {
            if is_layer(&e.path()) {
                out.push(d);
            }
        }
    }
    out.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Ok(out)
}

/// `STORE/layers/DRIVER/HEX`.
pub(crate) fn layer_path(root: &Path, kind: DriverKind, chain: &Digest) -> PathBuf {
    root.join("layers").join(kind.as_str()).join(chain.hex())
}

/// `STORE/containers/DRIVER/KEY`.
pub(crate) fn container_path(root: &Path, kind: DriverKind, key: &str) -> PathBuf {
    root.join("containers").join(kind.as_str()).join(key)
}

/// The top layer alone (none of none): all a driver whose layers each
/// hold the whole tree needs for a container.
pub(crate) fn top_layer(layers: &[Digest]) -> &[Digest] {
    &layers[layers.len().saturating_sub(1)..]
}

/// A driver whose layers each hold the whole tree (made from a snapshot
/// of the parent, whiteouts applied) and are named by their chain ID's
/// hex: zfs datasets, btrfs subvolumes. Its [`Driver`] comes from this.
pub(crate) trait HexDriver {
    const KIND: DriverKind;
    fn has_layer_hex(&self, hex: &str) -> bool;
    fn create_layer_hex(
        &self,
        hex: &str,
        parent: Option<&str>,
        fill: &mut dyn FnMut(&Path) -> Result<()>,
    ) -> Result<()>;
    fn remove_layer_hex(&self, hex: &str) -> Result<()>;
    /// See [`Driver::layers`].
    fn layers_ordered(&self) -> Result<Vec<Digest>>;
    /// See [`Driver::has_container`].
    fn has_container_key(&self, key: &str) -> Result<bool>;
    /// `layers` bottom first.
    fn read_file_hex(&self, layers: &[&str], path: &Path) -> Result<Option<Vec<u8>>>;
    fn mount_hex(&self, key: &str, layers: &[&str], target: &Path) -> Result<()>;
    fn unmount_key(&self, key: &str, target: &Path) -> Result<()>;
    fn snapshot_create_key(&self, key: &str, name: &str) -> Result<()>;
    fn snapshot_list_key(&self, key: &str) -> Result<Vec<Snapshot>>;
    fn snapshot_restore_key(&self, key: &str, name: &str, target: &Path) -> Result<()>;
    fn snapshot_delete_key(&self, key: &str, name: &str) -> Result<()>;
}

fn hexes(layers: &[Digest]) -> Vec<&str> {
    layers.iter().map(|d| d.hex()).collect()
}

impl<T: HexDriver> Driver for T {
    fn kind(&self) -> DriverKind {
        T::KIND
    }
    fn whiteouts(&self) -> Whiteouts {
        Whiteouts::Apply
    }
    fn has_layer(&self, chain: &Digest) -> bool {
        self.has_layer_hex(chain.hex())
    }
    fn mounted_layers<'a>(&self, layers: &'a [Digest]) -> &'a [Digest] {
        top_layer(layers)
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
    fn layers(&self) -> Result<Vec<Digest>> {
        self.layers_ordered()
    }
    fn has_container(&self, key: &str) -> Result<bool> {
        self.has_container_key(key)
    }
    fn read_file(&self, layers: &[Digest], path: &Path) -> Result<Option<Vec<u8>>> {
        self.read_file_hex(&hexes(layers), path)
    }
    fn mount(&self, key: &str, layers: &[Digest], target: &Path) -> Result<()> {
        self.mount_hex(key, &hexes(layers), target)
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
