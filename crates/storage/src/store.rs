//! The image database (images.json, blobs/) and import: resolve, unpack
//! each missing layer once, record the image.
//!
//! Locking. Two flock(2) files at the store's root:
//! - `.lock` is held, briefly, around every change of images.json, of the
//!   container references (`containers/refs/KEY.json`) and around every
//!   removal of a layer, so a layer is never removed while a reference to
//!   it is being written, and never while an image record names it.
//! - `.import.lock` serialises whatever creates or removes layers and
//!   blobs: a whole import (taken before the first layer is unpacked) and
//!   `image rm`. Layers are unpacked under it but WITHOUT `.lock`, so
//!   containers are created and deleted while a long import runs; the
//!   import takes `.lock` only to commit its record.
//!
//! Lock order: `.import.lock`, then `.lock`.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use berth_image::{chain_ids, Digest, Platform, Resolved, Source};
use nix::fcntl::{Flock, FlockArg};

use crate::driver::{self, Driver};
use crate::{io_err, DriverKind, Result, RootfsRecord, StorageError, StoreConfig};

const LOCK: &str = ".lock";
const IMPORT_LOCK: &str = ".import.lock";
const IMAGES: &str = "images.json";

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageRecord {
    /// `name:tag`.
    pub name: String,
    pub manifest: Digest,
    pub config: Digest,
    /// Chain IDs, bottom layer first.
    pub layers: Vec<Digest>,
    pub diff_ids: Vec<Digest>,
    /// Sum of the layers' compressed sizes.
    pub size: u64,
    /// RFC 3339 UTC, when imported.
    pub imported: String,
}

/// images.json.
#[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Db {
    images: Vec<ImageRecord>,
}

pub struct Store {
    cfg: StoreConfig,
}

impl Store {
    /// Open (creating the directories if needed) the store `cfg` names.
    pub fn open(cfg: StoreConfig) -> Result<Store> {
        let root = &cfg.root;
        let mut dirs = vec![
            root.join("blobs/sha256"),
            root.join("layers"),
            root.join("containers/refs"),
        ];
        if matches!(cfg.driver, DriverKind::Overlay | DriverKind::Vfs) {
            dirs.push(root.join("layers").join(cfg.driver.as_str()));
            dirs.push(root.join("containers").join(cfg.driver.as_str()));
        }
        for d in &dirs {
            mkdir_private(d)?;
        }
        for l in [LOCK, IMPORT_LOCK] {
            open_lock_file(&root.join(l))?;
        }
        Ok(Store { cfg })
    }

    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    fn driver(&self) -> Result<Box<dyn Driver>> {
        driver::open(&self.cfg)
    }

    /// Import an image layout directory, OCI archive or docker-save tar.
    /// `name` (`NAME:TAG`, `:latest` added when there is no tag) overrides
    /// the name the source carries.
    ///
    /// Layers already in the store are not unpacked again. On failure the
    /// store is left as it was: the layers and blobs this import made and
    /// nothing else uses are removed. Before anything else, layers and
    /// blobs nothing uses (a killed import's, those kept for containers
    /// deleted since) are swept, best effort.
    pub fn import(&self, path: &Path, name: Option<&str>) -> Result<ImageRecord> {
        let wanted = name.map(normalize_name).transpose()?;
        let src = Source::open(path)?;
        let res = resolve_named(&src, name)?;
        let name = match wanted {
            Some(n) => n,
            None => name_from_source(res.ref_name.as_deref(), path)?,
        };
        let drv = self.driver()?;
        let _serial = lock(&self.cfg.root, IMPORT_LOCK)?;
        remove_stale_temps(&self.cfg.root);
        {
            // What a killed import or deleted containers left. Best effort:
            // a layer that cannot go now must not stop this import; the
            // next import or `image rm` tries again (and `image rm` says
            // what failed).
            let _lock = lock(&self.cfg.root, LOCK)?;
            let _ = self.load().and_then(|db| self.sweep(drv.as_ref(), &db));
        }
        let mut made = Made::default();
        match self.import_locked(drv.as_ref(), &src, &res, name, &mut made) {
            Ok(rec) => Ok(rec),
            Err(e) => match self.undo_import(drv.as_ref(), &made) {
                Ok(()) => Err(e),
                Err(undo) => Err(StorageError::Invalid(format!(
                    "{e}; removing what the failed import left also failed: {undo}"
                ))),
            },
        }
    }

