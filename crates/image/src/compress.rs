//! Layer decompression chosen by media type, and by magic bytes when the
//! media type does not say (docker-save layers, `application/octet-stream`).

use std::io::{self, BufReader, Read};

use crate::{Digest, ImageError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
    /// The media type does not say: look at the first bytes.
    Sniff,
}

/// How a layer with media type `media_type` is compressed. An unknown
/// media type is Unsupported (naming `blob`).
pub(crate) fn for_media_type(media_type: &str, blob: &Digest) -> Result<Compression> {
    Ok(match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar" => Compression::None,
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd" => Compression::Zstd,
        "application/octet-stream" | "" => Compression::Sniff,
        other => {
            return Err(ImageError::Unsupported(format!(
                "layer {blob}: media type {other:?} is not a layer berth can unpack \
                 (tar, tar+gzip, tar+zstd)"
            )))
        }
    })
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The decompressed stream of `r`.
pub(crate) fn decoder<'a>(mut r: impl Read + 'a, c: Compression) -> io::Result<Box<dyn Read + 'a>> {
    if c != Compression::Sniff {
        return build(r, c);
    }
    // Read up to four bytes, then put them back in front.
    let mut head = [0u8; 4];
    let n = crate::frame::read_full(&mut r, &mut head)?;
    let kind = if n >= 2 && head[..2] == GZIP_MAGIC {
        Compression::Gzip
    } else if n == 4 && head == ZSTD_MAGIC {
        Compression::Zstd
    } else {
        Compression::None
    };
    build(io::Cursor::new(head).take(n as u64).chain(r), kind)
}

fn build<'a>(r: impl Read + 'a, c: Compression) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match c {
        Compression::None | Compression::Sniff => Box::new(r),
        // Multi-member gzip (pigz, concatenated streams) is one stream.
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(
            BufReader::with_capacity(256 << 10, r),
        )),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(
            BufReader::with_capacity(256 << 10, r),
        )?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn blob() -> Digest {
        Digest::sha256_of(b"x")
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn decode(data: &[u8], c: Compression) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        decoder(data, c)?.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn media_types() {
        let b = blob();
        for (mt, c) in [
            ("application/vnd.oci.image.layer.v1.tar", Compression::None),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+zstd",
                Compression::Zstd,
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Compression::Gzip,
            ),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                Compression::Gzip,
            ),
            ("application/octet-stream", Compression::Sniff),
        ] {
            assert_eq!(for_media_type(mt, &b).unwrap(), c, "{mt}");
        }
        let e = for_media_type("application/vnd.oci.image.layer.v1.tar+bzip2", &b)
            .unwrap_err()
            .to_string();
        assert!(e.contains(b.as_str()) && e.contains("tar+bzip2"), "{e}");
    }

    #[test]
    fn multi_member_gzip_and_sniffing() {
        let mut two = gzip(b"hello ");
        two.extend(gzip(b"world"));
        assert_eq!(decode(&two, Compression::Gzip).unwrap(), b"hello world");
        assert_eq!(decode(&two, Compression::Sniff).unwrap(), b"hello world");
        let z = zstd::encode_all(&b"zstd data"[..], 3).unwrap();
        assert_eq!(decode(&z, Compression::Sniff).unwrap(), b"zstd data");
        assert_eq!(decode(&z, Compression::Zstd).unwrap(), b"zstd data");
        assert_eq!(decode(b"pla", Compression::Sniff).unwrap(), b"pla");
        assert_eq!(decode(b"", Compression::Sniff).unwrap(), b"");
        let t = gzip(&[5u8; 100_000]);
        assert!(decode(&t[..t.len() / 2], Compression::Gzip).is_err());
    }
}
