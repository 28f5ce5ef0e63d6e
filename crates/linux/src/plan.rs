//! The container's set-up, computed in the parent before it forks.
//!
//! Everything the child processes need (paths as C strings, flags, id maps,
//! capability masks, argv and envp) is built here, so that between fork and
//! exec the child only walks this plan and makes syscalls. Planning is pure
//! and unit-tested; the integration tests prove the syscalls.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use berth_bundle::{mount_option, MountOpt};

use berth_cgroups::Cgroup;
use oci_spec::runtime::{Hook, LinuxDeviceType, LinuxNamespaceType, Spec};

use crate::LinuxError;

/// Default devices every container gets (path, major, minor), as the OCI
/// runtime spec lists them.
const DEFAULT_DEVICES: &[(&str, u32, u32)] = &[
    ("dev/null", 1, 3),
    ("dev/zero", 1, 5),
    ("dev/full", 1, 7),
    ("dev/random", 1, 8),
    ("dev/urandom", 1, 9),
    ("dev/tty", 5, 0),
];

const DEV_SYMLINKS: &[(&str, &str)] = &[
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
];

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug)]
pub enum MountKind {
    Bind {
        recursive: bool,
    },
    Fs,
    /// A `cgroup` mount: the container's own cgroup directories, bound
    /// under a tmpfs on v1/hybrid hosts, or bound directly on v2-only hosts.
    Cgroup {
        parts: Vec<(CString, CString)>,
        v2_only: bool,
    },
}

#[derive(Debug)]
pub struct MountStep {
    /// Destination relative to the rootfs, normalised ("dev/pts").
    pub dest: CString,
    /// Destination as config.json gave it, for messages.
    pub display: String,
    pub source: Option<CString>,
    pub fstype: Option<CString>,
    pub kind: MountKind,
    /// MS_* flags to set (for bind mounts: applied by a remount).
    pub flags: libc::c_ulong,
    pub propagation: Vec<libc::c_ulong>,
    pub attr_set: u64,
    pub attr_clr: u64,
    pub data: Option<CString>,
    /// The destination is a file (a bind mount of a file).
    pub dest_is_file: bool,
    pub tmpcopyup: bool,
    /// An idmapped bind mount (per-mount mappings, `idmap`, `ridmap`).
    pub idmap: Option<Idmap>,
    /// The bind source as a detached mount that `berth create` cloned
    /// before forking (see `detached`); the init attaches it with move_mount.
    pub detached: Option<OwnedFd>,
}

/// How an idmapped bind mount maps ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idmap {
    /// The mount's own uidMappings and gidMappings as uid_map/gid_map
    /// text; None: the container's user namespace mappings (`idmap` or
    /// `ridmap` alone).
    pub maps: Option<(Vec<u8>, Vec<u8>)>,
    /// `ridmap`: every mount of a recursive bind, not only the top one.
    pub recursive: bool,
}

/// The mount that holds the rootfs directory, made private before the
/// rootfs is bound so that nothing propagates back to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// The rootfs directory is a mount of its own (an overlay, say).
    Rootfs,
    /// The mount at this path, above the rootfs.
    Above(CString),
}

