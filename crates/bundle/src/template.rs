//! The config `berth spec` writes, in the shape of `runc spec`.

use std::path::PathBuf;

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxIdMappingBuilder, LinuxNamespace,
    LinuxNamespaceBuilder, LinuxNamespaceType, Mount, MountBuilder, PosixRlimitBuilder,
    PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

const HOSTNAME: &str = "container";

const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// A starting config: `sh` on a terminal in `./rootfs` (read-only), with
/// runc's default capabilities, mounts, masked paths and namespaces.
/// `rootless` adds a user namespace mapping the calling user to root and
/// drops what an unprivileged user can't set up.
pub fn template(rootless: bool) -> Spec {
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces(rootless))
        .masked_paths(strings(MASKED_PATHS))
        .readonly_paths(strings(READONLY_PATHS));
    if rootless {
        // SAFETY: geteuid and getegid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        linux = linux
            .uid_mappings(vec![to_root(uid)])
            .gid_mappings(vec![to_root(gid)]);
    }
    let mut linux = linux.build().expect("linux");
    // As runc's template: no device access but what is allowed (berth also
    // allows the default devices, as runc does).
    let deny_all: oci_spec::runtime::LinuxDeviceCgroup =
        serde_json::from_value(serde_json::json!({ "allow": false, "access": "rwm" }))
            .expect("device rule");
    let resources: oci_spec::runtime::LinuxResources =
        serde_json::from_value(serde_json::json!({ "devices": [deny_all] })).expect("resources");
    // A rootless container has no cgroup of its own to hold device rules
    // (runc's rootless template drops resources too).
    linux.set_resources((!rootless).then_some(resources));
    SpecBuilder::default()
        .version(oci_spec::runtime::VERSION)
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(true)
                .build()
                .expect("root"),
        )
        .process(process())
        .hostname(HOSTNAME)
        .mounts(mounts(rootless))
        .linux(linux)
        .build()
        .map(|mut spec: Spec| {
            spec.set_annotations(None);
            spec
        })
        .expect("template spec")
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn to_root(host_id: u32) -> oci_spec::runtime::LinuxIdMapping {
    LinuxIdMappingBuilder::default()
        .container_id(0u32)
        .host_id(host_id)
        .size(1u32)
        .build()
        .expect("id mapping")
}

fn process() -> oci_spec::runtime::Process {
    let default_caps: oci_spec::runtime::Capabilities = [
        Capability::AuditWrite,
        Capability::Kill,
        Capability::NetBindService,
    ]
    .into();
    let mut caps = LinuxCapabilitiesBuilder::default()
        .bounding(default_caps.clone())
        .effective(default_caps.clone())
        .permitted(default_caps)
        .build()
        .expect("capabilities");
    // The builder starts from oci-spec's default, which fills all five sets;
    // runc's template leaves inheritable and ambient out.
    caps.set_inheritable(None);
    caps.set_ambient(None);
    let nofile = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .hard(1024u64)
        .soft(1024u64)
        .build()
        .expect("rlimit");
    ProcessBuilder::default()
        .terminal(true)
        .user(
            UserBuilder::default()
                .uid(0u32)
                .gid(0u32)
                .build()
                .expect("user"),
        )
        .args(vec!["sh".to_string()])
        .env(vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            "TERM=xterm".to_string(),
        ])
        .cwd("/")
        .capabilities(caps)
        .rlimits(vec![nofile])
        .no_new_privileges(true)
        .build()
        .expect("process")
}

fn namespaces(rootless: bool) -> Vec<LinuxNamespace> {
    use LinuxNamespaceType::*;
    let mut types = vec![Pid, Network, Ipc, Uts, Mount, Cgroup];
    if rootless {
        types.retain(|t| *t != Network);
        types.push(User);
    }
    types
        .into_iter()
        .map(|typ| {
            LinuxNamespaceBuilder::default()
                .typ(typ)
                .build()
                .expect("namespace")
        })
        .collect()
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mount = MountBuilder::default()
        .destination(PathBuf::from(destination))
        .typ(typ)
        .source(PathBuf::from(source));
    let mount = if options.is_empty() {
        mount
    } else {
        mount.options(strings(options))
    };
    mount.build().expect("mount")
}

fn mounts(rootless: bool) -> Vec<Mount> {
    let devpts: &[&str] = if rootless {
        &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
        ]
    } else {
        &[
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ]
    };
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &[]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount("/dev/pts", "devpts", "devpts", devpts),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
    ];
    if rootless {
        // Without a network namespace of its own, an unprivileged user can't
        // mount sysfs; bind the host's read-only instead. No cgroup mount.
        mounts.push(mount(
            "/sys",
            "none",
            "/sys",
            &["rbind", "nosuid", "noexec", "nodev", "ro"],
        ));
    } else {
        mounts.push(mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ));
        mounts.push(mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ));
    }
    mounts
}
