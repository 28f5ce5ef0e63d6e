//! Container cgroups on v1, v2 and hybrid hosts.
//!
//! This is the part of the cgroup manager the container lifecycle needs: find
//! the hierarchies once per command, place a container in its own cgroup in
//! every hierarchy, apply v1 device rules, list and signal its processes, and
//! remove its directories. Resource limits build on the same [`Cgroup`].

mod bpf;
mod freezer;
mod prime;
pub mod resources;
mod stats;

pub use bpf::attach_device_program;
pub use prime::prime_migration;
pub use resources::Mode;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("create cgroup {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    #[error("remove cgroup {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
    #[error("no cgroup hierarchy is mounted (looked in /proc/self/mountinfo)")]
    NoHierarchy,
    #[error(
        "pause: the container has no freezer (no v1 freezer hierarchy and no cgroup2 directory)"
    )]
    NoFreezer,
    #[error("device cgroup: berth confines a container's devices with the cgroup v1 devices controller, which this host does not mount (cgroup v2 device programs are not supported yet)")]
    NoDevicesController,
    #[error("linux.cgroupsPath {path:?}: {reason}")]
    SystemdPath { path: String, reason: String },
    #[error("--systemd-cgroup: systemd is not running as PID 1 on this host (no /run/systemd/system); use the cgroupfs driver (drop --systemd-cgroup)")]
    NoSystemd,
    /// A resource the host cannot enforce: `setting` is its config path.
    #[error("{setting}: {reason}")]
    Unsupported { setting: String, reason: String },
    /// A resource write the kernel refused. The errno is part of the
    /// message (not a separate cause), so the line reads once.
    #[error("{setting}: write {value:?} to {}: {}{}", path.display(), errno_text(errno), hint.as_ref().map(|h| format!(": {h}")).unwrap_or_default())]
    Setting {
        setting: String,
        path: PathBuf,
        value: String,
        errno: io::Error,
        hint: Option<String>,
    },
}

/// An OS error as "Invalid argument (EINVAL)": the message and the errno's name.
pub fn errno_text(e: &io::Error) -> String {
    let Some(n) = e.raw_os_error() else {
        return e.to_string();
    };
    let text = e.to_string();
    let msg = text
        .strip_suffix(&format!(" (os error {n})"))
        .unwrap_or(&text);
    let name = match n {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EIO => "EIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::ERANGE => "ERANGE",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        _ => return format!("{msg} (errno {n})"),
    };
    format!("{msg} ({name})")
}

/// One mounted hierarchy: its key (`"unified"` for cgroup2, else the v1
/// controllers as mounted, e.g. `"cpu,cpuacct"` or `"name=systemd"`), where it
/// is mounted, and this process's own cgroup inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub key: String,
    pub mountpoint: PathBuf,
    pub own: PathBuf,
}

impl Hierarchy {
    pub fn is_unified(&self) -> bool {
        self.key == UNIFIED
    }
}

pub const UNIFIED: &str = "unified";

/// The cgroup hierarchies of this host as this process sees them.
#[derive(Debug, Clone, Default)]
pub struct Hierarchies {
    pub list: Vec<Hierarchy>,
}

impl Hierarchies {
    /// Read `/proc/self/mountinfo` and `/proc/self/cgroup` once.
    pub fn detect() -> Result<Self, CgroupError> {
        let mountinfo = read("/proc/self/mountinfo")?;
        let own = read("/proc/self/cgroup")?;
        let list = parse(&mountinfo, &own);
        if list.is_empty() {
            return Err(CgroupError::NoHierarchy);
        }
        Ok(Hierarchies { list })
    }

    /// Only cgroup2 is mounted.
    pub fn is_v2_only(&self) -> bool {
        self.list.iter().all(Hierarchy::is_unified)
    }

    pub fn has_v1(&self, controller: &str) -> bool {
        self.list
            .iter()
            .any(|h| !h.is_unified() && h.key.split(',').any(|c| c == controller))
    }

    /// [`container_with`](Self::container_with) for the cgroupfs driver
    /// (no `--systemd-cgroup`).
    pub fn container(&self, cgroups_path: Option<&str>, id: &str) -> Result<Cgroup, CgroupError> {
        self.container_with(cgroups_path, id, false)
    }

