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

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use berth_integration::oci::{Compression, ImageBuilder, LayerBuilder};
use berth_integration::serde_json::{self, json, Value};
use berth_integration::{base_rootfs, host_mounts_under, Opts, Out, Runtime};

/// The zfs-fuse pool the storage tests share (reference counted by the script).
const POOL: &str = "berthtest";

static N: AtomicUsize = AtomicUsize::new(0);

fn sh(prog: &str, args: &[&str]) -> std::process::Output {
    Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {prog}: {e}"))
}

#[track_caller]
fn sh_ok(prog: &str, args: &[&str]) -> String {
    let o = sh(prog, args);
    assert!(
        o.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn zfs_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/zfs-fuse.sh")
}

/// A hold on the shared pool and a dataset of our own under it; the
/// dataset (recursively) is destroyed and the hold released on drop.
struct ZfsDataset {
    name: String,
}

impl ZfsDataset {
    fn new(tag: &str) -> ZfsDataset {
        let out = Command::new(zfs_script())
            .args(["acquire", POOL])
            .output()
            .expect("run hack/zfs-fuse.sh");
        assert!(
            out.status.success(),
            "hack/zfs-fuse.sh acquire {POOL}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let name = format!(
            "{POOL}/it-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let ds = ZfsDataset { name };
        sh_ok("zfs", &["create", "-o", "mountpoint=none", &ds.name]);
        ds
    }

    /// Datasets (not snapshots) under `name`, itself included.
    fn datasets(name: &str) -> Vec<String> {
        sh_ok("zfs", &["list", "-H", "-o", "name", "-r", name])
            .lines()
            .map(String::from)
            .collect()
    }

    /// Snapshots under `name`.
    fn snapshots(name: &str) -> Vec<String> {
        sh_ok(
            "zfs",
            &["list", "-H", "-o", "name", "-t", "snapshot", "-r", name],
        )
        .lines()
        .map(String::from)
        .collect()
    }
}

impl Drop for ZfsDataset {
    fn drop(&mut self) {
        for _ in 0..10 {
            let o = sh("zfs", &["destroy", "-r", "-f", &self.name]);
            if o.status.success() || !ZfsDataset::exists(&self.name) {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let out = Command::new(zfs_script()).args(["release", POOL]).output();
        if let Ok(o) = out {
            if !o.status.success() {
                eprintln!(
                    "hack/zfs-fuse.sh release {POOL}: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
            }
        }
    }
}

impl ZfsDataset {
    fn exists(name: &str) -> bool {
        sh("zfs", &["list", "-H", "-o", "name", name])
            .status
            .success()
    }
}

/// A 1 GiB btrfs file, loop-mounted; unmounted and removed on drop.
struct BtrfsMount {
    dir: PathBuf,
    mnt: PathBuf,
}

impl BtrfsMount {
    fn new() -> BtrfsMount {
        let dir = tempfile::Builder::new()
            .prefix("berth-test-btrfs-")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        let img = dir.join("fs.img");
        let mnt = dir.join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let guard = BtrfsMount { dir, mnt };
        sh_ok("truncate", &["-s", "1G", img.to_str().unwrap()]);
        sh_ok("mkfs.btrfs", &["-q", img.to_str().unwrap()]);
        sh_ok(
            "mount",
            &[
                "-o",
                "loop",
                img.to_str().unwrap(),
                guard.mnt.to_str().unwrap(),
            ],
        );
        guard
    }
}

impl Drop for BtrfsMount {
    fn drop(&mut self) {
        // Anything still mounted under the file system first (deepest first).
        let mut m = host_mounts_under(&self.mnt);
        m.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for mp in m {
            let mut ok = false;
            for _ in 0..10 {
                if sh("umount", &[&mp]).status.success() {
                    ok = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            if !ok {
                let _ = sh("umount", &["-l", &mp]);
            }
        }
        // The loop device goes with the last unmount (mount -o loop sets autoclear).
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One test: the runtime (dropped first: containers deleted), then the
/// dataset or btrfs mount.
struct Env {
    rt: Runtime,
    tmp: PathBuf,
    store: PathBuf,
    driver: &'static str,
    opts: Vec<String>,
    zfs: Option<ZfsDataset>,
    btrfs: Option<BtrfsMount>,
}

impl Env {
    fn zfs(tag: &str) -> Env {
        let ds = ZfsDataset::new(tag);
        let rt = Runtime::new(&format!("zfs-{tag}"));
        let tmp = rt.tempdir();
        Env {
            store: tmp.join("store"),
            opts: vec![format!("zfs.dataset={}", ds.name)],
            rt,
            tmp,
            driver: "zfs",
            zfs: Some(ds),
            btrfs: None,
        }
    }

    fn btrfs(tag: &str) -> Env {
        let m = BtrfsMount::new();
        let rt = Runtime::new(&format!("btrfs-{tag}"));
        let tmp = rt.tempdir();
        Env {
            store: m.mnt.join("store"),
            opts: Vec::new(),
            rt,
            tmp,
            driver: "btrfs",
            zfs: None,
            btrfs: Some(m),
        }
    }

    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec![
            "--store",
            self.store.to_str().unwrap(),
            "--storage-driver",
            self.driver,
        ];
        for o in &self.opts {
            v.push("--storage-opt");
            v.push(o);
        }
        v.extend_from_slice(args);
        v
    }

    fn berth(&self, args: &[&str]) -> Out {
        self.rt.run_opts(
            &self.args(args),
            Opts {
                timeout: Duration::from_secs(120),
                ..Default::default()
            },
        )
    }

    fn bundle(&self, image: &str, tag: &str) -> PathBuf {
        let dir = self.tmp.join(format!("bundle-{tag}"));
        self.berth(&["bundle", "create", "--image", image, dir.to_str().unwrap()])
            .ok();
        dir
    }

    /// The store's container datasets or subvolumes (and references).
    fn containers(&self) -> Vec<String> {
        let mut v = names(&self.store.join("containers/refs"));
        if let Some(ds) = &self.zfs {
            let parent = format!("{}/containers", ds.name);
            v.extend(
                ZfsDataset::datasets(&parent)
                    .into_iter()
                    .filter(|d| *d != parent),
            );
            v.extend(ZfsDataset::snapshots(&parent));
        }
        if let Some(m) = &self.btrfs {
            v.extend(
                subvolumes(&m.mnt)
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
            let parent = format!("{}/layers", ds.name);
            return ZfsDataset::datasets(&parent)
                .into_iter()
                .filter(|d| *d != parent)
                .collect();
        }
        let m = self.btrfs.as_ref().unwrap();
        subvolumes(&m.mnt)
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

/// Paths of the subvolumes of the btrfs at `mnt`.
fn subvolumes(mnt: &Path) -> Vec<String> {
    sh_ok("btrfs", &["subvolume", "list", "-o", mnt.to_str().unwrap()])
        .lines()
        .filter_map(|l| l.split(" path ").nth(1).map(String::from))
        .collect()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn edit_config(bundle: &Path, f: impl FnOnce(&mut Value)) {
    let p = bundle.join("config.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
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
