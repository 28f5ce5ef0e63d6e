//! Checkpoint and restore through CRIU.
//!
//! berth runs the `criu` binary (`criu dump`, `criu pre-dump`, `criu
//! restore`, `criu check --feature`, `criu --version`) instead of speaking
//! CRIU's RPC protocol, so there is no protobuf dependency; the arguments
//! carry what runc sends over RPC. Only the native backend checkpoints.
//!
//! - `checkpoint`: the container must be running or paused. CRIU freezes it
//!   through its freezer cgroup and dumps the process tree into the image
//!   directory. Unless `--leave-running` or `--pre-dump`, CRIU kills it and
//!   berth deletes the container as runc does (cgroups, state directory,
//!   poststop hooks), so the id is free for `restore`.
//! - `restore`: like `create`, a new container under the id with its
//!   cgroups made and limits applied; CRIU runs inside those cgroups, in a
//!   private mount namespace where the bundle's rootfs is bound as its
//!   `--root`, and rebuilds the process tree there. The restored init's pid
//!   is recorded and the container is `running`. A failed restore leaves no
//!   state directory, cgroup, mount or process behind.
//!
//! `docs/checkpoint.md` says how each option maps to CRIU.

use std::collections::BTreeMap;
use std::ffi::{CString, OsString};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use berth_cgroups::{Cgroup, Hierarchies, UNIFIED};
use berth_state::{Container, Record, StateError, Status};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::{backend, choose, BackendError, Runtime};

/// The oldest CRIU berth drives: cgroup2 freezing (`--freeze-cgroup` on a
/// cgroup2 directory) arrived in 3.14.
pub const MIN_VERSION: (u32, u32) = (3, 14);

const DUMP_LOG: &str = "dump.log";
const RESTORE_LOG: &str = "restore.log";
/// Where stdin, stdout and stderr of the init pointed at dump time (runc's
/// file name and format: a JSON array of `/proc/PID/fd/N` link targets).
const DESCRIPTORS: &str = "descriptors.json";
/// Keys under which a namespace the container joined (config path) is
/// marked external at dump and handed back at restore.
const EXT_NETNS: &str = "extRootNetNS";
const EXT_PIDNS: &str = "extRootPidNS";
/// In the container's state directory during restore: where the rootfs is
/// bound (in CRIU's private mount namespace only) and where CRIU writes
/// the restored init's pid.
const CRIU_ROOT: &str = "criu-root";
const RESTORE_PIDFILE: &str = "criu-restore.pid";

/// `checkpoint`/`restore` options (runc's flags) and the CRIU binary.
#[derive(Debug, Clone, Default)]
pub struct CriuOptions {
    /// `--criu`: a path, or a name looked up in PATH. None: `criu` in PATH.
    pub criu: Option<PathBuf>,
    /// `--image-path`: where the images are (made by checkpoint).
    pub image_path: PathBuf,
    /// `--work-path`: CRIU's log and work files; default the image path.
    pub work_path: Option<PathBuf>,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    /// soft, full, strict or ignore; None leaves CRIU's default (soft).
    pub manage_cgroups_mode: Option<String>,
    /// Namespaces created empty on restore and not dumped ("network").
    pub empty_ns: Vec<String>,
    pub auto_dedup: bool,
    pub lazy_pages: bool,
    /// Checkpoint only: keep the container running after the dump.
    pub leave_running: bool,
    /// Checkpoint only: dump memory only and keep tracking changes.
    pub pre_dump: bool,
    /// Checkpoint only: a previous pre-dump, relative to the image path.
    pub parent_path: Option<PathBuf>,
    /// Checkpoint with lazy pages: CRIU writes a byte here once its page
    /// server is ready.
    pub status_fd: Option<i32>,
    /// Checkpoint only: `ADDRESS:PORT` of a page server.
    pub page_server: Option<String>,
    /// Checkpoint only (runc's `--tcp-skip-in-flight`): leave out TCP
    /// connections still being set up.
    pub tcp_skip_in_flight: bool,
    /// Checkpoint only (runc's `--link-remap`): link unlinked open files
    /// back where CRIU can.
    pub link_remap: bool,
    /// Restore only (runc's `--lsm-profile TYPE:NAME`).
    pub lsm_profile: Option<String>,
    /// Restore only (runc's `--lsm-mount-context`).
    pub lsm_mount_context: Option<String>,
}