    /// The container's cgroup for `linux.cgroupsPath`:
    /// - absolute (`/a/b`): from each hierarchy's root;
    /// - relative (`a/b`) or unset: below berth's own cgroup, as runc
    ///   places it; unset means the container id;
    /// - systemd's `slice:prefix:name`: where systemd puts that unit
    ///   (`a-b.slice:berth:c1` is `/a.slice/a-b.slice/berth-c1.scope`, see
    ///   [`systemd_unit_path`]), from each hierarchy's root.
    ///
    /// With `systemd` (the global `--systemd-cgroup`), systemd must be
    /// running as PID 1 and the path must be the systemd form (unset means
    /// `system.slice:berth:<id>`); the caller asks systemd for the unit,
    /// these are the directories it will have.
    pub fn container_with(
        &self,
        cgroups_path: Option<&str>,
        id: &str,
        systemd: bool,
    ) -> Result<Cgroup, CgroupError> {
        let given = cgroups_path.filter(|p| !p.is_empty());
        let is_systemd_form = |p: &str| !p.starts_with('/') && p.split(':').count() == 3;
        if systemd && !Path::new("/run/systemd/system").is_dir() {
            return Err(CgroupError::NoSystemd);
        }
        let inner = match given {
            Some(p) if is_systemd_form(p) => systemd_unit_path(p).map_err(|reason| {
                CgroupError::SystemdPath {
                    path: p.to_string(),
                    reason,
                }
            })?,
            Some(p) if systemd => {
                return Err(CgroupError::SystemdPath {
                    path: p.to_string(),
                    reason: "with --systemd-cgroup it must be \"slice:prefix:name\" (e.g. \"system.slice:berth:ID\")".into(),
                })
            }
            Some(p) => p.to_string(),
            None if systemd => systemd_unit_path(&format!("system.slice:berth:{id}")).map_err(
                |reason| CgroupError::SystemdPath {
                    path: id.to_string(),
                    reason,
                },
            )?,
            None => id.to_string(),
        };
        let paths = self
            .list
            .iter()
            .map(|h| {
                let rel = if inner.starts_with('/') {
                    clean(&inner)
                } else {
                    clean(&format!("{}/{inner}", h.own.display()))
                };
                (h.key.clone(), h.mountpoint.join(rel))
            })
            .collect();
        Ok(Cgroup { paths })
    }
}

/// systemd's cgroup directory for a slice name, from the hierarchy's
/// root: each `-` opens a parent slice, so `a-b-c.slice` lives in
/// `/a.slice/a-b.slice/a-b-c.slice`; `-.slice` (or `-`) is the root.
pub fn expand_slice(slice: &str) -> Result<String, String> {
    if slice == "-" || slice == "-.slice" {
        return Ok(String::new());
    }
    let Some(name) = slice.strip_suffix(".slice") else {
        return Err(format!("slice {slice:?} does not end in \".slice\""));
    };
    if name.is_empty()
        || name.contains('/')
        || name.starts_with('-')
        || name.ends_with('-')
        || name.contains("--")
    {
        return Err(format!(
            "{slice:?} is not a slice name (no '/', and '-' only between parts)"
        ));
    }
    let mut path = String::new();
    for (i, _) in name.match_indices('-') {
        path.push_str(&format!("/{}.slice", &name[..i]));
    }
    path.push_str(&format!("/{name}.slice"));
    Ok(path)
}

/// The cgroup path systemd gives `slice:prefix:name`: the unit
/// `prefix-name.scope` (`name.scope` without a prefix; a name ending in
/// `.slice` is that slice itself) in the slice (`system.slice` when
/// empty, the root for `-`), as runc's systemd driver names it.
pub fn systemd_unit_path(p: &str) -> Result<String, String> {
    let mut parts = p.split(':');
    let (Some(slice), Some(prefix), Some(name), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not of the form \"slice:prefix:name\"".into());
    };
    if name.is_empty() {
        return Err("the name part of \"slice:prefix:name\" is empty".into());
    }
    for (what, v) in [("prefix", prefix), ("name", name)] {
        if v.contains('/') || v == "." || v == ".." {
            return Err(format!(
                "the {what} {v:?} is not a unit name part (no '/', '.' or '..')"
            ));
        }
    }
    if name.ends_with(".slice") {
        return expand_slice(name);
    }
    let parent = expand_slice(if slice.is_empty() {
        "system.slice"
    } else {
        slice
    })?;
    let unit = if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    Ok(format!("{parent}/{unit}"))
}

