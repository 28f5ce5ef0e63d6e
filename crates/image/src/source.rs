//! Where an image comes from: an OCI image layout directory, an OCI archive
//! (a tar of a layout, read in place by offset, never extracted), or a
//! `docker save` tar (manifest.json; its layers addressed by their diff_id).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::digest::{into_image_error, VerifyingReader};
use crate::{io_err, Digest, ImageError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// A directory with oci-layout, index.json and blobs/.
    Layout,
    /// A tar of an OCI image layout.
    OciArchive,
    /// A `docker save` tar (manifest.json, without index.json).
    DockerSave,
}

/// Metadata files (index.json, manifest.json, configs, manifests) larger
/// than this are refused rather than read into memory.
const MAX_METADATA: u64 = 64 << 20;

/// One image of a docker-save tar, as manifest.json and its config list it.
#[derive(Debug, Clone)]
pub(crate) struct DockerImage {
    pub(crate) config: Digest,
    pub(crate) config_size: u64,
    pub(crate) repo_tags: Vec<String>,
    /// (diff_id, size of the layer tar), bottom first.
    pub(crate) layers: Vec<(Digest, u64)>,
}

enum Store {
    /// The layout directory.
    Dir(PathBuf),
    /// A tar read in place: file and entry name → (data offset, size).
    Tar {
        file: File,
        entries: HashMap<String, (u64, u64)>,
        /// docker-save only: digest → entry name (configs by their sha256,
        /// layers by their diff_id).
        by_digest: HashMap<Digest, String>,
    },
}

pub struct Source {
    kind: SourceKind,
    path: PathBuf,
    store: Store,
    docker: Vec<DockerImage>,
}

