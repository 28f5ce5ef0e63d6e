//! Content digests (`sha256:<64 hex>`, `sha512:<128 hex>`) and a reader that
//! hashes and counts what passes through it.

use std::fmt;
use std::io::{self, Read};

use sha2::{Digest as _, Sha256, Sha512};

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
        let bad = |why: &str| ImageError::BadDigest(s.to_string(), why.to_string());
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| bad("no ':' between algorithm and hex"))?;
        let want = match alg {
            "sha256" => 64,
            "sha512" => 128,
            "" => return Err(bad("empty algorithm")),
            _ => {
                return Err(bad(&format!(
                    "unsupported algorithm {alg:?} (sha256 and sha512 are)"
                )))
            }
        };
        if hex.len() != want {
            return Err(bad(&format!(
                "{alg} needs {want} hex digits, this has {}",
                hex.len()
            )));
        }
        if let Some(c) = hex.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(bad(&format!("{c:?} is not a lowercase hex digit")));
        }
        Ok(Digest(s.to_string()))
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
        let mut h = Hasher::new("sha256");
        h.update(bytes);
        h.finish()
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
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => Digest::sha256_of(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// sha256 or sha512, chosen by a digest's algorithm.
pub(crate) enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    /// `alg` is a validated digest's algorithm; anything but sha512 is sha256.
    pub(crate) fn new(alg: &str) -> Hasher {
        if alg == "sha512" {
            Hasher::Sha512(Sha512::new())
        } else {
            Hasher::Sha256(Sha256::new())
        }
    }
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }
    pub(crate) fn finish(self) -> Digest {
        let (alg, bytes) = match self {
            Hasher::Sha256(h) => ("sha256", h.finalize().to_vec()),
            Hasher::Sha512(h) => ("sha512", h.finalize().to_vec()),
        };
        let mut s = String::with_capacity(alg.len() + 1 + bytes.len() * 2);
        s.push_str(alg);
        s.push(':');
        for b in bytes {
            s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        Digest(s)
    }
}

/// Why a verified stream failed; kept so every later read repeats it.
#[derive(Clone)]
enum Failure {
    Digest(Digest),
    Size(u64),
}

/// A reader that hashes what passes through it and, at the end, compares
/// the digest and (when known) the byte count with what was expected. A
/// failure comes back as an `io::Error` wrapping the [`ImageError`]
/// ([`into_image_error`] gets it out) and repeats on every later read.
/// With a known size it never reads more than size+1 bytes from `inner`.
pub(crate) struct VerifyingReader<R> {
    inner: R,
    expected: Digest,
    size: Option<u64>,
    hasher: Option<Hasher>,
    count: u64,
    failure: Option<Failure>,
}

impl<R: Read> VerifyingReader<R> {
    pub(crate) fn new(inner: R, expected: Digest, size: Option<u64>) -> Self {
        let hasher = Some(Hasher::new(expected.algorithm()));
        VerifyingReader {
            inner,
            expected,
            size,
            hasher,
            count: 0,
            failure: None,
        }
    }

    fn error(&self, f: &Failure) -> io::Error {
        let e = match f {
            Failure::Digest(actual) => ImageError::DigestMismatch {
                digest: self.expected.clone(),
                actual: actual.clone(),
            },
            Failure::Size(actual) => ImageError::SizeMismatch {
                digest: self.expected.clone(),
                expected: self.size.unwrap_or(0),
                actual: *actual,
            },
        };
        io::Error::other(e)
    }

