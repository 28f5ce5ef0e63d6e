//! The tables the validator, the native backend and `features` all read.
//!
//! Anything berth accepts in config.json is listed here exactly once, so
//! `berth features` cannot claim more (or less) than the validator allows.

use std::sync::OnceLock;

use oci_spec::runtime::LinuxNamespaceType;

/// Lowest `ociVersion` berth accepts.
pub const OCI_VERSION_MIN: &str = "1.0.0";

/// Highest `ociVersion` berth accepts.
///
/// `oci_spec::runtime::VERSION` still says 1.1.0, but oci-spec 0.10 models the
/// fields runtime-spec 1.2 and 1.3 added (idmapped mounts, `netDevices`,
/// `memoryPolicy`, `intelRdt.schemata`), and containerd/podman write 1.2.x and
/// 1.3.x. Every field of those versions is either handled or rejected by name by
/// the validator, so accepting them never ignores a setting silently.
pub const OCI_VERSION_MAX: &str = "1.3.0";

/// Engines a container can be handed to, chosen by [`BACKEND_ANNOTATION`].
pub const BACKENDS: &[&str] = &["native", "crun"];

/// The config.json annotation that picks the backend for one container.
pub const BACKEND_ANNOTATION: &str = "run.berth.backend";

/// Hook names in the order the spec runs them (`prestart` is deprecated but
/// still honoured, as runc does).
pub const HOOKS: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// The five capability sets of `process.capabilities`.
pub const CAPABILITY_SETS: &[&str] = &[
    "bounding",
    "effective",
    "inheritable",
    "permitted",
    "ambient",
];

/// Resource limit names `process.rlimits[].type` accepts.
pub const RLIMITS: &[&str] = &[
    "RLIMIT_AS",
    "RLIMIT_CORE",
    "RLIMIT_CPU",
    "RLIMIT_DATA",
    "RLIMIT_FSIZE",
    "RLIMIT_LOCKS",
    "RLIMIT_MEMLOCK",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_NOFILE",
    "RLIMIT_NPROC",
    "RLIMIT_RSS",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
    "RLIMIT_SIGPENDING",
    "RLIMIT_STACK",
];

/// Namespace types by their runtime-spec name.
pub static NAMESPACES: &[(&str, LinuxNamespaceType)] = &[
    ("cgroup", LinuxNamespaceType::Cgroup),
    ("ipc", LinuxNamespaceType::Ipc),
    ("mount", LinuxNamespaceType::Mount),
    ("network", LinuxNamespaceType::Network),
    ("pid", LinuxNamespaceType::Pid),
    ("time", LinuxNamespaceType::Time),
    ("user", LinuxNamespaceType::User),
    ("uts", LinuxNamespaceType::Uts),
];

/// The runtime-spec name of a namespace type ("mount", "network", ...).
pub fn namespace_name(typ: LinuxNamespaceType) -> &'static str {
    NAMESPACES
        .iter()
        .find(|(_, t)| *t == typ)
        .map(|(name, _)| *name)
        .unwrap_or("unknown")
}

/// What one mount option means.
///
/// How the native backend applies a list of options:
/// - `Flag { clear: false, flag }`: OR `flag` into the `mount(2)` flags;
///   `Flag { clear: true, flag }`: remove `flag` from them (e.g. `rw` clears
///   `MS_RDONLY`, `atime` clears `MS_NOATIME`). Later options win.
/// - `Propagation(flags)`: a separate `mount(2)` call with only these flags
///   (`MS_SHARED|MS_REC`, ...) after the mount is made.
/// - `Recursive { clear, attr }`: `mount_setattr(2)` with `AT_RECURSIVE` on the
///   mount; `attr` goes to `attr_set` (or `attr_clr` when `clear`). The atime
///   attributes (`MOUNT_ATTR_RELATIME` is 0, `NOATIME`, `STRICTATIME`) are a
///   field, not bits: when setting or clearing one, put `MOUNT_ATTR__ATIME` in
///   `attr_clr`. [`mount_options`] does all of this for a whole option list.
/// - `Bind { recursive }`: a bind mount (`MS_BIND`, plus `MS_REC` when
///   recursive); the mount needs a `source`.
/// - `Tmpcopyup`: after mounting a tmpfs, copy what was at the destination
///   into it.
/// - `Idmap { recursive }`: an idmapped bind mount (`ridmap`: every mount of
///   a recursive bind, not only the top one).
///
/// Any option not in [`MOUNT_OPTIONS`] is filesystem data (`mode=755`,
/// `size=64k`): join those with "," and pass them as `mount(2)`'s data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MountOpt {
    Flag { clear: bool, flag: u64 },
    Propagation(u64),
    Recursive { clear: bool, attr: u64 },
    Bind { recursive: bool },
    Tmpcopyup,
    Idmap { recursive: bool },
}

