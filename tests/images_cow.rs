//! Images through the CLI with the copy-on-write drivers: zfs (on the
//! shared zfs-fuse test pool of `hack/zfs-fuse.sh`, a child dataset per
//! test) and btrfs (a loop-mounted btrfs file per test). For each: import,
//! `bundle create`, run, two containers that do not see each other's
//! writes, snapshot create/list/restore/delete and `--keep-last`, and a
//! `delete` that leaves no dataset, subvolume or mount.
//!
//! Real containers, as root:
//! `cargo build --release && cargo test --release -p berth --test images_cow`.
//! Cleanup on drop, also when a test panics: the harness's `Runtime`
//! deletes the containers (`delete --force`) and removes its dirs; then
//! the test's dataset is destroyed (and the pool hold released), or the
//! btrfs file unmounted and removed.

use std::ops::Deref;
use std::path::Path;
use std::time::Duration;

use berth_integration::images::{edit_config, StoreCli};
use berth_integration::oci::{Compression, ImageBuilder, LayerBuilder};
use berth_integration::serde_json::json;
use berth_integration::storage::{names_if_exists as names, BtrfsLoop, ZfsDataset};
use berth_integration::{base_rootfs, host_mounts_under, Runtime};

/// One test: the runtime and store (dropped first: containers deleted),
/// then the dataset or btrfs mount.
struct Env {
    cli: StoreCli,
    zfs: Option<ZfsDataset>,
    btrfs: Option<BtrfsLoop>,
}

impl Deref for Env {
    type Target = StoreCli;
    fn deref(&self) -> &StoreCli {
        &self.cli
    }
}

impl Env {
    /// The runtime and store of test `tag` on `driver`.
    fn cli(tag: &str, driver: &'static str) -> StoreCli {
        let mut cli = StoreCli::new(Runtime::new(&format!("{driver}-{tag}")), driver);
        cli.timeout = Duration::from_secs(120);
        cli
    }

    /// On a dataset of our own on the shared zfs-fuse pool.
    fn zfs(tag: &str) -> Env {
        let ds = ZfsDataset::new(tag);
        let mut cli = Env::cli(tag, "zfs");
        cli.opts.push(format!("zfs.dataset={}", ds.name()));
        Env {
            cli,
            zfs: Some(ds),
            btrfs: None,
        }
    }

    /// On a 1 GiB loop-mounted btrfs of our own.
    fn btrfs(tag: &str) -> Env {
        let m = BtrfsLoop::new(1 << 30);
        let mut cli = Env::cli(tag, "btrfs");
        cli.store = m.path().join("store");
        Env {
            cli,
            zfs: None,
            btrfs: Some(m),
        }
    }

    /// The store's container datasets or subvolumes (and references).
    fn containers(&self) -> Vec<String> {
        let mut v = names(&self.store.join("containers/refs"));
        if let Some(ds) = &self.zfs {
            let parent = format!("{}/containers", ds.name());
            v.extend(
                ZfsDataset::datasets(&parent)
                    .into_iter()
                    .filter(|d| *d != parent),
            );
            v.extend(ZfsDataset::snapshots(&parent));
        }
        if let Some(m) = &self.btrfs {
            v.extend(
                m.subvolumes()
                    .into_iter()
                    .filter(|s| s.contains("containers")),
            );
            v.extend(names(&self.store.join("containers/btrfs")));
        }
        v
    }

    /// The store's layer datasets or subvolumes.
    fn layers(&self) -> Vec<String> {
        if let Some(ds) = &self.zfs {
            let parent = format!("{}/layers", ds.name());
            return ZfsDataset::datasets(&parent)
                .into_iter()
                .filter(|d| *d != parent)
                .collect();
        }
        let m = self.btrfs.as_ref().unwrap();
        m.subvolumes()
            .into_iter()
            .filter(|s| s.contains("layers"))
            .collect()
    }

