//! Checks on the typed `Spec`: everything the runtime-spec and runc require
//! that a well-typed config can still get wrong.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Hook, Hooks, Linux, LinuxIdMapping, LinuxNamespace, LinuxNamespaceType, Mount, Process, Spec,
};

use crate::error::Validation;
use crate::jsonpath::{field, index, key};
use crate::tables::{
    mount_option, namespace_name, propagation_options, MountOpt, BACKENDS, BACKEND_ANNOTATION,
    OCI_VERSION_MAX, OCI_VERSION_MIN,
};

/// Runs every typed check.
pub(crate) fn check(spec: &Spec, bundle_dir: &Path, out: &mut Validation) {
    let ns = Namespaces::of(spec);
    oci_version(spec.version(), out);
    root(spec, bundle_dir, out);
    mounts(spec.mounts().as_deref().unwrap_or_default(), out);
    idmapped_mounts(spec, &ns, out);
    rootless(&ns, out);
    match spec.process() {
        Some(process) => self::process(process, out),
        None => out.problem("process", "required to create or run a container"),
    }
    if let Some(hooks) = spec.hooks() {
        self::hooks(hooks, out);
    }
    if let Some(linux) = spec.linux() {
        namespaces(linux, out);
        id_mappings(linux, &ns, out);
        mount_id_options(spec, linux, &ns, out);
        sysctl(linux, &ns, out);
        rootfs_propagation(linux, out);
        time_offsets(linux, &ns, out);
        if let Some(res) = linux.resources() {
            crate::resources::check(res, out);
        }
        if let Some(path) = linux.cgroups_path() {
            crate::resources::cgroups_path(&path.to_string_lossy(), out);
        }
    }
    uts_names(spec, &ns, out);
    backend(spec, out);
}

/// Which namespaces the container gets (created or joined by path).
struct Namespaces(Vec<LinuxNamespace>);

impl Namespaces {
    fn of(spec: &Spec) -> Self {
        let list = spec.linux().as_ref().and_then(|l| l.namespaces().clone());
        Namespaces(list.unwrap_or_default())
    }

    fn find(&self, typ: LinuxNamespaceType) -> Option<&LinuxNamespace> {
        self.0.iter().find(|ns| ns.typ() == typ)
    }

    fn has(&self, typ: LinuxNamespaceType) -> bool {
        self.find(typ).is_some()
    }
}

/// A SemVer 2.0.0 version: major.minor.patch, with pre-release and build
/// suffixes, which only the pre-release affects in ordering.
fn parse_semver(v: &str) -> Option<(u64, u64, u64, bool)> {
    let core = v.split('+').next()?;
    let (core, pre) = match core.split_once('-') {
        Some((core, pre)) if !pre.is_empty() => (core, true),
        Some(_) => return None,
        None => (core, false),
    };
    let mut parts = core.split('.').map(|p| {
        let leading_zero = p.len() > 1 && p.starts_with('0');
        let digits = !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if digits && !leading_zero {
            p.parse::<u64>().ok()
        } else {
            None
        }
    });
    let version = (parts.next()??, parts.next()??, parts.next()??, pre);
    parts.next().is_none().then_some(version)
}

fn oci_version(version: &str, out: &mut Validation) {
    let range = format!("allowed: {OCI_VERSION_MIN} to {OCI_VERSION_MAX}");
    let Some((major, minor, patch, pre)) = parse_semver(version) else {
        out.problem(
            "ociVersion",
            format!("{version:?} is not a SemVer version ({range})"),
        );
        return;
    };
    let (max_major, max_minor, max_patch, _) =
        parse_semver(OCI_VERSION_MAX).expect("valid constant");
    let newer = (major, minor, patch) > (max_major, max_minor, max_patch);
    let older = major < 1 || (major, minor, patch, pre) == (1, 0, 0, true);
    if newer || older {
        out.problem(
            "ociVersion",
            format!("version {version} is not supported ({range})"),
        );
    }
}

/// Where `root.path` points, joined to the bundle directory if relative.
pub(crate) fn rootfs_path(spec: &Spec, bundle_dir: &Path) -> Option<PathBuf> {
    let path = spec.root().as_ref()?.path();
    (!path.as_os_str().is_empty()).then(|| bundle_dir.join(path))
}