/// What `restore` takes besides the CRIU options (runc's flags).
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    /// Return once restored; else wait for the init, forward signals,
    /// delete the container and return its exit status (as `run`).
    pub detach: bool,
    /// Accepted as runc does; CRIU builds the mount namespace itself.
    pub no_pivot: bool,
    /// Accepted as runc does; CRIU restores no session keyring.
    pub no_new_keyring: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CriuError {
    #[error("CRIU is not installed (looked for {name:?} in PATH; install the criu package or pass --criu PATH)")]
    NotInstalled { name: String },
    #[error("CRIU not found at {} (--criu): {source}", path.display())]
    NotFound { path: PathBuf, source: io::Error },
    #[error("{}: cannot tell which CRIU this is: {detail}", path.display())]
    Version { path: PathBuf, detail: String },
    #[error("{}: CRIU {found} is too old (berth needs {}.{} or later)", path.display(), MIN_VERSION.0, MIN_VERSION.1)]
    TooOld { path: PathBuf, found: String },
    /// CRIU ran and failed; `reason` is the last error line of its log.
    #[error("criu {op} failed ({status}): {reason} (log: {})", log.display())]
    Failed {
        op: &'static str,
        status: String,
        reason: String,
        log: PathBuf,
    },
    #[error("{what}: CRIU cannot do it on this host (`criu check --feature {feature}` {detail})")]
    Feature {
        what: &'static str,
        feature: &'static str,
        detail: String,
    },
    /// runc's wording.
    #[error("Container cannot be checkpointed in {0} state")]
    CannotCheckpoint(Status),
    #[error("no checkpoint to restore in {}: {why}", dir.display())]
    NoImages { dir: PathBuf, why: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Bundle(#[from] berth_bundle::BundleError),
    #[error(transparent)]
    Cgroup(#[from] berth_cgroups::CgroupError),
}

pub type Result<T> = std::result::Result<T, CriuError>;

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> CriuError {
    let what = what.into();
    move |source| CriuError::Io { what, source }
}

// ---- options -------------------------------------------------------------

/// The options checked once, paths made absolute.
#[derive(Debug)]
struct Checked {
    images: PathBuf,
    work: PathBuf,
    manage: Option<&'static str>,
    page_server: Option<(String, u16)>,
}

fn check_options(opts: &CriuOptions) -> Result<Checked> {
    let images = absolute(&opts.image_path)?;
    let work = match &opts.work_path {
        Some(w) => absolute(w)?,
        None => images.clone(),
    };
    let manage = match opts.manage_cgroups_mode.as_deref() {
        None | Some("") => None,
        Some(m) => Some(
            ["soft", "full", "strict", "ignore"]
                .into_iter()
                .find(|k| *k == m)
                .ok_or_else(|| {
                    CriuError::Invalid(format!(
                        "--manage-cgroups-mode {m:?}: must be soft, full, strict or ignore"
                    ))
                })?,
        ),
    };
    for ns in &opts.empty_ns {
        if ns != "network" {
            return Err(CriuError::Invalid(format!(
                "--empty-ns {ns:?}: only \"network\" is supported"
            )));
        }
    }
    let page_server = opts
        .page_server
        .as_deref()
        .map(parse_page_server)
        .transpose()?;
    if let Some(p) = &opts.parent_path {
        if p.is_absolute() {
            return Err(CriuError::Invalid(format!(
                "--parent-path {}: must be relative (to --image-path)",
                p.display()
            )));
        }
    }
    Ok(Checked {
        images,
        work,
        manage,
        page_server,
    })
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(io_err(format!("resolve {}", p.display())))
}

/// `ADDRESS:PORT`, `[IPv6]:PORT` (runc's `--page-server`).
fn parse_page_server(s: &str) -> Result<(String, u16)> {
    let bad = || {
        CriuError::Invalid(format!(
            "--page-server {s:?}: use ADDRESS:PORT (an IPv6 address in brackets)"
        ))
    };
    let (host, port) = match s.strip_prefix('[') {
        Some(rest) => rest.split_once("]:").ok_or_else(bad)?,
        None => {
            let (h, p) = s.rsplit_once(':').ok_or_else(bad)?;
            if h.contains(':') {
                return Err(bad());
            }
            (h, p)
        }
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

// ---- the CRIU binary -----------------------------------------------------

struct Criu {
    path: PathBuf,
}

impl Criu {
    /// `--criu PATH` as given (a name without `/` is looked up in PATH),
    /// else `criu` in PATH; then its version is checked.
    fn locate(requested: Option<&Path>) -> Result<Criu> {
        let path = match requested {
            Some(p) if p.as_os_str().as_bytes().contains(&b'/') => {
                fs::metadata(p).map_err(|source| CriuError::NotFound {
                    path: p.to_path_buf(),
                    source,
                })?;
                p.to_path_buf()
            }
            other => {
                let name = other.unwrap_or(Path::new("criu"));
                search_path(name).ok_or_else(|| CriuError::NotInstalled {
                    name: name.display().to_string(),
                })?
            }
        };
        let criu = Criu { path };
        criu.check_version()?;
        Ok(criu)
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.path);
        cmd.stdin(Stdio::null());
        cmd
    }

    fn check_version(&self) -> Result<()> {
        let bad = |detail: String| CriuError::Version {
            path: self.path.clone(),
            detail,
        };
        let out = self
            .command()
            .arg("--version")
            .output()
            .map_err(|e| bad(format!("run it: {e}")))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(bad(format!(
                "`--version` failed ({}){}",
                out.status,
                tail(&String::from_utf8_lossy(&out.stderr))
                    .map(|l| format!(": {l}"))
                    .unwrap_or_default()
            )));
        }
        let Some(v) = parse_version(&text) else {
            return Err(bad(format!(
                "`--version` printed no \"Version: X.Y\" line ({:?})",
                text.trim()
            )));
        };
        if (v.0, v.1) < MIN_VERSION {
            return Err(CriuError::TooOld {
                path: self.path.clone(),
                found: format!("{}.{}.{}", v.0, v.1, v.2),
            });
        }
        Ok(())
    }

    /// `criu check --feature NAME`: Ok when this host has it.
    fn feature(&self, what: &'static str, feature: &'static str) -> Result<()> {
        let out = self
            .command()
            .args(["check", "--feature", feature])
            .output()
            .map_err(io_err(format!("run {} check", self.path.display())))?;
        if out.status.success() {
            return Ok(());
        }
        let said = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let reason = last_error(&said).or_else(|| tail(&said));
        Err(CriuError::Feature {
            what,
            feature,
            detail: match reason {
                Some(r) => format!("failed ({}): {r}", out.status),
                None => format!("failed ({})", out.status),
            },
        })
    }
}

fn search_path(name: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// `(major, minor, patch)` from `criu --version` ("Version: 3.17.1").
fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let v = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Version:"))?
        .trim();
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some((major, minor, patch))
}

/// The last error line CRIU logged, without its timestamp:
/// `(00.016481) Error (criu/crtools.c:260): Could not ...` gives
/// `Error (criu/crtools.c:260): Could not ...`.
fn last_error(log: &str) -> Option<String> {
    let line = log.lines().rev().find(|l| l.contains("Error ("))?.trim();
    let line = line
        .strip_prefix('(')
        .and_then(|rest| rest.split_once(") "))
        .map_or(line, |(_, after)| after);
    Some(line.trim().to_string())
}

/// The last non-empty line.
fn tail(text: &str) -> Option<String> {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(String::from)
}

/// CRIU exited with `status`: an error with the last error of its log.
fn failed(op: &'static str, status: ExitStatus, log: PathBuf, stderr: &str) -> CriuError {
    let logged = fs::read_to_string(&log).ok();
    let reason = logged
        .as_deref()
        .and_then(last_error)
        .or_else(|| tail(stderr))
        .unwrap_or_else(|| match logged {
            Some(_) => "its log holds no error line".into(),
            None => "it wrote no log".into(),
        });
    CriuError::Failed {
        op,
        status: status.to_string(),
        reason,
        log,
    }
}

fn require_root(op: &str) -> Result<()> {
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return Err(CriuError::Invalid(format!(
            "{op} needs root (CRIU needs CAP_SYS_ADMIN and more in the host's user namespace)"
        )));
    }
    Ok(())
}

// ---- what the config asks of CRIU ---------------------------------------

fn spec_of(rec: &Record) -> Result<Spec> {
    serde_json::from_value(rec.config.clone()).map_err(|e| {
        CriuError::Invalid(format!(
            "the container's recorded config.json does not parse: {e}"
        ))
    })
}

fn has_terminal(spec: &Spec) -> bool {
    spec.process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false)
}

const NO_TERMINAL: &str = "the container has a terminal (process.terminal): berth drives CRIU through its command line, which cannot hand a restored pty master to a console socket, so such containers are not checkpointed yet";
const NO_CONSOLE: &str = "--console-socket: restoring a container with a terminal is not supported yet (CRIU's command line cannot hand the restored pty master to a console socket)";

/// Bind mounts of the config: (destination in the container, host source).
/// Their sources are outside the container's mount namespace, so CRIU is
/// told they are external: by destination at dump, with the source at
/// restore. A relative source is relative to the bundle.
fn bind_mounts(spec: &Spec, bundle: &Path) -> Vec<(PathBuf, PathBuf)> {
    spec.mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|m| {
            m.typ().as_deref() == Some("bind")
                || m.options()
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .any(|o| o == "bind" || o == "rbind")
        })
        .map(|m| {
            let src = m.source().clone().unwrap_or_default();
            (m.destination().clone(), bundle.join(src))
        })
        .collect()
}