/// `path` made relative to the hierarchy's root, with `.` and `..` resolved
/// lexically and never above the root (as runc cleans cgroup paths): a
/// cgroupsPath can never name a directory outside cgroupfs.
fn clean(path: &str) -> PathBuf {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.iter().collect()
}

fn read(path: &str) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.into(),
        source,
    })
}

/// Pure parser for mountinfo + /proc/self/cgroup, unit-tested below.
fn parse(mountinfo: &str, own_cgroup: &str) -> Vec<Hierarchy> {
    // /proc/self/cgroup: "ID:controllers:path"; v2 has ID 0 and no controllers.
    let mut own: BTreeMap<String, PathBuf> = BTreeMap::new();
    for line in own_cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrl, path) = match (f.next(), f.next(), f.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => continue,
        };
        let key = if ctrl.is_empty() { UNIFIED } else { ctrl };
        own.insert(key.to_string(), PathBuf::from(path));
    }
    let mut list = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        let (root, mountpoint) = (pre[3], unescape(pre[4]));
        let key = match post[0] {
            "cgroup2" => UNIFIED.to_string(),
            "cgroup" => {
                let opts: Vec<&str> = post[2]
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro") && !o.starts_with("release_agent"))
                    .filter(|o| known_v1(o))
                    .collect();
                if opts.is_empty() {
                    continue;
                }
                opts.join(",")
            }
            _ => continue,
        };
        if list.iter().any(|h: &Hierarchy| h.key == key) {
            continue; // the same hierarchy mounted twice: keep the first
        }
        // Our own cgroup is relative to the hierarchy root; the mount may
        // expose only a subtree (`root` field), so strip it.
        let own_path = own.get(&key).cloned().unwrap_or_else(|| PathBuf::from("/"));
        let own_path = match own_path.strip_prefix(root) {
            Ok(rest) => Path::new("/").join(rest),
            Err(_) => own_path,
        };
        list.push(Hierarchy {
            key,
            mountpoint: PathBuf::from(mountpoint),
            own: own_path,
        });
    }
    list
}

fn known_v1(opt: &str) -> bool {
    opt.starts_with("name=")
        || matches!(
            opt,
            "cpu"
                | "cpuacct"
                | "cpuset"
                | "memory"
                | "devices"
                | "freezer"
                | "blkio"
                | "pids"
                | "net_cls"
                | "net_prio"
                | "hugetlb"
                | "perf_event"
                | "rdma"
                | "misc"
        )
}

fn unescape(s: &str) -> String {
    // mountinfo escapes space, tab, newline and backslash as \ooo; other
    // bytes (UTF-8 included) are as they are.
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let digits = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A device cgroup rule, as config.json's `linux.resources.devices[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    /// 'a', 'b' or 'c'.
    pub kind: char,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    pub access: String,
}

impl DeviceRule {
    fn line(&self) -> String {
        let n = |v: Option<i64>| v.map_or("*".to_string(), |v| v.to_string());
        if self.kind == 'a' {
            return format!("a *:* {}", self.access);
        }
        format!(
            "{} {}:{} {}",
            self.kind,
            n(self.major),
            n(self.minor),
            self.access
        )
    }
}

/// The devices every container may use whatever its rules say, as runc
/// allows them: mknod of any node, and null, zero, full, tty, random,
/// urandom, ptmx and the ptys.
pub fn default_device_rules() -> Vec<DeviceRule> {
    let c = |major: i64, minor: Option<i64>| DeviceRule {
        allow: true,
        kind: 'c',
        major: Some(major),
        minor,
        access: "rwm".into(),
    };
    let mknod_any = |kind| DeviceRule {
        allow: true,
        kind,
        major: None,
        minor: None,
        access: "m".into(),
    };
    vec![
        // Creating a node is harmless; opening it is what the rules guard.
        mknod_any('c'),
        mknod_any('b'),
        c(1, Some(3)),
        c(1, Some(5)),
        c(1, Some(7)),
        c(5, Some(0)),
        c(1, Some(8)),
        c(1, Some(9)),
        c(5, Some(2)),
        c(136, None),
    ]
}

