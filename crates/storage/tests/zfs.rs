//! The zfs driver through the store's public API, as root, on the shared
//! zfs-fuse test pool (hack/zfs-fuse.sh): import, mount, isolation,
//! snapshots, teardown. Each test has its own child dataset.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use berth_integration::oci::{Compression, ImageBuilder, LayerBuilder};
use berth_storage::{
    container_key, mount_rootfs, snapshot_create, snapshot_list, snapshot_restore, teardown,
    DriverKind, Store, StoreConfig,
};

const POOL: &str = "berthtest";

fn zfs(args: &[&str]) -> Result<String, String> {
    let out = Command::new("zfs").args(args).output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn script(op: &str) -> std::process::Output {
    Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hack/zfs-fuse.sh"))
        .args([op, POOL])
        .output()
        .unwrap()
}

/// A hold on the shared pool plus a dataset `POOL/it-PID-N` of our own
/// and a store directory; destroyed, released and removed on drop.
struct Env {
    ds: String,
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let out = script("acquire");
        assert!(
            out.status.success(),
            "hack/zfs-fuse.sh acquire: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        static N: AtomicU64 = AtomicU64::new(0);
        let ds = format!(
            "{POOL}/it-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::Builder::new()
            .prefix("berth-zfs-it-")
            .tempdir_in("/tmp")
            .unwrap();
        let env = Env { ds, dir };
        zfs(&["create", "-o", "mountpoint=none", &env.ds]).unwrap();
        env
    }

    fn store(&self) -> Store {
        Store::open(StoreConfig {
            root: self.dir.path().join("store"),
            driver: DriverKind::Zfs,
            options: BTreeMap::from([("zfs.dataset".to_string(), self.ds.clone())]),
        })
        .unwrap()
    }

    fn datasets(&self) -> Vec<String> {
        zfs(&["list", "-H", "-o", "name", "-r", &self.ds])
            .unwrap()
            .lines()
            .map(String::from)
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Ok(out) = zfs(&["list", "-H", "-o", "name", "-r", &self.ds]) {
            for d in out.lines().rev() {
                let _ = zfs(&["umount", d]);
            }
        }
        for _ in 0..10 {
            match zfs(&["destroy", "-R", &self.ds]) {
                Err(e) if e.contains("busy") => {
                    std::thread::sleep(std::time::Duration::from_millis(200))
                }
                _ => break,
            }
        }
        let out = script("release");
        if !out.status.success() {
            eprintln!(
                "hack/zfs-fuse.sh release: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

fn mount_points() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .collect()
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
    let env = Env::new();
    let store = env.store();
    let layout = env.dir.path().join("layout");
    image().write_layout(&layout, "example.com/app:v1");
    let img = store.import(&layout, Some("app:v1")).unwrap();
    let layers: Vec<String> = env
        .datasets()
        .into_iter()
        .filter(|d| d.starts_with(&format!("{}/layers/", env.ds)))
        .collect();
    assert_eq!(layers.len(), 2, "a dataset per layer: {layers:?}");
    assert!(zfs(&[
        "list",
        "-H",
        "-o",
        "name",
        "-t",
        "snapshot",
        "-r",
        &format!("{}/layers", env.ds)
    ])
    .unwrap()
    .lines()
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
    assert_eq!(fs::read_to_string(t1.join("f")).unwrap(), "top");
    assert!(!t1.join("a/x").exists() && t1.join("a/y").exists());
    assert!(!t1.join("d/old").exists() && t1.join("d/new").exists());
    fs::write(t1.join("mine"), "c1").unwrap();
    fs::write(t1.join("f"), "c1 wrote").unwrap();
    assert!(!t2.join("mine").exists());
    assert_eq!(fs::read_to_string(t2.join("f")).unwrap(), "top");
    let origin = zfs(&[
        "get",
        "-H",
        "-o",
        "value",
        "origin",
        &format!("{}/containers/{k1}", env.ds),
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
    let names: Vec<String> = snapshot_list(&r1)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["s2", "s3"]);
    fs::write(t1.join("f"), "later").unwrap();
    snapshot_restore(&r1, "s2").unwrap();
    assert_eq!(fs::read_to_string(t1.join("f")).unwrap(), "v1");
    let names: Vec<String> = snapshot_list(&r1)
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(
        names,
        ["s2"],
        "zfs rollback -r destroys the later snapshots"
    );

    teardown(&r1).unwrap();
    teardown(&r2).unwrap();
    teardown(&r1).unwrap();
    let mounts = mount_points();
    assert!(!mounts.contains(&t1) && !mounts.contains(&t2));
    let containers = format!("{}/containers", env.ds);
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
            .any(|d| d.starts_with(&format!("{}/layers/", env.ds))),
        "{:?}",
        env.datasets()
    );
    assert!(!mount_points().iter().any(|m| m.starts_with(env.dir.path())));
}

#[test]
fn missing_dataset_option_and_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    image().write_layout(&layout, "x:1");
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
        format!("{}/nope", env.ds),
    )]));
    assert!(err.contains("does not exist"), "{err}");
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
/// its record) are destroyed by the next import, children first.
#[test]
fn unused_layers_are_swept() {
    let env = Env::new();
    let store = env.store();
    let root = env.dir.path().join("store");
    let import = |name: &str, img: ImageBuilder| {
        let dir = env.dir.path().join(name.replace([':', '/'], "_"));
        img.write_layout(&dir, name);
        store.import(&dir, None).unwrap()
    };
    let layer_datasets = || {
        let prefix = format!("{}/layers/", env.ds);
        let mut v: Vec<String> = env
            .datasets()
            .iter()
            .filter_map(|d| d.strip_prefix(&prefix).map(String::from))
            .collect();
        v.sort();
        v
    };
    let gone = import("x/gone:1", image());
    let target = env.dir.path().join("b/rootfs");
    fs::create_dir_all(&target).unwrap();
    let plan = store
        .plan_rootfs(
            &container_key(env.dir.path(), "c"),
            "x/gone:1",
            None,
            &target,
        )
        .unwrap();
    mount_rootfs(&plan).unwrap();
    store.remove_image("x/gone:1").unwrap();
    let crashed = import("x/crashed:1", other_image("c"));
    forget_record(&root, "x/crashed:1");
    teardown(&plan).unwrap();
    let mut before = [hexes(&gone.layers), hexes(&crashed.layers)].concat();
    before.sort();
    assert_eq!(layer_datasets(), before);

    let next = import("x/next:1", other_image("n"));
    assert_eq!(layer_datasets(), hexes(&next.layers));
    store.remove_image("x/next:1").unwrap();
    assert!(layer_datasets().is_empty(), "{:?}", layer_datasets());
}

/// A second mount of a container that has its root filesystem already
/// (a retried create) is refused and leaves the first one, its files,
/// its mount and its reference, alone.
#[test]
fn second_mount_of_a_key_leaves_the_first_alone() {
    let env = Env::new();
    let store = env.store();
    let base = env.dir.path().to_path_buf();
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
