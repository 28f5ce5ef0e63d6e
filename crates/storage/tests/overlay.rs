//! The overlay driver through the public API, as root: images imported
//! into a temporary store, mounted with overlayfs.

mod common;

use std::fs;
use std::path::Path;

use berth_integration::oci::{Compression, ImageBuilder, LayerBuilder};
use berth_integration::storage::remount_readonly;
use berth_storage::{container_key, mount_rootfs, teardown, DriverKind};
use common::{mounts_under, names, Tmp};

#[test]
fn whiteouts_and_opaque_directories() {
    let t = Tmp::new("ovl-wh");
    let store = t.store(DriverKind::Overlay);
    let layout = t.0.join("l");
    ImageBuilder::new()
        .layer(
            LayerBuilder::new()
                .dir("a", 0o755)
                .file("a/gone", b"1", 0o644)
                .file("a/kept", b"1", 0o644)
                .dir("o", 0o755)
                .file("o/lower", b"1", 0o644)
                .dir("o/sub", 0o755)
                .file("o/sub/deep", b"1", 0o644),
            Compression::Gzip,
        )
        .layer(
            LayerBuilder::new()
                .whiteout("a/gone")
                .opaque("o")
                .file("o/upper", b"2", 0o644),
            Compression::None,
        )
        .write_layout(&layout, "x/wh:1");
    let rec = store.import(&layout, None).unwrap();
    let target = t.0.join("b/rootfs");
    let plan = store
        .plan_rootfs(&container_key(&t.0, "c"), &rec.name, None, &target)
        .unwrap();
    mount_rootfs(&plan).unwrap();
    assert_eq!(names(&target.join("a")), ["kept"]);
    assert_eq!(names(&target.join("o")), ["upper"]);
    assert!(!target.join("o/sub/deep").exists());
    teardown(&plan).unwrap();
    assert!(mounts_under(&t.0).is_empty());
}

#[test]
fn two_hundred_layers_top_wins() {
    let t = Tmp::new("ovl-200");
    let store = t.store(DriverKind::Overlay);
    let mut img = ImageBuilder::new();
    for i in 0..200 {
        img = img.layer(
            LayerBuilder::new()
                .file("n", i.to_string().as_bytes(), 0o644)
                .file(&format!("only-{i}"), b"", 0o644),
            Compression::None,
        );
    }
    img.write_layout(&t.0.join("l"), "x/deep:1");
    let rec = store.import(&t.0.join("l"), None).unwrap();
    assert_eq!(rec.layers.len(), 200);
    let target = t.0.join("b/rootfs");
    let plan = store
        .plan_rootfs(&container_key(&t.0, "c"), "x/deep:1", None, &target)
        .unwrap();
    mount_rootfs(&plan).unwrap();
    assert_eq!(fs::read_to_string(target.join("n")).unwrap(), "199");
    assert_eq!(fs::read_dir(&target).unwrap().count(), 201);
    assert_eq!(
        store.read_file(&rec, Path::new("/n")).unwrap().unwrap(),
        b"199"
    );
    teardown(&plan).unwrap();
    assert!(mounts_under(&t.0).is_empty());
}

#[test]
fn single_layer_read_only_and_mounted_twice() {
    let t = Tmp::new("ovl-ro");
    let store = t.store(DriverKind::Overlay);
    ImageBuilder::new()
        .layer(
            LayerBuilder::new()
                .dir("etc", 0o755)
                .file("etc/hostname", b"h\n", 0o644),
            Compression::Zstd,
        )
        .write_layout(&t.0.join("l"), "x/one:1");
    store.import(&t.0.join("l"), None).unwrap();
    let target = t.0.join("b/rootfs");
    let plan = store
        .plan_rootfs(&container_key(&t.0, "c"), "x/one:1", None, &target)
        .unwrap();
    mount_rootfs(&plan).unwrap();
    // What the runtime does for root.readonly.
    remount_readonly(&target);
    assert_eq!(
        fs::read_to_string(target.join("etc/hostname")).unwrap(),
        "h\n"
    );
    let e = fs::write(target.join("etc/x"), "").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    // A retried create mounts a second time; teardown removes both.
    mount_rootfs(&plan).unwrap();
    assert_eq!(mounts_under(&t.0).len(), 2);
    teardown(&plan).unwrap();
    assert!(mounts_under(&t.0).is_empty());
    assert!(names(&t.0.join("store/containers/overlay")).is_empty());
}
