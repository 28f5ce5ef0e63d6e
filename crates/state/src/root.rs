//! The runtime root, per-container directories and their locks.
//!
//! Layout: `ROOT/` (0700) holds one directory per container, `ROOT/ID/` (0711),
//! which holds `state.json` and whatever else the backend keeps there (fifos,
//! sockets). The lock is an exclusive `flock` on the `ROOT/ID` directory
//! itself, so it exists exactly as long as the container does and different
//! ids never contend.
//!
//! A `flock` belongs to the open file description: a forked child shares it
//! until the child closes its copy. Close [`Container::lock_fd`] in any child
//! that outlives the command (the container init waiting for `start`), or the
//! next command on that container will block.

use crate::{validate_id, Record, StateError};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Name of the persisted record inside a container directory.
pub const STATE_FILE: &str = "state.json";

const ROOT_MODE: u32 = 0o700;
const CONTAINER_MODE: u32 = 0o711;
const TEMP_PREFIX: &str = ".state.json.tmp-";

/// The runtime root (`--root`, default `/run/berth`).
#[derive(Clone, Debug)]
pub struct Root {
    path: PathBuf,
}

/// Default runtime root.
pub const DEFAULT_ROOT: &str = "/run/berth";

impl Root {
    pub fn new(path: impl Into<PathBuf>) -> Root {
        Root { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Make the directory of a new container and lock it. An existing id is
    /// [`StateError::Exists`].
    pub fn create(&self, id: &str) -> Result<Container, StateError> {
        validate_id(id)?;
        DirBuilder::new()
            .recursive(true)
            .mode(ROOT_MODE)
            .create(&self.path)
            .map_err(|e| StateError::io("create runtime root", &self.path, e))?;
        let dir = self.path.join(id);
        match DirBuilder::new().mode(CONTAINER_MODE).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StateError::Exists(id.to_string()))
            }
            Err(e) => return Err(StateError::io("create container directory", &dir, e)),
        }
        // Exact mode whatever the umask was.
        fs::set_permissions(&dir, fs::Permissions::from_mode(CONTAINER_MODE))
            .map_err(|e| StateError::io("chmod container directory", &dir, e))?;
        self.lock(id, dir)
    }

    /// Lock an existing container, waiting for any other command holding it.
    /// A missing id is [`StateError::NotFound`].
    pub fn open(&self, id: &str) -> Result<Container, StateError> {
        validate_id(id)?;
        self.lock(id, self.path.join(id))
    }

    /// Read a container's record without taking its lock: `state.json` is
    /// only ever replaced by rename, so a reader sees the old or the new
    /// record, never part of one. For `state`, `list` and `kill`, which must
    /// not wait for (or deadlock with) a command holding the lock, e.g. a
    /// hook calling `berth state` during `create`. Returns the container's
    /// directory too. A missing container or record is [`StateError::NotFound`].
    pub fn read(&self, id: &str) -> Result<(PathBuf, Record), StateError> {
        let (dir, path, bytes) = self.read_bytes(id)?;
        let rec =
            serde_json::from_slice(&bytes).map_err(|source| StateError::Json { path, source })?;
        Ok((dir, rec))
    }

    /// [`Root::read`] without the stored config (its `config` holds only
    /// `ociVersion`): for `state` and `list`, which report the status.
    pub fn read_brief(&self, id: &str) -> Result<(PathBuf, Record), StateError> {
        let (dir, path, bytes) = self.read_bytes(id)?;
        let brief: crate::record::BriefRecord =
            serde_json::from_slice(&bytes).map_err(|source| StateError::Json { path, source })?;
        Ok((dir, brief.into()))
    }

    fn read_bytes(&self, id: &str) -> Result<(PathBuf, PathBuf, Vec<u8>), StateError> {
        validate_id(id)?;
        let dir = self.path.join(id);
        let path = dir.join(STATE_FILE);
        match crate::process::read_small(&path, 4096) {
            Ok(b) => Ok((dir, path, b)),
            Err(e) if is_missing(&e) => Err(StateError::NotFound(id.to_string())),
            Err(e) => Err(StateError::io("read", &path, e)),
        }
    }

    /// Ids of all containers under the root, sorted. A missing root is empty.
    pub fn list(&self) -> Result<Vec<String>, StateError> {
        let entries = match fs::read_dir(&self.path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StateError::io("read runtime root", &self.path, e)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StateError::io("read runtime root", &self.path, e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && validate_id(&name).is_ok() {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }

    fn lock(&self, id: &str, dir: PathBuf) -> Result<Container, StateError> {
        loop {
            let handle = match OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
                .open(&dir)
            {
                Ok(f) => f,
                Err(e) if is_missing(&e) => return Err(StateError::NotFound(id.to_string())),
                Err(e) => return Err(StateError::io("open container directory", &dir, e)),
            };
            flock_exclusive(&handle).map_err(|e| StateError::io("lock", &dir, e))?;
            // While we waited, the holder may have destroyed the container (and
            // someone may even have created a new one under the same id).
            let held = handle
                .metadata()
                .map_err(|e| StateError::io("stat", &dir, e))?;
            match fs::symlink_metadata(&dir) {
                Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {
                    return Ok(Container {
                        id: id.to_string(),
                        dir,
                        handle,
                    })
                }
                Ok(_) => continue,
                Err(e) if is_missing(&e) => return Err(StateError::NotFound(id.to_string())),
                Err(e) => return Err(StateError::io("stat", &dir, e)),
            }
        }
    }
}

impl Default for Root {
    fn default() -> Self {
        Root::new(DEFAULT_ROOT)
    }
}

fn is_missing(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
        || e.raw_os_error() == Some(libc::ELOOP)
}

fn flock_exclusive(f: &File) -> io::Result<()> {
    loop {
        // SAFETY: flock only takes an fd we own (kept open by `f`) and flags.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// One container's directory, locked until this value is dropped.
#[derive(Debug)]
pub struct Container {
    id: String,
    dir: PathBuf,
    /// The directory, opened read-only; holds the flock.
    handle: File,
}

impl Container {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The fd that holds the lock (close-on-exec). Close it in forked children
    /// that keep running, see the module documentation.
    pub fn lock_fd(&self) -> BorrowedFd<'_> {
        self.handle.as_fd()
    }

    /// Path of `state.json`.
    pub fn state_path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Read `state.json`.
    pub fn load(&self) -> Result<Record, StateError> {
        let path = self.state_path();
        let bytes = fs::read(&path).map_err(|e| StateError::io("read", &path, e))?;
        serde_json::from_slice(&bytes).map_err(|source| StateError::Json { path, source })
    }

    /// Replace `state.json` atomically: a temp file in the same directory is
    /// written, then renamed over `state.json`, so a reader or a berth killed
    /// at any point sees the old record or the new one, never a mix. No
    /// fsync, as runc and crun: the state lives in /run, which does not
    /// outlive a power loss on a normal host, and neither does a container;
    /// on this project's test machine /run is on disk and an fsync put 1-2 ms
    /// of I/O wait on every create.
    pub fn save(&self, rec: &Record) -> Result<(), StateError> {
        self.replace(rec)
    }

    fn replace(&self, rec: &Record) -> Result<(), StateError> {
        let target = self.state_path();
        let bytes = serde_json::to_vec(rec).map_err(|source| StateError::Json {
            path: target.clone(),
            source,
        })?;
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let temp = self.dir.join(format!(
            "{TEMP_PREFIX}{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let result = write_new(&temp, &bytes)
            .map_err(|e| StateError::io("write", &temp, e))
            .and_then(|()| {
                fs::rename(&temp, &target).map_err(|e| StateError::io("rename", &target, e))
            });
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    /// Remove the container directory and everything in it, then release the
    /// lock. Refuses (and removes nothing) while anything is mounted at or
    /// below the directory, so a forgotten mount never takes host files with it.
    pub fn destroy(self) -> Result<(), StateError> {
        if let Some(mount) = mount_below(&self.dir) {
            return Err(StateError::Busy {
                path: self.dir.clone(),
                mount,
            });
        }
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StateError::io("remove", &self.dir, e)),
        }
        drop(self.handle);
        Ok(())
    }
}

fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?;
    f.write_all(bytes)
}

/// The first mount point at or below `dir`, from `/proc/self/mountinfo`.
fn mount_below(dir: &Path) -> Option<PathBuf> {
    let dir = fs::canonicalize(dir).ok()?;
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let found = mount_points(&text).find(|m| m.starts_with(&dir));
    found
}

/// Mount points (field 5) of mountinfo text, with `\ooo` escapes decoded.
fn mount_points(text: &str) -> impl Iterator<Item = PathBuf> + '_ {
    use std::os::unix::ffi::OsStringExt;
    text.lines().filter_map(|line| {
        let raw = line.split(' ').nth(4)?.as_bytes();
        let mut out = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            let octal = raw
                .get(i + 1..i + 4)
                .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
            match (raw[i], octal) {
                (b'\\', Some(d)) => {
                    out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                    i += 4;
                }
                (c, _) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        Some(PathBuf::from(std::ffi::OsString::from_vec(out)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    fn root() -> (tempfile::TempDir, Root) {
        let tmp = tempfile::tempdir().unwrap();
        let root = Root::new(tmp.path().join("run/berth"));
        (tmp, root)
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn create_save_load_list() {
        let (_tmp, root) = root();
        assert_eq!(root.list().unwrap(), Vec::<String>::new(), "missing root");
        let c = root.create("c1").unwrap();
        assert_eq!(c.id(), "c1");
        assert_eq!(c.dir(), root.path().join("c1"));
        assert_eq!(mode(root.path()), 0o700);
        assert_eq!(mode(c.dir()), 0o711);
        let rec = sample("c1");
        c.save(&rec).unwrap();
        assert_eq!(c.load().unwrap(), rec);
        drop(c);
        root.create("b").unwrap();
        fs::write(root.path().join("not-a-dir"), b"").unwrap();
        assert_eq!(root.list().unwrap(), ["b", "c1"]);
        assert_eq!(root.open("c1").unwrap().load().unwrap(), rec);
    }

    #[test]
    fn exists_and_not_found() {
        let (_tmp, root) = root();
        drop(root.create("dup").unwrap());
        let err = root.create("dup").unwrap_err();
        assert!(matches!(err, StateError::Exists(_)));
        assert_eq!(err.to_string(), "container with id exists: dup");
        let err = root.open("nope").unwrap_err();
        assert!(matches!(err, StateError::NotFound(ref id) if id == "nope"));
        assert_eq!(err.to_string(), "container does not exist");
        assert!(matches!(
            root.open("../etc").unwrap_err(),
            StateError::InvalidId { .. }
        ));
        assert!(matches!(
            root.create("a/b").unwrap_err(),
            StateError::InvalidId { .. }
        ));
    }

    #[test]
    fn load_without_state_file_is_an_error() {
        let (_tmp, root) = root();
        let c = root.create("c").unwrap();
        let missing = c.load().unwrap_err();
        assert!(matches!(missing, StateError::Io { .. }));
        assert!(missing.is_missing_record());
        fs::write(c.state_path(), b"{not json").unwrap();
        let err = c.load().unwrap_err();
        assert!(matches!(err, StateError::Json { .. }));
        assert!(err.to_string().contains("state.json"), "{err}");
    }

    #[test]
    fn save_is_atomic_and_leaves_no_temp_files() {
        let (_tmp, root) = root();
        let c = root.create("c").unwrap();
        let mut rec = sample("c");
        for pid in 1..20 {
            rec.pid = pid;
            c.save(&rec).unwrap();
        }
        let names: Vec<_> = fs::read_dir(c.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [STATE_FILE]);
        assert_eq!(c.load().unwrap().pid, 19);
        assert_eq!(mode(&c.state_path()), 0o600);
    }

    #[test]
    fn destroy_removes_everything() {
        let (_tmp, root) = root();
        let c = root.create("gone").unwrap();
        c.save(&sample("gone")).unwrap();
        let dir = c.dir().to_path_buf();
        nix::unistd::mkfifo(
            &dir.join("exec.fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        fs::create_dir_all(dir.join("sub/deeper")).unwrap();
        fs::write(dir.join("sub/deeper/f"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("link")).unwrap();
        c.destroy().unwrap();
        assert!(!dir.exists());
        assert!(Path::new("/etc/passwd").exists());
        assert!(matches!(root.open("gone"), Err(StateError::NotFound(_))));
        assert!(root.list().unwrap().is_empty());
        // The id is free again.
        root.create("gone").unwrap();
    }

    #[test]
    fn same_id_serializes() {
        let (_tmp, root) = root();
        let first = root.create("c").unwrap();
        let (tx, rx) = mpsc::channel();
        let r2 = root.clone();
        let t = std::thread::spawn(move || {
            let c = r2.open("c").unwrap();
            tx.send(Instant::now()).unwrap();
            drop(c);
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "second open did not block"
        );
        let released = Instant::now();
        drop(first);
        let acquired = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(acquired >= released);
        t.join().unwrap();
    }

    #[test]
    fn different_ids_do_not_contend() {
        let (_tmp, root) = root();
        let _a = root.create("a").unwrap();
        let r2 = root.clone();
        let t = std::thread::spawn(move || {
            r2.create("b").unwrap();
            r2.open("b").map(|_| ())
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while !t.is_finished() {
            assert!(Instant::now() < deadline, "lock on a blocked lock on b");
            std::thread::sleep(Duration::from_millis(5));
        }
        t.join().unwrap().unwrap();
    }

    #[test]
    fn waiter_sees_destroy_as_not_found() {
        let (_tmp, root) = root();
        let first = root.create("c").unwrap();
        let r2 = root.clone();
        let t = std::thread::spawn(move || r2.open("c").map(|_| ()));
        std::thread::sleep(Duration::from_millis(100));
        first.destroy().unwrap();
        assert!(matches!(t.join().unwrap(), Err(StateError::NotFound(_))));
    }

    #[test]
    fn waiter_follows_a_recreated_container() {
        let (_tmp, root) = root();
        let first = root.create("c").unwrap();
        let r2 = root.clone();
        let t = std::thread::spawn(move || r2.open("c").map(|c| c.load().map(|r| r.pid)));
        std::thread::sleep(Duration::from_millis(100));
        // Destroy and recreate while the waiter still holds the old directory.
        let dir = first.dir().to_path_buf();
        fs::rename(&dir, root.path().join("old")).unwrap();
        let second = root.create("c").unwrap();
        let mut rec = sample("c");
        rec.pid = 99;
        second.save(&rec).unwrap();
        drop(second);
        drop(first);
        assert_eq!(t.join().unwrap().unwrap().unwrap(), 99);
    }

    #[test]
    fn decodes_mountinfo_escapes() {
        let text = "36 35 98:0 /mnt1 /mnt/with\\040space rw - ext3 /dev/root rw\n\
                    37 35 98:0 / /run/berth/c1/rootfs rw - overlay overlay rw\n";
        let points: Vec<_> = mount_points(text).collect();
        assert_eq!(
            points,
            [
                PathBuf::from("/mnt/with space"),
                PathBuf::from("/run/berth/c1/rootfs")
            ]
        );
    }

    #[test]
    fn destroy_refuses_with_a_mount_inside() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        use nix::mount::{mount, umount2, MntFlags, MsFlags};
        let (_tmp, root) = root();
        let c = root.create("m").unwrap();
        let target = c.dir().join("rootfs");
        fs::create_dir(&target).unwrap();
        if mount(
            Some("tmpfs"),
            &target,
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .is_err()
        {
            eprintln!("skipped: cannot mount tmpfs here");
            return;
        }
        fs::write(target.join("keep"), b"x").unwrap();
        let dir = c.dir().to_path_buf();
        let err = c.destroy().unwrap_err();
        assert!(matches!(err, StateError::Busy { .. }), "{err}");
        assert!(target.join("keep").exists());
        umount2(&target, MntFlags::MNT_DETACH).unwrap();
        root.open("m").unwrap().destroy().unwrap();
        assert!(!dir.exists());
    }
}