/// Namespaces the config joins by path.
fn joined_namespaces(spec: &Spec) -> Vec<(LinuxNamespaceType, PathBuf)> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| Some((n.typ(), n.path().clone()?)))
        .collect()
}

/// Dump side: `net[INODE]:KEY` / `pid[INODE]:KEY` for joined net and pid
/// namespaces, which CRIU then leaves out of the images.
fn external_namespaces(spec: &Spec) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (typ, path) in joined_namespaces(spec) {
        let (kind, key) = match typ {
            LinuxNamespaceType::Network => ("net", EXT_NETNS),
            LinuxNamespaceType::Pid => ("pid", EXT_PIDNS),
            _ => continue,
        };
        let ino = fs::metadata(&path)
            .map_err(io_err(format!(
                "linux.namespaces: stat {} namespace {}",
                kind,
                path.display()
            )))?
            .ino();
        out.push(format!("{kind}[{ino}]:{key}"));
    }
    Ok(out)
}

/// The freezer CRIU stops the container with: the v1 freezer cgroup, else
/// the cgroup2 directory.
fn freezer(paths: &BTreeMap<String, PathBuf>) -> Option<&Path> {
    paths
        .iter()
        .find(|(k, _)| k.split(',').any(|c| c == "freezer"))
        .or_else(|| paths.iter().find(|(k, _)| *k == UNIFIED))
        .map(|(_, p)| p.as_path())
}

/// `--cgroup-root` values mapping the dumped root cgroup onto the new
/// container's cgroup: one per v1 controller (`memory:/x/y`), and the
/// cgroup2 directory as the default root (no controller).
fn cgroup_roots(paths: &BTreeMap<String, PathBuf>, hier: &Hierarchies) -> Vec<String> {
    let mut out = Vec::new();
    for (key, path) in paths {
        let Some(h) = hier.list.iter().find(|h| &h.key == key) else {
            continue;
        };
        let rel = Path::new("/").join(path.strip_prefix(&h.mountpoint).unwrap_or(path));
        if key == UNIFIED {
            out.push(rel.display().to_string());
        } else {
            out.extend(key.split(',').map(|c| format!("{c}:{}", rel.display())));
        }
    }
    out
}

/// The flags dump and restore share.
fn common_args(args: &mut Vec<OsString>, c: &Checked, opts: &CriuOptions, log: &str) {
    args.push("-D".into());
    args.push(c.images.clone().into());
    args.push("-W".into());
    args.push(c.work.clone().into());
    args.push("-o".into());
    args.push(log.into());
    args.push("-v4".into());
    for (on, flag) in [
        (opts.tcp_established, "--tcp-established"),
        (opts.ext_unix_sk, "--ext-unix-sk"),
        (opts.shell_job, "--shell-job"),
        (opts.file_locks, "--file-locks"),
        (opts.auto_dedup, "--auto-dedup"),
    ] {
        if on {
            args.push(flag.into());
        }
    }
    args.push(match c.manage {
        Some(mode) => format!("--manage-cgroups={mode}").into(),
        None => "--manage-cgroups".into(),
    });
    // As runc: berth does not configure network devices, so their state is
    // neither dumped nor restored (`--empty-ns network` is implied).
    args.push("--empty-ns".into());
    args.push("net".into());
}

struct DumpPlan<'a> {
    pid: i32,
    freezer: Option<&'a Path>,
    /// Destinations of bind mounts.
    mounts: Vec<&'a Path>,
    /// `net[INODE]:KEY` etc.
    namespaces: &'a [String],
}

fn dump_args(c: &Checked, opts: &CriuOptions, p: &DumpPlan<'_>) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![if opts.pre_dump { "pre-dump" } else { "dump" }.into()];
    args.push("-t".into());
    args.push(p.pid.to_string().into());
    common_args(&mut args, c, opts, DUMP_LOG);
    if let Some(f) = p.freezer {
        args.push("--freeze-cgroup".into());
        args.push(f.into());
    }
    if opts.pre_dump || opts.parent_path.is_some() {
        args.push("--track-mem".into());
    }
    if let Some(parent) = &opts.parent_path {
        args.push("--prev-images-dir".into());
        args.push(parent.into());
    }
    if opts.leave_running && !opts.pre_dump {
        args.push("--leave-running".into());
    }
    if opts.tcp_skip_in_flight {
        args.push("--skip-in-flight".into());
    }
    if opts.link_remap {
        args.push("--link-remap".into());
    }
    let lazy = opts.lazy_pages && !opts.pre_dump;
    if lazy {
        args.push("--lazy-pages".into());
        if let Some(fd) = opts.status_fd {
            args.push("--status-fd".into());
            args.push(fd.to_string().into());
        }
    }
    if let Some((addr, port)) = &c.page_server {
        // With lazy pages the dump itself serves the pages at this address.
        if !lazy {
            args.push("--page-server".into());
        }
        args.push("--address".into());
        args.push(addr.into());
        args.push("--port".into());
        args.push(port.to_string().into());
    }
    for m in &p.mounts {
        args.push("--external".into());
        let mut v = OsString::from("mnt[");
        v.push(m);
        v.push("]:");
        v.push(m);
        args.push(v);
    }
    for ns in p.namespaces {
        args.push("--external".into());
        args.push(ns.into());
    }
    args
}

