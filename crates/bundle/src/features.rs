//! `berth features`, in the shape of `runc features`, built from the same
//! tables the validator reads.

use serde_json::{json, Value};

use crate::tables::{
    known_capabilities, MountOpt, BACKENDS, HOOKS, MOUNT_OPTIONS, NAMESPACES, OCI_VERSION_MAX,
    OCI_VERSION_MIN,
};

/// What this build of berth accepts in config.json.
pub fn features() -> Value {
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
            // v2 needs an eBPF device program for the device rules every
            // container gets; until then only v1 (and hybrid) hosts.
            "cgroup": { "v1": true, "v2": false, "systemd": false, "systemdUser": false },
            "seccomp": { "enabled": false },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false },
            "mountExtensions": { "idmap": { "enabled": idmap } },
        },
        "annotations": {
            "run.berth.version": env!("CARGO_PKG_VERSION"),
            "run.berth.backends": BACKENDS.join(","),
        },
    })
}
