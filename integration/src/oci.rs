//! Test images built in memory: layers as tars (including entries no honest
//! tool writes), written out as an OCI image layout, an OCI archive or a
//! `docker save` tar. No registry is involved.

use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    fn media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    fn compress(self, tar: &[u8]) -> Vec<u8> {
        use std::io::Write;
        match self {
            Compression::None => tar.to_vec(),
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(tar).unwrap();
                e.finish().unwrap()
            }
            Compression::Zstd => zstd::encode_all(tar, 1).unwrap(),
        }
    }
}

/// `sha256:HEX` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in hash {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// An uncompressed layer tar, built entry by entry.
#[derive(Default)]
pub struct LayerBuilder {
    entries: Vec<Entry>,
}

struct Entry {
    name: Vec<u8>,
    kind: tar::EntryType,
    link: Option<Vec<u8>>,
    content: Vec<u8>,
    mode: u32,
    uid: u64,
    gid: u64,
}

impl LayerBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn push(mut self, e: Entry) -> Self {
        self.entries.push(e);
        self
    }

    fn entry(name: &str, kind: tar::EntryType, mode: u32) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            kind,
            link: None,
            content: Vec::new(),
            mode,
            uid: 0,
            gid: 0,
        }
    }

    pub fn dir(self, path: &str, mode: u32) -> Self {
        self.push(Self::entry(path, tar::EntryType::Directory, mode))
    }

    pub fn file(self, path: &str, content: &[u8], mode: u32) -> Self {
        self.file_owned(path, content, mode, 0, 0)
    }

    pub fn file_owned(self, path: &str, content: &[u8], mode: u32, uid: u64, gid: u64) -> Self {
        let mut e = Self::entry(path, tar::EntryType::Regular, mode);
        e.content = content.to_vec();
        e.uid = uid;
        e.gid = gid;
        self.push(e)
    }

    pub fn symlink(self, path: &str, target: &str) -> Self {
        let mut e = Self::entry(path, tar::EntryType::Symlink, 0o777);
        e.link = Some(target.as_bytes().to_vec());
        self.push(e)
    }

    pub fn hardlink(self, path: &str, target: &str) -> Self {
        let mut e = Self::entry(path, tar::EntryType::Link, 0o644);
        e.link = Some(target.as_bytes().to_vec());
        self.push(e)
    }

    /// A whiteout hiding `path` of the layers below: entry `DIR/.wh.NAME`.
    pub fn whiteout(self, path: &str) -> Self {
        let (dir, name) = match path.rsplit_once('/') {
            Some((d, n)) => (format!("{d}/"), n),
            None => (String::new(), path),
        };
        self.file(&format!("{dir}.wh.{name}"), b"", 0o644)
    }

    /// Hide everything the layers below have in `dir`: `DIR/.wh..wh..opq`.
    pub fn opaque(self, dir: &str) -> Self {
        self.file(
            &format!("{}/.wh..wh..opq", dir.trim_end_matches('/')),
            b"",
            0o644,
        )
    }

    /// An entry written exactly as given: no path or link checks, so tests
    /// can make the layers an attacker would.
    pub fn raw(
        self,
        name: &[u8],
        kind: tar::EntryType,
        link: Option<&[u8]>,
        content: &[u8],
    ) -> Self {
        self.push(Entry {
            name: name.to_vec(),
            kind,
            link: link.map(<[u8]>::to_vec),
            content: content.to_vec(),
            mode: 0o644,
            uid: 0,
            gid: 0,
        })
    }

    /// A directory tree (e.g. the busybox test rootfs) as a layer: files,
    /// directories and symlinks with their modes; owners as on disk.
    pub fn from_dir(root: &Path) -> Self {
        use std::os::unix::fs::MetadataExt;
        let mut b = LayerBuilder::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let mut names: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            for p in names {
                let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_string();
                let md = std::fs::symlink_metadata(&p).unwrap();
                let mode = md.mode() & 0o7777;
                let ft = md.file_type();
                let mut e = if ft.is_dir() {
                    stack.push(p.clone());
                    Self::entry(&rel, tar::EntryType::Directory, mode)
                } else if ft.is_symlink() {
                    let mut e = Self::entry(&rel, tar::EntryType::Symlink, 0o777);
                    e.link = Some(
                        std::fs::read_link(&p)
                            .unwrap()
                            .into_os_string()
                            .into_encoded_bytes(),
                    );
                    e
                } else if ft.is_file() {
                    let mut e = Self::entry(&rel, tar::EntryType::Regular, mode);
                    e.content = std::fs::read(&p).unwrap();
                    e
                } else {
                    continue;
                };
                e.uid = u64::from(md.uid());
                e.gid = u64::from(md.gid());
                b.entries.push(e);
            }
        }
        b
    }

    /// The layer as an uncompressed tar (GNU headers, long names through
    /// GNU long-name entries, the two zero blocks at the end).
    pub fn tar(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for e in &self.entries {
            if e.name.len() > 100 {
                long_name(&mut out, tar::EntryType::GNULongName, &e.name);
            }
            if e.link.as_ref().is_some_and(|l| l.len() > 100) {
                long_name(
                    &mut out,
                    tar::EntryType::GNULongLink,
                    e.link.as_ref().unwrap(),
                );
            }
            let mut h = tar::Header::new_gnu();
            set_bytes(&mut h.as_old_mut().name, &e.name);
            if let Some(l) = &e.link {
                set_bytes(&mut h.as_old_mut().linkname, l);
            }
            h.set_entry_type(e.kind);
            h.set_mode(e.mode);
            h.set_uid(e.uid);
            h.set_gid(e.gid);
            h.set_mtime(1_700_000_000);
            h.set_size(e.content.len() as u64);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            pad_into(&mut out, &e.content);
        }
        out.extend_from_slice(&[0u8; 1024]);
        out
    }
}