fn root(spec: &Spec, bundle_dir: &Path, out: &mut Validation) {
    if spec.root().is_none() {
        out.problem("root", "required: the container's root filesystem");
        return;
    }
    let Some(path) = rootfs_path(spec, bundle_dir) else {
        out.problem("root.path", "must not be empty");
        return;
    };
    let shown = path.display();
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => out.problem("root.path", format!("{shown} is not a directory")),
        Err(_) if path.symlink_metadata().is_ok() => {
            out.problem("root.path", format!("{shown} is a dangling symlink"))
        }
        Err(e) => out.problem("root.path", format!("{shown}: {e}")),
    }
}

fn mounts(mounts: &[Mount], out: &mut Validation) {
    for (i, mount) in mounts.iter().enumerate() {
        let at = index("mounts", i);
        if !mount.destination().is_absolute() {
            let dest = mount.destination().display();
            out.problem(
                field(&at, "destination"),
                format!("{dest:?} is not an absolute path"),
            );
        }
        let has_source = mount
            .source()
            .as_ref()
            .is_some_and(|s| !s.as_os_str().is_empty());
        if is_bind(mount) && !has_source {
            out.problem(field(&at, "source"), "required for a bind mount");
        }
    }
}

fn is_bind(mount: &Mount) -> bool {
    let opts = mount.options().as_deref().unwrap_or_default();
    mount.typ().as_deref() == Some("bind")
        || opts
            .iter()
            .any(|o| matches!(mount_option(o), Some(MountOpt::Bind { .. })))
}

fn process(process: &Process, out: &mut Validation) {
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        out.problem("process.args", "must name the program to run");
    }
    if !process.cwd().is_absolute() {
        let cwd = process.cwd().display();
        out.problem("process.cwd", format!("{cwd:?} is not an absolute path"));
    }
    ambient_capabilities(process, out);
    let affinity = process.exec_cpu_affinity().as_ref();
    if affinity.is_some_and(|a| {
        a.initial().as_deref().is_some_and(|s| !s.is_empty())
            || a.cpu_affinity_final()
                .as_deref()
                .is_some_and(|s| !s.is_empty())
    }) {
        out.warn(
            "process.execCPUAffinity",
            "applies to processes started with exec, not to the container's init (runtime spec); the init keeps the cgroup's CPUs",
        );
    }
    if let Some(adj) = process
        .oom_score_adj()
        .filter(|v| !(-1000..=1000).contains(v))
    {
        out.problem(
            "process.oomScoreAdj",
            format!("{adj} is outside the kernel's range, -1000 to 1000"),
        );
    }
    let mut seen = HashSet::new();
    for (i, rlimit) in process
        .rlimits()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let at = index("process.rlimits", i);
        if !seen.insert(rlimit.typ().to_string()) {
            out.problem(
                field(&at, "type"),
                format!("{} is set more than once", rlimit.typ()),
            );
        }
        if rlimit.soft() > rlimit.hard() {
            let (soft, hard) = (rlimit.soft(), rlimit.hard());
            out.problem(
                at,
                format!("soft limit {soft} is greater than hard limit {hard}"),
            );
        }
    }
}

/// The kernel raises an ambient capability only if it is also permitted and
/// inheritable; say so instead of letting it vanish quietly.
fn ambient_capabilities(process: &Process, out: &mut Validation) {
    let Some(caps) = process.capabilities() else {
        return;
    };
    let empty = Default::default();
    let permitted = caps.permitted().as_ref().unwrap_or(&empty);
    let inheritable = caps.inheritable().as_ref().unwrap_or(&empty);
    let mut missing: Vec<String> = caps
        .ambient()
        .iter()
        .flatten()
        .filter(|c| !permitted.contains(c) || !inheritable.contains(c))
        .map(|c| format!("CAP_{c}"))
        .collect();
    if missing.is_empty() {
        return;
    }
    missing.sort();
    out.warn(
        "process.capabilities.ambient",
        format!(
            "{} not both permitted and inheritable, so the kernel will not raise them",
            missing.join(", ")
        ),
    );
}

