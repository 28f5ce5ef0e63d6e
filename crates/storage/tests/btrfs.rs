//! The btrfs driver through the store's public API, as root, on a fresh
//! loop-mounted btrfs: import, mount, isolation, snapshots, teardown.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_integration::oci::{Compression, ImageBuilder, LayerBuilder};
use berth_storage::{
    container_key, mount_rootfs, snapshot_create, snapshot_delete, snapshot_list, snapshot_restore,
    teardown, DriverKind, Store, StoreConfig,
};

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mount_points() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .collect()
}

/// A fresh btrfs (sparse file, mkfs.btrfs, loop mount) at a temp dir;
/// everything mounted under it, then it, unmounted on drop (the loop
/// device is autoclear) and the file removed.
struct Fs {
    dir: tempfile::TempDir,
    img: PathBuf,
}

impl Fs {
    fn new() -> Fs {
        let dir = tempfile::Builder::new()
            .prefix("berth-btrfs-it-")
            .tempdir_in("/tmp")
            .unwrap();
        let img = PathBuf::from(format!("{}.img", dir.path().display()));
        let fs = Fs { dir, img };
        fs::File::create(&fs.img)
            .unwrap()
            .set_len(512 << 20)
            .unwrap();
        run("mkfs.btrfs", &["-q", fs.img.to_str().unwrap()]);
        run(
            "mount",
            &[
                "-o",
                "loop",
                fs.img.to_str().unwrap(),
                fs.path().to_str().unwrap(),
            ],
        );
        fs
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn subvolumes(&self) -> Vec<String> {
        let out = Command::new("btrfs")
            .args(["subvolume", "list", "-o"])
            .arg(self.path())
            .output()
            .unwrap();
        assert!(out.status.success());
        let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(" path ").nth(1).map(String::from))
            .collect();
        v.sort();
        v
    }
}

impl Drop for Fs {
    fn drop(&mut self) {
        let mut below: Vec<PathBuf> = mount_points()
            .into_iter()
            .filter(|m| m.starts_with(self.path()))
            .collect();
        below.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
        for m in below {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = fs::remove_file(&self.img);
    }
}

fn image() -> ImageBuilder {
    ImageBuilder::new()
        .layer(
            LayerBuilder::new()
                .dir("etc", 0o755)
                .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
                .dir("a", 0o755)
                .file("a/x", b"x", 0o644)
                .file("a/y", b"y", 0o644)
                .dir("d", 0o755)
                .file("d/old", b"old", 0o644)
                .file("f", b"bottom", 0o644),
            Compression::Gzip,
        )
        .layer(
            LayerBuilder::new()
                .whiteout("a/x")
                .opaque("d")
                .file("d/new", b"new", 0o644)
                .file("f", b"top", 0o644),
            Compression::Zstd,
        )
}

#[test]
fn import_mount_isolation_snapshots_teardown() {
    let fs = Fs::new();
    let store = Store::open(StoreConfig {
        root: fs.path().join("store"),
        driver: DriverKind::Btrfs,
        options: BTreeMap::new(),
    })
    .unwrap();
    let layout = fs.path().join("layout");
    image().write_layout(&layout, "example.com/app:v1");
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

    // The layers applied in order: whiteout, opaque dir, replaced file.
    assert_eq!(fs::read_to_string(t1.join("f")).unwrap(), "top");
    assert!(!t1.join("a/x").exists() && t1.join("a/y").exists());
    assert!(!t1.join("d/old").exists() && t1.join("d/new").exists());
    fs::write(t1.join("mine"), "c1").unwrap();
    fs::write(t1.join("f"), "c1 wrote").unwrap();
    assert!(!t2.join("mine").exists());
    assert_eq!(fs::read_to_string(t2.join("f")).unwrap(), "top");

    // Snapshots through the library, keep-last 2.
    for (i, name) in ["s1", "s2", "s3"].iter().enumerate() {
        fs::write(t1.join("f"), format!("v{i}")).unwrap();
        snapshot_create(&r1, name, Some(2)).unwrap();
    }
    let names: Vec<String> = snapshot_list(&r1)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["s2", "s3"]);
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
        image().write_layout(&layout, "x:1");
        s.import(&layout, None).map(drop)
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("needs the store on btrfs"), "{err}");
}