/// A hierarchy a rootless container goes without, and why.
#[derive(Debug)]
pub struct Skipped {
    pub key: String,
    pub path: PathBuf,
    pub error: io::Error,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.error)
    }
}

/// A permission error: the caller may not write there (no delegation).
fn denied(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS)
    )
}

/// Whether this process may write `file` (effective ids, as the kernel checks).
fn writable(file: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(file.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: c is NUL-terminated; faccessat only reads it.
    let r = unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::W_OK, libc::AT_EACCESS) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A container's cgroup: one directory per hierarchy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cgroup {
    pub paths: BTreeMap<String, PathBuf>,
}

impl Cgroup {
    /// Whether any of the directories exists already (the container joins
    /// a cgroup it shares with others, so berth must not remove it).
    pub fn exists(&self) -> bool {
        self.paths.values().any(|p| p.is_dir())
    }

    /// Create every directory (parents too). Joining an existing cgroup is fine.
    pub fn create(&self) -> Result<(), CgroupError> {
        for (key, path) in &self.paths {
            fs::create_dir_all(path).map_err(|source| CgroupError::Create {
                path: path.clone(),
                source,
            })?;
            if key.split(',').any(|c| c == "cpuset") {
                inherit_cpuset(path)?;
            }
        }
        Ok(())
    }

    /// [`create`](Self::create) for a rootless berth (runc's rootless cgroup
    /// manager): a hierarchy whose directory the caller may not create, or
    /// whose `cgroup.procs` it may not write (no delegation), is taken out
    /// of this cgroup and returned with the reason. Any other failure is an
    /// error.
    pub fn create_permitted(&mut self) -> Result<Vec<Skipped>, CgroupError> {
        let mut skipped = Vec::new();
        let mut kept = BTreeMap::new();
        for (key, path) in std::mem::take(&mut self.paths) {
            let made = !path.is_dir();
            let outcome = if made {
                fs::create_dir_all(&path).map_err(|source| CgroupError::Create {
                    path: path.clone(),
                    source,
                })
            } else {
                writable(&path.join("cgroup.procs")).map_err(|source| CgroupError::Write {
                    path: path.join("cgroup.procs"),
                    value: String::new(),
                    source,
                })
            };
            let outcome = outcome.and_then(|()| {
                if key.split(',').any(|c| c == "cpuset") {
                    inherit_cpuset(&path)
                } else {
                    Ok(())
                }
            });
            match outcome {
                Ok(()) => {
                    kept.insert(key, path);
                }
                Err(
                    CgroupError::Create { source, .. }
                    | CgroupError::Write { source, .. }
                    | CgroupError::Read { source, .. },
                ) if denied(&source) => {
                    if made {
                        let _ = fs::remove_dir(&path);
                    }
                    skipped.push(Skipped {
                        key,
                        path,
                        error: source,
                    });
                }
                Err(e) => {
                    self.paths = kept;
                    return Err(e);
                }
            }
        }
        self.paths = kept;
        Ok(skipped)
    }

