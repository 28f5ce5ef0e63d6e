//! Test helpers: layer tars (including names tar::Builder refuses), image
//! layouts, archives and docker-save tars, all in unique temp dirs that
//! are removed on drop.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

use berth_image::Digest;
use serde_json::{json, Value};

pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZST: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// A unique directory under /tmp, removed on drop (also when a test fails).
pub fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("berth-image-test-")
        .tempdir_in("/tmp")
        .unwrap()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 1).unwrap()
}

/// A layer tar under construction.
pub struct Tar {
    b: tar::Builder<Vec<u8>>,
}

fn header(kind: tar::EntryType, mode: u32, uid: u64, gid: u64, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_size(size);
    h.set_mtime(1_600_000_000);
    h
}

impl Default for Tar {
    fn default() -> Self {
        Self::new()
    }
}

impl Tar {
    pub fn new() -> Tar {
        Tar {
            b: tar::Builder::new(Vec::new()),
        }
    }
    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        let mut h = header(tar::EntryType::Directory, mode, 0, 0, 0);
        self.b.append_data(&mut h, path, &[][..]).unwrap();
        self
    }
    pub fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
        self.file_owned(path, data, 0o644, 0, 0)
    }
    pub fn file_owned(
        &mut self,
        path: &str,
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> &mut Self {
        let mut h = header(tar::EntryType::Regular, mode, uid, gid, data.len() as u64);
        self.b.append_data(&mut h, path, data).unwrap();
        self
    }
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0, 0, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }
    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = header(tar::EntryType::Link, 0o644, 0, 0, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }
    pub fn node(
        &mut self,
        path: &str,
        kind: tar::EntryType,
        major: u32,
        minor: u32,
        mode: u32,
    ) -> &mut Self {
        let mut h = header(kind, mode, 0, 0, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.b.append_data(&mut h, path, &[][..]).unwrap();
        self
    }
    /// PAX records for the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.b
            .append_pax_extensions(records.iter().copied())
            .unwrap();
        self
    }
    /// An entry whose name (and link name) bytes are written as given,
    /// bypassing tar::Builder's checks.
    pub fn raw(
        &mut self,
        kind: tar::EntryType,
        name: &[u8],
        link: &[u8],
        data: &[u8],
    ) -> &mut Self {
        let mut h = header(kind, 0o644, 0, 0, data.len() as u64);
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name);
        old.linkname = [0; 100];
        old.linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }
    /// A GNU sparse file (old GNU format): `chunks` are (offset, data) in
    /// the file, `real` its size. More than four chunks go into extension
    /// headers (21 each) as GNU tar writes them.
    pub fn sparse(&mut self, path: &str, real: u64, chunks: &[(u64, &[u8])]) -> &mut Self {
        let map: Vec<(u64, u64)> = chunks.iter().map(|(o, d)| (*o, d.len() as u64)).collect();
        let data: Vec<u8> = chunks.iter().flat_map(|(_, d)| d.iter().copied()).collect();
        self.sparse_raw(path, real, data.len() as u64, &map, &data)
    }
    /// A GNU sparse entry exactly as given: `size` is the header's size
    /// field (the archived data), `map` the (offset, length) list, `data`
    /// what follows the headers (padded to 512 bytes).
    pub fn sparse_raw(
        &mut self,
        path: &str,
        real: u64,
        size: u64,
        map: &[(u64, u64)],
        data: &[u8],
    ) -> &mut Self {
        let mut h = header(tar::EntryType::GNUSparse, 0o640, 7, 8, size);
        let gnu = h.as_gnu_mut().unwrap();
        gnu.set_real_size(real);
        let (first, rest) = map.split_at(map.len().min(4));
        for (s, (o, l)) in gnu.sparse.iter_mut().zip(first) {
            s.set_offset(*o);
            s.set_length(*l);
        }
        gnu.set_is_extended(!rest.is_empty());
        let mut payload = Vec::new();
        let exts: Vec<&[(u64, u64)]> = rest.chunks(21).collect();
        for (i, part) in exts.iter().enumerate() {
            let mut ext = tar::GnuExtSparseHeader::new();
            for (s, (o, l)) in ext.sparse.iter_mut().zip(part.iter()) {
                s.set_offset(*o);
                s.set_length(*l);
            }
            ext.set_is_extended(i + 1 < exts.len());
            payload.extend_from_slice(ext.as_bytes());
        }
        payload.extend_from_slice(data);
        self.b.append_data(&mut h, path, &payload[..]).unwrap();
        self
    }
    pub fn build(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.b, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

/// An OCI image layout directory being written.
pub struct Layout {
    pub root: PathBuf,
}

pub fn digest_of(bytes: &[u8]) -> String {
    Digest::sha256_of(bytes).to_string()
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        std::fs::create_dir_all(root.join("blobs/sha256")).unwrap();
        std::fs::write(
            root.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .unwrap();
        Layout {
            root: root.to_path_buf(),
        }
    }
    /// Store `bytes`; a descriptor for them.
    pub fn blob(&self, media_type: &str, bytes: &[u8]) -> Value {
        let d = digest_of(bytes);
        let hex = d.strip_prefix("sha256:").unwrap();
        std::fs::write(self.root.join("blobs/sha256").join(hex), bytes).unwrap();
        json!({"mediaType": media_type, "digest": d, "size": bytes.len()})
    }
    /// An image: config for os/arch with the layers' diff_ids, manifest.
    /// `layers`: (uncompressed tar, stored blob, media type).
    pub fn image(&self, os: &str, arch: &str, layers: &[(Vec<u8>, Vec<u8>, &str)]) -> Value {
        let diff_ids: Vec<String> = layers.iter().map(|l| digest_of(&l.0)).collect();
        let config = json!({
            "architecture": arch, "os": os,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "config": {"Env": ["PATH=/bin"]}
        });
        let cdesc = self.blob(OCI_CONFIG, &serde_json::to_vec(&config).unwrap());
        let ldescs: Vec<Value> = layers.iter().map(|l| self.blob(l.2, &l.1)).collect();
        let manifest = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": cdesc, "layers": ldescs
        });
        self.blob(OCI_MANIFEST, &serde_json::to_vec(&manifest).unwrap())
    }
    pub fn index(&self, manifests: Vec<Value>) {
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        std::fs::write(
            self.root.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .unwrap();
    }
}

/// Add a platform (and optional ref name) to a manifest descriptor.
pub fn with_platform(mut desc: Value, os: &str, arch: &str) -> Value {
    desc["platform"] = json!({"os": os, "architecture": arch});
    desc
}

pub fn with_ref(mut desc: Value, name: &str) -> Value {
    desc["annotations"] = json!({"org.opencontainers.image.ref.name": name});
    desc
}

/// A tar of the directory `dir`, entries named `./...`.
pub fn tar_of_dir(dir: &Path, out: &Path) {
    let f = std::fs::File::create(out).unwrap();
    let mut b = tar::Builder::new(f);
    b.append_dir_all(".", dir).unwrap();
    b.into_inner().unwrap();
}

pub fn host_arch() -> String {
    berth_image::Platform::host().architecture
}

/// A single-layer OCI layout at `dir` for this platform.
pub fn simple_layout(dir: &Path, layer_tar: Vec<u8>, blob: Vec<u8>, media_type: &str) -> Layout {
    let l = Layout::new(dir);
    let m = l.image("linux", &host_arch(), &[(layer_tar, blob, media_type)]);
    l.index(vec![with_platform(m, "linux", &host_arch())]);
    l
}