/// Drop `name`'s record from images.json, as a crash between an import's
/// last layer and its record leaves the store.
fn forget_record(store: &Path, name: &str) {
    let path = store.join("images.json");
    let mut db: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    db["images"]
        .as_array_mut()
        .unwrap()
        .retain(|r| r["name"] != name);
    fs::write(&path, serde_json::to_vec(&db).unwrap()).unwrap();
}

fn other_image(file: &str) -> ImageBuilder {
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

fn hexes(layers: &[berth_storage::Digest]) -> Vec<String> {
    let mut v: Vec<String> = layers.iter().map(|l| l.hex().to_string()).collect();
    v.sort();
    v
}

/// Layers no record and no container names (an image removed while its
/// container ran, the container deleted since; an import killed before
/// its record) are deleted by the next import.
#[test]
fn unused_layers_are_swept() {
    let fs = Fs::new();
    let root = fs.path().join("store");
    let store = Store::open(StoreConfig {
        root: root.clone(),
        driver: DriverKind::Btrfs,
        options: BTreeMap::new(),
    })
    .unwrap();
    let import = |name: &str, img: ImageBuilder| {
        let dir = fs.path().join(name.replace([':', '/'], "_"));
        img.write_layout(&dir, name);
        store.import(&dir, None).unwrap()
    };
    let layer_subvols = || {
        let mut v: Vec<String> = fs
            .subvolumes()
            .iter()
            .filter_map(|s| s.strip_prefix("store/layers/btrfs/").map(String::from))
            .collect();
        v.sort();
        v
    };
    let gone = import("x/gone:1", image());
    let target = fs.path().join("b/rootfs");
    fs::create_dir_all(&target).unwrap();
    let plan = store
        .plan_rootfs(&container_key(fs.path(), "c"), "x/gone:1", None, &target)
        .unwrap();
    mount_rootfs(&plan).unwrap();
    store.remove_image("x/gone:1").unwrap();
    let crashed = import("x/crashed:1", other_image("c"));
    forget_record(&root, "x/crashed:1");
    teardown(&plan).unwrap();
    let mut before = [hexes(&gone.layers), hexes(&crashed.layers)].concat();
    before.sort();
    assert_eq!(layer_subvols(), before);

    let next = import("x/next:1", other_image("n"));
    assert_eq!(layer_subvols(), hexes(&next.layers));
    store.remove_image("x/next:1").unwrap();
    assert!(fs.subvolumes().is_empty(), "{:?}", fs.subvolumes());
}

/// A second mount of a container that has its root filesystem already
/// (a retried create) is refused and leaves the first one, its files,
/// its mount and its reference, alone.
#[test]
fn second_mount_of_a_key_leaves_the_first_alone() {
    let fs = Fs::new();
    let store = Store::open(StoreConfig {
        root: fs.path().join("store"),
        driver: DriverKind::Btrfs,
        options: BTreeMap::new(),
    })
    .unwrap();
    let base = fs.path().to_path_buf();
    image().write_layout(&base.join("l"), "x/app:1");
    store.import(&base.join("l"), None).unwrap();
    let key = container_key(&base, "c");
    let (t1, t2) = (base.join("b1/rootfs"), base.join("b2/rootfs"));
    fs::create_dir_all(&t1).unwrap();
    fs::create_dir_all(&t2).unwrap();
    let first = store.plan_rootfs(&key, "x/app:1", None, &t1).unwrap();
    mount_rootfs(&first).unwrap();
    fs::write(t1.join("mine"), "m").unwrap();
    let again = store.plan_rootfs(&key, "x/app:1", None, &t2).unwrap();
    let e = mount_rootfs(&again).unwrap_err().to_string();
    assert!(e.contains("already has a root filesystem"), "{e}");
    assert!(mount_points().contains(&t1));
    assert!(!mount_points().contains(&t2));
    assert_eq!(fs::read_to_string(t1.join("mine")).unwrap(), "m");
    assert!(base
        .join("store/containers/refs")
        .join(format!("{key}.json"))
        .exists());
    teardown(&first).unwrap();
    assert!(!mount_points().contains(&t1));
}
