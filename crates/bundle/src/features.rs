//! `berth features`, in the shape of `runc features`, built from the same
//! tables the validator reads.

use serde_json::{json, Value};

use crate::tables::{
    known_capabilities, MountOpt, BACKENDS, HOOKS, MOUNT_OPTIONS, NAMESPACES, OCI_VERSION_MAX,
    OCI_VERSION_MIN,
};

/// Whether the host has each LSM enabled (the `features` output says
/// whether berth supports it, as the runtime spec defines `enabled`, and
/// these go in annotations).
#[derive(Debug, Clone, Copy, Default)]
pub struct HostLsm {
    pub apparmor: bool,
    pub selinux: bool,
}

/// What this build of berth accepts in config.json.
pub fn features(host: HostLsm) -> Value {
    let on_host = |on: bool| if on { "enabled" } else { "disabled" };
    let supported_flags: Vec<&str> = berth_seccomp::FLAGS
        .iter()
        .copied()
        .filter(|f| berth_seccomp::flag_available(f))
        .collect();
    let mount_options: Vec<&str> = MOUNT_OPTIONS
        .iter()
        .filter(|(_, opt)| opt.supported())
        .map(|(name, _)| *name)
        .collect();
    let idmap = MOUNT_OPTIONS
        .iter()
        .any(|(_, opt)| matches!(opt, MountOpt::Idmap { .. }) && opt.supported());
    let namespaces: Vec<&str> = NAMESPACES.iter().map(|(name, _)| *name).collect();
    json!({
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": OCI_VERSION_MAX,
        "hooks": HOOKS,
        "mountOptions": mount_options,
        "linux": {
            "namespaces": namespaces,
            "capabilities": known_capabilities(),
            // v1, v2 (device rules as an eBPF program) and hybrid hosts,
            // with the rdma controller; systemd's cgroup driver (D-Bus) is
            // not implemented: --systemd-cgroup is an error.
            "cgroup": {
                "v1": true,
                "v2": true,
                "systemd": false,
                "systemdUser": false,
                "rdma": true
            },
            "seccomp": {
                "enabled": true,
                "actions": berth_seccomp::ACTIONS,
                "operators": berth_seccomp::OPERATORS,
                "archs": berth_seccomp::ARCHITECTURES,
                "knownFlags": berth_seccomp::FLAGS,
                "supportedFlags": supported_flags,
            },
            "apparmor": { "enabled": true },
            "selinux": { "enabled": true },
            "intelRdt": { "enabled": false },
            "mountExtensions": { "idmap": { "enabled": idmap } },
        },
        "annotations": {
            "run.berth.version": env!("CARGO_PKG_VERSION"),
            "run.berth.backends": BACKENDS.join(","),
            "run.berth.host.apparmor": on_host(host.apparmor),
            "run.berth.host.selinux": on_host(host.selinux),
        },
    })
}
