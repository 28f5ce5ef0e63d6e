//! What the storage integration tests share: a temporary store, the
//! images they import, and the scenarios every copy-on-write driver must
//! pass (each driver's test file runs them on its own filesystem).
#![allow(dead_code)] // each test binary uses a part of it

use std::fs;
use std::path::Path;

use berth_integration::oci::{Compression, ImageBuilder, LayerBuilder};
#[allow(unused_imports)] // each test binary uses a part of them
pub use berth_integration::storage::{is_mounted, mount_points, mounts_under, names, TempDir};
use berth_storage::{
    container_key, mount_rootfs, snapshot_list, teardown, Digest, DriverKind, ImageRecord,
    RootfsRecord, Store, StoreConfig,
};

/// A temporary directory (see [`TempDir`]) with stores under `store`.
pub struct Tmp(pub TempDir);

impl Tmp {
    pub fn new(tag: &str) -> Tmp {
        Tmp(TempDir::new(&format!("store-{tag}")))
    }

    /// The store at `store` with `driver` (no options).
    pub fn store(&self, driver: DriverKind) -> Store {
        Store::open(StoreConfig {
            root: self.0.join("store"),
            driver,
            options: Default::default(),
        })
        .unwrap()
    }
}

/// A bottom layer: /etc/passwd, a/x, a/y, d/old and f ("bottom").
pub fn base() -> LayerBuilder {
    LayerBuilder::new()
        .dir("etc", 0o755)
        .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
        .dir("a", 0o755)
        .file("a/x", b"x", 0o644)
        .file("a/y", b"y", 0o644)
        .dir("d", 0o755)
        .file("d/old", b"old", 0o644)
        .file("f", b"bottom", 0o644)
}

/// A layer over [`base`]: a whiteout of a/x, d made opaque (with d/new),
/// f replaced ("top").
pub fn top() -> LayerBuilder {
    LayerBuilder::new()
        .whiteout("a/x")
        .opaque("d")
        .file("d/new", b"new", 0o644)
        .file("f", b"top", 0o644)
}

/// [`base`] (gzip) and [`top`] (zstd).
pub fn two_layers() -> ImageBuilder {
    ImageBuilder::new()
        .layer(base(), Compression::Gzip)
        .layer(top(), Compression::Zstd)
}

/// Two uncompressed layers: `file`, then `file`2.
pub fn other_image(file: &str) -> ImageBuilder {
    ImageBuilder::new()
        .layer(
            LayerBuilder::new().file(file, b"1", 0o644),
            Compression::None,
        )
        .layer(
            LayerBuilder::new().file(&format!("{file}2"), b"2", 0o644),
            Compression::None,
        )
}

/// Write `img` as a layout under `base` (named after `name`) and import it.
pub fn import(store: &Store, base: &Path, name: &str, img: ImageBuilder) -> ImageRecord {
    let dir = base.join(name.replace([':', '/'], "_"));
    img.write_layout(&dir, name);
    store.import(&dir, None).unwrap()
}

/// Drop `name`'s record from the images.json of the store at `root`, as
/// a crash between an import's last layer and its record leaves it.
pub fn forget_record(root: &Path, name: &str) {
    let path = root.join("images.json");
    let mut db: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    db["images"]
        .as_array_mut()
        .unwrap()
        .retain(|r| r["name"] != name);
    fs::write(&path, serde_json::to_vec(&db).unwrap()).unwrap();
}

/// The layers' hex digits, sorted.
pub fn hexes(layers: &[Digest]) -> Vec<String> {
    let mut v: Vec<String> = layers.iter().map(|l| l.hex().to_string()).collect();
    v.sort();
    v
}

/// The names of `rec`'s snapshots, oldest first.
pub fn snapshot_names(rec: &RootfsRecord) -> Vec<String> {
    snapshot_list(rec)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect()
}

/// Two containers of [`two_layers`] mounted at `t1` and `t2`: the layers
/// applied in order (whiteout, opaque directory, replaced file), and what
/// the first writes not seen by the second.
pub fn check_layers_and_isolation(t1: &Path, t2: &Path) {
    assert_eq!(fs::read_to_string(t1.join("f")).unwrap(), "top");
    assert!(!t1.join("a/x").exists() && t1.join("a/y").exists());
    assert!(!t1.join("d/old").exists() && t1.join("d/new").exists());
    fs::write(t1.join("mine"), "c1").unwrap();
    fs::write(t1.join("f"), "c1 wrote").unwrap();
    assert!(!t2.join("mine").exists());
    assert_eq!(fs::read_to_string(t2.join("f")).unwrap(), "top");
}

/// Layers no record and no container names (an image removed while its
/// container ran, the container deleted since; an import killed before
/// its record) are removed by the next import (zfs: children first).
/// The store is at `base/store`; `layer_names` lists the hex names of
/// the layers the driver holds on its filesystem.
pub fn unused_layers_are_swept(store: &Store, base: &Path, layer_names: &dyn Fn() -> Vec<String>) {
    let gone = import(store, base, "x/gone:1", two_layers());
    let target = base.join("b/rootfs");
    fs::create_dir_all(&target).unwrap();
    let plan = store
        .plan_rootfs(&container_key(base, "c"), "x/gone:1", None, &target)
        .unwrap();
    mount_rootfs(&plan).unwrap();
    store.remove_image("x/gone:1").unwrap();
    let crashed = import(store, base, "x/crashed:1", other_image("c"));
    forget_record(&base.join("store"), "x/crashed:1");
    teardown(&plan).unwrap();
    let mut before = [hexes(&gone.layers), hexes(&crashed.layers)].concat();
    before.sort();
    assert_eq!(layer_names(), before);

    let next = import(store, base, "x/next:1", other_image("n"));
    assert_eq!(layer_names(), hexes(&next.layers));
    store.remove_image("x/next:1").unwrap();
    assert!(layer_names().is_empty(), "{:?}", layer_names());
}

/// A second mount of a container that has its root filesystem already
/// (a retried create) is refused and leaves the first one, its files,
/// its mount and its reference, alone. The store is at `base/store`.
pub fn second_mount_of_a_key_leaves_the_first_alone(store: &Store, base: &Path) {
    two_layers().write_layout(&base.join("l"), "x/app:1");
    store.import(&base.join("l"), None).unwrap();
    let key = container_key(base, "c");
    let (t1, t2) = (base.join("b1/rootfs"), base.join("b2/rootfs"));
    fs::create_dir_all(&t1).unwrap();
    fs::create_dir_all(&t2).unwrap();
    let first = store.plan_rootfs(&key, "x/app:1", None, &t1).unwrap();
    mount_rootfs(&first).unwrap();
    fs::write(t1.join("mine"), "m").unwrap();
    let again = store.plan_rootfs(&key, "x/app:1", None, &t2).unwrap();
    let e = mount_rootfs(&again).unwrap_err().to_string();
    assert!(e.contains("already has a root filesystem"), "{e}");
    assert!(is_mounted(&t1));
    assert!(!is_mounted(&t2));
    assert_eq!(fs::read_to_string(t1.join("mine")).unwrap(), "m");
    assert!(base
        .join("store/containers/refs")
        .join(format!("{key}.json"))
        .exists());
    teardown(&first).unwrap();
    assert!(!is_mounted(&t1));
}