struct RestorePlan<'a> {
    root: &'a Path,
    pidfile: &'a Path,
    cgroup_roots: &'a [String],
    /// (destination, host source) of bind mounts.
    mounts: &'a [(PathBuf, PathBuf)],
    /// (descriptor in CRIU, key): joined namespaces and stdio pipes.
    inherit: &'a [(RawFd, String)],
    /// `--join-ns` values (`ipc:/proc/1/ns/ipc`).
    join: &'a [String],
}

fn restore_args(c: &Checked, opts: &CriuOptions, p: &RestorePlan<'_>) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["restore".into()];
    common_args(&mut args, c, opts, RESTORE_LOG);
    args.push("--root".into());
    args.push(p.root.into());
    // The restored init becomes berth's child (sibling of CRIU), and CRIU
    // exits once the tree runs.
    args.push("--restore-detached".into());
    args.push("--restore-sibling".into());
    args.push("--pidfile".into());
    args.push(p.pidfile.into());
    for r in p.cgroup_roots {
        args.push("--cgroup-root".into());
        args.push(r.into());
    }
    if opts.lazy_pages {
        args.push("--lazy-pages".into());
    }
    if let Some(l) = &opts.lsm_profile {
        args.push("--lsm-profile".into());
        args.push(l.into());
    }
    if let Some(l) = &opts.lsm_mount_context {
        args.push("--lsm-mount-context".into());
        args.push(l.into());
    }
    for (dest, src) in p.mounts {
        args.push("--external".into());
        let mut v = OsString::from("mnt[");
        v.push(dest);
        v.push("]:");
        v.push(src);
        args.push(v);
    }
    for (fd, key) in p.inherit {
        args.push("--inherit-fd".into());
        args.push(format!("fd[{fd}]:{key}").into());
    }
    for j in p.join {
        args.push("--join-ns".into());
        args.push(j.into());
    }
    args
}

// ---- checkpoint -----------------------------------------------------------

/// `berth checkpoint`: dump container `id` with CRIU (see the module docs).
pub fn checkpoint(rt: &Runtime, id: &str, opts: &CriuOptions) -> Result<()> {
    let c = rt.root.open(id)?;
    let rec = c.load()?;
    let engine = backend(&rec.backend)?;
    if engine.name() != "native" {
        return Err(BackendError::Unsupported {
            op: "checkpoint",
            backend: engine.name(),
        }
        .into());
    }
    match engine.status(c.dir(), &rec) {
        Status::Running | Status::Paused => {}
        other => return Err(CriuError::CannotCheckpoint(other)),
    }
    require_root("checkpoint")?;
    let checked = check_options(opts)?;
    let spec = spec_of(&rec)?;
    if has_terminal(&spec) {
        return Err(CriuError::Invalid(NO_TERMINAL.into()));
    }
    let criu = Criu::locate(opts.criu.as_deref())?;
    make_dir(&checked.images, "--image-path")?;
    make_dir(&checked.work, "--work-path")?;
    if let Some(parent) = &opts.parent_path {
        let dir = checked.images.join(parent);
        if !dir.is_dir() {
            return Err(CriuError::Invalid(format!(
                "--parent-path {}: {} is not a directory",
                parent.display(),
                dir.display()
            )));
        }
    }
    if opts.pre_dump || opts.parent_path.is_some() {
        criu.feature(
            "--pre-dump/--parent-path (memory tracking)",
            "mem_dirty_track",
        )?;
    }
    if opts.lazy_pages && !opts.pre_dump {
        criu.feature("--lazy-pages", "uffd-noncoop")?;
        if let Some(fd) = opts.status_fd {
            check_status_fd(fd)?;
        }
    }
    let namespaces = external_namespaces(&spec)?;
    let mounts = bind_mounts(&spec, &rec.bundle);
    if !opts.pre_dump {
        write_descriptors(rec.pid, &checked.images)?;
    }
    let plan = DumpPlan {
        pid: rec.pid,
        freezer: freezer(&rec.cgroup_paths),
        mounts: mounts.iter().map(|(d, _)| d.as_path()).collect(),
        namespaces: &namespaces,
    };
    let args = dump_args(&checked, opts, &plan);
    let out = criu
        .command()
        .args(&args)
        .output()
        .map_err(io_err(format!("run {}", criu.path.display())))?;
    if !out.status.success() {
        let op = if opts.pre_dump { "pre-dump" } else { "dump" };
        return Err(failed(
            op,
            out.status,
            checked.work.join(DUMP_LOG),
            &String::from_utf8_lossy(&out.stderr),
        ));
    }
    if opts.pre_dump || opts.leave_running {
        return Ok(());
    }
    // CRIU killed the container: delete it as runc does (cgroups, state,
    // poststop hooks); what cannot be removed is a warning, not a failed
    // checkpoint, since the images are complete.
    drop(c);
    if let Err(e) = rt.delete(id, true) {
        (rt.warn)(&format!(
            "checkpoint {id}: the container was dumped and stopped, but deleting it failed: {e}"
        ));
    }
    Ok(())
}

fn make_dir(dir: &Path, flag: &str) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(format!("{flag}: create {}", dir.display())))
}

/// The lazy-pages status descriptor must be open for writing.
fn check_status_fd(fd: i32) -> Result<()> {
    // SAFETY: F_GETFL only reads the descriptor's flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(CriuError::Invalid(format!(
            "--status-fd {fd}: not an open descriptor ({})",
            io::Error::last_os_error()
        )));
    }
    if flags & libc::O_ACCMODE == libc::O_RDONLY {
        return Err(CriuError::Invalid(format!(
            "--status-fd {fd}: not open for writing"
        )));
    }
    Ok(())
}

