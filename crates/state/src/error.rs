//! The one error type of this crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while reading or changing container state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The id is not one berth accepts; `reason` says what is allowed.
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },

    /// `create` found a container with this id already (worded as runc words it).
    #[error("container with id exists: {0}")]
    Exists(String),

    /// No container with this id under the root (worded as runc words it).
    #[error("container does not exist")]
    NotFound(String),

    /// `destroy` found a mount at or below the container directory.
    #[error("cannot remove {}: {} is still mounted", path.display(), mount.display())]
    Busy { path: PathBuf, mount: PathBuf },

    /// A file-system operation on `path` failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// `state.json` exists but does not parse (or a record does not serialize).
    #[error("state file {}: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl StateError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StateError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl StateError {
    /// The container directory exists but holds no record yet: berth was
    /// killed between making the directory and its first save.
    pub fn is_missing_record(&self) -> bool {
        matches!(self, StateError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}