    fn import_locked(
        &self,
        drv: &dyn Driver,
        src: &Source,
        res: &Resolved,
        name: String,
        made: &mut Made,
    ) -> Result<ImageRecord> {
        let diff_ids: Vec<Digest> = res.layers.iter().map(|l| l.diff_id.clone()).collect();
        let chains = chain_ids(&diff_ids);
        let mode = drv.whiteouts();
        for (i, layer) in res.layers.iter().enumerate() {
            let chain = &chains[i];
            if drv.has_layer(chain) {
                continue;
            }
            let parent = i.checked_sub(1).map(|p| &chains[p]);
            drv.create_layer(chain, parent, &mut |dir| {
                berth_image::layer::apply(src, layer, dir, mode)
                    .map(drop)
                    .map_err(Into::into)
            })?;
            made.layers.push(chain.clone());
        }
        for (digest, bytes) in [
            (&res.manifest_digest, &res.manifest_json),
            (&res.config_digest, &res.config_json),
        ] {
            if self.write_blob(digest, bytes)? {
                made.blobs.push(digest.clone());
            }
        }
        let rec = ImageRecord {
            name,
            manifest: res.manifest_digest.clone(),
            config: res.config_digest.clone(),
            layers: chains,
            diff_ids,
            size: res.layers.iter().filter_map(|l| l.size).sum(),
            imported: crate::fsutil::rfc3339_now(),
        };

        let _lock = lock(&self.cfg.root, LOCK)?;
        let mut db = self.load()?;
        let old = match db.images.iter().position(|r| r.name == rec.name) {
            Some(i) => Some(std::mem::replace(&mut db.images[i], rec.clone())),
            None => {
                db.images.push(rec.clone());
                None
            }
        };
        self.save(&mut db)?;
        // The record is in; from here on the import has happened.
        if let Some(old) = old {
            self.collect(drv, &old, &db).map_err(|e| {
                StorageError::Invalid(format!(
                    "image {} imported, but removing what the image it replaced no longer needs failed: {e}",
                    rec.name
                ))
            })?;
        }
        Ok(rec)
    }

    /// Remove the layers and blobs a failed import made that nothing uses.
    fn undo_import(&self, drv: &dyn Driver, made: &Made) -> Result<()> {
        if made.layers.is_empty() && made.blobs.is_empty() {
            return Ok(());
        }
        let _lock = lock(&self.cfg.root, LOCK)?;
        let db = self.load()?;
        self.remove_unused_layers(drv, &made.layers, &db)?;
        self.remove_unused_blobs(&made.blobs, &db)
    }