    /// Move `pid` into the cgroup in every hierarchy.
    pub fn add(&self, pid: i32) -> Result<(), CgroupError> {
        for path in self.paths.values() {
            write(&path.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Apply device rules in order: through the v1 devices controller when
    /// the host mounts it, else as a cgroup2 eBPF device program.
    pub fn apply_devices(&self, rules: &[DeviceRule]) -> Result<(), CgroupError> {
        let Some((_, dir)) = self
            .paths
            .iter()
            .find(|(k, _)| k.split(',').any(|c| c == "devices"))
        else {
            return match self.paths.get(UNIFIED) {
                Some(dir) => bpf::attach_device_program(dir, rules),
                None => Err(CgroupError::NoDevicesController),
            };
        };
        for rule in rules {
            let file = if rule.allow {
                "devices.allow"
            } else {
                "devices.deny"
            };
            write(&dir.join(file), &rule.line())?;
        }
        Ok(())
    }

    /// Pids in the cgroup (from the unified hierarchy if there is one, else
    /// the first v1 hierarchy). A missing directory means no processes.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let dir = self
            .paths
            .get(UNIFIED)
            .or_else(|| self.paths.values().next());
        let Some(dir) = dir else { return Ok(vec![]) };
        let mut pids = Vec::new();
        procs_below(dir, &mut pids)?;
        Ok(pids)
    }

    /// Send `signal` to every process in the cgroup.
    pub fn signal_all(&self, signal: i32) -> Result<usize, CgroupError> {
        let pids = self.pids()?;
        for &pid in &pids {
            // SAFETY: kill(2) with a pid read from cgroup.procs; a pid that has
            // exited since is reported as ESRCH and ignored.
            unsafe { libc::kill(pid, signal) };
        }
        Ok(pids.len())
    }

    /// SIGKILL whatever still runs in the cgroup (waiting up to a second for
    /// it to go), then remove the directories.
    pub fn kill_and_remove(&self) -> Result<(), CgroupError> {
        for _ in 0..100 {
            if self.signal_all(libc::SIGKILL)? == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.remove()
    }

    /// Remove every directory, children first. Missing ones are fine.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let mut first_err = None;
        for path in self.paths.values() {
            if let Err(e) = remove_tree(path) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Pids in `dir`'s cgroup.procs and in every cgroup below it (`exec
/// --cgroup` puts processes in sub-cgroups). A missing directory is empty.
fn procs_below(dir: &Path, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    let file = dir.join("cgroup.procs");
    match fs::read_to_string(&file) {
        Ok(s) => out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(CgroupError::Read { path: file, source }),
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                procs_below(&e.path(), out)?;
            }
        }
    }
    Ok(())
}

/// A v1 cpuset cgroup takes no tasks until it has cpus and mems: fill
/// empty ones from the parent, top down (as runc does).
fn inherit_cpuset(dir: &Path) -> Result<(), CgroupError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    if !parent.join("cpuset.cpus").exists() {
        return Ok(()); // above the hierarchy's root
    }
    inherit_cpuset(parent)?;
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let current = fs::read_to_string(dir.join(file)).unwrap_or_default();
        if current.trim().is_empty() {
            let from = parent.join(file);
            let value = fs::read_to_string(&from)
                .map_err(|source| CgroupError::Read { path: from, source })?;
            write(&dir.join(file), value.trim())?;
        }
    }
    Ok(())
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

fn remove_tree(path: &Path) -> Result<(), CgroupError> {
    let entries = match fs::read_dir(path) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Remove {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&entry.path())?;
        }
    }
    // A cgroup whose last task just exited can still be busy for a moment.
    let mut tries = 0;
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const OWN: &str = "5:memory:/a\n4:devices:/\n3:cpu:/\n1:name=systemd:/s\n0::/u\n";

