//! Fixtures for the tests of the layer store and its filesystems:
//! temporary directories that unmount what is left under them, the mount
//! table, directory listings, a loop-mounted btrfs, and datasets on the
//! zfs-fuse pool the tests share (`hack/zfs-fuse.sh`). Used by
//! berth-storage's unit and integration tests and by the image tests of
//! the CLI; everything cleans up on drop, also when a test panics.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::mount::{umount2, MntFlags, MsFlags};

/// `PID-N`: no other test of this process, nor another process, has it.
fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A directory `berth-test-TAG-PID-N` under the temp dir. On drop what is
/// still mounted at or under it is detached (deepest first), then it is
/// removed. Derefs to its path.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("berth-test-{tag}-{}", unique()));
        std::fs::create_dir(&p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()));
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        for m in deepest_first(mounts_under(&self.0)) {
            let _ = umount2(&m, MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The mount points of this mount namespace (from /proc/self/mountinfo,
/// octal escapes such as `\040` decoded).
pub fn mount_points() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("reading /proc/self/mountinfo")
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape)
        .collect()
}

fn unescape(field: &str) -> PathBuf {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4);
        match octal {
            Some(o) if b[i] == b'\\' && o.iter().all(|c| (b'0'..=b'7').contains(c)) => {
                out.push(o.iter().fold(0u8, |v, c| v * 8 + (c - b'0')));
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

/// The mount points at or under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    mount_points()
        .into_iter()
        .filter(|m| m.starts_with(dir))
        .collect()
}

/// Whether something is mounted at `p`.
pub fn is_mounted(p: &Path) -> bool {
    mount_points().iter().any(|m| m == p)
}

fn deepest_first(mut mounts: Vec<PathBuf>) -> Vec<PathBuf> {
    mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    mounts
}

/// Make the mount at `p` read-only, as a runtime does for
/// `root.readonly` (a bind remount).
pub fn remount_readonly(p: &Path) {
    nix::mount::mount(
        None::<&str>,
        p,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .unwrap_or_else(|e| panic!("remounting {} read-only: {e}", p.display()));
}

/// The names in `dir`, sorted. Panics if it cannot be read (a directory
/// that must be there and is not fails the test).
pub fn names(dir: &Path) -> Vec<String> {
    let rd = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
    sorted_names(rd)
}

/// The names in `dir`, sorted; none if it does not exist.
pub fn names_if_exists(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => sorted_names(rd),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("listing {}: {e}", dir.display()),
    }
}

fn sorted_names(rd: std::fs::ReadDir) -> Vec<String> {
    let mut v: Vec<String> = rd
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Run `prog ARGS`; its stdout. Panics with its stderr if it fails.
#[track_caller]
pub fn run_ok(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {prog}: {e}"));
    assert!(
        out.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---- btrfs ----

/// A fresh btrfs (a sparse file beside its mount point, mkfs.btrfs, a
/// loop mount) at a temp dir. On drop everything mounted at or under it
/// is unmounted, deepest first (tried again while busy, then detached;
/// the loop device goes with the last unmount: `-o loop` sets autoclear),
/// and the file and the directory are removed.
pub struct BtrfsLoop {
    dir: tempfile::TempDir,
    img: PathBuf,
}

impl BtrfsLoop {
    /// A btrfs of `size` bytes.
    pub fn new(size: u64) -> BtrfsLoop {
        let dir = tempfile::Builder::new()
            .prefix("berth-test-btrfs-")
            .tempdir_in("/tmp")
            .unwrap();
        let img = PathBuf::from(format!("{}.img", dir.path().display()));
        let fs = BtrfsLoop { dir, img };
        std::fs::File::create(&fs.img)
            .and_then(|f| f.set_len(size))
            .unwrap_or_else(|e| panic!("creating {}: {e}", fs.img.display()));
        let img = fs.img.to_str().unwrap();
        run_ok("mkfs.btrfs", &["-q", img]);
        run_ok("mount", &["-o", "loop", img, fs.path().to_str().unwrap()]);
        fs
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The subvolumes' paths relative to the mount point, sorted.
    pub fn subvolumes(&self) -> Vec<String> {
        let out = run_ok(
            "btrfs",
            &["subvolume", "list", "-o", self.path().to_str().unwrap()],
        );
        let mut v: Vec<String> = out
            .lines()
            .filter_map(|l| l.split(" path ").nth(1).map(String::from))
            .collect();
        v.sort();
        v
    }
}

impl Drop for BtrfsLoop {
    fn drop(&mut self) {
        for m in deepest_first(mounts_under(self.path())) {
            let mut tries = 1;
            while let Err(Errno::EBUSY) = umount2(&m, MntFlags::empty()) {
                if tries == 10 {
                    let _ = umount2(&m, MntFlags::MNT_DETACH);
                    break;
                }
                tries += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        let _ = std::fs::remove_file(&self.img);
    }
}

// ---- zfs ----

/// The zfs-fuse pool the tests share (hack/zfs-fuse.sh counts its holds).
pub const ZFS_POOL: &str = "berthtest";

/// `zfs ARGS`: its stdout, or its stderr.
pub fn zfs(args: &[&str]) -> Result<String, String> {
    let out = Command::new("zfs")
        .args(args)
        .output()
        .map_err(|e| format!("running zfs: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn zfs_lines(args: &[&str]) -> Vec<String> {
    zfs(args)
        .unwrap_or_else(|e| panic!("zfs {args:?}: {e}"))
        .lines()
        .map(String::from)
        .collect()
}

fn pool_script(op: &str) -> std::process::Output {
    Command::new(crate::workspace().join("hack/zfs-fuse.sh"))
        .args([op, ZFS_POOL])
        .output()
        .expect("running hack/zfs-fuse.sh")
}

/// A hold on the shared pool (started if need be); released on drop.
pub struct ZfsPool(());

impl ZfsPool {
    pub fn acquire() -> ZfsPool {
        let out = pool_script("acquire");
        assert!(
            out.status.success(),
            "hack/zfs-fuse.sh acquire {ZFS_POOL}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ZfsPool(())
    }
}

impl Drop for ZfsPool {
    fn drop(&mut self) {
        let out = pool_script("release");
        if !out.status.success() {
            eprintln!(
                "hack/zfs-fuse.sh release {ZFS_POOL}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// A dataset `POOL/it-PID-N-TAG` of a test's own (mountpoint=none), with
/// a hold on the pool. On drop everything under it is unmounted and
/// destroyed (tried again while busy), then the hold is released.
pub struct ZfsDataset {
    name: String,
    _pool: ZfsPool,
}

impl ZfsDataset {
    pub fn new(tag: &str) -> ZfsDataset {
        let pool = ZfsPool::acquire();
        let name = format!("{ZFS_POOL}/it-{}-{tag}", unique());
        zfs(&["create", "-o", "mountpoint=none", &name])
            .unwrap_or_else(|e| panic!("zfs create {name}: {e}"));
        ZfsDataset { name, _pool: pool }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The datasets (not snapshots) under `name`, itself included.
    pub fn datasets(name: &str) -> Vec<String> {
        zfs_lines(&["list", "-H", "-o", "name", "-r", name])
    }

    /// The snapshots under `name`.
    pub fn snapshots(name: &str) -> Vec<String> {
        zfs_lines(&["list", "-H", "-o", "name", "-t", "snapshot", "-r", name])
    }
}

impl Drop for ZfsDataset {
    fn drop(&mut self) {
        // Children first; clones are destroyed with their origins (-R).
        if let Ok(out) = zfs(&["list", "-H", "-o", "name", "-r", &self.name]) {
            for ds in out.lines().rev() {
                let _ = zfs(&["umount", ds]);
            }
        }
        for tries in 1.. {
            match zfs(&["destroy", "-R", "-f", &self.name]) {
                Ok(_) => break,
                Err(e) if e.contains("does not exist") => break,
                Err(e) if tries == 10 => {
                    eprintln!("destroying {}: {e}", self.name);
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}