    /// Every image, sorted by name.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        Ok(self.load()?.images)
    }

    /// `NAME:TAG` (`:latest` when no tag), `NAME@sha256:…`, or a manifest
    /// digest or unique prefix of its hex.
    pub fn image(&self, reference: &str) -> Result<ImageRecord> {
        let db = self.load()?;
        Ok(db.images[find(&db.images, reference)?].clone())
    }

    /// The image's config blob, parsed.
    pub fn image_config(&self, img: &ImageRecord) -> Result<oci_spec::image::ImageConfiguration> {
        let path = self.blob_path(&img.config);
        let bytes = fs::read(&path).map_err(io_err(format!(
            "image {}: reading config blob {}",
            img.name,
            path.display()
        )))?;
        if img.config.algorithm() == "sha256" {
            let actual = Digest::sha256_of(&bytes);
            if actual != img.config {
                return Err(StorageError::Invalid(format!(
                    "image {}: config blob {} in the store hashes to {actual}",
                    img.name, img.config
                )));
            }
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            StorageError::Invalid(format!(
                "image {}: config blob {}: {e}",
                img.name, img.config
            ))
        })
    }

    /// Remove the name; layers no other image or container uses go too.
    pub fn remove_image(&self, reference: &str) -> Result<ImageRecord> {
        let drv = self.driver()?;
        let _serial = lock(&self.cfg.root, IMPORT_LOCK)?;
        remove_stale_temps(&self.cfg.root);
        let _lock = lock(&self.cfg.root, LOCK)?;
        let mut db = self.load()?;
        let i = find(&db.images, reference)?;
        let by_name = normalize_name(reference)
            .map(|n| n == db.images[i].name)
            .unwrap_or(false);
        if !by_name {
            let same: Vec<&str> = db
                .images
                .iter()
                .filter(|r| r.manifest == db.images[i].manifest)
                .map(|r| r.name.as_str())
                .collect();
            if same.len() > 1 {
                return Err(StorageError::Invalid(format!(
                    "image {reference:?}: manifest {} has several names ({}); remove them by name",
                    db.images[i].manifest,
                    same.join(", ")
                )));
            }
        }
        let rec = db.images.remove(i);
        self.save(&mut db)?;
        self.collect(drv.as_ref(), &rec, &db)?;
        self.sweep(drv.as_ref(), &db).map_err(|e| {
            StorageError::Invalid(format!(
                "image {} removed, but removing the layers and blobs nothing uses failed: {e}",
                rec.name
            ))
        })?;
        Ok(rec)
    }

    /// A file from the image's filesystem (None if it has none).
    pub fn read_file(&self, img: &ImageRecord, path: &Path) -> Result<Option<Vec<u8>>> {
        let drv = self.driver()?;
        check_unpacked(drv.as_ref(), img)?;
        drv.read_file(&img.layers, path)
    }

    /// What container `key`'s rootfs will be, from image `reference`
    /// (pinned to `manifest` when given), mounted at `target`. Checks the
    /// image and its layers are in the store for this driver; changes
    /// nothing. The caller saves the record, then calls [`crate::mount_rootfs`].
    pub fn plan_rootfs(
        &self,
        key: &str,
        reference: &str,
        manifest: Option<&Digest>,
        target: &Path,
    ) -> Result<RootfsRecord> {
        check_key(key)?;
        let img = match self.image(reference) {
            Ok(img) => img,
            Err(StorageError::NoImage(_)) if manifest.is_some() => {
                return Err(StorageError::Invalid(format!(
                    "image {reference:?} (manifest {}) that the bundle was made from has been removed from the store",
                    manifest.unwrap()
                )))
            }
            Err(e) => return Err(e),
        };
        if let Some(m) = manifest {
            if *m != img.manifest {
                return Err(StorageError::Invalid(format!(
                    "image {reference:?} was replaced: the bundle was made from manifest {m}, the store now has {}; re-create the bundle or import that image again",
                    img.manifest
                )));
            }
        }
        check_unpacked(self.driver()?.as_ref(), &img)?;
        Ok(RootfsRecord {
            store: self.cfg.clone(),
            key: key.to_string(),
            target: target.to_path_buf(),
            image: reference.to_string(),
            manifest: img.manifest,
            layers: img.layers,
        })
    }

    fn load(&self) -> Result<Db> {
        let path = self.cfg.root.join(IMAGES);
        match fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                StorageError::Invalid(format!("image database {}: {e}", path.display()))
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Db::default()),
            Err(e) => Err(io_err(format!("reading {}", path.display()))(e)),
        }
    }

    fn save(&self, db: &mut Db) -> Result<()> {
        db.images.sort_by(|a, b| a.name.cmp(&b.name));
        let mut json = serde_json::to_vec_pretty(db).expect("image records serialise");
        json.push(b'\n');
        write_atomic(&self.cfg.root.join(IMAGES), &json)
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.cfg
            .root
            .join("blobs")
            .join(d.algorithm())
            .join(d.hex())
    }

    /// Store a blob unless it is there; true if this call wrote it.
    fn write_blob(&self, d: &Digest, bytes: &[u8]) -> Result<bool> {
        let path = self.blob_path(d);
        if path.exists() {
            return Ok(false);
        }
        mkdir_private(path.parent().expect("blob path has a parent"))?;
        write_atomic(&path, bytes)?;
        Ok(true)
    }

    /// After `gone` left the database (now `db`): remove its layers and
    /// blobs that nothing else uses. Called with both locks held.
    fn collect(&self, drv: &dyn Driver, gone: &ImageRecord, db: &Db) -> Result<()> {
        self.remove_unused_layers(drv, &gone.layers, db)?;
        self.remove_unused_blobs(&[gone.manifest.clone(), gone.config.clone()], db)
    }

    /// Remove those of `candidates` (bottom first) that no image in `db`
    /// and no container reference uses, top layer first (a zfs layer is
    /// a clone of its parent's snapshot). Besides this store's driver, the
    /// directory drivers (overlay, vfs) lose their copies too, so an image
    /// imported under another driver leaves nothing behind.
    fn remove_unused_layers(&self, drv: &dyn Driver, candidates: &[Digest], db: &Db) -> Result<()> {
        let used = self.used_layers(db)?;
        self.with_layer_drivers(drv, |drivers| {
            let mut seen = HashSet::new();
            for chain in candidates.iter().rev() {
                if used.contains(chain) || !seen.insert(chain) {
                    continue;
                }
                for d in drivers {
                    if d.has_layer(chain) {
                        d.remove_layer(chain)?;
                    }
                }
            }
            Ok(())
        })
    }

    /// The layers an image record or a container reference names.
    fn used_layers(&self, db: &Db) -> Result<HashSet<Digest>> {
        let mut used: HashSet<Digest> = db
            .images
            .iter()
            .flat_map(|r| r.layers.iter().cloned())
            .collect();
        for r in refs(&self.cfg.root)? {
            used.extend(r.layers);
        }
        Ok(used)
    }

    /// `f` of `drv` and, whatever `drv` is, the directory drivers (overlay,
    /// vfs), which keep their own copies of layers imported under them.
    fn with_layer_drivers<T>(&self, drv: &dyn Driver, f: impl FnOnce(&[&dyn Driver]) -> T) -> T {
        let overlay = crate::overlay::Overlay::new(&self.cfg.root);
        let vfs = crate::vfs::Vfs::new(&self.cfg.root);
        let mut drivers: Vec<&dyn Driver> = vec![drv];
        if drv.kind() != DriverKind::Overlay {
            drivers.push(&overlay);
        }
        if drv.kind() != DriverKind::Vfs {
            drivers.push(&vfs);
        }
        f(&drivers)
    }

    /// Remove every layer that no image record and no container reference
    /// names (this store's driver's layers, and the overlay and vfs copies
    /// whatever the driver), and every blob no image record names: what an
    /// import killed before it recorded its image left, and the layers an
    /// `image rm` kept for containers that have since been deleted. Called
    /// with both locks held. It goes on past what it cannot remove and
    /// returns the first error.
    fn sweep(&self, drv: &dyn Driver, db: &Db) -> Result<()> {
        let used: HashSet<String> = self
            .used_layers(db)?
            .iter()
            .map(|l| l.hex().to_string())
            .collect();
        let mut first_err: Option<StorageError> = None;
        self.with_layer_drivers(drv, |drivers| {
            for d in drivers {
                let all = match d.layers() {
                    Ok(all) => all,
                    Err(e) => {
                        first_err.get_or_insert(e);
                        continue;
                    }
                };
                // Layers made from others last in the list: removed first.
                for l in all.iter().rev().filter(|l| !used.contains(l.hex())) {
                    if let Err(e) = d.remove_layer(l) {
                        first_err.get_or_insert(StorageError::Invalid(format!(
                            "removing unused {} layer {l}: {e}",
                            d.kind().as_str()
                        )));
                    }
                }
            }
        });
        if let Err(e) = self.sweep_blobs(db) {
            first_err.get_or_insert(e);
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Remove the blobs (and temporary blob files) no image record names.
    fn sweep_blobs(&self, db: &Db) -> Result<()> {
        let named: HashSet<&Digest> = db
            .images
            .iter()
            .flat_map(|r| [&r.manifest, &r.config])
            .collect();
        let blobs = self.cfg.root.join("blobs");
        for alg in ["sha256", "sha512"] {
            let dir = blobs.join(alg);
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(format!("listing {}", dir.display()))(e)),
            };
            for e in entries {
                let e = e.map_err(io_err(format!("listing {}", dir.display())))?;
                let name = e.file_name();
                let name = name.to_string_lossy();
                let unused = if name.starts_with('.') {
                    name.contains(".tmp-")
                } else {
                    Digest::parse(&format!("{alg}:{name}")).is_ok_and(|d| !named.contains(&d))
                };
                if unused {
                    let p = e.path();
                    match fs::remove_file(&p) {
                        Err(e) if e.kind() != ErrorKind::NotFound => {
                            return Err(io_err(format!("removing {}", p.display()))(e))
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }

    fn remove_unused_blobs(&self, candidates: &[Digest], db: &Db) -> Result<()> {
        let used: HashSet<&Digest> = db
            .images
            .iter()
            .flat_map(|r| [&r.manifest, &r.config])
            .collect();
        for d in candidates {
            if used.contains(d) {
                continue;
            }
            let path = self.blob_path(d);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != ErrorKind::NotFound => {
                    return Err(io_err(format!("removing blob {}", path.display()))(e))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// What an import made (to undo it on failure).
#[derive(Default)]
struct Made {
    layers: Vec<Digest>,
    blobs: Vec<Digest>,
}

fn check_unpacked(drv: &dyn Driver, img: &ImageRecord) -> Result<()> {
    if drv
        .mounted_layers(&img.layers)
        .iter()
        .all(|l| drv.has_layer(l))
    {
        return Ok(());
    }
    let d = drv.kind().as_str();
    Err(StorageError::Invalid(format!(
        "image {} is not unpacked for the {d} driver; import it with --storage-driver {d}",
        img.name
    )))
}

/// Resolve the source's manifest for this host. The name is a hint for a
/// source with several images; a source with one image is resolved
/// whatever `--name` says.
fn resolve_named(src: &Source, name: Option<&str>) -> Result<Resolved> {
    let host = Platform::host();
    let Some(name) = name else {
        return Ok(berth_image::resolve(src, &host, None)?);
    };
    match berth_image::resolve(src, &host, Some(name)) {
        Ok(r) => Ok(r),
        Err(first) => match berth_image::resolve(src, &host, None) {
            Ok(r) => Ok(r),
            Err(berth_image::ImageError::Malformed { .. }) => Err(first.into()),
            Err(e) => Err(e.into()),
        },
    }
}

/// The store name for an image whose source calls it `ref_name`.
fn name_from_source(ref_name: Option<&str>, path: &Path) -> Result<String> {
    match ref_name {
        Some(r) if r.contains('/') || r.contains(':') => normalize_name(r),
        Some(r) => Err(StorageError::Invalid(format!(
            "{}: the image is only called {r:?} (a tag without a repository name); name it with --name NAME[:TAG]",
            path.display()
        ))),
        None => Err(StorageError::Invalid(format!(
            "{}: the image carries no name; name it with --name NAME[:TAG]",
            path.display()
        ))),
    }
}

/// `NAME[:TAG]` → `NAME:TAG` (`latest` when there is no tag). The tag is
/// what follows the last `:` after the last `/` (`host:5000/app` has none).
pub(crate) fn normalize_name(name: &str) -> Result<String> {
    let bad = |why: &str| StorageError::Invalid(format!("image name {name:?}: {why}"));
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("contains whitespace or control characters"));
    }
    if name.contains('@') {
        return Err(bad("a digest reference cannot be a name"));
    }
    let (repo, tag) = split_tag(name);
    if repo.is_empty() || repo.ends_with('/') || repo.starts_with('/') {
        return Err(bad("no repository name"));
    }
    match tag {
        Some("") => Err(bad("empty tag")),
        Some(_) => Ok(name.to_string()),
        None => Ok(format!("{name}:latest")),
    }
}

/// `repo:tag` → (`repo`, Some(`tag`)); `host:5000/repo` → (it, None).
fn split_tag(name: &str) -> (&str, Option<&str>) {
    let slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    match name[slash..].rfind(':') {
        Some(i) => (&name[..slash + i], Some(&name[slash + i + 1..])),
        None => (name, None),
    }
}

/// The index of the record `reference` names (see [`Store::image`]).
fn find(images: &[ImageRecord], reference: &str) -> Result<usize> {
    let none = || StorageError::NoImage(reference.to_string());
    if reference.is_empty() {
        return Err(StorageError::Invalid("empty image reference".into()));
    }
    if let Some((repo, digest)) = reference.split_once('@') {
        let digest = Digest::parse(digest)?;
        return images
            .iter()
            .position(|r| r.manifest == digest && (r.name == repo || split_tag(&r.name).0 == repo))
            .ok_or_else(none);
    }
    if reference.starts_with("sha256:") || reference.starts_with("sha512:") {
        let digest = Digest::parse(reference)?;
        return images
            .iter()
            .position(|r| r.manifest == digest)
            .ok_or_else(none);
    }
    if let Ok(name) = normalize_name(reference) {
        if let Some(i) = images.iter().position(|r| r.name == name) {
            return Ok(i);
        }
    }
    let is_hex = reference
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if reference.len() >= 12 && is_hex {
        let hits: BTreeSet<&Digest> = images
            .iter()
            .filter(|r| r.manifest.hex().starts_with(reference))
            .map(|r| &r.manifest)
            .collect();
        if hits.len() > 1 {
            let list: Vec<&str> = hits.iter().map(|d| d.as_str()).collect();
            return Err(StorageError::Invalid(format!(
                "image reference {reference:?} is ambiguous: it begins {}",
                list.join(", ")
            )));
        }
        if let Some(d) = hits.into_iter().next() {
            return Ok(images.iter().position(|r| &r.manifest == d).unwrap());
        }
    }
    Err(none())
}

/// A container key is a file name (and a ZFS dataset name component).
pub(crate) fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && key != "."
        && key != ".."
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(StorageError::Invalid(format!(
            "container key {key:?}: only letters, digits, '-', '_' and '.' are allowed"
        )))
    }
}

fn ref_path(root: &Path, key: &str) -> PathBuf {
    root.join("containers/refs").join(format!("{key}.json"))
}

/// Record that container `rec.key` uses `rec.layers`, after checking, under
/// the lock, that they are all still there.
pub(crate) fn add_ref(root: &Path, drv: &dyn Driver, rec: &RootfsRecord) -> Result<()> {
    let _lock = lock(root, LOCK)?;
    if let Some(l) = drv
        .mounted_layers(&rec.layers)
        .iter()
        .find(|l| !drv.has_layer(l))
    {
        return Err(StorageError::Invalid(format!(
            "image {:?}: layer {l} is no longer in the store for the {} driver (the image was removed?)",
            rec.image,
            drv.kind().as_str()
        )));
    }
    mkdir_private(&root.join("containers/refs"))?;
    let mut json = serde_json::to_vec_pretty(rec).expect("rootfs records serialise");
    json.push(b'\n');
    write_atomic(&ref_path(root, &rec.key), &json)
}

/// Drop container `key`'s reference, and the temp file of one whose write
/// was interrupted (berth killed inside [`write_atomic`]); fine if there
/// is none.
pub(crate) fn remove_ref(root: &Path, key: &str) -> Result<()> {
    let path = ref_path(root, key);
    let temp_prefix = format!(".{key}.json.");
    let temps: Vec<PathBuf> = match fs::read_dir(root.join("containers/refs")) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(&temp_prefix))
            .map(|e| e.path())
            .collect(),
        Err(_) => Vec::new(),
    };
    if fs::symlink_metadata(&path).is_err() && temps.is_empty() {
        return Ok(());
    }
    let _lock = lock(root, LOCK)?;
    for p in temps.iter().chain(std::iter::once(&path)) {
        match fs::remove_file(p) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(io_err(format!("removing {}", p.display()))(e))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Every container reference. One that cannot be read is an error: its
/// layers are unknown, so nothing may be removed.
fn refs(root: &Path) -> Result<Vec<RootfsRecord>> {
    let dir = root.join("containers/refs");
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(format!("listing {}", dir.display()))(e)),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(io_err(format!("listing {}", dir.display())))?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        let path = e.path();
        let bytes = fs::read(&path).map_err(io_err(format!("reading {}", path.display())))?;
        out.push(serde_json::from_slice(&bytes).map_err(|e| {
            StorageError::Invalid(format!("container reference {}: {e}", path.display()))
        })?);
    }
    Ok(out)
}

/// Remove `*.tmp-*` layer directories a killed import left, and the
/// `*.tmp-trash-*` remains of layer removals that were interrupted (called
/// with the import lock held, so no import is writing one). Best effort:
/// what cannot be removed now is tried again by the next import.
pub(crate) fn remove_stale_temps(root: &Path) {
    for kind in [DriverKind::Overlay, DriverKind::Vfs] {
        let Ok(entries) = fs::read_dir(root.join("layers").join(kind.as_str())) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().contains(".tmp-") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(io_err(format!("opening lock {}", path.display())))
}

/// Hold `root/name` exclusively until the returned guard drops.
fn lock(root: &Path, name: &str) -> Result<Flock<File>> {
    let path = root.join(name);
    let f = open_lock_file(&path)?;
    Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, errno)| {
        io_err(format!("locking {}", path.display()))(std::io::Error::from(errno))
    })
}

pub(crate) fn mkdir_private(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(format!("creating {}", dir.display())))
}

