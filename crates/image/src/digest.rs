//! Content digests (`sha256:<64 hex>`, `sha512:<128 hex>`) and a reader that
//! hashes and counts what passes through it.

use std::fmt;

use crate::{ImageError, Result};

/// A validated digest string, `algorithm:hex`.
#[derive(
    Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    /// `sha256:...` or `sha512:...` with lowercase hex of the right length.
    pub fn parse(s: &str) -> Result<Digest> {
        todo!("{s}")
    }
    pub fn algorithm(&self) -> &str {
        self.0.split_once(':').map(|(a, _)| a).unwrap_or("")
    }
    pub fn hex(&self) -> &str {
        self.0.split_once(':').map(|(_, h)| h).unwrap_or("")
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The sha256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        todo!("{}", bytes.len())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Digest {
    type Error = ImageError;
    fn try_from(s: String) -> Result<Digest> {
        Digest::parse(&s)
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

/// The OCI chain IDs of a stack of layers given bottom first:
/// ChainID(L0) = DiffID(L0), ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    todo!("{}", diff_ids.len())
}