/// A tar entry's name as a key: without leading `./` or `/` and trailing `/`.
fn normalize(name: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in name.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

impl Source {
    /// Open `path`, telling the three kinds apart by what they hold.
    pub fn open(path: &Path) -> Result<Source> {
        let meta = std::fs::metadata(path).map_err(io_err(format!("image {}", path.display())))?;
        if meta.is_dir() {
            let src = Source {
                kind: SourceKind::Layout,
                path: path.to_path_buf(),
                store: Store::Dir(path.to_path_buf()),
                docker: Vec::new(),
            };
            src.check_layout()?;
            return Ok(src);
        }
        let file = File::open(path).map_err(io_err(format!("open image {}", path.display())))?;
        let entries = index_tar(&file, path)?;
        let kind = if entries.contains_key("index.json") {
            SourceKind::OciArchive
        } else if entries.contains_key("manifest.json") {
            SourceKind::DockerSave
        } else {
            return Err(ImageError::Malformed {
                what: path.display().to_string(),
                msg: "a tar with neither index.json (OCI archive) nor manifest.json (docker save)"
                    .into(),
            });
        };
        let mut src = Source {
            kind,
            path: path.to_path_buf(),
            store: Store::Tar {
                file,
                entries,
                by_digest: HashMap::new(),
            },
            docker: Vec::new(),
        };
        match kind {
            SourceKind::OciArchive => src.check_layout()?,
            _ => src.index_docker()?,
        }
        Ok(src)
    }

    pub fn kind(&self) -> SourceKind {
        self.kind
    }

    pub(crate) fn docker_images(&self) -> &[DockerImage] {
        &self.docker
    }

    /// What to call a file of this source in messages.
    pub(crate) fn describe(&self, name: &str) -> String {
        format!("{} in {}", name, self.path.display())
    }

    fn check_layout(&self) -> Result<()> {
        let what = self.describe("oci-layout");
        let bytes = self.read_file("oci-layout")?;
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Layout {
            image_layout_version: String,
        }
        let l: Layout = serde_json::from_slice(&bytes).map_err(|e| ImageError::Malformed {
            what: what.clone(),
            msg: e.to_string(),
        })?;
        // The spec is at 1.0.0; a 1.x layout keeps the same structure.
        if !l.image_layout_version.starts_with("1.") {
            return Err(ImageError::Unsupported(format!(
                "{what}: imageLayoutVersion {:?} (berth reads 1.x layouts)",
                l.image_layout_version
            )));
        }
        if !self.has_file("index.json") {
            return Err(ImageError::Malformed {
                what: self.describe("index.json"),
                msg: "missing".into(),
            });
        }
        Ok(())
    }

    fn has_file(&self, name: &str) -> bool {
        match &self.store {
            Store::Dir(root) => root.join(name).is_file(),
            Store::Tar { entries, .. } => entries.contains_key(name),
        }
    }

    /// A top-level metadata file (oci-layout, index.json, manifest.json),
    /// read whole.
    pub(crate) fn read_file(&self, name: &str) -> Result<Vec<u8>> {
        let what = self.describe(name);
        let (mut r, len) = match &self.store {
            Store::Dir(root) => {
                let f = File::open(root.join(name)).map_err(io_err(format!("open {what}")))?;
                let len = f.metadata().map_err(io_err(format!("stat {what}")))?.len();
                (Box::new(f) as Box<dyn Read>, len)
            }
            Store::Tar { file, entries, .. } => {
                let (off, len) = *entries.get(name).ok_or_else(|| ImageError::Malformed {
                    what: what.clone(),
                    msg: "missing".into(),
                })?;
                (Box::new(Section::new(file, off, len)) as Box<dyn Read>, len)
            }
        };
        if len > MAX_METADATA {
            return Err(ImageError::Malformed {
                what,
                msg: format!("{len} bytes is too large for a metadata file"),
            });
        }
        let mut v = Vec::with_capacity(len as usize);
        r.read_to_end(&mut v)
            .map_err(io_err(format!("read {what}")))?;
        Ok(v)
    }

    /// docker-save: read manifest.json, hash each config, map diff_ids to
    /// layer entries.
    fn index_docker(&mut self) -> Result<()> {
        let what = self.describe("manifest.json");
        let malformed = |msg: String| ImageError::Malformed {
            what: what.clone(),
            msg,
        };
        #[derive(serde::Deserialize)]
        struct Item {
            #[serde(rename = "Config")]
            config: String,
            #[serde(rename = "RepoTags", default)]
            repo_tags: Option<Vec<String>>,
            #[serde(rename = "Layers")]
            layers: Vec<String>,
        }
        let bytes = self.read_file("manifest.json")?;
        let items: Vec<Item> =
            serde_json::from_slice(&bytes).map_err(|e| malformed(e.to_string()))?;
        if items.is_empty() {
            return Err(malformed("lists no image".into()));
        }
        let Store::Tar {
            file,
            entries,
            by_digest,
        } = &mut self.store
        else {
            unreachable!("docker-save sources are tars");
        };
        let mut images = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let cfg_name = resolve_entry(entries, &item.config).ok_or_else(|| {
                malformed(format!("[{i}].Config {:?} is not in the tar", item.config))
            })?;
            let (off, len) = entries[&cfg_name];
            if len > MAX_METADATA {
                return Err(malformed(format!("[{i}].Config is {len} bytes, too large")));
            }
            let mut cfg = Vec::with_capacity(len as usize);
            Section::new(file, off, len)
                .read_to_end(&mut cfg)
                .map_err(io_err(format!(
                    "read {cfg_name} in {}",
                    self.path.display()
                )))?;
            let cfg_digest = Digest::sha256_of(&cfg);
            #[derive(serde::Deserialize)]
            struct RootFs {
                #[serde(default)]
                diff_ids: Vec<Digest>,
            }
            #[derive(serde::Deserialize)]
            struct Config {
                rootfs: RootFs,
            }
            let parsed: Config =
                serde_json::from_slice(&cfg).map_err(|e| ImageError::Malformed {
                    what: format!("config {cfg_name} in {}", self.path.display()),
                    msg: e.to_string(),
                })?;
            let diff_ids = parsed.rootfs.diff_ids;
            if diff_ids.len() != item.layers.len() {
                return Err(malformed(format!(
                    "[{i}] lists {} layers, its config {} has {} diff_ids",
                    item.layers.len(),
                    cfg_digest,
                    diff_ids.len()
                )));
            }
            let mut layers = Vec::new();
            for (diff_id, layer) in diff_ids.into_iter().zip(&item.layers) {
                let name = resolve_entry(entries, layer).ok_or_else(|| {
                    malformed(format!("[{i}].Layers: {layer:?} is not in the tar"))
                })?;
                let size = entries[&name].1;
                by_digest.entry(diff_id.clone()).or_insert(name);
                layers.push((diff_id, size));
            }
            by_digest.entry(cfg_digest.clone()).or_insert(cfg_name);
            images.push(DockerImage {
                config: cfg_digest,
                config_size: len,
                repo_tags: item.repo_tags.clone().unwrap_or_default(),
                layers,
            });
        }
        self.docker = images;
        Ok(())
    }

    /// The blob's bytes in the store and their length, unverified.
    fn raw_blob(&self, digest: &Digest) -> Result<(Box<dyn Read + '_>, u64)> {
        let missing = || ImageError::MissingBlob(digest.clone());
        match &self.store {
            Store::Dir(root) => {
                // Digest-derived (validated algorithm and hex): no untrusted join.
                let p = root
                    .join("blobs")
                    .join(digest.algorithm())
                    .join(digest.hex());
                let f = match File::open(&p) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(missing()),
                    Err(e) => return Err(io_err(format!("open blob {}", p.display()))(e)),
                };
                let meta = f
                    .metadata()
                    .map_err(io_err(format!("stat blob {}", p.display())))?;
                if !meta.is_file() {
                    return Err(missing());
                }
                Ok((Box::new(f), meta.len()))
            }
            Store::Tar {
                file,
                entries,
                by_digest,
            } => {
                let name = match self.kind {
                    SourceKind::DockerSave => by_digest.get(digest).cloned().ok_or_else(missing)?,
                    _ => format!("blobs/{}/{}", digest.algorithm(), digest.hex()),
                };
                let (off, len) = *entries.get(&name).ok_or_else(missing)?;
                Ok((Box::new(Section::new(file, off, len)), len))
            }
        }
    }

    /// A small blob (index, manifest, config) read whole and verified
    /// against `digest` and, when known, `size`.
    pub fn read_blob(&self, digest: &Digest, size: Option<u64>) -> Result<Vec<u8>> {
        let len = size.unwrap_or(0);
        if len > MAX_METADATA {
            return Err(ImageError::Malformed {
                what: format!("blob {digest}"),
                msg: format!("{len} bytes is too large for a metadata blob"),
            });
        }
        let mut r = self.open_blob(digest, size)?;
        let mut v = Vec::with_capacity(len as usize);
        (&mut r)
            .take(MAX_METADATA + 1)
            .read_to_end(&mut v)
            .map_err(|e| into_image_error(e, || format!("read blob {digest}")))?;
        if v.len() as u64 > MAX_METADATA {
            return Err(ImageError::Malformed {
                what: format!("blob {digest}"),
                msg: "too large for a metadata blob".into(),
            });
        }
        Ok(v)
    }

    /// A blob as a stream. The stream verifies as it goes: reading to its
    /// end returns an error (ImageError inside the io::Error) if the digest
    /// or `size` does not match.
    pub fn open_blob(&self, digest: &Digest, size: Option<u64>) -> Result<Box<dyn Read + '_>> {
        let (r, actual) = self.raw_blob(digest)?;
        if let Some(expected) = size {
            // The store knows the blob's length: a wrong size fails before
            // any byte is read.
            if expected != actual {
                return Err(ImageError::SizeMismatch {
                    digest: digest.clone(),
                    expected,
                    actual,
                });
            }
        }
        Ok(Box::new(VerifyingReader::new(r, digest.clone(), size)))
    }
}