fn hooks(hooks: &Hooks, out: &mut Validation) {
    #[allow(deprecated)] // prestart is deprecated but still run, as runc does
    let lists = [
        ("prestart", hooks.prestart()),
        ("createRuntime", hooks.create_runtime()),
        ("createContainer", hooks.create_container()),
        ("startContainer", hooks.start_container()),
        ("poststart", hooks.poststart()),
        ("poststop", hooks.poststop()),
    ];
    for (name, list) in lists {
        for (i, hook) in list.as_deref().unwrap_or_default().iter().enumerate() {
            self::hook(hook, &index(&field("hooks", name), i), out);
        }
    }
}

fn hook(hook: &Hook, at: &str, out: &mut Validation) {
    if !hook.path().is_absolute() {
        let path = hook.path().display();
        out.problem(
            field(at, "path"),
            format!("{path:?} is not an absolute path"),
        );
    }
    if let Some(timeout) = hook.timeout().filter(|t| *t <= 0) {
        out.problem(
            field(at, "timeout"),
            format!("{timeout} is not a positive number of seconds"),
        );
    }
}

fn namespaces(linux: &Linux, out: &mut Validation) {
    let list = linux.namespaces().as_deref().unwrap_or_default();
    match list.iter().position(|ns| ns.typ() == LinuxNamespaceType::Mount) {
        None => out.problem(
            "linux.namespaces",
            "needs a new mount namespace ({\"type\": \"mount\"}): berth mounts the root filesystem and pivots into it",
        ),
        Some(i) if list[i].path().is_some() => out.problem(
            field(&index("linux.namespaces", i), "path"),
            "joining a mount namespace is not supported: the root filesystem is set up in a new one",
        ),
        Some(_) => {}
    }
    let mut seen = HashSet::new();
    for (i, ns) in linux
        .namespaces()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let at = index("linux.namespaces", i);
        let name = namespace_name(ns.typ());
        if !seen.insert(ns.typ()) {
            out.problem(
                field(&at, "type"),
                format!("namespace {name:?} is listed more than once"),
            );
        }
        let Some(path) = ns.path() else { continue };
        if !path.is_absolute() {
            out.problem(
                field(&at, "path"),
                format!("{:?} is not an absolute path", path.display()),
            );
        } else if !path.exists() {
            out.problem(
                field(&at, "path"),
                format!("{} does not exist", path.display()),
            );
        }
    }
}

fn id_mappings(linux: &Linux, ns: &Namespaces, out: &mut Validation) {
    let user = ns.find(LinuxNamespaceType::User);
    for (name, maps) in [
        ("uidMappings", linux.uid_mappings()),
        ("gidMappings", linux.gid_mappings()),
    ] {
        let at = field("linux", name);
        let maps = maps.as_deref().unwrap_or_default();
        match user {
            None if !maps.is_empty() => {
                out.problem(&at, "mappings need a user namespace in linux.namespaces")
            }
            Some(u) if u.path().is_none() && maps.is_empty() => {
                out.problem(&at, "required when a new user namespace is created")
            }
            _ => mapping_ranges(maps, &at, out),
        }
    }
}

/// A container `berth` creates as an unprivileged user gets a user
/// namespace: without one it could not mount, or own, anything.
fn rootless(ns: &Namespaces, out: &mut Validation) {
    // SAFETY: geteuid cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 && !ns.has(LinuxNamespaceType::User) {
        out.problem(
            "linux.namespaces",
            format!(
                "berth runs as uid {euid}, not root: a rootless container needs a user namespace (add {{\"type\": \"user\"}} with uidMappings and gidMappings)"
            ),
        );
    }
}

