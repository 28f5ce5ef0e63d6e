//! The btrfs driver through the store's public API, as root, on a fresh
//! loop-mounted btrfs: import, mount, isolation, snapshots, teardown.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use berth_integration::storage::BtrfsLoop;
use berth_storage::{
    container_key, mount_rootfs, snapshot_create, snapshot_delete, snapshot_list, snapshot_restore,
    teardown, DriverKind, Store, StoreConfig,
};
use common::{check_layers_and_isolation, mount_points, snapshot_names, two_layers};

/// A fresh 512 MiB btrfs at a temp dir (see [`BtrfsLoop`]).
fn btrfs() -> BtrfsLoop {
    BtrfsLoop::new(512 << 20)
}

/// A btrfs store at `fs/store`.
fn store(fs: &BtrfsLoop) -> Store {
    Store::open(StoreConfig {
        root: fs.path().join("store"),
        driver: DriverKind::Btrfs,
        options: BTreeMap::new(),
    })
    .unwrap()
}

#[test]
fn import_mount_isolation_snapshots_teardown() {
    let fs = btrfs();
    let store = store(&fs);
    let layout = fs.path().join("layout");
    two_layers().write_layout(&layout, "example.com/app:v1");
    let img = store.import(&layout, Some("app:v1")).unwrap();
    assert_eq!(img.layers.len(), 2);
    assert_eq!(fs.subvolumes().len(), 2, "a subvolume per layer");
    assert_eq!(
        store
            .read_file(&img, Path::new("/etc/passwd"))
            .unwrap()
            .as_deref(),
        Some(&b"root:x:0:0:root:/root:/bin/sh\n"[..])
    );

    let state = fs.path().join("state");
    let (k1, k2) = (container_key(&state, "c1"), container_key(&state, "c2"));
    let (t1, t2) = (fs.path().join("b1/rootfs"), fs.path().join("b2/rootfs"));
    fs::create_dir_all(&t1).unwrap();
    fs::create_dir_all(&t2).unwrap();
    let r1 = store.plan_rootfs(&k1, "app:v1", None, &t1).unwrap();
    let r2 = store
        .plan_rootfs(&k2, "app:v1", Some(&img.manifest), &t2)
        .unwrap();
    mount_rootfs(&r1).unwrap();
    mount_rootfs(&r2).unwrap();

    check_layers_and_isolation(&t1, &t2);

    // Snapshots through the library, keep-last 2.
    for (i, name) in ["s1", "s2", "s3"].iter().enumerate() {
        fs::write(t1.join("f"), format!("v{i}")).unwrap();
        snapshot_create(&r1, name, Some(2)).unwrap();
    }
    assert_eq!(snapshot_names(&r1), ["s2", "s3"]);
    fs::write(t1.join("f"), "later").unwrap();
    snapshot_restore(&r1, "s2").unwrap();
    assert_eq!(fs::read_to_string(t1.join("f")).unwrap(), "v1");
    snapshot_delete(&r1, "s3").unwrap();
    assert!(snapshot_delete(&r1, "s3").is_err());
    assert_eq!(snapshot_list(&r2).unwrap(), []);

    teardown(&r1).unwrap();
    teardown(&r2).unwrap();
    teardown(&r1).unwrap();
    let mounts = mount_points();
    assert!(!mounts.contains(&t1) && !mounts.contains(&t2));
    assert_eq!(fs.subvolumes().len(), 2, "only the layers are left");

    store.remove_image("app:v1").unwrap();
    assert_eq!(fs.subvolumes(), Vec::<String>::new());
}

#[test]
fn store_off_btrfs_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open(StoreConfig {
        root: dir.path().join("store"),
        driver: DriverKind::Btrfs,
        options: BTreeMap::new(),
    })
    .and_then(|s| {
        let layout = dir.path().join("layout");
        two_layers().write_layout(&layout, "x:1");
        s.import(&layout, None).map(drop)
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("needs the store on btrfs"), "{err}");
}

/// The sweep of unused layers on btrfs.
#[test]
fn unused_layers_are_swept() {
    let fs = btrfs();
    let layer_subvols = || {
        let mut v: Vec<String> = fs
            .subvolumes()
            .iter()
            .filter_map(|s| s.strip_prefix("store/layers/btrfs/").map(String::from))
            .collect();
        v.sort();
        v
    };
    common::unused_layers_are_swept(&store(&fs), fs.path(), &layer_subvols);
    assert!(fs.subvolumes().is_empty(), "{:?}", fs.subvolumes());
}

#[test]
fn second_mount_of_a_key_leaves_the_first_alone() {
    let fs = btrfs();
    common::second_mount_of_a_key_leaves_the_first_alone(&store(&fs), fs.path());
}
