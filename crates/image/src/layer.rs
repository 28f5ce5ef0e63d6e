//! One layer from blob to directory: open the blob (digest and size
//! verified), decompress, check the uncompressed stream against the
//! diff_id, unpack.

use std::io::{self, BufReader, Read};
use std::path::Path;

use crate::digest::{image_error_of, into_image_error, HashingReader};
use crate::{compress, unpack, ImageError, LayerRef, Result, Source, Stats, Whiteouts};

/// Unpack `layer` from `src` into the existing directory `dest`. The whole
/// blob is read (past the tar's end marker too) so its digest, size and
/// diff_id are all checked before this returns Ok.
///
/// When unpacking fails, the rest of the blob is still read: if the blob
/// itself is corrupt (digest or size), that is the error returned, since a
/// tar or decompression error is then only its symptom.
pub fn apply(src: &Source, layer: &LayerRef, dest: &Path, mode: Whiteouts) -> Result<Stats> {
    let blob_name = layer.digest.as_str();
    let compression = compress::for_media_type(&layer.media_type, &layer.digest)?;
    let mut blob = src.open_blob(&layer.digest, layer.size)?;

    let unpacked = (|| -> Result<(Stats, crate::Digest)> {
        let dec = compress::decoder(&mut blob, compression).map_err(|e| {
            into_image_error(e, || format!("layer {blob_name}: start decompressing"))
        })?;
        // Buffered so the tar reader's 512-byte header reads are cheap.
        let mut hashed = HashingReader::new(
            BufReader::with_capacity(1 << 20, dec),
            layer.diff_id.algorithm(),
        );
        let stats = unpack::unpack(&mut hashed, dest, mode, blob_name)?;
        // The zero blocks after the tar's end marker are part of the diff_id.
        io::copy(&mut hashed, &mut io::sink()).map_err(|e| {
            into_image_error(e, || {
                format!("layer {blob_name}: read the layer after the tar's end")
            })
        })?;
        Ok((stats, hashed.finish()))
    })();

    // The decompressor may stop before the blob's end (e.g. after the last
    // gzip member's trailer); the rest still counts for digest and size.
    let mut sink = [0u8; 64 << 10];
    let drained = loop {
        match blob.read(&mut sink) {
            Ok(0) => break Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    match drained {
        Err(e) if image_error_of(&e).is_some() => {
            return Err(into_image_error(e, String::new));
        }
        Err(e) => {
            unpacked?;
            return Err(ImageError::Io {
                what: format!("layer {blob_name}: read the blob"),
                source: e,
            });
        }
        Ok(()) => {}
    }
    let (stats, actual) = unpacked?;
    if actual != layer.diff_id {
        return Err(ImageError::DiffIdMismatch {
            digest: layer.digest.clone(),
            expected: layer.diff_id.clone(),
            actual,
        });
    }
    Ok(stats)
}