impl MountOpt {
    /// Whether berth can honour this option today.
    pub fn supported(&self) -> bool {
        true
    }
}

#[allow(clippy::unnecessary_cast)] // c_ulong is 32 bits on some targets
const fn set(flag: libc::c_ulong) -> MountOpt {
    MountOpt::Flag {
        clear: false,
        flag: flag as u64,
    }
}

#[allow(clippy::unnecessary_cast)] // c_ulong is 32 bits on some targets
const fn clear(flag: libc::c_ulong) -> MountOpt {
    MountOpt::Flag {
        clear: true,
        flag: flag as u64,
    }
}

#[allow(clippy::unnecessary_cast)] // c_ulong is 32 bits on some targets
const fn propagation(flag: libc::c_ulong) -> MountOpt {
    MountOpt::Propagation(flag as u64)
}

const fn rset(attr: u64) -> MountOpt {
    MountOpt::Recursive { clear: false, attr }
}

const fn rclear(attr: u64) -> MountOpt {
    MountOpt::Recursive { clear: true, attr }
}

/// Every mount option berth recognises, sorted by name.
pub static MOUNT_OPTIONS: &[(&str, MountOpt)] = &[
    ("async", clear(libc::MS_SYNCHRONOUS)),
    ("atime", clear(libc::MS_NOATIME)),
    ("bind", MountOpt::Bind { recursive: false }),
    ("defaults", set(0)),
    ("dev", clear(libc::MS_NODEV)),
    ("diratime", clear(libc::MS_NODIRATIME)),
    ("dirsync", set(libc::MS_DIRSYNC)),
    ("exec", clear(libc::MS_NOEXEC)),
    ("idmap", MountOpt::Idmap { recursive: false }),
    ("iversion", set(libc::MS_I_VERSION)),
    ("lazytime", set(libc::MS_LAZYTIME)),
    ("loud", clear(libc::MS_SILENT)),
    ("mand", set(libc::MS_MANDLOCK)),
    ("noatime", set(libc::MS_NOATIME)),
    ("nodev", set(libc::MS_NODEV)),
    ("nodiratime", set(libc::MS_NODIRATIME)),
    ("noexec", set(libc::MS_NOEXEC)),
    ("noiversion", clear(libc::MS_I_VERSION)),
    ("nolazytime", clear(libc::MS_LAZYTIME)),
    ("nomand", clear(libc::MS_MANDLOCK)),
    ("norelatime", clear(libc::MS_RELATIME)),
    ("nostrictatime", clear(libc::MS_STRICTATIME)),
    ("nosuid", set(libc::MS_NOSUID)),
    ("nosymfollow", set(libc::MS_NOSYMFOLLOW)),
    ("private", propagation(libc::MS_PRIVATE)),
    ("ratime", rclear(libc::MOUNT_ATTR_NOATIME)),
    ("rbind", MountOpt::Bind { recursive: true }),
    ("rdev", rclear(libc::MOUNT_ATTR_NODEV)),
    ("rdiratime", rclear(libc::MOUNT_ATTR_NODIRATIME)),
    ("relatime", set(libc::MS_RELATIME)),
    ("remount", set(libc::MS_REMOUNT)),
    ("rexec", rclear(libc::MOUNT_ATTR_NOEXEC)),
    ("ridmap", MountOpt::Idmap { recursive: true }),
    ("rnoatime", rset(libc::MOUNT_ATTR_NOATIME)),
    ("rnodev", rset(libc::MOUNT_ATTR_NODEV)),
    ("rnodiratime", rset(libc::MOUNT_ATTR_NODIRATIME)),
    ("rnoexec", rset(libc::MOUNT_ATTR_NOEXEC)),
    ("rnorelatime", rclear(libc::MOUNT_ATTR_RELATIME)),
    ("rnostrictatime", rclear(libc::MOUNT_ATTR_STRICTATIME)),
    ("rnosuid", rset(libc::MOUNT_ATTR_NOSUID)),
    ("rnosymfollow", rset(libc::MOUNT_ATTR_NOSYMFOLLOW)),
    ("ro", set(libc::MS_RDONLY)),
    ("rprivate", propagation(libc::MS_PRIVATE | libc::MS_REC)),
    ("rrelatime", rset(libc::MOUNT_ATTR_RELATIME)),
    ("rro", rset(libc::MOUNT_ATTR_RDONLY)),
    ("rrw", rclear(libc::MOUNT_ATTR_RDONLY)),
    ("rshared", propagation(libc::MS_SHARED | libc::MS_REC)),
    ("rslave", propagation(libc::MS_SLAVE | libc::MS_REC)),
    ("rstrictatime", rset(libc::MOUNT_ATTR_STRICTATIME)),
    ("rsuid", rclear(libc::MOUNT_ATTR_NOSUID)),
    ("rsymfollow", rclear(libc::MOUNT_ATTR_NOSYMFOLLOW)),
    (
        "runbindable",
        propagation(libc::MS_UNBINDABLE | libc::MS_REC),
    ),
    ("rw", clear(libc::MS_RDONLY)),
    ("shared", propagation(libc::MS_SHARED)),
    ("silent", set(libc::MS_SILENT)),
    ("slave", propagation(libc::MS_SLAVE)),
    ("strictatime", set(libc::MS_STRICTATIME)),
    ("suid", clear(libc::MS_NOSUID)),
    ("symfollow", clear(libc::MS_NOSYMFOLLOW)),
    ("sync", set(libc::MS_SYNCHRONOUS)),
    ("tmpcopyup", MountOpt::Tmpcopyup),
    ("unbindable", propagation(libc::MS_UNBINDABLE)),
];