/// Copy up to the field's size (the rest stays zero).
fn set_bytes(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

fn long_name(out: &mut Vec<u8>, kind: tar::EntryType, name: &[u8]) {
    let mut h = tar::Header::new_gnu();
    set_bytes(&mut h.as_old_mut().name, b"././@LongLink");
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(name.len() as u64 + 1);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    let mut data = name.to_vec();
    data.push(0);
    pad_into(out, &data);
}

fn pad_into(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    let rem = data.len() % 512;
    if rem != 0 {
        out.extend(std::iter::repeat_n(0u8, 512 - rem));
    }
}

/// An image: layers (bottom first) and a config.
pub struct ImageBuilder {
    layers: Vec<(Vec<u8>, Compression)>,
    config: Value,
    os: String,
    arch: String,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// The digests of what was written (`sha256:…`).
#[derive(Debug, Clone)]
pub struct Written {
    pub manifest: String,
    pub config: String,
    /// The layer blobs' digests (compressed), bottom first.
    pub layers: Vec<String>,
    /// The uncompressed layers' digests.
    pub diff_ids: Vec<String>,
}

struct Blobs {
    manifest: Vec<u8>,
    config: Vec<u8>,
    layers: Vec<Vec<u8>>,
    layer_tars: Vec<Vec<u8>>,
    written: Written,
}

impl ImageBuilder {
    pub fn new() -> Self {
        ImageBuilder {
            layers: Vec::new(),
            config: json!({}),
            os: "linux".into(),
            arch: "amd64".into(),
        }
    }

    pub fn layer(mut self, l: LayerBuilder, c: Compression) -> Self {
        self.layers.push((l.tar(), c));
        self
    }

    /// Edit the image config's `config` object (Cmd, Entrypoint, Env, User,
    /// WorkingDir, Labels, …).
    pub fn config(mut self, f: impl FnOnce(&mut Value)) -> Self {
        f(&mut self.config);
        self
    }

    pub fn platform(mut self, os: &str, arch: &str) -> Self {
        self.os = os.into();
        self.arch = arch.into();
        self
    }

    fn blobs(&self) -> Blobs {
        let layers: Vec<Vec<u8>> = self.layers.iter().map(|(t, c)| c.compress(t)).collect();
        let diff_ids: Vec<String> = self.layers.iter().map(|(t, _)| sha256(t)).collect();
        let config = serde_json::to_vec(&json!({
            "created": "2026-01-01T00:00:00Z",
            "architecture": self.arch,
            "os": self.os,
            "config": self.config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [],
        }))
        .unwrap();
        let layer_descs: Vec<Value> = self
            .layers
            .iter()
            .zip(&layers)
            .map(|((_, c), blob)| {
                json!({"mediaType": c.media_type(), "digest": sha256(blob), "size": blob.len()})
            })
            .collect();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(&config),
                "size": config.len(),
            },
            "layers": layer_descs,
        }))
        .unwrap();
        let written = Written {
            manifest: sha256(&manifest),
            config: sha256(&config),
            layers: layers.iter().map(|b| sha256(b)).collect(),
            diff_ids,
        };
        Blobs {
            manifest,
            config,
            layers,
            layer_tars: self.layers.iter().map(|(t, _)| t.clone()).collect(),
            written,
        }
    }

    /// An OCI image layout in `dir` (created), its index naming the image
    /// `ref_name` (annotation org.opencontainers.image.ref.name).
    pub fn write_layout(&self, dir: &Path, ref_name: &str) -> Written {
        let b = self.blobs();
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let put = |data: &[u8]| {
            let d = sha256(data);
            std::fs::write(blobs.join(&d["sha256:".len()..]), data).unwrap();
        };
        put(&b.manifest);
        put(&b.config);
        for l in &b.layers {
            put(l);
        }
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": b.written.manifest,
                "size": b.manifest.len(),
                "platform": {"os": self.os, "architecture": self.arch},
                "annotations": {"org.opencontainers.image.ref.name": ref_name},
            }],
        });
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
        b.written
    }

    /// An OCI archive: the layout of [`write_layout`](Self::write_layout) as a tar.
    pub fn write_archive(&self, path: &Path, ref_name: &str) -> Written {
        let tmp = tempfile::tempdir().unwrap();
        let w = self.write_layout(tmp.path(), ref_name);
        tar_dir(tmp.path(), path);
        w
    }

    /// A `docker save` tar: manifest.json, the config as HEX.json and each
    /// layer as DIR/layer.tar (uncompressed, as docker writes them).
    pub fn write_docker_save(&self, path: &Path, repo_tag: &str) -> Written {
        let b = self.blobs();
        let mut ar = tar::Builder::new(std::fs::File::create(path).unwrap());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            ar.append_data(&mut h, name, data).unwrap();
        };
        let config_name = format!("{}.json", &b.written.config["sha256:".len()..]);
        add(&config_name, &b.config);
        let mut layer_names = Vec::new();
        for t in &b.layer_tars {
            let name = format!("{}/layer.tar", &sha256(t)["sha256:".len()..]);
            add(&name, t);
            layer_names.push(name);
        }
        let manifest = json!([{
            "Config": config_name,
            "RepoTags": [repo_tag],
            "Layers": layer_names,
        }]);
        add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
        ar.into_inner().unwrap();
        let mut w = b.written;
        w.layers = w.diff_ids.clone();
        w
    }
}