/// An entry's name in the index (links were resolved when indexing: a
/// docker-save layer tar may be a symlink to an earlier identical one).
fn resolve_entry(entries: &HashMap<String, (u64, u64)>, name: &str) -> Option<String> {
    let n = normalize(name);
    entries.contains_key(&n).then_some(n)
}

/// Index a tar: every regular file's name → (data offset, size). Symlinks
/// and hardlinks to regular files are indexed as their targets.
fn index_tar(file: &File, path: &Path) -> Result<HashMap<String, (u64, u64)>> {
    let what = || format!("index tar {}", path.display());
    let mut entries = HashMap::new();
    let mut links: Vec<(String, String)> = Vec::new();
    let mut ar = tar::Archive::new(file);
    for e in ar.entries_with_seek().map_err(io_err(what()))? {
        let e = e.map_err(io_err(what()))?;
        let name = normalize(&String::from_utf8_lossy(&e.path_bytes()));
        let kind = e.header().entry_type();
        if kind.is_file() || kind == tar::EntryType::Continuous {
            entries.insert(name, (e.raw_file_position(), e.size()));
        } else if kind.is_symlink() || kind.is_hard_link() {
            let Some(target) = e.link_name_bytes() else {
                continue;
            };
            let target = String::from_utf8_lossy(&target).into_owned();
            let target = if kind.is_symlink() && !target.starts_with('/') {
                // Relative to the link's directory.
                match name.rsplit_once('/') {
                    Some((dir, _)) => format!("{dir}/{target}"),
                    None => target,
                }
            } else {
                target
            };
            links.push((name, normalize(&target)));
        }
    }
    // Links to links: a few rounds settle any sane chain.
    for _ in 0..8 {
        let mut changed = false;
        for (name, target) in &links {
            if entries.contains_key(name) {
                continue;
            }
            if let Some(v) = entries.get(target).copied() {
                entries.insert(name.clone(), v);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    Ok(entries)
}

/// A byte range of a file, read with pread (the file's offset is untouched,
/// so several sections can be read at once).
struct Section<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl<'a> Section<'a> {
    fn new(file: &'a File, off: u64, len: u64) -> Self {
        Section {
            file,
            pos: off,
            end: off.saturating_add(len),
        }
    }
}

impl Read for Section<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..n], self.pos)?;
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive is shorter than its tar header says",
            ));
        }
        self.pos += got as u64;
        Ok(got)
    }
}