#[derive(Debug)]
pub struct DeviceStep {
    /// Path relative to the rootfs ("dev/null").
    pub path: CString,
    pub display: String,
    /// S_IFCHR / S_IFBLK / S_IFIFO | permission bits.
    pub mode: u32,
    pub dev: u64,
    pub uid: u32,
    pub gid: u32,
    /// The host path to bind from when mknod is not allowed (user namespace).
    pub host: CString,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

#[derive(Debug)]
pub struct Join {
    pub fd: OwnedFd,
    pub flag: i32,
    pub path: String,
}

#[derive(Debug)]
pub struct Sysctl {
    pub path: CString,
    pub key: String,
    pub value: Vec<u8>,
}

/// Per-command options that do not come from config.json.
#[derive(Debug, Default, Clone)]
pub struct Options {
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    /// `--preserve-fds` plus inherited LISTEN_FDS.
    pub preserve_fds: u32,
    pub listen_fds: u32,
}

#[derive(Debug)]
pub struct Plan {
    // Namespaces.
    pub joins: Vec<Join>,
    pub new_userns: bool,
    pub unshare_flags: i32,
    pub uid_map: Vec<u8>,
    pub gid_map: Vec<u8>,
    pub time_offsets: Option<Vec<u8>>,
    // Root filesystem.
    pub rootfs: CString,
    /// The rootfs directory, opened O_PATH by `berth create`. Stage 1 makes
    /// it its working directory before it creates the mount namespace, so
    /// the init reaches the rootfs as "." even where the container's root
    /// may not walk the path to it (a bundle directory of mode 0700).
    pub rootfs_dir: OwnedFd,
    pub rootfs_holder: Option<Holder>,
    pub root_propagation: libc::c_ulong,
    /// linux.rootfsPropagation was given: applied again to the new root.
    pub root_propagation_set: bool,
    pub mounts: Vec<MountStep>,
    pub dev_setup: bool,
    pub devices: Vec<DeviceStep>,
    pub dev_symlinks: Vec<(CString, CString)>,
    pub hostname: Option<Vec<u8>>,
    pub domainname: Option<Vec<u8>>,
    pub sysctls: Vec<Sysctl>,
    pub masked: Vec<CString>,
    pub readonly: Vec<CString>,
    pub readonly_root: bool,
    pub no_pivot: bool,
    /// The user's process (shared with `exec`).
    pub process: ProcessPlan,
    pub create_container_hooks: Vec<Hook>,
    pub start_container_hooks: Vec<Hook>,
    /// The parent must be asked before pivot_root (hooks to run, state to hand over).
    pub hook_sync: bool,
}

/// The process to run: what the container init applies right before its
/// exec, and what `berth exec` applies to a process joining the container.
#[derive(Debug)]
pub struct ProcessPlan {
    pub oom_score_adj: Option<Vec<u8>>,
    pub terminal: bool,
    /// process.consoleSize as (rows, columns).
    pub console_size: Option<(u16, u16)>,
    pub rlimits: Vec<(u32, u64, u64, String)>,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<libc::gid_t>,
    pub umask: u32,
    pub caps: Option<CapSets>,
    pub last_cap: u32,
    pub no_new_privs: bool,
    pub cwd: CString,
    pub exec_candidates: Vec<CString>,
    pub arg0: String,
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    /// NULL-terminated pointer arrays into `argv` and `env` for execve,
    /// built before the fork (the strings' buffers never move).
    pub argv_ptrs: Vec<*const libc::c_char>,
    pub envp_ptrs: Vec<*const libc::c_char>,
    pub keyring: Option<CString>,
    pub preserve_fds: u32,
    /// Personality, scheduler, I/O priority, CPU affinity, LSM labels, seccomp.
    pub extras: crate::process::Extras,
}

fn cstr(s: impl Into<Vec<u8>>, what: &str) -> Result<CString, LinuxError> {
    CString::new(s).map_err(|_| LinuxError::Plan(format!("{what}: contains a NUL byte")))
}

/// `/a/b/../c` → `a/c`, never leaving the root (as the container would see it).
pub fn relative_in_root(dest: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(dest).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str().unwrap_or("")),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

impl Plan {
    pub fn build(
        id: &str,
        spec: &Spec,
        rootfs: &Path,
        bundle_dir: &Path,
        cgroup: Option<&Cgroup>,
        opts: &Options,
    ) -> Result<Plan, LinuxError> {
        if spec.process().is_none() {
            return Err(LinuxError::Plan(
                "process: required to create a container".into(),
            ));
        }
        let linux = spec.linux().clone().unwrap_or_default();
        let namespaces = linux.namespaces().clone().unwrap_or_default();

        let mut joins = Vec::new();
        let mut unshare_flags = 0;
        let mut new_userns = false;
        for ns in &namespaces {
            let flag = ns.typ() as i32;
            match ns.path() {
                Some(path) => {
                    let fd = std::fs::File::open(path).map_err(|e| {
                        LinuxError::Plan(format!("open namespace {}: {e}", path.display()))
                    })?;
                    joins.push(Join {
                        fd: fd.into(),
                        flag,
                        path: path.display().to_string(),
                    });
                }
                None if ns.typ() == LinuxNamespaceType::User => new_userns = true,
                None => unshare_flags |= flag,
            }
        }
        if unshare_flags & libc::CLONE_NEWNS == 0 {
            return Err(LinuxError::Plan(
                "linux.namespaces: the native backend needs a new mount namespace".into(),
            ));
        }
        // The user namespace is joined first: the others are owned by it.
        joins.sort_by_key(|j| j.flag != libc::CLONE_NEWUSER);

        let fmt_map = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
            map_text(maps.as_deref().unwrap_or_default())
        };
        let time_offsets = linux
            .time_offsets()
            .as_ref()
            .filter(|t| !t.is_empty())
            .map(|t| {
                let mut keys: Vec<_> = t.keys().collect();
                keys.sort();
                keys.iter()
                    .map(|k| {
                        format!(
                            "{} {} {}\n",
                            k,
                            t[*k].secs().unwrap_or(0),
                            t[*k].nanosecs().unwrap_or(0)
                        )
                    })
                    .collect::<String>()
                    .into_bytes()
            });