    #[test]
    fn parses_hybrid_layout() {
        let h = Hierarchies {
            list: parse(HYBRID, OWN),
        };
        let keys: Vec<_> = h.list.iter().map(|h| h.key.as_str()).collect();
        assert_eq!(
            keys,
            ["cpu", "memory", "devices", "name=systemd", "unified"]
        );
        assert!(!h.is_v2_only());
        assert!(h.has_v1("devices"));
        let cg = h.container(None, "c1").unwrap();
        assert_eq!(
            cg.paths["memory"],
            PathBuf::from("/sys/fs/cgroup/memory/a/c1")
        );
        assert_eq!(
            cg.paths["unified"],
            PathBuf::from("/sys/fs/cgroup/unified/u/c1")
        );
        let cg = h.container(Some("/../../x/./y/.."), "c1").unwrap();
        assert_eq!(cg.paths["memory"], PathBuf::from("/sys/fs/cgroup/memory/x"));
        let cg = h.container(Some("../../../etc"), "c1").unwrap();
        assert_eq!(
            cg.paths["memory"],
            PathBuf::from("/sys/fs/cgroup/memory/etc")
        );
        let cg = h.container(Some("/x/y"), "c1").unwrap();
        assert_eq!(
            cg.paths["memory"],
            PathBuf::from("/sys/fs/cgroup/memory/x/y")
        );
        assert_eq!(
            cg.paths["name=systemd"],
            PathBuf::from("/sys/fs/cgroup/systemd/x/y")
        );
        let cg = h.container(Some("system.slice:berth:c1"), "c1").unwrap();
        assert_eq!(
            cg.paths["memory"],
            PathBuf::from("/sys/fs/cgroup/memory/system.slice/berth-c1.scope")
        );
        let cg = h.container(Some("a-b.slice:p:n"), "c1").unwrap();
        assert_eq!(
            cg.paths["unified"],
            PathBuf::from("/sys/fs/cgroup/unified/a.slice/a-b.slice/p-n.scope")
        );
        assert!(matches!(
            h.container(Some("bad:berth:c1"), "c1"),
            Err(CgroupError::SystemdPath { .. })
        ));
        if !Path::new("/run/systemd/system").exists() {
            let e = h.container_with(None, "c1", true).unwrap_err();
            assert!(matches!(e, CgroupError::NoSystemd), "{e}");
            assert!(e.to_string().contains("drop --systemd-cgroup"));
        } else {
            let cg = h.container_with(None, "c1", true).unwrap();
            assert_eq!(
                cg.paths["memory"],
                PathBuf::from("/sys/fs/cgroup/memory/system.slice/berth-c1.scope")
            );
            assert!(h.container_with(Some("/abs"), "c1", true).is_err());
        }
    }

    #[test]
    fn systemd_slices_expand_as_systemd_does() {
        assert_eq!(expand_slice("system.slice").unwrap(), "/system.slice");
        assert_eq!(
            expand_slice("a-b-c.slice").unwrap(),
            "/a.slice/a-b.slice/a-b-c.slice"
        );
        assert_eq!(expand_slice("-.slice").unwrap(), "");
        for bad in [
            "a",
            "-a.slice",
            "a-.slice",
            "a--b.slice",
            "a/b.slice",
            ".slice",
        ] {
            assert!(expand_slice(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            systemd_unit_path(":berth:c1").unwrap(),
            "/system.slice/berth-c1.scope"
        );
        assert_eq!(systemd_unit_path("-:p:n").unwrap(), "/p-n.scope");
        assert_eq!(
            systemd_unit_path("user.slice::n").unwrap(),
            "/user.slice/n.scope"
        );
        assert_eq!(
            systemd_unit_path("system.slice:p:x-y.slice").unwrap(),
            "/x.slice/x-y.slice"
        );
        assert!(systemd_unit_path("system.slice:p:").is_err());
        assert!(systemd_unit_path("system.slice:p:..").is_err());
    }

    #[test]
    fn errno_names() {
        let e = io::Error::from_raw_os_error(libc::EINVAL);
        assert_eq!(errno_text(&e), "Invalid argument (EINVAL)");
    }

    #[test]
    fn parses_v2_only_with_subtree_root() {
        let mi = "30 1 0:26 /sub /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let h = Hierarchies {
            list: parse(mi, "0::/sub/me\n"),
        };
        assert!(h.is_v2_only());
        let cg = h.container(Some("rel"), "x").unwrap();
        assert_eq!(cg.paths["unified"], PathBuf::from("/sys/fs/cgroup/me/rel"));
    }

    #[test]
    fn device_rule_lines() {
        let deny_all = DeviceRule {
            allow: false,
            kind: 'a',
            major: None,
            minor: None,
            access: "rwm".into(),
        };
        assert_eq!(deny_all.line(), "a *:* rwm");
        let rules = default_device_rules();
        assert_eq!(rules[0].line(), "c *:* m");
        assert_eq!(rules[1].line(), "b *:* m");
        assert_eq!(rules[2].line(), "c 1:3 rwm");
        assert_eq!(rules[9].line(), "c 136:* rwm");
    }

    #[test]
    fn unescapes_mountinfo() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/caf\u{e9}\\011x"), "/caf\u{e9}\tx");
    }
}