/// Idmapped mounts, as runc takes them: per-mount uidMappings and
/// gidMappings (both), or the `idmap`/`ridmap` option alone, which maps
/// through the container's own user namespace; bind mounts only.
fn idmapped_mounts(spec: &Spec, ns: &Namespaces, out: &mut Validation) {
    for (i, mount) in spec.mounts().iter().flatten().enumerate() {
        let at = index("mounts", i);
        let options = mount.options().as_deref().unwrap_or_default();
        let option = options
            .iter()
            .position(|o| matches!(mount_option(o), Some(MountOpt::Idmap { .. })));
        let uid = mount.uid_mappings().as_deref().filter(|m| !m.is_empty());
        let gid = mount.gid_mappings().as_deref().filter(|m| !m.is_empty());
        let given = mount.uid_mappings().is_some() || mount.gid_mappings().is_some();
        if option.is_none() && !given {
            continue;
        }
        if !is_bind(mount) {
            out.problem(
                &at,
                "an idmapped mount (uidMappings/gidMappings, \"idmap\" or \"ridmap\") must be a bind mount: add \"bind\" or \"rbind\" to its options",
            );
        }
        // SAFETY: geteuid cannot fail and touches no memory.
        if unsafe { libc::geteuid() } != 0 {
            out.problem(
                &at,
                "idmapped mounts need berth to run as root (CAP_SYS_ADMIN in the host's user namespace)",
            );
        }
        match (uid, gid) {
            (Some(uid), Some(gid)) => {
                mapping_ranges(uid, &field(&at, "uidMappings"), out);
                mapping_ranges(gid, &field(&at, "gidMappings"), out);
            }
            (Some(_), None) => out.problem(
                field(&at, "gidMappings"),
                "required with uidMappings: an idmapped mount maps both",
            ),
            (None, Some(_)) => out.problem(
                field(&at, "uidMappings"),
                "required with gidMappings: an idmapped mount maps both",
            ),
            (None, None) if given => out.problem(
                field(&at, "uidMappings"),
                "must not be empty: an idmapped mount needs uidMappings and gidMappings",
            ),
            (None, None) => {
                if !ns.has(LinuxNamespaceType::User) {
                    let j = option.unwrap_or_default();
                    out.problem(
                        index(&field(&at, "options"), j),
                        format!(
                            "{:?} without uidMappings and gidMappings maps through the container's user namespace, but linux.namespaces has none",
                            options[j]
                        ),
                    );
                }
            }
        }
    }
}

/// `uid=`/`gid=` mount options name ids in the container's user namespace;
/// the kernel refuses a mount whose id is not mapped there.
fn mount_id_options(spec: &Spec, linux: &Linux, ns: &Namespaces, out: &mut Validation) {
    if !ns
        .find(LinuxNamespaceType::User)
        .is_some_and(|u| u.path().is_none())
    {
        return;
    }
    for (i, mount) in spec.mounts().iter().flatten().enumerate() {
        if is_bind(mount) {
            continue;
        }
        for (j, opt) in mount.options().iter().flatten().enumerate() {
            let (name, maps) = if let Some(v) = opt.strip_prefix("uid=") {
                (("uid", v), linux.uid_mappings())
            } else if let Some(v) = opt.strip_prefix("gid=") {
                (("gid", v), linux.gid_mappings())
            } else {
                continue;
            };
            let Ok(id) = name.1.parse::<u32>() else {
                continue;
            };
            // Missing mappings are reported on their own.
            if maps.as_ref().is_none_or(|m| m.is_empty()) {
                continue;
            }
            let mapped = maps.iter().flatten().any(|m| {
                id >= m.container_id()
                    && u64::from(id) < u64::from(m.container_id()) + u64::from(m.size())
            });
            if !mapped {
                out.problem(
                    index(&field(&index("mounts", i), "options"), j),
                    format!(
                        "{opt}: {} {id} is not mapped in linux.{}Mappings, so the kernel refuses the mount in the container's user namespace",
                        name.0, name.0
                    ),
                );
            }
        }
    }
}

fn mapping_ranges(maps: &[LinuxIdMapping], at: &str, out: &mut Validation) {
    let end = |start: u32, size: u32| u64::from(start) + u64::from(size);
    for (i, m) in maps.iter().enumerate() {
        let here = index(at, i);
        if m.size() == 0 {
            out.problem(field(&here, "size"), "must be at least 1");
            continue;
        }
        let max = u64::from(u32::MAX);
        if end(m.container_id(), m.size()) > max || end(m.host_id(), m.size()) > max {
            out.problem(
                &here,
                format!("range of {} ids overflows 32-bit ids", m.size()),
            );
            continue;
        }
        for (j, other) in maps[..i].iter().enumerate() {
            let overlaps = |a: u32, b: u32| {
                a < b.saturating_add(other.size()) && b < a.saturating_add(m.size())
            };
            if overlaps(m.container_id(), other.container_id()) {
                out.problem(&here, format!("container ids overlap {}", index(at, j)));
            }
            if overlaps(m.host_id(), other.host_id()) {
                out.problem(&here, format!("host ids overlap {}", index(at, j)));
            }
        }
    }
}