        let root = spec.root().as_ref();
        let rootfs_c = cstr(rootfs.as_os_str().as_encoded_bytes(), "rootfs")?;
        let rootfs_dir = crate::sys::openat(
            libc::AT_FDCWD,
            &rootfs_c,
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )
        .map_err(|source| LinuxError::Io {
            what: format!("open rootfs {}", rootfs.display()),
            source,
        })?;
        let rootfs_holder = rootfs_holder(rootfs)?;

        let mut mounts = spec
            .mounts()
            .iter()
            .flatten()
            .map(|m| mount_step(m, bundle_dir, cgroup))
            .collect::<Result<Vec<_>, _>>()?;
        let has_proc = mounts
            .iter()
            .any(|m| m.dest.as_bytes() == b"proc" && m.fstype.as_deref() == Some(c"proc"));
        if !has_proc {
            return Err(LinuxError::Plan(
                "mounts: the native backend needs a mount of type \"proc\" at /proc (it reaches the exec fifo and the pty through /proc/self/fd)".into(),
            ));
        }
        let dev_bound = mounts
            .iter()
            .any(|m| m.dest.as_bytes() == b"dev" && matches!(m.kind, MountKind::Bind { .. }));

        let mut devices: Vec<DeviceStep> = Vec::new();
        if !dev_bound {
            for &(path, major, minor) in DEFAULT_DEVICES {
                devices.push(DeviceStep {
                    path: cstr(path, path)?,
                    display: format!("/{path}"),
                    mode: libc::S_IFCHR | 0o666,
                    dev: libc::makedev(major, minor),
                    uid: 0,
                    gid: 0,
                    host: cstr(format!("/{path}"), path)?,
                });
            }
        }
        // A bind-mounted /dev is the host's (or another's): create nothing in it.
        let configured = if dev_bound {
            &[][..]
        } else {
            linux.devices().as_deref().unwrap_or_default()
        };
        for d in configured {
            let display = d.path().display().to_string();
            let rel = relative_in_root(&display);
            let kind = match d.typ() {
                LinuxDeviceType::B => libc::S_IFBLK,
                LinuxDeviceType::P => libc::S_IFIFO,
                _ => libc::S_IFCHR,
            };
            let step = DeviceStep {
                path: cstr(rel.clone(), "linux.devices")?,
                display: display.clone(),
                mode: kind | d.file_mode().unwrap_or(0o666) & 0o7777,
                dev: libc::makedev(d.major() as u32, d.minor() as u32),
                uid: d.uid().unwrap_or(0),
                gid: d.gid().unwrap_or(0),
                host: cstr(display.clone(), "linux.devices")?,
            };
            // A configured device replaces a default one at the same path.
            match devices.iter().position(|x| x.path == step.path) {
                Some(pos) => devices[pos] = step,
                None => devices.push(step),
            }
        }
        let dev_symlinks = if dev_bound {
            Vec::new()
        } else {
            let mut v = DEV_SYMLINKS
                .iter()
                .map(|(t, n)| Ok((cstr(*t, n)?, cstr(*n, n)?)))
                .collect::<Result<Vec<_>, LinuxError>>()?;
            if Path::new("/proc/kcore").exists() {
                v.push((cstr("/proc/kcore", "core")?, cstr("core", "core")?));
            }
            v
        };

