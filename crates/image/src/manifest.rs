//! index.json → the manifest for this platform → its config and layers
//! (oci-spec's image types), or the same read from a docker-save
//! manifest.json (an OCI manifest is synthesised for it).

use crate::{Digest, Result, Source};

/// The platform to pick from an index: `linux/amd64` on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform berth runs on, in GOARCH names (x86_64 → amd64, aarch64 → arm64).
    pub fn host() -> Platform {
        todo!()
    }
}

/// One layer of the chosen manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerRef {
    /// The blob's digest (for docker-save tars: the diff_id).
    pub digest: Digest,
    /// The blob's size from the descriptor (None when the source has none).
    pub size: Option<u64>,
    pub media_type: String,
    /// The uncompressed layer's digest, from the config's rootfs.diff_ids.
    pub diff_id: Digest,
}

/// An image resolved to one manifest.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub manifest_digest: Digest,
    /// The manifest's bytes as stored (synthesised for docker-save).
    pub manifest_json: Vec<u8>,
    pub config_digest: Digest,
    pub config_json: Vec<u8>,
    pub config: oci_spec::image::ImageConfiguration,
    /// Bottom layer first.
    pub layers: Vec<LayerRef>,
    /// The name the source gives it: the index's
    /// `org.opencontainers.image.ref.name` annotation, or a docker RepoTag.
    pub ref_name: Option<String>,
}

/// Pick the manifest for `platform` (and, when the source holds several
/// images, the one called `name`), read and verify it and its config.
pub fn resolve(src: &Source, platform: &Platform, name: Option<&str>) -> Result<Resolved> {
    todo!("{:?} {platform:?} {name:?}", src.kind())
}