    #[track_caller]
    fn assert_no_container_left(&self) {
        // zfs keeps a layer mounted under STORE/layers/zfs once a file of it
        // was read (bundle create reads /etc/passwd): that is the layer's,
        // not a container's.
        let layers = self.store.join("layers");
        let mounts: Vec<String> = host_mounts_under(&self.tmp)
            .into_iter()
            .filter(|m| !Path::new(m).starts_with(&layers))
            .collect();
        assert!(mounts.is_empty(), "mounts left: {mounts:?}");
        assert_eq!(self.containers(), Vec::<String>::new(), "containers left");
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

const REPORT: &str = "echo u=$(id -u) cwd=$(pwd) foo=$FOO f=$(cat /etc/img-file) \
     data=$(ls /data); if [ -e /etc/gone ]; then echo gone=present; else echo gone=absent; fi";

fn image() -> ImageBuilder {
    ImageBuilder::new()
        .layer(LayerBuilder::from_dir(&base_rootfs()), Compression::Gzip)
        .layer(
            LayerBuilder::new()
                .dir("etc", 0o755)
                .file("etc/img-file", b"from-image\n", 0o644)
                .file("etc/gone", b"x\n", 0o644)
                .dir("data", 0o777),
            Compression::Zstd,
        )
        .layer(
            LayerBuilder::new().dir("etc", 0o755).whiteout("etc/gone"),
            Compression::Gzip,
        )
        .config(|c| {
            *c = json!({
                "Cmd": ["/bin/sh", "-c", REPORT],
                "Env": ["PATH=/bin:/sbin", "FOO=cow"],
                "WorkingDir": "/data",
                "User": "berth",
            })
        })
}

fn snapshot_names(env: &Env, id: &str) -> Vec<String> {
    let v = env
        .berth(&["snapshot", "list", id, "--format", "json"])
        .ok()
        .json();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

fn scenario(env: &Env) {
    let layout = env.tmp.join("layout");
    let w = image().write_layout(&layout, "berth-test/cow:1");
    let out = env
        .berth(&["image", "import", layout.to_str().unwrap()])
        .ok();
    assert_eq!(
        out.stdout.trim(),
        format!("berth-test/cow:1 {}", w.manifest)
    );
    assert_eq!(env.layers().len(), 3, "one per layer: {:?}", env.layers());
    // Idempotent.
    let again = env
        .berth(&["image", "import", layout.to_str().unwrap()])
        .ok();
    assert_eq!(again.stdout, out.stdout);
    assert_eq!(env.layers().len(), 3);

    let want = "u=1000 cwd=/data foo=cow f=from-image data=\ngone=absent\n";
    let b0 = env.bundle("berth-test/cow:1", "0");
    let id0 = env.rt.id();
    let out = env
        .berth(&["run", "--bundle", b0.to_str().unwrap(), &id0])
        .ok();
    assert_eq!(out.stdout, want, "{out}");
    env.assert_no_container_left();

    // Two containers: c1 writes, c2 does not see it.
    let b1 = env.bundle("berth-test/cow:1", "1");
    let b2 = env.bundle("berth-test/cow:1", "2");
    edit_config(&b1, |c| {
        c["process"]["user"] = json!({"uid": 0, "gid": 0});
        c["process"]["args"] = json!([
            "/bin/sh",
            "-c",
            "echo written-by-c1 > /etc/img-file && touch /data/c1-only"
        ]);
    });
    let c1 = env.rt.id();
    env.berth(&["create", "--bundle", b1.to_str().unwrap(), &c1])
        .ok();
    let root1 = b1.join("rootfs");
    env.berth(&["start", &c1]).ok();
    env.rt.wait_stopped(&c1);
    assert_eq!(read(&root1.join("etc/img-file")), "written-by-c1\n");
    let c2 = env.rt.id();
    let out = env
        .berth(&["run", "--bundle", b2.to_str().unwrap(), &c2])
        .ok();
    assert_eq!(out.stdout, want, "c2 sees c1's writes: {out}");

    // Snapshots of the stopped c1.
    assert_eq!(snapshot_names(env, &c1), Vec::<String>::new());
    env.berth(&["snapshot", "create", &c1, "s1"]).ok();
    std::fs::write(root1.join("etc/img-file"), "after-s1\n").unwrap();
    env.berth(&["snapshot", "create", &c1, "s2"]).ok();
    assert_eq!(snapshot_names(env, &c1), ["s1", "s2"]);
    let table = env.berth(&["snapshot", "list", &c1]).ok();
    assert!(table.stdout.starts_with("NAME"), "{table}");
    assert!(table.stdout.contains("s1") && table.stdout.contains("s2"));
    // The same name twice: an error.
    env.berth(&["snapshot", "create", &c1, "s1"]).fails();
    std::fs::write(root1.join("etc/img-file"), "after-s2\n").unwrap();
    env.berth(&["snapshot", "restore", &c1, "s1"]).ok();
    assert_eq!(read(&root1.join("etc/img-file")), "written-by-c1\n");
    assert!(root1.join("data/c1-only").exists());
    // zfs rolls back with `rollback -r` (newer snapshots are destroyed);
    // btrfs keeps them (docs/storage-zfs-btrfs.md).
    let after_restore: &[&str] = if env.driver == "zfs" {
        &["s1"]
    } else {
        &["s1", "s2"]
    };
    assert_eq!(snapshot_names(env, &c1), after_restore);
    // A default name (the UTC time), then --keep-last.
    env.berth(&["snapshot", "create", &c1]).ok();
    let all = snapshot_names(env, &c1);
    assert_eq!(all.len(), after_restore.len() + 1, "{all:?}");
    let stamp = all.iter().find(|n| !after_restore.contains(&n.as_str()));
    let stamp = stamp.expect("the default-named snapshot");
    assert!(
        stamp.len() == 16
            && stamp.ends_with('Z')
            && stamp.as_bytes()[8] == b'T'
            && stamp[..8].bytes().all(|b| b.is_ascii_digit()),
        "default name {stamp:?} is not YYYYMMDDTHHMMSSZ"
    );
    std::thread::sleep(Duration::from_millis(1100));
    env.berth(&["snapshot", "create", &c1, "s3", "--keep-last", "2"])
        .ok();
    let kept = snapshot_names(env, &c1);
    assert_eq!(kept, [stamp.clone(), "s3".to_string()], "keep-last 2");
    env.berth(&["snapshot", "create", &c1, "s4", "--keep-last", "0"])
        .fails();
    env.berth(&["snapshot", "delete", &c1, "s3"]).ok();
    assert_eq!(snapshot_names(env, &c1), std::slice::from_ref(stamp));
    let out = env.berth(&["snapshot", "restore", &c1, "nope"]).fails();
    assert!(out.stderr.contains("nope"), "{out}");
    assert_eq!(out.stderr.trim().lines().count(), 1, "{out}");

    // delete: no clone/subvolume, snapshot or mount left.
    env.berth(&["delete", &c1]).ok();
    env.assert_no_container_left();
    assert!(names(&root1).is_empty(), "rootfs not empty after delete");

    // image rm removes the layers.
    env.berth(&["image", "rm", "berth-test/cow:1"]).ok();
    assert_eq!(
        env.layers(),
        Vec::<String>::new(),
        "layers left after image rm"
    );
}

#[test]
fn zfs_images() {
    let env = Env::zfs("core");
    scenario(&env);
}

#[test]
fn btrfs_images() {
    let env = Env::btrfs("core");
    scenario(&env);
}

/// A snapshot of a running container is refused (stop or pause it first),
/// and so is a restore of one that is not stopped.
#[test]
fn zfs_snapshot_needs_a_stopped_container() {
    let env = Env::zfs("running");
    let layout = env.tmp.join("layout");
    image().write_layout(&layout, "berth-test/cow:1");
    env.berth(&["image", "import", layout.to_str().unwrap()])
        .ok();
    let b = env.bundle("berth-test/cow:1", "run");
    edit_config(&b, |c| c["process"]["args"] = json!(["/bin/sleep", "60"]));
    let id = env.rt.id();
    env.berth(&["create", "--bundle", b.to_str().unwrap(), &id])
        .ok();
    env.berth(&["snapshot", "create", &id, "created"]).ok();
    env.berth(&["start", &id]).ok();
    let out = env.berth(&["snapshot", "create", &id, "x"]).fails();
    assert!(out.stderr.contains("running"), "{out}");
    let out = env.berth(&["snapshot", "restore", &id, "created"]).fails();
    assert!(out.stderr.contains("stop"), "{out}");
    env.berth(&["delete", "--force", &id]).ok();
    env.assert_no_container_left();
}