        let sysctls = linux
            .sysctl()
            .iter()
            .flatten()
            .map(|(k, v)| {
                Ok(Sysctl {
                    path: cstr(format!("/proc/sys/{}", k.replace('.', "/")), "linux.sysctl")?,
                    key: k.clone(),
                    value: v.clone().into_bytes(),
                })
            })
            .collect::<Result<Vec<_>, LinuxError>>()?;

        let paths = |v: &Option<Vec<String>>, what: &str| {
            v.iter()
                .flatten()
                .map(|p| cstr(p.as_str(), what))
                .collect::<Result<Vec<_>, _>>()
        };

        let process = ProcessPlan::build(id, spec, rootfs, opts)?;
        let hooks = spec.hooks().clone().unwrap_or_default();
        let create_container_hooks = hooks.create_container().clone().unwrap_or_default();
        let start_container_hooks = hooks.start_container().clone().unwrap_or_default();
        #[allow(deprecated)]
        let hook_sync = !create_container_hooks.is_empty()
            || !start_container_hooks.is_empty()
            || hooks.prestart().as_ref().is_some_and(|h| !h.is_empty())
            || hooks
                .create_runtime()
                .as_ref()
                .is_some_and(|h| !h.is_empty());

        let root_propagation = match linux.rootfs_propagation().as_deref() {
            None | Some("") => libc::MS_SLAVE | libc::MS_REC,
            Some(p) => match mount_option(p) {
                Some(MountOpt::Propagation(f)) => *f as libc::c_ulong,
                _ => {
                    return Err(LinuxError::Plan(format!(
                        "linux.rootfsPropagation: unknown mode {p:?}"
                    )))
                }
            },
        };

        if let Some(label) = linux.mount_label().as_deref().filter(|l| !l.is_empty()) {
            crate::lsm::apply_mount_label(&mut mounts, Some(label), &crate::lsm::Host::detect())?;
        }
        Ok(Plan {
            joins,
            new_userns,
            unshare_flags,
            uid_map: fmt_map(linux.uid_mappings()),
            gid_map: fmt_map(linux.gid_mappings()),
            time_offsets,
            rootfs: rootfs_c,
            rootfs_dir,
            rootfs_holder,
            root_propagation,
            root_propagation_set: linux
                .rootfs_propagation()
                .as_deref()
                .is_some_and(|p| !p.is_empty()),
            mounts,
            dev_setup: !dev_bound,
            devices,
            dev_symlinks,
            hostname: spec.hostname().clone().map(String::into_bytes),
            domainname: spec.domainname().clone().map(String::into_bytes),
            sysctls,
            masked: paths(linux.masked_paths(), "linux.maskedPaths")?,
            readonly: paths(linux.readonly_paths(), "linux.readonlyPaths")?,
            readonly_root: root.and_then(|r| r.readonly()).unwrap_or(false),
            no_pivot: opts.no_pivot,
            process,
            create_container_hooks,
            start_container_hooks,
            hook_sync,
        })
    }

    /// The container is in a user namespace (new or joined): device nodes
    /// are bound from the host instead of created.
    pub fn in_userns(&self) -> bool {
        self.new_userns || self.joins.iter().any(|j| j.flag == libc::CLONE_NEWUSER)
    }
}

