//! The vfs driver through the public API, as root: layers as whole
//! trees, containers as copies bind-mounted at the target.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use berth_integration::oci::{Compression, ImageBuilder, LayerBuilder};
use berth_storage::{container_key, mount_rootfs, teardown, DriverKind};
use common::{mounts_under, names, Tmp};

#[test]
fn visibility_isolation_and_metadata() {
    let t = Tmp::new("vfs");
    let store = t.store(DriverKind::Vfs);
    let layout = t.0.join("l");
    ImageBuilder::new()
        .layer(
            LayerBuilder::new()
                .dir("a", 0o755)
                .file("a/gone", b"1", 0o644)
                .file("a/kept", b"1", 0o644)
                .dir("o", 0o755)
                .file("o/lower", b"1", 0o644)
                .file("f", b"bottom", 0o644)
                .file_owned("bin/su", b"su", 0o4755, 0, 0)
                .file_owned("home/u/file", b"u", 0o640, 1000, 1000)
                .hardlink("home/u/link", "home/u/file")
                .symlink("home/u/sl", "../../f"),
            Compression::Gzip,
        )
        .layer(
            LayerBuilder::new()
                .whiteout("a/gone")
                .opaque("o")
                .file("o/upper", b"2", 0o644)
                .file("f", b"top", 0o644),
            Compression::Zstd,
        )
        .write_layout(&layout, "x/v:1");
    let rec = store.import(&layout, None).unwrap();
    let t1 = t.0.join("b1/rootfs");
    let t2 = t.0.join("b2/rootfs");
    let p1 = store
        .plan_rootfs(&container_key(&t.0, "c1"), &rec.name, None, &t1)
        .unwrap();
    mount_rootfs(&p1).unwrap();
    assert_eq!(names(&t1.join("a")), ["kept"]);
    assert_eq!(names(&t1.join("o")), ["upper"]);
    assert_eq!(fs::read_to_string(t1.join("f")).unwrap(), "top");
    assert_eq!(fs::read_to_string(t1.join("home/u/sl")).unwrap(), "top");
    let su = fs::metadata(t1.join("bin/su")).unwrap();
    assert_eq!(su.mode() & 0o7777, 0o4755);
    let f = fs::metadata(t1.join("home/u/file")).unwrap();
    assert_eq!((f.uid(), f.gid(), f.mode() & 0o777), (1000, 1000, 0o640));
    assert_eq!(fs::metadata(t1.join("home/u/link")).unwrap().ino(), f.ino());
    assert_eq!(
        store
            .read_file(&rec, Path::new("/home/u/sl"))
            .unwrap()
            .unwrap(),
        b"top"
    );
    assert!(store
        .read_file(&rec, Path::new("/a/gone"))
        .unwrap()
        .is_none());

    fs::write(t1.join("mine"), "1").unwrap();
    fs::remove_file(t1.join("a/kept")).unwrap();
    let p2 = store
        .plan_rootfs(&container_key(&t.0, "c2"), &rec.name, None, &t2)
        .unwrap();
    mount_rootfs(&p2).unwrap();
    assert!(!t2.join("mine").exists());
    assert!(t2.join("a/kept").exists());

    teardown(&p1).unwrap();
    teardown(&p1).unwrap();
    teardown(&p2).unwrap();
    assert!(mounts_under(&t.0).is_empty());
    assert!(names(&t.0.join("store/containers/vfs")).is_empty());
    assert!(names(&t.0.join("store/containers/refs")).is_empty());
    // Never mounted.
    let p3 = store
        .plan_rootfs(
            &container_key(&t.0, "c3"),
            &rec.name,
            None,
            &t.0.join("b3/rootfs"),
        )
        .unwrap();
    teardown(&p3).unwrap();
    store.remove_image(&rec.name).unwrap();
    assert!(names(&t.0.join("store/layers/vfs")).is_empty());
}
