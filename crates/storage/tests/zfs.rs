//! The zfs driver through the store's public API, as root, on the shared
//! zfs-fuse test pool (hack/zfs-fuse.sh): import, mount, isolation,
//! snapshots, teardown. Each test has its own child dataset.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use berth_integration::storage::{zfs, ZfsDataset};
use berth_storage::{
    container_key, mount_rootfs, snapshot_create, snapshot_restore, teardown, DriverKind, Store,
    StoreConfig,
};
use common::{check_layers_and_isolation, mount_points, snapshot_names, two_layers};

/// A dataset of our own on the shared pool (see [`ZfsDataset`]) and a
/// store directory; destroyed and removed on drop.
struct Env {
    ds: ZfsDataset,
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let ds = ZfsDataset::new("store");
        let dir = tempfile::Builder::new()
            .prefix("berth-zfs-it-")
            .tempdir_in("/tmp")
            .unwrap();
        Env { ds, dir }
    }

    fn ds(&self) -> &str {
        self.ds.name()
    }

    fn store(&self) -> Store {
        Store::open(StoreConfig {
            root: self.dir.path().join("store"),
            driver: DriverKind::Zfs,
            options: BTreeMap::from([("zfs.dataset".to_string(), self.ds().to_string())]),
        })
        .unwrap()
    }

    fn datasets(&self) -> Vec<String> {
        ZfsDataset::datasets(self.ds())
    }
}

#[test]
fn import_mount_isolation_snapshots_teardown() {
    let env = Env::new();
    let store = env.store();
    let layout = env.dir.path().join("layout");
    two_layers().write_layout(&layout, "example.com/app:v1");
    let img = store.import(&layout, Some("app:v1")).unwrap();
    let layers: Vec<String> = env
        .datasets()
        .into_iter()
        .filter(|d| d.starts_with(&format!("{}/layers/", env.ds())))
        .collect();
    assert_eq!(layers.len(), 2, "a dataset per layer: {layers:?}");
    assert!(ZfsDataset::snapshots(&format!("{}/layers", env.ds()))
        .iter()
        .all(|s| s.ends_with("@layer")));
    assert_eq!(
        store
            .read_file(&img, Path::new("/etc/passwd"))
            .unwrap()
            .as_deref(),
        Some(&b"root:x:0:0:root:/root:/bin/sh\n"[..])
    );

    let state = env.dir.path().join("state");
    let (k1, k2) = (container_key(&state, "c1"), container_key(&state, "c2"));
    let (t1, t2) = (
        env.dir.path().join("b1/rootfs"),
        env.dir.path().join("b2/rootfs"),
    );
    fs::create_dir_all(&t1).unwrap();
    fs::create_dir_all(&t2).unwrap();
    let r1 = store.plan_rootfs(&k1, "app:v1", None, &t1).unwrap();
    let r2 = store.plan_rootfs(&k2, "app:v1", None, &t2).unwrap();
    mount_rootfs(&r1).unwrap();
    mount_rootfs(&r2).unwrap();
    check_layers_and_isolation(&t1, &t2);
    let origin = zfs(&[
        "get",
        "-H",
        "-o",
        "value",
        "origin",
        &format!("{}/containers/{k1}", env.ds()),
    ])
    .unwrap();
    assert!(
        origin.trim().ends_with("@layer"),
        "a clone of the top layer: {origin}"
    );

    for (i, name) in ["s1", "s2", "s3"].iter().enumerate() {
        fs::write(t1.join("f"), format!("v{i}")).unwrap();
        snapshot_create(&r1, name, Some(2)).unwrap();
    }
    assert_eq!(snapshot_names(&r1), ["s2", "s3"]);
    fs::write(t1.join("f"), "later").unwrap();
    snapshot_restore(&r1, "s2").unwrap();
    assert_eq!(fs::read_to_string(t1.join("f")).unwrap(), "v1");
    assert_eq!(
        snapshot_names(&r1),
        ["s2"],
        "zfs rollback -r destroys the later snapshots"
    );

    teardown(&r1).unwrap();
    teardown(&r2).unwrap();
    teardown(&r1).unwrap();
    let mounts = mount_points();
    assert!(!mounts.contains(&t1) && !mounts.contains(&t2));
    let containers = format!("{}/containers", env.ds());
    assert!(
        !env.datasets()
            .iter()
            .any(|d| d.starts_with(&format!("{containers}/"))),
        "{:?}",
        env.datasets()
    );

    store.remove_image("app:v1").unwrap();
    assert!(
        !env.datasets()
            .iter()
            .any(|d| d.starts_with(&format!("{}/layers/", env.ds()))),
        "{:?}",
        env.datasets()
    );
    assert!(!mount_points().iter().any(|m| m.starts_with(env.dir.path())));
}

#[test]
fn missing_dataset_option_and_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    two_layers().write_layout(&layout, "x:1");
    let open_import = |options: BTreeMap<String, String>| {
        Store::open(StoreConfig {
            root: dir.path().join("store"),
            driver: DriverKind::Zfs,
            options,
        })
        .and_then(|s| s.import(&layout, None).map(drop))
        .unwrap_err()
        .to_string()
    };
    let err = open_import(BTreeMap::new());
    assert!(err.contains("zfs.dataset"), "{err}");
    let env = Env::new();
    let err = open_import(BTreeMap::from([(
        "zfs.dataset".to_string(),
        format!("{}/nope", env.ds()),
    )]));
    assert!(err.contains("does not exist"), "{err}");
}

/// The sweep of unused layers on zfs: destroyed children first.
#[test]
fn unused_layers_are_swept() {
    let env = Env::new();
    let layer_datasets = || {
        let prefix = format!("{}/layers/", env.ds());
        let mut v: Vec<String> = env
            .datasets()
            .iter()
            .filter_map(|d| d.strip_prefix(&prefix).map(String::from))
            .collect();
        v.sort();
        v
    };
    common::unused_layers_are_swept(&env.store(), env.dir.path(), &layer_datasets);
}

#[test]
fn second_mount_of_a_key_leaves_the_first_alone() {
    let env = Env::new();
    common::second_mount_of_a_key_leaves_the_first_alone(&env.store(), env.dir.path());
}