impl ProcessPlan {
    /// `spec.process` as the child applies it; `spec.linux` gives the
    /// seccomp filter and personality, `rootfs` the user's HOME.
    pub fn build(
        id: &str,
        spec: &Spec,
        rootfs: &Path,
        opts: &Options,
    ) -> Result<ProcessPlan, LinuxError> {
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| LinuxError::Plan("process: required to create a container".into()))?;
        let user = process.user();
        let env_list: Vec<String> = {
            let mut env = process.env().clone().unwrap_or_default();
            if opts.listen_fds > 0 {
                env.retain(|e| !e.starts_with("LISTEN_FDS=") && !e.starts_with("LISTEN_PID="));
                env.push(format!("LISTEN_FDS={}", opts.listen_fds));
                env.push("LISTEN_PID=1".to_string());
            }
            if !env.iter().any(|e| e.starts_with("HOME=")) {
                env.push(format!("HOME={}", home_dir(rootfs, user.uid())));
            }
            env
        };
        let path_var = env_list
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH)
            .to_string();
        let args = process.args().clone().unwrap_or_default();
        let arg0 = args
            .first()
            .cloned()
            .ok_or_else(|| LinuxError::Plan("process.args: must not be empty".into()))?;
        let exec_candidates = if arg0.contains('/') {
            vec![cstr(arg0.as_str(), "process.args[0]")?]
        } else {
            path_var
                .split(':')
                .filter(|d| !d.is_empty())
                .map(|d| cstr(format!("{}/{}", d.trim_end_matches('/'), arg0), "PATH"))
                .collect::<Result<Vec<_>, _>>()?
        };

        let last_cap = berth_bundle::kernel_last_cap().unwrap_or(40) as u32;
        let caps = process.capabilities().as_ref().map(|c| {
            let mask = |set: &Option<oci_spec::runtime::Capabilities>| -> u64 {
                set.iter()
                    .flatten()
                    .filter_map(|cap| berth_bundle::capability_number(&cap_name(cap)))
                    .filter(|n| u32::from(*n) <= last_cap)
                    .fold(0u64, |acc, n| acc | (1u64 << n))
            };
            CapSets {
                bounding: mask(c.bounding()),
                effective: mask(c.effective()),
                permitted: mask(c.permitted()),
                inheritable: mask(c.inheritable()),
                ambient: mask(c.ambient()),
            }
        });

        let rlimits = process
            .rlimits()
            .iter()
            .flatten()
            .map(|r| {
                let name = serde_json::to_value(r.typ())
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default();
                let res = rlimit_resource(&name).ok_or_else(|| {
                    LinuxError::Plan(format!("process.rlimits: unknown type {name}"))
                })?;
                Ok((res, r.soft(), r.hard(), name))
            })
            .collect::<Result<Vec<_>, LinuxError>>()?;

        let argv: Vec<CString> = args
            .iter()
            .map(|a| cstr(a.as_str(), "process.args"))
            .collect::<Result<_, _>>()?;
        let env: Vec<CString> = env_list
            .iter()
            .map(|e| cstr(e.as_str(), "process.env"))
            .collect::<Result<_, _>>()?;
        let pointers = |v: &[CString]| -> Vec<*const libc::c_char> {
            v.iter()
                .map(|c| c.as_ptr())
                .chain([std::ptr::null()])
                .collect()
        };
        let (argv_ptrs, envp_ptrs) = (pointers(&argv), pointers(&env));
        let extras = crate::process::Extras::build(spec)?;
        Ok(ProcessPlan {
            oom_score_adj: process.oom_score_adj().map(|v| v.to_string().into_bytes()),
            terminal: process.terminal().unwrap_or(false),
            console_size: process.console_size().as_ref().map(|b| {
                let clamp = |v: u64| v.min(u64::from(u16::MAX)) as u16;
                (clamp(b.height()), clamp(b.width()))
            }),
            rlimits,
            uid: user.uid(),
            gid: user.gid(),
            additional_gids: user.additional_gids().clone().unwrap_or_default(),
            umask: user.umask().unwrap_or(0o022),
            caps,
            last_cap,
            no_new_privs: process.no_new_privileges().unwrap_or(false),
            cwd: cstr(process.cwd().as_os_str().as_encoded_bytes(), "process.cwd")?,
            exec_candidates,
            arg0,
            argv,
            env,
            argv_ptrs,
            envp_ptrs,
            keyring: if opts.no_new_keyring {
                None
            } else {
                Some(cstr(format!("_ses.{id}"), "id")?)
            },
            preserve_fds: opts.preserve_fds,
            extras,
        })
    }
}