/// The meaning of a mount option, or `None` for filesystem data.
pub fn mount_option(name: &str) -> Option<&'static MountOpt> {
    MOUNT_OPTIONS
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| &MOUNT_OPTIONS[i].1)
}

/// A mount's option list applied in order, as the native backend needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// `MS_*` flags for the `mount(2)` call (includes `MS_BIND|MS_REC` for
    /// bind mounts).
    pub flags: u64,
    /// Propagation changes, each its own `mount(2)` call, in order.
    pub propagation: Vec<u64>,
    /// `MOUNT_ATTR_*` for `mount_setattr(2)` with `AT_RECURSIVE`
    /// (`attr_set`, `attr_clr`), atime field handling already done.
    pub attr_set: u64,
    pub attr_clr: u64,
    pub bind: bool,
    pub tmpcopyup: bool,
    /// `idmap` (Some(false)) or `ridmap` (Some(true)).
    pub idmap: Option<bool>,
    /// Options that aren't berth's (filesystem data), joined with ",".
    pub data: String,
}

/// Folds an option list into [`MountOptions`]; later options win.
pub fn mount_options<S: AsRef<str>>(options: &[S]) -> MountOptions {
    let mut out = MountOptions::default();
    let mut data = Vec::new();
    for name in options.iter().map(AsRef::as_ref) {
        match mount_option(name) {
            None => data.push(name),
            Some(MountOpt::Flag { clear: false, flag }) => out.flags |= flag,
            Some(MountOpt::Flag { clear: true, flag }) => out.flags &= !flag,
            Some(MountOpt::Propagation(flags)) => out.propagation.push(*flags),
            Some(MountOpt::Recursive { clear: true, attr }) if is_atime_attr(*attr) => {
                // The kernel takes the atime field whole: clearing one mode
                // means going back to the default, relatime.
                out.attr_set &= !libc::MOUNT_ATTR__ATIME;
                out.attr_clr |= libc::MOUNT_ATTR__ATIME;
            }
            Some(MountOpt::Recursive { clear: true, attr }) => {
                out.attr_set &= !attr;
                out.attr_clr |= attr;
            }
            Some(MountOpt::Recursive { clear: false, attr }) if is_atime_attr(*attr) => {
                out.attr_set = (out.attr_set & !libc::MOUNT_ATTR__ATIME) | attr;
                out.attr_clr |= libc::MOUNT_ATTR__ATIME;
            }
            Some(MountOpt::Recursive { clear: false, attr }) => {
                out.attr_set |= attr;
                out.attr_clr &= !attr;
            }
            Some(MountOpt::Bind { recursive }) => {
                out.bind = true;
                out.flags |= MS_BIND;
                if *recursive {
                    out.flags |= MS_REC;
                }
            }
            Some(MountOpt::Tmpcopyup) => out.tmpcopyup = true,
            Some(MountOpt::Idmap { recursive }) => {
                out.idmap = Some(out.idmap.unwrap_or(false) || *recursive)
            }
        }
    }
    out.data = data.join(",");
    out
}