/// descriptors.json: what the init's stdin, stdout and stderr are.
fn write_descriptors(pid: i32, images: &Path) -> Result<()> {
    let links: Vec<String> = (0..3)
        .map(|n| {
            fs::read_link(format!("/proc/{pid}/fd/{n}"))
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    let path = images.join(DESCRIPTORS);
    let json = serde_json::to_vec(&links).unwrap_or_default();
    fs::write(&path, json).map_err(io_err(format!("write {}", path.display())))
}

/// Stdio pipes to reconnect: `(n, "pipe:[INODE]")` for each of 0..2 that
/// was a pipe at dump time. A missing file (images not made by berth or
/// runc) means none.
fn read_descriptors(images: &Path) -> Result<Vec<(RawFd, String)>> {
    let path = images.join(DESCRIPTORS);
    let text = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(format!("read {}", path.display()))(e)),
    };
    let links: Vec<String> = serde_json::from_slice(&text).map_err(|e| CriuError::NoImages {
        dir: images.to_path_buf(),
        why: format!("{DESCRIPTORS} is not a JSON array of strings: {e}"),
    })?;
    Ok(links
        .into_iter()
        .enumerate()
        .take(3)
        .filter(|(_, l)| l.starts_with("pipe:"))
        .map(|(n, l)| (n as RawFd, l))
        .collect())
}

// ---- restore --------------------------------------------------------------

/// `berth restore`: a new container `id` from `bundle`, its processes
/// restored by CRIU from the images. Detached: 0 once restored; else the
/// init's exit status, the container deleted after it exits.
pub fn restore(
    rt: &Runtime,
    id: &str,
    bundle: &Path,
    opts: &CriuOptions,
    ropts: &RestoreOptions,
) -> Result<i32> {
    berth_state::validate_id(id)?;
    require_root("restore")?;
    let checked = check_options(opts)?;
    let bundle = berth_bundle::load(bundle)?;
    for w in &bundle.warnings {
        (rt.warn)(w);
    }
    let backend_name = choose(&bundle.spec, &rt.config)?;
    if backend_name != "native" {
        let name = berth_bundle::BACKENDS
            .iter()
            .find(|b| **b == backend_name)
            .copied()
            .unwrap_or("unknown");
        return Err(BackendError::Unsupported {
            op: "restore",
            backend: name,
        }
        .into());
    }
    if ropts.console_socket.is_some() {
        return Err(CriuError::Invalid(NO_CONSOLE.into()));
    }
    if has_terminal(&bundle.spec) {
        return Err(CriuError::Invalid(NO_TERMINAL.into()));
    }
    let criu = Criu::locate(opts.criu.as_deref())?;
    check_images(&checked.images)?;
    let stdio = read_descriptors(&checked.images)?;
    warn_hooks(rt, &bundle.spec);
    make_dir(&checked.work, "--work-path")?;
    let fg = if ropts.detach {
        None
    } else {
        Some(
            crate::foreground::Foreground::prepare()
                .map_err(io_err("prepare to wait for the container"))?,
        )
    };
    let c = rt.root.create(id)?;
    let mut rec = crate::ops::new_record(id, &bundle, backend_name);
    let restored = c
        .save(&rec)
        .map_err(CriuError::from)
        .and_then(|()| restore_into(&c, &mut rec, &bundle, &criu, &checked, opts, &stdio))
        .and_then(|pid| {
            if let Some(p) = &ropts.pid_file {
                crate::ops::write_pid_file(p, pid)
                    .map_err(|e| CriuError::Invalid(e.to_string()))?;
            }
            Ok(pid)
        });
    let pid = match restored {
        Ok(pid) => pid,
        Err(e) => return Err(abandon(c, &rec, e)),
    };
    let Some(fg) = fg else { return Ok(0) };
    drop(c); // others may inspect the container while it runs
    let status = fg
        .wait(pid, None)
        .map_err(io_err("wait for the restored container"));
    match rt.delete(id, true) {
        Ok(()) | Err(BackendError::State(StateError::NotFound(_))) => {}
        Err(e) => (rt.warn)(&format!("delete {id} after it exited: {e}")),
    }
    status
}

/// The images must be there before anything is made on the host.
fn check_images(images: &Path) -> Result<()> {
    let no = |why: String| CriuError::NoImages {
        dir: images.to_path_buf(),
        why,
    };
    match fs::metadata(images) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(no("not a directory".into())),
        Err(e) => return Err(no(e.to_string())),
    }
    if !images.join("inventory.img").is_file() {
        return Err(no(
            "inventory.img is missing (not a CRIU image directory)".into()
        ));
    }
    Ok(())
}

/// Hooks that run while the container is set up are not run on restore:
/// CRIU's command line has no point between "namespaces exist" and "the
/// process runs" that berth could run them at.
fn warn_hooks(rt: &Runtime, spec: &Spec) {
    let Some(h) = spec.hooks() else { return };
    let skipped: Vec<&str> = [
        ("prestart", h.prestart()),
        ("createRuntime", h.create_runtime()),
        ("createContainer", h.create_container()),
        ("startContainer", h.start_container()),
    ]
    .into_iter()
    .filter(|(_, v)| v.as_ref().is_some_and(|v| !v.is_empty()))
    .map(|(n, _)| n)
    .collect();
    if !skipped.is_empty() {
        (rt.warn)(&format!(
            "restore: hooks.{} not run (the restored processes resume where they were dumped)",
            skipped.join(", hooks.")
        ));
    }
}