fn cap_name(cap: &oci_spec::runtime::Capability) -> String {
    serde_json::to_value(cap)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn rlimit_resource(name: &str) -> Option<u32> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

/// HOME for `uid` from the container's /etc/passwd (read beneath the rootfs,
/// never following a link out of it), "/" when there is none.
fn home_dir(rootfs: &Path, uid: u32) -> String {
    passwd_home(rootfs, uid).unwrap_or_else(|| "/".into())
}

fn passwd_home(rootfs: &Path, uid: u32) -> Option<String> {
    use std::io::Read;
    let root = std::fs::File::open(rootfs).ok()?;
    // The image's file: never block on a fifo or read a device, never
    // follow a link out of the rootfs, never read more than a sane size.
    let fd = crate::sys::openat2(
        std::os::fd::AsRawFd::as_raw_fd(&root),
        c"etc/passwd",
        libc::O_RDONLY | libc::O_NONBLOCK,
        0,
        crate::sys::RESOLVE_IN_ROOT,
    )
    .ok()?;
    let file = std::fs::File::from(fd);
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    file.take(4 << 20).read_to_string(&mut text).ok()?;
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 6 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
        })
        .find(|h| !h.is_empty())
}

/// The mount holding `rootfs` (the rootfs itself first: it may be a mount),
/// found by `berth create`, which can reach every directory on the way.
fn rootfs_holder(rootfs: &Path) -> Result<Option<Holder>, LinuxError> {
    let mut p = Some(rootfs);
    while let Some(dir) = p {
        let c = cstr(dir.as_os_str().as_encoded_bytes(), "rootfs")?;
        if crate::rootfs::is_mount_root(&c) {
            return Ok(Some(if dir == rootfs {
                Holder::Rootfs
            } else {
                Holder::Above(c)
            }));
        }
        p = dir.parent();
    }
    Ok(None)
}

/// uid_map/gid_map text for a list of mappings.
pub fn map_text(maps: &[oci_spec::runtime::LinuxIdMapping]) -> Vec<u8> {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect::<String>()
        .into_bytes()
}

