//! The image database (images.json, blobs/) and import: resolve, unpack
//! each missing layer once, record the image.

use std::path::Path;

use berth_image::Digest;

use crate::{Result, RootfsRecord, StoreConfig};

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageRecord {
    /// `name:tag`.
    pub name: String,
    pub manifest: Digest,
    pub config: Digest,
    /// Chain IDs, bottom layer first.
    pub layers: Vec<Digest>,
    pub diff_ids: Vec<Digest>,
    /// Sum of the layers' compressed sizes.
    pub size: u64,
    /// RFC 3339 UTC, when imported.
    pub imported: String,
}

pub struct Store {
    cfg: StoreConfig,
}

impl Store {
    /// Open (creating the directories if needed) the store `cfg` names.
    pub fn open(cfg: StoreConfig) -> Result<Store> {
        Ok(Store { cfg })
    }

    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    /// Import an image layout directory, OCI archive or docker-save tar.
    /// `name` (`NAME:TAG`, `:latest` added when there is no tag) overrides
    /// the name the source carries.
    pub fn import(&self, path: &Path, name: Option<&str>) -> Result<ImageRecord> {
        todo!("{} {name:?}", path.display())
    }

    /// Every image, sorted by name.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        todo!()
    }

    /// `NAME:TAG` (`:latest` when no tag), `NAME@sha256:…`, or a manifest
    /// digest or unique prefix of its hex.
    pub fn image(&self, reference: &str) -> Result<ImageRecord> {
        todo!("{reference}")
    }

    /// The image's config blob, parsed.
    pub fn image_config(&self, img: &ImageRecord) -> Result<oci_spec::image::ImageConfiguration> {
        todo!("{}", img.name)
    }

    /// Remove the name; layers no other image or container uses go too.
    pub fn remove_image(&self, reference: &str) -> Result<ImageRecord> {
        todo!("{reference}")
    }

    /// A file from the image's filesystem (None if it has none).
    pub fn read_file(&self, img: &ImageRecord, path: &Path) -> Result<Option<Vec<u8>>> {
        todo!("{} {}", img.name, path.display())
    }

    /// What container `key`'s rootfs will be, from image `reference`
    /// (pinned to `manifest` when given), mounted at `target`. Checks the
    /// image and its layers are in the store for this driver; changes
    /// nothing. The caller saves the record, then calls [`crate::mount_rootfs`].
    pub fn plan_rootfs(
        &self,
        key: &str,
        reference: &str,
        manifest: Option<&Digest>,
        target: &Path,
    ) -> Result<RootfsRecord> {
        todo!("{key} {reference} {manifest:?} {}", target.display())
    }
}