    /// End of stream: compare; Ok(()) when everything matched.
    fn finish(&mut self) -> io::Result<()> {
        let Some(h) = self.hasher.take() else {
            return match &self.failure {
                Some(f) => Err(self.error(f)),
                None => Ok(()),
            };
        };
        let failure = match self.size {
            Some(size) if size != self.count => Some(Failure::Size(self.count)),
            _ => {
                let actual = h.finish();
                (actual != self.expected).then_some(Failure::Digest(actual))
            }
        };
        match failure {
            Some(f) => {
                let e = self.error(&f);
                self.failure = Some(f);
                Err(e)
            }
            None => Ok(()),
        }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.hasher.is_none() {
            self.finish()?;
            return Ok(0);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        // Never read more than one byte past the descriptor's size: that
        // byte is enough to know the blob is too long.
        let limit = match self.size {
            Some(size) => {
                let left = size.saturating_add(1).saturating_sub(self.count);
                usize::try_from(left).unwrap_or(usize::MAX).min(buf.len())
            }
            None => buf.len(),
        };
        if limit == 0 {
            self.finish()?;
            return Ok(0);
        }
        let n = self.inner.read(&mut buf[..limit])?;
        if n == 0 {
            self.finish()?;
            return Ok(0);
        }
        self.count += n as u64;
        if let Some(size) = self.size {
            if self.count > size {
                // Too long: report it now rather than hand out the extra byte.
                self.hasher = None;
                let f = Failure::Size(self.count);
                let e = self.error(&f);
                self.failure = Some(f);
                return Err(e);
            }
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// A reader that hashes what passes through it (the diff_id of a layer).
pub(crate) struct HashingReader<R> {
    pub(crate) inner: R,
    hasher: Hasher,
    pub(crate) count: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R, alg: &str) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(alg),
            count: 0,
        }
    }
    pub(crate) fn finish(self) -> Digest {
        self.hasher.finish()
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// The [`ImageError`] a verifying reader put inside an `io::Error`, if any.
pub(crate) fn image_error_of(e: &io::Error) -> Option<&ImageError> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<ImageError>())
}

/// Turn an io::Error back into the ImageError inside it, or wrap it.
pub(crate) fn into_image_error(e: io::Error, what: impl FnOnce() -> String) -> ImageError {
    if image_error_of(&e).is_some() {
        if let Ok(inner) = e.into_inner().unwrap().downcast::<ImageError>() {
            return *inner;
        }
        unreachable!("checked above");
    }
    ImageError::Io {
        what: what(),
        source: e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parse_accepts_and_refuses() {
        assert!(Digest::parse(EMPTY).is_ok());
        let d512 = format!("sha512:{}", "a".repeat(128));
        assert_eq!(Digest::parse(&d512).unwrap().algorithm(), "sha512");
        for (bad, why) in [
            ("sha256", "no ':'"),
            ("md5:abcd", "unsupported algorithm"),
            (":abcd", "empty algorithm"),
            ("sha256:abc", "needs 64 hex digits, this has 3"),
            (
                &EMPTY.to_uppercase().replace("SHA256", "sha256"),
                "lowercase hex",
            ),
            (&format!("sha256:{}", "g".repeat(64)), "'g'"),
            (&format!("sha512:{}", "a".repeat(64)), "needs 128"),
        ] {
            let e = Digest::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn sha256_of_empty() {
        assert_eq!(Digest::sha256_of(b"").as_str(), EMPTY);
        let d = Digest::parse(EMPTY).unwrap();
        assert_eq!(d.hex().len(), 64);
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:x\"").is_err());
    }

    #[test]
    fn chain_ids_by_hand() {
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let c = Digest::sha256_of(b"c");
        // Computed in a shell: A=$(printf a | sha256sum) etc., then
        // printf "sha256:$A sha256:$B" | sha256sum, and likewise with C.
        let ids = chain_ids(&[a.clone(), b, c]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1].as_str(), CHAIN_AB);
        assert_eq!(ids[2].as_str(), CHAIN_ABC);
        assert!(chain_ids(&[]).is_empty());
    }

    const CHAIN_AB: &str =
        "sha256:51c0c8ace48498d6f5fee6b0592cc06f2da0f3cbe09c5a34a97dce85c3889676";
    const CHAIN_ABC: &str =
        "sha256:2fce7f8ce91bcf0a1428b36e1024639fdbd9469eea762dba98aa749631885106";

    fn read_all(r: &mut impl Read) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        r.read_to_end(&mut v).map(|_| v)
    }

    #[test]
    fn verifying_reader() {
        let data = b"hello world".to_vec();
        let d = Digest::sha256_of(&data);
        let mut ok = VerifyingReader::new(&data[..], d.clone(), Some(11));
        assert_eq!(read_all(&mut ok).unwrap(), data);

        let mut bad = VerifyingReader::new(&b"hello worle"[..], d.clone(), Some(11));
        let e = read_all(&mut bad).unwrap_err();
        assert!(matches!(
            image_error_of(&e),
            Some(ImageError::DigestMismatch { .. })
        ));
        // Sticky: reading again repeats the failure.
        let e = read_all(&mut bad).unwrap_err();
        let e = into_image_error(e, String::new);
        assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");

        let mut short = VerifyingReader::new(&data[..5], d.clone(), Some(11));
        let e = into_image_error(read_all(&mut short).unwrap_err(), String::new);
        assert!(
            matches!(
                e,
                ImageError::SizeMismatch {
                    expected: 11,
                    actual: 5,
                    ..
                }
            ),
            "{e}"
        );

        // A longer blob stops at size+1 bytes.
        let long = vec![7u8; 1 << 20];
        let mut src = &long[..];
        let mut r = VerifyingReader::new(&mut src, d.clone(), Some(11));
        let e = into_image_error(read_all(&mut r).unwrap_err(), String::new);
        assert!(
            matches!(
                e,
                ImageError::SizeMismatch {
                    expected: 11,
                    actual: 12,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(src.len(), (1 << 20) - 12);

        let d512 = {
            let mut h = Hasher::new("sha512");
            h.update(&data);
            h.finish()
        };
        assert_eq!(d512.hex().len(), 128);
        let mut r = VerifyingReader::new(&data[..], d512, None);
        assert_eq!(read_all(&mut r).unwrap(), data);
    }
}
