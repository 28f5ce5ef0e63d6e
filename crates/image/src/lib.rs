//! OCI images as berth reads them: an image layout directory, an OCI archive
//! (a tar of a layout) or a `docker save` tar; the manifest for this
//! platform; every blob's digest and size verified while it is read; and
//! layers unpacked safely (no entry lands outside its layer, whiteouts as
//! overlay whiteouts or as deletions).
//!
//! The flow a caller follows: [`Source::open`] → [`manifest::resolve`] →
//! for each [`LayerRef`], [`layer::apply`] into a directory the caller made.

pub mod digest;
pub mod layer;
pub mod manifest;
pub mod source;
pub mod unpack;

mod compress;
mod frame;

pub use digest::{chain_ids, Digest};
pub use manifest::{resolve, LayerRef, Platform, Resolved};
pub use source::{Source, SourceKind};
pub use unpack::{Stats, Whiteouts};

/// Everything that can go wrong reading or unpacking an image. Each message
/// names the blob (by digest) and, for an entry, the entry's path.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    /// A digest string that is not `algorithm:hex` with a known algorithm.
    #[error("invalid digest {0:?}: {1}")]
    BadDigest(String, String),
    #[error("blob {digest}: digest mismatch: content hashes to {actual}")]
    DigestMismatch { digest: Digest, actual: Digest },
    #[error("blob {digest}: size mismatch: descriptor says {expected} bytes, blob has {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("layer {digest}: diff_id mismatch: the uncompressed layer hashes to {actual}, the config says {expected}")]
    DiffIdMismatch {
        digest: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("blob {0}: not in the image")]
    MissingBlob(Digest),
    /// index.json, a manifest, a config or manifest.json that is not what
    /// the image spec says, or a layer's tar stream that berth refuses to
    /// read on (`what` names the file or blob).
    #[error("{what}: {msg}")]
    Malformed { what: String, msg: String },
    #[error("no manifest for {wanted} in the image (it has: {available})")]
    NoPlatform { wanted: String, available: String },
    #[error("{0}")]
    Unsupported(String),
    /// An entry that would write outside its layer, or that cannot be
    /// unpacked: `blob` is the layer's digest, `entry` the tar path.
    #[error("layer {blob}: entry {entry:?}: {msg}")]
    Entry {
        blob: String,
        entry: String,
        msg: String,
    },
}

pub type Result<T> = std::result::Result<T, ImageError>;

pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageError {
    let what = what.into();
    move |source| ImageError::Io { what, source }
}