/// A unique suffix for temporary names: this process and a counter (tests
/// run many stores in one process).
pub(crate) fn temp_suffix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "tmp-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Replace `path` with `bytes` atomically: temp file, fsync, rename, fsync
/// of the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().expect("file path has a parent");
    let name = path.file_name().expect("file path has a name");
    let tmp = dir.join(format!(".{}.{}", name.to_string_lossy(), temp_suffix()));
    let what = || format!("writing {}", path.display());
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err(what()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_ref_takes_the_temp_file_of_an_interrupted_write() {
        let dir = tempfile::tempdir().unwrap();
        let refs = dir.path().join("containers/refs");
        fs::create_dir_all(&refs).unwrap();
        // berth killed between create_new and rename in write_atomic:
        fs::write(refs.join(".k1.json.tmp-1-0"), b"{").unwrap();
        fs::write(refs.join(".k10.json.tmp-1-0"), b"{").unwrap();
        remove_ref(dir.path(), "k1").unwrap();
        assert!(!refs.join(".k1.json.tmp-1-0").exists());
        assert!(
            refs.join(".k10.json.tmp-1-0").exists(),
            "another key's file"
        );
        fs::write(refs.join("k10.json"), b"{}").unwrap();
        remove_ref(dir.path(), "k10").unwrap();
        assert_eq!(fs::read_dir(&refs).unwrap().count(), 0);
        remove_ref(dir.path(), "k10").unwrap();
    }

    fn digest(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    fn rec(name: &str, manifest: Digest) -> ImageRecord {
        ImageRecord {
            name: name.into(),
            manifest,
            config: digest('c'),
            layers: vec![digest('1'), digest('2')],
            diff_ids: vec![digest('3'), digest('4')],
            size: 1234,
            imported: crate::fsutil::rfc3339(0),
        }
    }

    #[test]
    fn names_get_a_tag() {
        assert_eq!(normalize_name("busybox").unwrap(), "busybox:latest");
        assert_eq!(normalize_name("busybox:1.36").unwrap(), "busybox:1.36");
        assert_eq!(
            normalize_name("localhost:5000/app").unwrap(),
            "localhost:5000/app:latest"
        );
        assert_eq!(
            normalize_name("localhost:5000/app:v2").unwrap(),
            "localhost:5000/app:v2"
        );
        for bad in ["", "a b", "x@sha256:00", "busybox:", ":tag", "a/"] {
            assert!(normalize_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn source_names() {
        let p = Path::new("/img");
        assert_eq!(
            name_from_source(Some("docker.io/library/alpine:3"), p).unwrap(),
            "docker.io/library/alpine:3"
        );
        assert_eq!(
            name_from_source(Some("example.com/app"), p).unwrap(),
            "example.com/app:latest"
        );
        let e = name_from_source(Some("latest"), p).unwrap_err().to_string();
        assert!(e.contains("--name") && e.contains("\"latest\""), "{e}");
        let e = name_from_source(None, p).unwrap_err().to_string();
        assert!(e.contains("--name") && e.contains("/img"), "{e}");
    }

    #[test]
    fn references() {
        let a = digest('a');
        let images = vec![
            rec("alpine:3", a.clone()),
            rec("alpine:latest", a.clone()),
            rec("busybox:latest", digest('b')),
            rec("abababababab:latest", digest('e')),
        ];
        assert_eq!(find(&images, "busybox").unwrap(), 2);
        assert_eq!(find(&images, "busybox:latest").unwrap(), 2);
        assert_eq!(find(&images, "alpine:3").unwrap(), 0);
        assert_eq!(find(&images, "alpine").unwrap(), 1);
        assert_eq!(find(&images, &format!("alpine@{a}")).unwrap(), 0);
        assert_eq!(find(&images, &format!("alpine:latest@{a}")).unwrap(), 1);
        assert_eq!(find(&images, digest('b').as_str()).unwrap(), 2);
        assert_eq!(find(&images, "bbbbbbbbbbbb").unwrap(), 2);
        // A name wins over a prefix.
        assert_eq!(find(&images, "abababababab").unwrap(), 3);
        // Several names of one manifest: one manifest, not ambiguous.
        assert_eq!(find(&images, "aaaaaaaaaaaaaaa").unwrap(), 0);
        // Too short a prefix, unknown names and digests.
        for missing in [
            "bbbbbbbbbbb",
            "nginx",
            "busybox:1",
            "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc",
        ] {
            assert!(
                matches!(find(&images, missing), Err(StorageError::NoImage(_))),
                "{missing}"
            );
        }
        assert!(find(&images, &format!("busybox@{a}")).is_err());
        assert!(find(&images, "busybox@sha256:zz").is_err());
    }

    #[test]
    fn ambiguous_prefix() {
        let d1 = Digest::parse(&format!("sha256:{}1", "f".repeat(63))).unwrap();
        let d2 = Digest::parse(&format!("sha256:{}2", "f".repeat(63))).unwrap();
        let images = vec![rec("x:1", d1), rec("y:1", d2)];
        let e = find(&images, "ffffffffffffff").unwrap_err().to_string();
        assert!(e.contains("ambiguous"), "{e}");
    }

    #[test]
    fn records_round_trip() {
        let mut db = Db {
            images: vec![rec("busybox:latest", digest('b'))],
        };
        let json = serde_json::to_string(&db).unwrap();
        assert!(json.contains("\"manifest\":\"sha256:bbbb"), "{json}");
        assert_eq!(serde_json::from_str::<Db>(&json).unwrap(), db);
        db.images[0].name = "x".into();
        assert_ne!(serde_json::from_str::<Db>(&json).unwrap(), db);
    }

    #[test]
    fn keys() {
        assert!(check_key("0123abcd").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "../x"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }
}
