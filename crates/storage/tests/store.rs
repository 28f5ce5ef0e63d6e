//! The store through its public API, as root, on the overlay driver:
//! import, lookup, plan + mount + teardown, image rm, failed imports.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use berth_integration::oci::{Compression, ImageBuilder, LayerBuilder};
use berth_storage::{container_key, mount_rootfs, teardown, Digest, DriverKind, StorageError};
use common::{base, forget_record, hexes, import, mounts_under, names, two_layers, Tmp};

/// Every path under `dir` with its type and (for files) size and content hash.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let md = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if md.is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &p, out);
            } else if md.is_file() {
                let sum = berth_integration::oci::sha256(&fs::read(&p).unwrap());
                out.push(format!("{rel} {} {sum}", md.len()));
            } else {
                out.push(format!("{rel} mode {:o}", md.mode()));
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// [`two_layers`] with a command.
fn image() -> ImageBuilder {
    two_layers().config(|c| c["Cmd"] = serde_json::json!(["/bin/sh", "-c", "true"]))
}

#[test]
fn import_mount_teardown() {
    let t = Tmp::new("lifecycle");
    let store = t.store(DriverKind::Overlay);
    let layout = t.0.join("layout");
    let w = image().write_layout(&layout, "example.com/app:v1");
    let rec = store.import(&layout, None).unwrap();
    assert_eq!(rec.name, "example.com/app:v1");
    assert_eq!(rec.manifest.as_str(), w.manifest);
    assert_eq!(rec.config.as_str(), w.config);
    assert_eq!(rec.layers.len(), 2);
    assert_eq!(
        rec.layers[0].as_str(),
        w.diff_ids[0],
        "chain id of the bottom layer"
    );

    let key1 = container_key(&t.0, "c1");
    let key2 = container_key(&t.0, "c2");
    let t1 = t.0.join("b1/rootfs");
    let t2 = t.0.join("b2/rootfs");
    let p1 = store
        .plan_rootfs(&key1, "example.com/app:v1", Some(&rec.manifest), &t1)
        .unwrap();
    assert_eq!(p1.layers, rec.layers);
    // Planning changes nothing.
    assert!(!t1.exists());
    mount_rootfs(&p1).unwrap();
    let refs = t.0.join("store/containers/refs");
    assert_eq!(names(&refs), [format!("{key1}.json")]);
    assert_eq!(fs::read_to_string(t1.join("f")).unwrap(), "top");
    assert_eq!(names(&t1.join("a")), ["y"]);
    assert_eq!(names(&t1.join("d")), ["new"]);
    fs::write(t1.join("mine"), "1").unwrap();

    let p2 = store
        .plan_rootfs(&key2, "example.com/app:v1", None, &t2)
        .unwrap();
    mount_rootfs(&p2).unwrap();
    assert!(!t2.join("mine").exists());
    assert_eq!(fs::read_to_string(t2.join("etc/passwd")).unwrap().len(), 30);

    teardown(&p1).unwrap();
    assert!(!mounts_under(&t.0).contains(&t1));
    assert!(!t.0.join("store/containers/overlay").join(&key1).exists());
    teardown(&p1).unwrap();
    teardown(&p2).unwrap();
    assert!(mounts_under(&t.0).is_empty());
    assert!(names(&refs).is_empty());
    assert!(names(&t.0.join("store/containers/overlay")).is_empty());

    // A plan whose mount never happened tears down too.
    let p3 = store
        .plan_rootfs(
            &container_key(&t.0, "c3"),
            "example.com/app:v1",
            None,
            &t.0.join("b3/rootfs"),
        )
        .unwrap();
    teardown(&p3).unwrap();
}

#[test]
fn lookup_config_and_files() {
    let t = Tmp::new("lookup");
    let store = t.store(DriverKind::Overlay);
    let archive = t.0.join("img.tar");
    image().write_archive(&archive, "example.com/app:v1");
    let rec = store.import(&archive, Some("app:2")).unwrap();
    assert_eq!(rec.name, "app:2");
    assert_eq!(store.images().unwrap(), vec![rec.clone()]);
    let hex = rec.manifest.hex().to_string();
    for r in [
        "app:2".to_string(),
        format!("app@{}", rec.manifest),
        rec.manifest.to_string(),
        hex[..12].to_string(),
    ] {
        assert_eq!(store.image(&r).unwrap(), rec, "{r}");
    }
    assert!(matches!(store.image("app"), Err(StorageError::NoImage(_))));
    assert!(matches!(
        store.image(&hex[..11]),
        Err(StorageError::NoImage(_))
    ));
    let cfg = store.image_config(&rec).unwrap();
    let cmd = cfg.config().as_ref().unwrap().cmd().clone().unwrap();
    assert_eq!(cmd, ["/bin/sh", "-c", "true"]);
    assert_eq!(
        store
            .read_file(&rec, Path::new("/etc/passwd"))
            .unwrap()
            .unwrap(),
        b"root:x:0:0:root:/root:/bin/sh\n"
    );
    assert!(store.read_file(&rec, Path::new("/a/x")).unwrap().is_none());
    assert!(store
        .read_file(&rec, Path::new("/d/old"))
        .unwrap()
        .is_none());
    assert_eq!(
        store.read_file(&rec, Path::new("/f")).unwrap().unwrap(),
        b"top"
    );
}

#[test]
fn names_from_the_source() {
    let t = Tmp::new("names");
    let store = t.store(DriverKind::Overlay);
    let layout = t.0.join("layout");
    image().write_layout(&layout, "latest");
    let e = store.import(&layout, None).unwrap_err().to_string();
    assert!(e.contains("--name"), "{e}");
    assert!(store.images().unwrap().is_empty());
    assert_eq!(
        store.import(&layout, Some("foo")).unwrap().name,
        "foo:latest"
    );
    let save = t.0.join("save.tar");
    image().write_docker_save(&save, "busybox:1.36");
    assert_eq!(store.import(&save, None).unwrap().name, "busybox:1.36");
    // Both name the same filesystem: the layers were unpacked once.
    assert_eq!(names(&t.0.join("store/layers/overlay")).len(), 2);
}

#[test]
fn rm_keeps_what_others_use() {
    let t = Tmp::new("rm");
    let store = t.store(DriverKind::Overlay);
    let a = ImageBuilder::new().layer(base(), Compression::None).layer(
        LayerBuilder::new().file("only-a", b"a", 0o644),
        Compression::None,
    );
    let b = ImageBuilder::new().layer(base(), Compression::None).layer(
        LayerBuilder::new().file("only-b", b"b", 0o644),
        Compression::None,
    );
    a.write_layout(&t.0.join("a"), "x/a:1");
    b.write_layout(&t.0.join("b"), "x/b:1");
    let ra = store.import(&t.0.join("a"), None).unwrap();
    let rb = store.import(&t.0.join("b"), None).unwrap();
    assert_eq!(ra.layers[0], rb.layers[0]);
    let layers = t.0.join("store/layers/overlay");
    assert_eq!(names(&layers).len(), 3);

    // A container of a keeps a's layers through `image rm a`.
    let target = t.0.join("ca/rootfs");
    let plan = store
        .plan_rootfs(&container_key(&t.0, "ca"), "x/a:1", None, &target)
        .unwrap();
    mount_rootfs(&plan).unwrap();
    assert_eq!(store.remove_image("x/a:1").unwrap(), ra);
    assert!(matches!(
        store.image("x/a:1"),
        Err(StorageError::NoImage(_))
    ));
    assert_eq!(names(&layers).len(), 3);
    assert_eq!(fs::read_to_string(target.join("only-a")).unwrap(), "a");
    teardown(&plan).unwrap();

    // b's layers stay; a's top layer, now unused, goes with the next rm.
    let layout_c = t.0.join("c");
    ImageBuilder::new()
        .layer(
            LayerBuilder::new().file("c", b"c", 0o644),
            Compression::None,
        )
        .write_layout(&layout_c, "x/c:1");
    store.import(&layout_c, None).unwrap();
    store.remove_image("x/c:1").unwrap();
    let mut left = names(&layers);
    let mut want: Vec<String> = rb.layers.iter().map(|l| l.hex().to_string()).collect();
    left.sort();
    want.sort();
    assert_eq!(left, want);
    let target = t.0.join("cb/rootfs");
    let plan = store
        .plan_rootfs(&container_key(&t.0, "cb"), "x/b:1", None, &target)
        .unwrap();
    mount_rootfs(&plan).unwrap();
    assert!(target.join("only-b").exists() && target.join("etc/passwd").exists());
    teardown(&plan).unwrap();

    store.remove_image(rb.manifest.as_str()).unwrap();
    assert!(names(&layers).is_empty());
    assert!(names(&t.0.join("store/blobs/sha256")).is_empty());
    assert!(store.images().unwrap().is_empty());
}

#[test]
fn failed_import_leaves_the_store_as_it_was() {
    let t = Tmp::new("corrupt");
    let store = t.store(DriverKind::Overlay);
    // One image already there, sharing the bottom layer.
    ImageBuilder::new()
        .layer(base(), Compression::None)
        .write_layout(&t.0.join("ok"), "x/ok:1");
    store.import(&t.0.join("ok"), None).unwrap();
    let before = listing(&t.0.join("store"));

    for (tag, shared_base) in [("fresh", false), ("shared", true)] {
        let layout = t.0.join(tag);
        let first = if shared_base {
            base()
        } else {
            LayerBuilder::new().file("other", b"o", 0o644)
        };
        let w = ImageBuilder::new()
            .layer(first, Compression::None)
            .layer(
                LayerBuilder::new().file("big", &[7u8; 10000], 0o644),
                Compression::None,
            )
            .write_layout(&layout, "x/bad:1");
        // Flip a byte inside the second layer's blob: its digest no longer matches.
        let blob = layout
            .join("blobs/sha256")
            .join(&w.layers[1]["sha256:".len()..]);
        let mut bytes = fs::read(&blob).unwrap();
        bytes[5000] ^= 0xff;
        fs::write(&blob, bytes).unwrap();
        let e = store.import(&layout, None).unwrap_err().to_string();
        assert!(e.contains(&w.layers[1]), "{tag}: {e}");
        assert_eq!(listing(&t.0.join("store")), before, "{tag}");
    }
}

#[test]
fn reimport_replaces_the_record() {
    let t = Tmp::new("reimport");
    let store = t.store(DriverKind::Overlay);
    let one = ImageBuilder::new().layer(
        LayerBuilder::new().file("v", b"1", 0o644),
        Compression::None,
    );
    let two = ImageBuilder::new().layer(
        LayerBuilder::new().file("v", b"2", 0o644),
        Compression::None,
    );
    one.write_layout(&t.0.join("1"), "x/app:v");
    two.write_layout(&t.0.join("2"), "x/app:v");
    let r1 = store.import(&t.0.join("1"), None).unwrap();
    let r2 = store.import(&t.0.join("2"), None).unwrap();
    assert_ne!(r1.manifest, r2.manifest);
    assert_eq!(store.images().unwrap(), vec![r2.clone()]);
    assert_eq!(
        names(&t.0.join("store/layers/overlay")),
        [r2.layers[0].hex().to_string()]
    );
    // A bundle made from the first is told its image was replaced.
    let e = store
        .plan_rootfs("k", "x/app:v", Some(&r1.manifest), &t.0.join("r"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("replaced"), "{e}");
    store.remove_image("x/app:v").unwrap();
    let e = store
        .plan_rootfs("k", "x/app:v", Some(&r2.manifest), &t.0.join("r"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("removed"), "{e}");
}

#[test]
fn plan_needs_layers_for_the_driver() {
    let t = Tmp::new("otherdriver");
    let overlay = t.store(DriverKind::Overlay);
    image().write_layout(&t.0.join("l"), "x/app:1");
    overlay.import(&t.0.join("l"), None).unwrap();
    let vfs = t.store(DriverKind::Vfs);
    let e = vfs
        .plan_rootfs("k", "x/app:1", None, &t.0.join("r"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not unpacked for the vfs driver") && e.contains("--storage-driver vfs"),
        "{e}"
    );
    // Importing it for vfs too makes it plannable; removing it removes both.
    vfs.import(&t.0.join("l"), None).unwrap();
    vfs.plan_rootfs("k", "x/app:1", None, &t.0.join("r"))
        .unwrap();
    vfs.remove_image("x/app:1").unwrap();
    assert!(names(&t.0.join("store/layers/overlay")).is_empty());
    assert!(names(&t.0.join("store/layers/vfs")).is_empty());
}

#[test]
fn many_containers_in_parallel() {
    let t = Tmp::new("parallel");
    let store = t.store(DriverKind::Overlay);
    image().write_layout(&t.0.join("l"), "x/app:1");
    let rec = store.import(&t.0.join("l"), None).unwrap();
    let manifest: Digest = rec.manifest.clone();
    std::thread::scope(|s| {
        for i in 0..16 {
            let (t, store, manifest) = (&t, &store, &manifest);
            s.spawn(move || {
                let target = t.0.join(format!("c{i}/rootfs"));
                let plan = store
                    .plan_rootfs(
                        &container_key(&t.0, &format!("c{i}")),
                        "x/app:1",
                        Some(manifest),
                        &target,
                    )
                    .unwrap();
                mount_rootfs(&plan).unwrap();
                fs::write(target.join("id"), i.to_string()).unwrap();
                assert_eq!(
                    fs::read_to_string(target.join("id")).unwrap(),
                    i.to_string()
                );
                teardown(&plan).unwrap();
            });
        }
    });
    assert!(mounts_under(&t.0).is_empty());
    assert!(names(&t.0.join("store/containers/refs")).is_empty());
    assert!(names(&t.0.join("store/containers/overlay")).is_empty());
}

fn one_layer(file: &str) -> ImageBuilder {
    ImageBuilder::new().layer(
        LayerBuilder::new().file(file, file.as_bytes(), 0o644),
        Compression::None,
    )
}

/// Layers no image record and no container names (an import killed before
/// its record; an image removed while a container used it, the container
/// deleted since) are removed by the next import, and by `image rm`;
/// what images and live containers use stays.
#[test]
fn unused_layers_and_blobs_are_swept() {
    for driver in [DriverKind::Overlay, DriverKind::Vfs] {
        let t = Tmp::new("sweep");
        let store = t.store(driver);
        let layers = t.0.join("store/layers").join(driver.as_str());
        let import = |name: &str, img: ImageBuilder| import(&store, &t.0, name, img);
        let keep = import("x/keep:1", one_layer("keep"));
        let gone = import("x/gone:1", one_layer("gone"));
        let live = import("x/live:1", one_layer("live"));
        let plan = |name: &str, id: &str| {
            store
                .plan_rootfs(&container_key(&t.0, id), name, None, &t.0.join(id))
                .unwrap()
        };
        // Removed while a container used it; the container deleted since.
        let pg = plan("x/gone:1", "cg");
        mount_rootfs(&pg).unwrap();
        // Removed while a container uses it; the container still there.
        let pl = plan("x/live:1", "cl");
        mount_rootfs(&pl).unwrap();
        store.remove_image("x/gone:1").unwrap();
        store.remove_image("x/live:1").unwrap();
        // Killed before its record: layers and blobs, no record.
        let crashed = import(
            "x/crashed:1",
            one_layer("c1").layer(
                LayerBuilder::new().file("c2", b"c2", 0o644),
                Compression::None,
            ),
        );
        forget_record(&t.0.join("store"), "x/crashed:1");
        teardown(&pg).unwrap();
        let mut all = [&keep, &crashed, &gone, &live]
            .iter()
            .flat_map(|r| hexes(&r.layers))
            .collect::<Vec<_>>();
        all.sort();
        assert_eq!(names(&layers), all, "{driver:?}: before the sweep");

        let next = import("x/next:1", one_layer("next"));
        let mut want = [&keep, &live, &next]
            .iter()
            .flat_map(|r| hexes(&r.layers))
            .collect::<Vec<_>>();
        want.sort();
        assert_eq!(names(&layers), want, "{driver:?}: after the next import");
        let mut blobs: Vec<String> = [&keep, &next]
            .iter()
            .flat_map(|r| [r.manifest.hex().to_string(), r.config.hex().to_string()])
            .collect();
        blobs.sort();
        assert_eq!(names(&t.0.join("store/blobs/sha256")), blobs, "{driver:?}");
        assert_eq!(fs::read_to_string(t.0.join("cl/live")).unwrap(), "live");

        // `image rm` sweeps too: the live container's layers go once it is
        // deleted and something else is removed.
        teardown(&pl).unwrap();
        let other = import("x/other:1", one_layer("other"));
        forget_record(&t.0.join("store"), "x/other:1");
        store.remove_image("x/next:1").unwrap();
        assert_eq!(names(&layers), hexes(&keep.layers), "{driver:?}");
        assert!(!hexes(&other.layers).iter().any(|h| layers.join(h).exists()));
        assert_eq!(
            names(&t.0.join("store/blobs/sha256")).len(),
            2,
            "{driver:?}: only keep's manifest and config"
        );
    }
}

fn mount_tmpfs(at: &Path) {
    nix::mount::mount(
        Some("berth-test"),
        at,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
}

/// A mount that was at the rootfs path before berth mounted there stays
/// through teardown; one mounted over berth's makes teardown fail, saying
/// so, without unmounting anything.
#[test]
fn teardown_unmounts_only_what_berth_mounted() {
    for driver in [DriverKind::Overlay, DriverKind::Vfs] {
        let t = Tmp::new("theirs");
        let store = t.store(driver);
        image().write_layout(&t.0.join("l"), "x/app:1");
        store.import(&t.0.join("l"), None).unwrap();
        let target = t.0.join("b/rootfs");
        fs::create_dir_all(&target).unwrap();
        mount_tmpfs(&target);
        fs::write(target.join("theirs"), "t").unwrap();
        let plan = store
            .plan_rootfs(&container_key(&t.0, "c"), "x/app:1", None, &target)
            .unwrap();
        mount_rootfs(&plan).unwrap();
        assert_eq!(fs::read_to_string(target.join("f")).unwrap(), "top");
        assert!(!target.join("theirs").exists());
        teardown(&plan).unwrap();
        assert_eq!(
            fs::read_to_string(target.join("theirs")).unwrap(),
            "t",
            "{driver:?}: the mount that was there before is gone"
        );

        mount_rootfs(&plan).unwrap();
        mount_tmpfs(&target);
        let e = teardown(&plan).unwrap_err().to_string();
        assert!(e.contains("under another mount"), "{driver:?}: {e}");
        nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH).unwrap();
        assert_eq!(fs::read_to_string(target.join("f")).unwrap(), "top");
        teardown(&plan).unwrap();
        assert_eq!(fs::read_to_string(target.join("theirs")).unwrap(), "t");
        nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH).unwrap();
        assert!(mounts_under(&t.0).is_empty(), "{driver:?}");
    }
}

/// A mount that fails undoes only what it made: the container the key
/// already had (an earlier create) keeps its files, mount and reference;
/// a new container leaves nothing.
#[test]
fn failed_mount_leaves_the_earlier_container_alone() {
    for driver in [DriverKind::Overlay, DriverKind::Vfs] {
        let t = Tmp::new("failmount");
        let store = t.store(driver);
        image().write_layout(&t.0.join("l"), "x/app:1");
        store.import(&t.0.join("l"), None).unwrap();
        let key = container_key(&t.0, "c");
        let target = t.0.join("b/rootfs");
        let plan = store.plan_rootfs(&key, "x/app:1", None, &target).unwrap();
        mount_rootfs(&plan).unwrap();
        fs::write(target.join("mine"), "m").unwrap();
        // A target that cannot be made: under a regular file.
        fs::write(t.0.join("file"), "").unwrap();
        let bad = store
            .plan_rootfs(&key, "x/app:1", None, &t.0.join("file/rootfs"))
            .unwrap();
        let e = mount_rootfs(&bad).unwrap_err().to_string();
        assert!(e.contains("file/rootfs"), "{e}");
        assert_eq!(
            fs::read_to_string(target.join("mine")).unwrap(),
            "m",
            "{driver:?}: the earlier container lost its files"
        );
        let refs = t.0.join("store/containers/refs");
        assert_eq!(names(&refs), [format!("{key}.json")]);
        teardown(&plan).unwrap();

        let other = container_key(&t.0, "d");
        let bad = store
            .plan_rootfs(&other, "x/app:1", None, &t.0.join("file/rootfs"))
            .unwrap();
        mount_rootfs(&bad).unwrap_err();
        assert!(names(&refs).is_empty(), "{driver:?}");
        assert!(names(&t.0.join("store/containers").join(driver.as_str())).is_empty());
    }
}