/// Cgroups, then CRIU; the restored init's pid.
fn restore_into(
    c: &Container,
    rec: &mut Record,
    bundle: &berth_bundle::Bundle,
    criu: &Criu,
    checked: &Checked,
    opts: &CriuOptions,
    stdio: &[(RawFd, String)],
) -> Result<i32> {
    let spec = &bundle.spec;
    let hier = Hierarchies::detect()?;
    let cgroup = restore_cgroup(c, rec, spec, &hier)?;

    // Descriptors CRIU inherits: the namespaces the config joins.
    let mut keep: Vec<OwnedFd> = Vec::new();
    let mut inherit: Vec<(RawFd, String)> = stdio.to_vec();
    let mut join = Vec::new();
    for (typ, path) in joined_namespaces(spec) {
        let key = match typ {
            LinuxNamespaceType::Network => EXT_NETNS,
            LinuxNamespaceType::Pid => EXT_PIDNS,
            LinuxNamespaceType::Ipc => {
                join.push(format!("ipc:{}", path.display()));
                continue;
            }
            LinuxNamespaceType::Uts => {
                join.push(format!("uts:{}", path.display()));
                continue;
            }
            LinuxNamespaceType::Time => {
                join.push(format!("time:{}", path.display()));
                continue;
            }
            _ => continue,
        };
        let fd = open_inheritable(&path)?;
        inherit.push((fd.as_raw_fd(), key.to_string()));
        keep.push(fd);
    }

    // cgroup.procs of every hierarchy, for CRIU to join before it execs.
    let mut procs: Vec<OwnedFd> = Vec::new();
    for dir in cgroup.paths.values() {
        let p = dir.join("cgroup.procs");
        let f = fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&p)
            .map_err(io_err(format!("open {}", p.display())))?;
        procs.push(f.into());
    }

    let root = c.dir().join(CRIU_ROOT);
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&root)
        .map_err(io_err(format!("create {}", root.display())))?;
    let pidfile = c.dir().join(RESTORE_PIDFILE);
    let mounts = bind_mounts(spec, &bundle.dir);
    let roots = cgroup_roots(&cgroup.paths, &hier);
    let plan = RestorePlan {
        root: &root,
        pidfile: &pidfile,
        cgroup_roots: &roots,
        mounts: &mounts,
        inherit: &inherit,
        join: &join,
    };
    let args = restore_args(checked, opts, &plan);
    let ctx = ChildSetup {
        procs: procs.iter().map(|f| f.as_raw_fd()).collect(),
        rootfs: cstring(&bundle.rootfs)?,
        root: cstring(&root)?,
    };
    let mut cmd = Command::new(&criu.path);
    // stdio is berth's: the restored process's pipes are reconnected to it.
    // SAFETY: the closure makes only async-signal-safe system calls
    // (write, unshare, mount) on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || ctx.enter());
    }
    let status = cmd
        .args(&args)
        .status()
        .map_err(io_err(format!("run {}", criu.path.display())));
    drop(keep);
    drop(procs);
    let _ = fs::remove_dir(&root);
    let status = status?;
    if !status.success() {
        return Err(failed(
            "restore",
            status,
            checked.work.join(RESTORE_LOG),
            "",
        ));
    }
    let text = fs::read_to_string(&pidfile).map_err(io_err(format!(
        "read CRIU's pid file {}",
        pidfile.display()
    )))?;
    let pid: i32 = text.trim().parse().map_err(|_| {
        CriuError::Invalid(format!(
            "CRIU's pid file {} holds {:?}, not a pid",
            pidfile.display(),
            text.trim()
        ))
    })?;
    let _ = fs::remove_file(&pidfile);
    rec.pid = pid;
    rec.pid_start = berth_state::pid_start_time(pid).ok_or_else(|| {
        CriuError::Invalid(format!("the restored init (pid {pid}) exited at once"))
    })?;
    c.save(rec)?;
    // The pids limit, as `create` writes it once the init is in place.
    if let Some(res) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
        cgroup.apply_resources(res, berth_cgroups::Mode::Started)?;
    }
    Ok(pid)
}

/// Make the container's cgroup as `create` does, recorded first so a
/// crash leaves nothing `delete --force` cannot find.
fn restore_cgroup(
    c: &Container,
    rec: &mut Record,
    spec: &Spec,
    hier: &Hierarchies,
) -> Result<Cgroup> {
    let cgroups_path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned());
    let cgroup = hier.container(cgroups_path.as_deref(), &rec.id)?;
    rec.cgroup_paths = cgroup.paths.clone();
    rec.cgroup_shared = cgroup.exists();
    c.save(rec)?;
    cgroup.create()?;
    if let Some(res) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
        cgroup.apply_resources(res, berth_cgroups::Mode::Create)?;
    }
    if !rec.cgroup_shared {
        cgroup.apply_devices(&crate::native::device_rules(spec))?;
    }
    Ok(cgroup)
}

/// Open a namespace file without close-on-exec, so CRIU inherits it.
fn open_inheritable(path: &Path) -> Result<OwnedFd> {
    let f = fs::File::open(path)
        .map_err(io_err(format!("linux.namespaces: open {}", path.display())))?;
    let fd: OwnedFd = f.into();
    // SAFETY: F_SETFD on a descriptor we own; clears FD_CLOEXEC only.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0) } < 0 {
        return Err(io_err(format!(
            "linux.namespaces: keep {} open for CRIU",
            path.display()
        ))(io::Error::last_os_error()));
    }
    Ok(fd)
}

fn cstring(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| CriuError::Invalid(format!("{}: path holds a NUL byte", p.display())))
}

/// What CRIU's process does between fork and exec.
struct ChildSetup {
    /// `cgroup.procs` of each hierarchy of the container.
    procs: Vec<RawFd>,
    rootfs: CString,
    root: CString,
}