/// Tar the contents of `dir` into `out` (names relative to `dir`), e.g. a
/// layout a test tampered with, as an OCI archive.
pub fn tar_dir(dir: &Path, out: &Path) {
    let mut ar = tar::Builder::new(std::fs::File::create(out).unwrap());
    ar.follow_symlinks(false);
    ar.append_dir_all(".", dir).unwrap();
    ar.into_inner().unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_blobs_match_their_digests() {
        let dir = tempfile::tempdir().unwrap();
        let w = ImageBuilder::new()
            .layer(
                LayerBuilder::new()
                    .dir("etc", 0o755)
                    .file("etc/hi", b"hi\n", 0o644),
                Compression::Gzip,
            )
            .layer(LayerBuilder::new().whiteout("etc/hi"), Compression::None)
            .write_layout(dir.path(), "test:1");
        for d in [&w.manifest, &w.config, &w.layers[0], &w.layers[1]] {
            let data = std::fs::read(dir.path().join("blobs/sha256").join(&d[7..])).unwrap();
            assert_eq!(&sha256(&data), d);
        }
        assert_eq!(
            w.layers[1], w.diff_ids[1],
            "an uncompressed layer's digest is its diff_id"
        );
        let t = LayerBuilder::new().whiteout("etc/hi").tar();
        let mut ar = tar::Archive::new(&t[..]);
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["etc/.wh.hi"]);
    }

    #[test]
    fn long_and_malicious_names_are_written_as_given() {
        let long = format!("{}/f", "d".repeat(150));
        let t = LayerBuilder::new()
            .file(&long, b"x", 0o644)
            .raw(b"../escape", tar::EntryType::Regular, None, b"y")
            .tar();
        let mut ar = tar::Archive::new(&t[..]);
        let names: Vec<Vec<u8>> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path_bytes().to_vec())
            .collect();
        assert_eq!(names, [long.into_bytes(), b"../escape".to_vec()]);
    }
}