#[allow(clippy::unnecessary_cast)] // c_ulong is 32 bits on some targets
const MS_BIND: u64 = libc::MS_BIND as u64;
#[allow(clippy::unnecessary_cast)]
const MS_REC: u64 = libc::MS_REC as u64;

fn is_atime_attr(attr: u64) -> bool {
    attr == libc::MOUNT_ATTR_RELATIME || attr & libc::MOUNT_ATTR__ATIME != 0
}

/// Names of the propagation options, which `linux.rootfsPropagation` accepts.
pub fn propagation_options() -> impl Iterator<Item = &'static str> {
    MOUNT_OPTIONS
        .iter()
        .filter(|(_, opt)| matches!(opt, MountOpt::Propagation(_)))
        .map(|(name, _)| *name)
}

/// All capability names berth knows ("CAP_CHOWN", ...), by capability number.
pub fn known_capabilities() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut all: Vec<caps::Capability> = caps::all().into_iter().collect();
        all.sort_by_key(|c| c.index());
        all.iter().map(|c| c.to_string()).collect()
    })
}

/// The kernel number of a capability given by its exact name ("CAP_KILL").
pub fn capability_number(name: &str) -> Option<u8> {
    caps::all()
        .into_iter()
        .find(|c| c.to_string() == name)
        .map(|c| c.index())
}

/// The highest capability number the running kernel knows, read once from
/// /proc/sys/kernel/cap_last_cap; `None` if that can't be read.
pub fn kernel_last_cap() -> Option<u8> {
    static LAST: OnceLock<Option<u8>> = OnceLock::new();
    *LAST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_options_are_sorted_for_binary_search() {
        let names: Vec<_> = MOUNT_OPTIONS.iter().map(|(n, _)| *n).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
    }

    #[test]
    fn mount_option_lookup() {
        assert_eq!(mount_option("ro"), Some(&set(libc::MS_RDONLY)));
        assert_eq!(
            mount_option("rbind"),
            Some(&MountOpt::Bind { recursive: true })
        );
        assert_eq!(mount_option("mode=755"), None);
    }

    #[test]
    #[allow(clippy::unnecessary_cast)]
    fn folds_an_option_list() {
        let opts = mount_options(&[
            "rbind", "nosuid", "ro", "rw", "rshared", "rnoatime", "rro", "mode=755", "size=1m",
        ]);
        let flags = libc::MS_BIND | libc::MS_REC | libc::MS_NOSUID;
        assert_eq!(opts.flags, flags as u64);
        assert_eq!(
            opts.propagation,
            vec![(libc::MS_SHARED | libc::MS_REC) as u64]
        );
        assert_eq!(
            opts.attr_set,
            libc::MOUNT_ATTR_NOATIME | libc::MOUNT_ATTR_RDONLY
        );
        assert_eq!(opts.attr_clr, libc::MOUNT_ATTR__ATIME);
        assert!(opts.bind && !opts.tmpcopyup);
        assert_eq!(opts.data, "mode=755,size=1m");
        let opts = mount_options(&["rnoatime", "ratime"]);
        assert_eq!((opts.attr_set, opts.attr_clr), (0, libc::MOUNT_ATTR__ATIME));
    }

    #[test]
    fn capabilities_are_canonical_names() {
        let caps = known_capabilities();
        assert_eq!(caps[0], "CAP_CHOWN");
        assert!(caps.iter().all(|c| c.starts_with("CAP_")));
        assert_eq!(capability_number("CAP_KILL"), Some(5));
        assert_eq!(capability_number("KILL"), None);
    }

    #[test]
    fn namespace_names_round_trip() {
        for (name, typ) in NAMESPACES {
            assert_eq!(namespace_name(*typ), *name);
        }
    }
}
