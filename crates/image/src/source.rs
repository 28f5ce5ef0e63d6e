//! Where an image comes from: an OCI image layout directory, an OCI archive
//! (a tar of a layout, read in place by offset, never extracted), or a
//! `docker save` tar (manifest.json; its layers addressed by their diff_id).

use std::io::Read;
use std::path::Path;

use crate::{Digest, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A directory with oci-layout, index.json and blobs/.
    Layout,
    /// A tar of an OCI image layout.
    OciArchive,
    /// A `docker save` tar (manifest.json, without index.json).
    DockerSave,
}

pub struct Source {
    kind: SourceKind,
}

impl Source {
    /// Open `path`, telling the three kinds apart by what they hold.
    pub fn open(path: &Path) -> Result<Source> {
        todo!("{}", path.display())
    }

    pub fn kind(&self) -> SourceKind {
        self.kind
    }

    /// A small blob (index, manifest, config) read whole and verified
    /// against `digest` and, when known, `size`.
    pub fn read_blob(&self, digest: &Digest, size: Option<u64>) -> Result<Vec<u8>> {
        todo!("{digest} {size:?}")
    }

    /// A blob as a stream. The stream verifies as it goes: reading to its
    /// end returns an error (ImageError inside the io::Error) if the digest
    /// or `size` does not match.
    pub fn open_blob(&self, digest: &Digest, size: Option<u64>) -> Result<Box<dyn Read + '_>> {
        todo!("{digest} {size:?}")
    }
}