/// The namespace a sysctl lives in, or `None` if it isn't namespaced.
fn sysctl_namespace(name: &str) -> Option<LinuxNamespaceType> {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC.contains(&name) || name.starts_with("fs.mqueue.") {
        Some(LinuxNamespaceType::Ipc)
    } else if name.starts_with("net.") {
        Some(LinuxNamespaceType::Network)
    } else if name == "kernel.hostname" || name == "kernel.domainname" {
        Some(LinuxNamespaceType::Uts)
    } else {
        None
    }
}

fn sysctl(linux: &Linux, ns: &Namespaces, out: &mut Validation) {
    let Some(sysctl) = linux.sysctl() else { return };
    let mut names: Vec<&String> = sysctl.keys().collect();
    names.sort();
    for name in names {
        let at = key("linux.sysctl", name);
        match sysctl_namespace(name) {
            None => out.problem(at, "not allowed: not namespaced, it would change the host"),
            Some(typ) if !ns.has(typ) => {
                let ns = namespace_name(typ);
                out.problem(
                    at,
                    format!(
                        "needs a {ns} namespace in linux.namespaces (it would change the host's)"
                    ),
                )
            }
            Some(_) => {}
        }
    }
}

fn rootfs_propagation(linux: &Linux, out: &mut Validation) {
    let Some(mode) = linux
        .rootfs_propagation()
        .as_deref()
        .filter(|m| !m.is_empty())
    else {
        return;
    };
    if !propagation_options().any(|p| p == mode) {
        let allowed: Vec<_> = propagation_options().collect();
        out.problem(
            "linux.rootfsPropagation",
            format!(
                "unknown propagation {mode:?} (allowed: {})",
                allowed.join(", ")
            ),
        );
    }
}

/// `linux.timeOffsets` applies to a time namespace the container creates.
fn time_offsets(linux: &Linux, ns: &Namespaces, out: &mut Validation) {
    let Some(offsets) = linux.time_offsets().as_ref().filter(|o| !o.is_empty()) else {
        return;
    };
    let new_timens = ns
        .find(LinuxNamespaceType::Time)
        .is_some_and(|t| t.path().is_none());
    if !new_timens {
        out.problem(
            "linux.timeOffsets",
            "needs a new time namespace in linux.namespaces (offsets are set when it is created)",
        );
    }
    let mut clocks: Vec<&String> = offsets.keys().collect();
    clocks.sort();
    for clock in clocks {
        if clock != "monotonic" && clock != "boottime" {
            out.problem(
                format!("linux.timeOffsets.{clock}"),
                "unknown clock; allowed: monotonic, boottime",
            );
        }
    }
}

fn uts_names(spec: &Spec, ns: &Namespaces, out: &mut Validation) {
    if ns.has(LinuxNamespaceType::Uts) {
        return;
    }
    for (name, value) in [
        ("hostname", spec.hostname()),
        ("domainname", spec.domainname()),
    ] {
        if value.as_deref().is_some_and(|v| !v.is_empty()) {
            out.problem(
                name,
                "needs a uts namespace in linux.namespaces (it would change the host's)",
            );
        }
    }
}

fn backend(spec: &Spec, out: &mut Validation) {
    let chosen = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(BACKEND_ANNOTATION));
    if let Some(chosen) = chosen.filter(|b| !BACKENDS.contains(&b.as_str())) {
        out.problem(
            key("annotations", BACKEND_ANNOTATION),
            format!(
                "unknown backend {chosen:?} (allowed: {})",
                BACKENDS.join(", ")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::parse_semver;

    #[test]
    fn semver() {
        assert_eq!(parse_semver("1.0.2"), Some((1, 0, 2, false)));
        assert_eq!(parse_semver("1.0.2-dev"), Some((1, 0, 2, true)));
        assert_eq!(parse_semver("1.2.0+build.5"), Some((1, 2, 0, false)));
        assert_eq!(parse_semver("1.0"), None);
        assert_eq!(parse_semver("01.0.0"), None);
        assert_eq!(parse_semver("1.0.0.0"), None);
        assert_eq!(parse_semver("1.0.0-"), None);
    }
}