fn mount_step(
    m: &oci_spec::runtime::Mount,
    bundle_dir: &Path,
    cgroup: Option<&Cgroup>,
) -> Result<MountStep, LinuxError> {
    let display = m.destination().display().to_string();
    let dest = relative_in_root(&display);
    let opts = berth_bundle::mount_options(m.options().as_deref().unwrap_or(&[]));
    let (flags, tmpcopyup) = (
        (opts.flags as libc::c_ulong) & !(libc::MS_BIND | libc::MS_REC),
        opts.tmpcopyup,
    );
    let mut bind = opts
        .bind
        .then_some(opts.flags as libc::c_ulong & libc::MS_REC != 0);
    let typ = m.typ().clone().unwrap_or_default();
    if typ == "bind" && bind.is_none() {
        bind = Some(false);
    }
    // Relative bind sources are relative to the bundle, as runc reads them.
    let source: Option<PathBuf> = m.source().as_ref().map(|s| {
        if bind.is_some() && s.is_relative() {
            bundle_dir.join(s)
        } else {
            s.clone()
        }
    });
    let dest_is_file = bind.is_some()
        && source
            .as_ref()
            .is_some_and(|s| s.metadata().is_ok_and(|md| !md.is_dir()));
    let given = |maps: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        maps.as_deref().filter(|m| !m.is_empty()).map(map_text)
    };
    let idmap = match (given(m.uid_mappings()), given(m.gid_mappings()), opts.idmap) {
        (Some(u), Some(g), recursive) => Some(Idmap {
            maps: Some((u, g)),
            recursive: recursive.unwrap_or(false),
        }),
        (None, None, Some(recursive)) => Some(Idmap {
            maps: None,
            recursive,
        }),
        (None, None, None) => None,
        _ => {
            return Err(LinuxError::Plan(format!(
                "mount {display}: an idmapped mount needs both uidMappings and gidMappings"
            )))
        }
    };
    if idmap.is_some() && bind.is_none() {
        return Err(LinuxError::Plan(format!(
            "mount {display}: an idmapped mount must be a bind mount"
        )));
    }
    let kind = match (bind, typ.as_str()) {
        (Some(recursive), _) => MountKind::Bind { recursive },
        (None, "cgroup") | (None, "cgroup2") => {
            let cg = cgroup.ok_or_else(|| {
                LinuxError::Plan(format!(
                    "mount {display}: a cgroup mount needs the container's cgroup"
                ))
            })?;
            let v2_only = cg.paths.keys().all(|k| k == berth_cgroups::UNIFIED);
            let parts = cg
                .paths
                .iter()
                .map(|(k, p)| {
                    let name = k.strip_prefix("name=").unwrap_or(k);
                    Ok((
                        cstr(name, "cgroup")?,
                        cstr(p.as_os_str().as_encoded_bytes(), "cgroup")?,
                    ))
                })
                .collect::<Result<Vec<_>, LinuxError>>()?;
            MountKind::Cgroup { parts, v2_only }
        }
        _ => MountKind::Fs,
    };
    Ok(MountStep {
        dest: cstr(dest, "mounts.destination")?,
        display,
        source: source
            .map(|s| cstr(s.as_os_str().as_encoded_bytes(), "mounts.source"))
            .transpose()?,
        fstype: if typ.is_empty() {
            None
        } else {
            Some(cstr(typ, "mounts.type")?)
        },
        kind,
        flags,
        propagation: opts
            .propagation
            .iter()
            .map(|&p| p as libc::c_ulong)
            .collect(),
        attr_set: opts.attr_set,
        attr_clr: opts.attr_clr,
        data: if opts.data.is_empty() {
            None
        } else {
            Some(cstr(opts.data, "mounts.options")?)
        },
        dest_is_file,
        tmpcopyup,
        idmap,
        detached: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_stay_in_root() {
        assert_eq!(relative_in_root("/dev/pts"), "dev/pts");
        assert_eq!(relative_in_root("/../../etc"), "etc");
        assert_eq!(relative_in_root("/a/./b/../c/"), "a/c");
        assert_eq!(relative_in_root("/"), ".");
    }

    fn mount(json: serde_json::Value) -> MountStep {
        let m: oci_spec::runtime::Mount = serde_json::from_value(json).unwrap();
        mount_step(&m, Path::new("/bundle"), None).unwrap()
    }

    #[test]
    fn mount_options_become_flags_data_and_attrs() {
        let s = mount(serde_json::json!({
            "destination": "/data", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "nodev", "ro", "rw", "mode=755", "size=64k", "rprivate", "rnoexec"]
        }));
        assert_eq!(s.flags, libc::MS_NOSUID | libc::MS_NODEV);
        assert_eq!(s.data.as_deref(), Some(c"mode=755,size=64k"));
        assert_eq!(s.propagation, vec![libc::MS_PRIVATE | libc::MS_REC]);
        assert_ne!(s.attr_set, 0);
        assert!(matches!(s.kind, MountKind::Fs));
    }

    #[test]
    fn idmapped_binds_carry_their_mappings() {
        let s = mount(
            serde_json::json!({"destination": "/x", "source": "/s", "options": ["rbind", "ridmap"]}),
        );
        assert_eq!(
            s.idmap,
            Some(Idmap {
                maps: None,
                recursive: true
            })
        );
        let map = serde_json::json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        let s = mount(
            serde_json::json!({"destination": "/x", "source": "/s", "options": ["bind"],
            "uidMappings": map, "gidMappings": [{"containerID": 1, "hostID": 2, "size": 3}]}),
        );
        assert_eq!(
            s.idmap,
            Some(Idmap {
                maps: Some((b"0 100000 65536\n".to_vec(), b"1 2 3\n".to_vec())),
                recursive: false
            })
        );
        assert!(mount(
            serde_json::json!({"destination": "/x", "source": "/s", "options": ["bind"]})
        )
        .idmap
        .is_none());
    }

    #[test]
    fn relative_bind_source_is_bundle_relative() {
        let s = mount(
            serde_json::json!({"destination": "/x", "source": "data", "options": ["rbind", "ro"]}),
        );
        assert_eq!(s.source.as_deref(), Some(c"/bundle/data"));
        assert!(matches!(s.kind, MountKind::Bind { recursive: true }));
        assert_eq!(s.flags, libc::MS_RDONLY);
    }
}