impl ChildSetup {
    /// Join the container's cgroups (CRIU and what it restores start
    /// there), then, in a mount namespace of its own that does not
    /// propagate back, bind the rootfs at `root` for `criu --root`: berth's
    /// own namespace never holds the mount, so a crash cannot leak it.
    fn enter(&self) -> io::Result<()> {
        for &fd in &self.procs {
            // SAFETY: write(2) of a static buffer to a descriptor opened before fork.
            if unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: unshare(2) with a constant flag.
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: mount(2) with NUL-terminated strings made before fork.
        if unsafe {
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_SLAVE | libc::MS_REC,
                std::ptr::null(),
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        if unsafe {
            libc::mount(
                self.rootfs.as_ptr(),
                self.root.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Remove a container whose restore failed with `cause`; the cause first,
/// then what cleanup could not undo.
fn abandon(c: Container, rec: &Record, cause: CriuError) -> CriuError {
    let cleanup = backend("native")
        .and_then(|engine| engine.destroy(&c, rec))
        .map_err(CriuError::from)
        .and_then(|()| Ok(c.destroy()?));
    match cleanup {
        Ok(()) => cause,
        Err(e) => CriuError::Invalid(format!("{cause} (and cleaning up after it failed: {e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_cgroups::Hierarchy;

    fn opts(images: &str) -> CriuOptions {
        CriuOptions {
            image_path: images.into(),
            ..Default::default()
        }
    }

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn version_lines() {
        assert_eq!(parse_version("Version: 3.17.1\n"), Some((3, 17, 1)));
        assert_eq!(
            parse_version("Version: 4.0\nGitID: v4.0-12-gabc\n"),
            Some((4, 0, 0))
        );
        assert_eq!(parse_version("Version: 3.19-rc1"), Some((3, 19, 0)));
        assert_eq!(parse_version("criu 3.17"), None);
        assert_eq!(parse_version(""), None);
        assert!((3, 13) < MIN_VERSION && (3, 17) >= MIN_VERSION && (4, 0) >= MIN_VERSION);
    }

    #[test]
    fn last_error_line_without_timestamp() {
        let log = "(00.016433) Error (criu/kerndat.c:1615): kerndat_vdso_fill_symtable failed.\n\
                   (00.016468) Adjust mmap_min_addr 0x1000 -> 0x10000\n\
                   (00.016481) Error (criu/crtools.c:260): Could not initialize kernel features detection.\n\
                   (00.016490) Found mmap_min_addr 0x10000\n";
        assert_eq!(
            last_error(log).as_deref(),
            Some("Error (criu/crtools.c:260): Could not initialize kernel features detection.")
        );
        assert_eq!(last_error("(00.1) all fine\n"), None);
        assert_eq!(
            last_error("Error (criu/util.c:642): exited, status=1").as_deref(),
            Some("Error (criu/util.c:642): exited, status=1")
        );
    }

    #[test]
    fn page_server_addresses() {
        assert_eq!(
            parse_page_server("10.0.0.1:27").unwrap(),
            ("10.0.0.1".into(), 27)
        );
        assert_eq!(
            parse_page_server("[::1]:1234").unwrap(),
            ("::1".into(), 1234)
        );
        for bad in [
            "10.0.0.1",
            ":27",
            "host:",
            "host:0",
            "host:99999",
            "::1:80",
            "[::1]",
        ] {
            let e = parse_page_server(bad).unwrap_err().to_string();
            assert!(
                e.contains("--page-server") && e.contains("ADDRESS:PORT"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn option_checks() {
        let c = check_options(&opts("/img")).unwrap();
        assert_eq!(c.images, Path::new("/img"));
        assert_eq!(c.work, Path::new("/img"), "work defaults to the images");
        assert_eq!(c.manage, None);
        let mut o = opts("rel");
        o.work_path = Some("/w".into());
        o.manage_cgroups_mode = Some("full".into());
        let c = check_options(&o).unwrap();
        assert!(c.images.is_absolute() && c.images.ends_with("rel"));
        assert_eq!(
            (c.work.as_path(), c.manage),
            (Path::new("/w"), Some("full"))
        );
        o.manage_cgroups_mode = Some("props".into());
        let e = check_options(&o).unwrap_err().to_string();
        assert!(e.contains("--manage-cgroups-mode \"props\""), "{e}");
        let mut o = opts("/img");
        o.empty_ns = vec!["network".into(), "ipc".into()];
        let e = check_options(&o).unwrap_err().to_string();
        assert!(e.contains("--empty-ns \"ipc\""), "{e}");
        let mut o = opts("/img");
        o.parent_path = Some("/abs".into());
        let e = check_options(&o).unwrap_err().to_string();
        assert!(e.contains("must be relative"), "{e}");
    }

    #[test]
    fn dump_arguments() {
        let mut o = opts("/img");
        o.tcp_established = true;
        o.file_locks = true;
        o.leave_running = true;
        o.link_remap = true;
        o.manage_cgroups_mode = Some("soft".into());
        let c = check_options(&o).unwrap();
        let ns = vec!["net[4026531992]:extRootNetNS".to_string()];
        let plan = DumpPlan {
            pid: 42,
            freezer: Some(Path::new("/sys/fs/cgroup/freezer/c1")),
            mounts: vec![Path::new("/data")],
            namespaces: &ns,
        };
        let a = strings(&dump_args(&c, &o, &plan));
        let joined = a.join(" ");
        assert_eq!(&a[..3], ["dump", "-t", "42"]);
        for want in [
            "-D /img -W /img -o dump.log -v4",
            "--tcp-established --file-locks",
            "--manage-cgroups=soft",
            "--empty-ns net",
            "--freeze-cgroup /sys/fs/cgroup/freezer/c1",
            "--leave-running --link-remap",
            "--external mnt[/data]:/data",
            "--external net[4026531992]:extRootNetNS",
        ] {
            assert!(joined.contains(want), "{want} missing: {joined}");
        }
        for absent in [
            "--track-mem",
            "--shell-job",
            "--lazy-pages",
            "--page-server",
        ] {
            assert!(!joined.contains(absent), "{absent}: {joined}");
        }

        // pre-dump: memory tracking, never --leave-running; a final dump
        // onto a parent tracks memory too.
        let mut o = opts("/img/2");
        o.pre_dump = true;
        o.leave_running = true;
        o.parent_path = Some("../1".into());
        let c = check_options(&o).unwrap();
        let plan = DumpPlan {
            pid: 7,
            freezer: None,
            mounts: vec![],
            namespaces: &[],
        };
        let joined = strings(&dump_args(&c, &o, &plan)).join(" ");
        assert!(joined.starts_with("pre-dump -t 7 "), "{joined}");
        assert!(
            joined.contains("--track-mem --prev-images-dir ../1"),
            "{joined}"
        );
        assert!(!joined.contains("--leave-running"), "{joined}");
        assert!(joined.contains("--manage-cgroups --empty-ns"), "{joined}");

        // Page server: sending pages, or serving them lazily.
        let mut o = opts("/img");
        o.page_server = Some("192.168.0.2:2000".into());
        let c = check_options(&o).unwrap();
        let joined = strings(&dump_args(&c, &o, &plan)).join(" ");
        assert!(
            joined.contains("--page-server --address 192.168.0.2 --port 2000"),
            "{joined}"
        );
        o.lazy_pages = true;
        o.status_fd = Some(5);
        let joined = strings(&dump_args(&c, &o, &plan)).join(" ");
        assert!(
            joined.contains("--lazy-pages --status-fd 5 --address 192.168.0.2 --port 2000"),
            "{joined}"
        );
        assert!(!joined.contains("--page-server"), "{joined}");
    }

    #[test]
    fn restore_arguments() {
        let mut o = opts("/img");
        o.work_path = Some("/work".into());
        o.shell_job = true;
        o.ext_unix_sk = true;
        o.auto_dedup = true;
        o.lazy_pages = true;
        o.lsm_profile = Some("apparmor:berth-default".into());
        let c = check_options(&o).unwrap();
        let mounts = vec![(PathBuf::from("/data"), PathBuf::from("/srv/data"))];
        let inherit = vec![(1, "pipe:[123]".to_string()), (9, EXT_NETNS.to_string())];
        let join = vec!["ipc:/proc/1/ns/ipc".to_string()];
        let roots = vec!["memory:/c1".to_string(), "/c1".to_string()];
        let plan = RestorePlan {
            root: Path::new("/run/berth/c1/criu-root"),
            pidfile: Path::new("/run/berth/c1/criu-restore.pid"),
            cgroup_roots: &roots,
            mounts: &mounts,
            inherit: &inherit,
            join: &join,
        };
        let a = strings(&restore_args(&c, &o, &plan));
        let joined = a.join(" ");
        assert_eq!(a[0], "restore");
        for want in [
            "-D /img -W /work -o restore.log -v4",
            "--ext-unix-sk --shell-job --auto-dedup --manage-cgroups --empty-ns net",
            "--root /run/berth/c1/criu-root --restore-detached --restore-sibling",
            "--pidfile /run/berth/c1/criu-restore.pid",
            "--cgroup-root memory:/c1 --cgroup-root /c1",
            "--lazy-pages",
            "--external mnt[/data]:/srv/data",
            "--inherit-fd fd[1]:pipe:[123] --inherit-fd fd[9]:extRootNetNS",
            "--join-ns ipc:/proc/1/ns/ipc",
            "--lsm-profile apparmor:berth-default",
        ] {
            assert!(joined.contains(want), "{want} missing: {joined}");
        }
    }

    #[test]
    fn cgroup_roots_per_controller() {
        let hier = Hierarchies {
            list: vec![
                Hierarchy {
                    key: "cpu,cpuacct".into(),
                    mountpoint: "/sys/fs/cgroup/cpu,cpuacct".into(),
                    own: "/".into(),
                },
                Hierarchy {
                    key: "name=systemd".into(),
                    mountpoint: "/sys/fs/cgroup/systemd".into(),
                    own: "/".into(),
                },
                Hierarchy {
                    key: UNIFIED.into(),
                    mountpoint: "/sys/fs/cgroup/unified".into(),
                    own: "/".into(),
                },
            ],
        };
        let paths: BTreeMap<String, PathBuf> = [
            ("cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct/pod/c1"),
            ("name=systemd", "/sys/fs/cgroup/systemd/pod/c1"),
            (UNIFIED, "/sys/fs/cgroup/unified/pod/c1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), PathBuf::from(v)))
        .collect();
        assert_eq!(
            cgroup_roots(&paths, &hier),
            [
                "cpu:/pod/c1",
                "cpuacct:/pod/c1",
                "name=systemd:/pod/c1",
                "/pod/c1"
            ]
        );
        assert_eq!(
            freezer(&paths),
            Some(Path::new("/sys/fs/cgroup/unified/pod/c1")),
            "no v1 freezer: the cgroup2 directory"
        );
        let mut with_v1 = paths.clone();
        with_v1.insert("freezer".into(), "/sys/fs/cgroup/freezer/pod/c1".into());
        assert_eq!(
            freezer(&with_v1),
            Some(Path::new("/sys/fs/cgroup/freezer/pod/c1"))
        );
    }

    #[test]
    fn bind_mounts_are_external() {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/data", "type": "bind", "source": "/srv/data"},
                {"destination": "/etc/hosts", "source": "hosts", "options": ["rbind", "ro"]},
                {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]}
            ]
        }))
        .unwrap();
        assert_eq!(
            bind_mounts(&spec, Path::new("/bundle")),
            [
                (PathBuf::from("/data"), PathBuf::from("/srv/data")),
                (PathBuf::from("/etc/hosts"), PathBuf::from("/bundle/hosts")),
            ]
        );
    }

    #[test]
    fn descriptors_round_trip_keeps_pipes_only() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_descriptors(dir.path()).unwrap().is_empty());
        fs::write(
            dir.path().join(DESCRIPTORS),
            r#"["/dev/null","pipe:[1234]","pipe:[5678]"]"#,
        )
        .unwrap();
        assert_eq!(
            read_descriptors(dir.path()).unwrap(),
            [
                (1, "pipe:[1234]".to_string()),
                (2, "pipe:[5678]".to_string())
            ]
        );
        fs::write(dir.path().join(DESCRIPTORS), "{").unwrap();
        let e = read_descriptors(dir.path()).unwrap_err().to_string();
        assert!(e.contains("descriptors.json"), "{e}");
    }

    #[test]
    fn image_directory_checks() {
        let dir = tempfile::tempdir().unwrap();
        let e = check_images(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no checkpoint to restore in") && e.contains("missing"),
            "{e}"
        );
        let e = check_images(dir.path()).unwrap_err().to_string();
        assert!(e.contains("inventory.img is missing"), "{e}");
        fs::write(dir.path().join("inventory.img"), b"x").unwrap();
        check_images(dir.path()).unwrap();
    }

    #[test]
    fn criu_not_found_messages() {
        let e = Criu::locate(Some(Path::new("/nonexistent/criu")))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with("CRIU not found at /nonexistent/criu (--criu):"),
            "{e}"
        );
        let e = Criu::locate(Some(Path::new("no-such-criu-binary")))
            .err()
            .unwrap()
            .to_string();
        assert_eq!(
            e,
            "CRIU is not installed (looked for \"no-such-criu-binary\" in PATH; install the criu package or pass --criu PATH)"
        );
        // A binary that is not CRIU.
        let e = Criu::locate(Some(Path::new("/bin/true")))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("printed no \"Version: X.Y\" line"), "{e}");
    }
}
