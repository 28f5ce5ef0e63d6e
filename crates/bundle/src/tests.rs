//! One test per rule: a template config broken in exactly one way.

use std::path::Path;

use serde_json::{json, Value};
use tempfile::TempDir;

use super::*;

/// A bundle directory with an empty `rootfs/` and the given config.
fn bundle(config: &Value) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rootfs")).unwrap();
    write_config(dir.path(), config);
    dir
}

fn write_config(dir: &Path, config: &Value) {
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(config).unwrap(),
    )
    .unwrap();
}

fn base() -> Value {
    serde_json::to_value(template(false)).unwrap()
}

/// The template with `edit` applied.
fn config(edit: impl FnOnce(&mut Value)) -> Value {
    let mut c = base();
    edit(&mut c);
    c
}

fn problems(config: &Value) -> Vec<Problem> {
    let dir = bundle(config);
    match load_with(dir.path(), Some(40)) {
        Err(BundleError::Invalid(problems)) => problems,
        Ok(_) => vec![],
        Err(e) => panic!("expected validation problems, got {e}"),
    }
}

/// Asserts the edit causes exactly one problem, at `path`, mentioning `msg`.
#[track_caller]
fn assert_one(edit: impl FnOnce(&mut Value), path: &str, msg: &str) {
    let found = problems(&config(edit));
    assert_eq!(found.len(), 1, "expected one problem, got {found:#?}");
    assert_eq!(found[0].path, path, "{found:#?}");
    assert!(
        found[0].msg.contains(msg),
        "{:?} does not mention {msg:?}",
        found[0].msg
    );
}

fn ns(types: &[&str]) -> Value {
    Value::Array(types.iter().map(|t| json!({ "type": t })).collect())
}

#[test]
fn templates_validate_cleanly() {
    for rootless in [false, true] {
        let spec = template(rootless);
        let dir = bundle(&serde_json::to_value(&spec).unwrap());
        let v = validate(&spec, dir.path());
        assert_eq!(v.problems, vec![], "rootless={rootless}");
        let loaded = load(dir.path()).unwrap();
        assert_eq!(
            loaded.rootfs,
            dir.path().canonicalize().unwrap().join("rootfs")
        );
        assert_eq!(loaded.dir, dir.path().canonicalize().unwrap());
    }
}

#[test]
fn rootless_template_maps_caller_and_drops_network() {
    let spec = serde_json::to_value(template(true)).unwrap();
    let types: Vec<_> = spec["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].clone())
        .collect();
    assert!(types.contains(&json!("user")) && !types.contains(&json!("network")));
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        spec["linux"]["uidMappings"],
        json!([{ "containerID": 0, "hostID": uid, "size": 1 }])
    );
    let mounts = spec["mounts"].as_array().unwrap();
    assert!(mounts.iter().all(|m| m["destination"] != "/sys/fs/cgroup"));
    assert!(mounts
        .iter()
        .all(|m| !m["options"].to_string().contains("gid=5")));
    assert!(spec["linux"].get("resources").is_none());
}

#[test]
fn template_denies_devices_unless_rootless() {
    let spec = serde_json::to_value(template(false)).unwrap();
    assert_eq!(
        spec["linux"]["resources"],
        json!({ "devices": [{ "allow": false, "access": "rwm" }] })
    );
    assert!(template(true)
        .linux()
        .as_ref()
        .unwrap()
        .resources()
        .is_none());
}

#[test]
fn oci_version_must_be_semver() {
    assert_one(
        |c| c["ociVersion"] = json!("one"),
        "ociVersion",
        "not a SemVer version (allowed: 1.0.0 to 1.3.0)",
    );
}

#[test]
fn oci_version_must_not_be_newer_than_supported() {
    assert_one(
        |c| c["ociVersion"] = json!("1.4.0"),
        "ociVersion",
        "version 1.4.0 is not supported",
    );
    assert_one(
        |c| c["ociVersion"] = json!("2.0.0"),
        "ociVersion",
        "allowed: 1.0.0 to 1.3.0",
    );
    assert!(problems(&config(|c| c["ociVersion"] = json!("1.0.2-dev"))).is_empty());
}

#[test]
fn root_is_required() {
    assert_one(
        |c| drop(c.as_object_mut().unwrap().remove("root")),
        "root",
        "required",
    );
}

#[test]
fn root_path_must_not_be_empty() {
    assert_one(
        |c| c["root"]["path"] = json!(""),
        "root.path",
        "must not be empty",
    );
}

#[test]
fn rootfs_must_exist() {
    assert_one(
        |c| c["root"]["path"] = json!("nope"),
        "root.path",
        "No such file or directory",
    );
}

#[test]
fn rootfs_must_be_a_directory() {
    let dir = bundle(&base());
    std::fs::write(dir.path().join("file"), "").unwrap();
    write_config(dir.path(), &config(|c| c["root"]["path"] = json!("file")));
    let Err(BundleError::Invalid(p)) = load(dir.path()) else {
        panic!()
    };
    assert_eq!((p.len(), p[0].path.as_str()), (1, "root.path"));
    assert!(p[0].msg.ends_with("is not a directory"));
}

#[test]
fn rootfs_must_not_be_a_dangling_symlink() {
    let dir = bundle(&base());
    std::os::unix::fs::symlink("missing", dir.path().join("link")).unwrap();
    write_config(dir.path(), &config(|c| c["root"]["path"] = json!("link")));
    let Err(BundleError::Invalid(p)) = load(dir.path()) else {
        panic!()
    };
    assert_eq!((p.len(), p[0].path.as_str()), (1, "root.path"));
    assert!(p[0].msg.ends_with("is a dangling symlink"));
}

#[test]
fn absolute_rootfs_is_used_as_is() {
    let other = tempfile::tempdir().unwrap();
    let dir = bundle(&config(|c| c["root"]["path"] = json!(other.path())));
    assert_eq!(
        load(dir.path()).unwrap().rootfs,
        other.path().canonicalize().unwrap()
    );
}

#[test]
fn mount_destination_must_be_absolute() {
    assert_one(
        |c| c["mounts"][1]["destination"] = json!("dev"),
        "mounts[1].destination",
        "not an absolute path",
    );
}

#[test]
fn bind_mount_needs_source() {
    let bind = json!({ "destination": "/data", "type": "none", "options": ["rbind", "ro"] });
    assert_one(
        |c| c["mounts"].as_array_mut().unwrap().push(bind),
        "mounts[7].source",
        "required for a bind mount",
    );
    let bind = json!({ "destination": "/data", "type": "bind", "source": "" });
    assert_one(
        |c| c["mounts"].as_array_mut().unwrap().push(bind),
        "mounts[7].source",
        "required for a bind mount",
    );
}

#[test]
fn namespace_type_must_be_known() {
    assert_one(
        |c| c["linux"]["namespaces"][1]["type"] = json!("net"),
        "linux.namespaces[1].type",
        r#"unknown namespace type "net" (allowed: cgroup, ipc, mount, network, pid, time, user, uts)"#,
    );
}

#[test]
fn namespace_must_not_repeat() {
    assert_one(
        |c| c["linux"]["namespaces"] = ns(&["pid", "network", "ipc", "uts", "mount", "pid"]),
        "linux.namespaces[5].type",
        r#"namespace "pid" is listed more than once"#,
    );
}

#[test]
fn namespace_path_must_be_absolute() {
    assert_one(
        |c| c["linux"]["namespaces"][0]["path"] = json!("proc/1/ns/pid"),
        "linux.namespaces[0].path",
        "not an absolute path",
    );
}

#[test]
fn namespace_path_must_exist() {
    assert_one(
        |c| c["linux"]["namespaces"][1]["path"] = json!("/nonexistent/ns/net"),
        "linux.namespaces[1].path",
        "/nonexistent/ns/net does not exist",
    );
    assert!(problems(&config(
        |c| c["linux"]["namespaces"][1]["path"] = json!("/proc/self/ns/net")
    ))
    .is_empty());
}

fn with_user_ns(c: &mut Value) {
    c["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "type": "user" }));
    c["linux"]["uidMappings"] = json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
    c["linux"]["gidMappings"] = json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
}

#[test]
fn user_namespace_needs_mappings() {
    assert_one(
        |c| {
            with_user_ns(c);
            c["linux"].as_object_mut().unwrap().remove("gidMappings");
        },
        "linux.gidMappings",
        "required when a new user namespace is created",
    );
}

#[test]
fn joined_user_namespace_needs_no_mappings() {
    let found = problems(&config(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "type": "user", "path": "/proc/self/ns/user" }));
    }));
    assert_eq!(found, vec![]);
}

#[test]
fn mappings_need_user_namespace() {
    assert_one(
        |c| c["linux"]["uidMappings"] = json!([{ "containerID": 0, "hostID": 1000, "size": 1 }]),
        "linux.uidMappings",
        "mappings need a user namespace",
    );
}

#[test]
fn mapping_size_must_not_be_zero() {
    assert_one(
        |c| {
            with_user_ns(c);
            c["linux"]["uidMappings"][0]["size"] = json!(0);
        },
        "linux.uidMappings[0].size",
        "must be at least 1",
    );
}

#[test]
fn mapping_must_not_overflow() {
    assert_one(
        |c| {
            with_user_ns(c);
            c["linux"]["gidMappings"][0]["hostID"] = json!(u32::MAX - 10);
        },
        "linux.gidMappings[0]",
        "overflows 32-bit ids",
    );
}

#[test]
fn mappings_must_not_overlap_in_container() {
    assert_one(
        |c| {
            with_user_ns(c);
            c["linux"]["uidMappings"] = json!([
                { "containerID": 0, "hostID": 1000, "size": 10 },
                { "containerID": 5, "hostID": 2000, "size": 10 },
            ]);
        },
        "linux.uidMappings[1]",
        "container ids overlap linux.uidMappings[0]",
    );
}

#[test]
fn mappings_must_not_overlap_on_host() {
    assert_one(
        |c| {
            with_user_ns(c);
            c["linux"]["gidMappings"] = json!([
                { "containerID": 0, "hostID": 1000, "size": 10 },
                { "containerID": 100, "hostID": 1009, "size": 1 },
            ]);
        },
        "linux.gidMappings[1]",
        "host ids overlap linux.gidMappings[0]",
    );
}

#[test]
fn process_is_required() {
    assert_one(
        |c| drop(c.as_object_mut().unwrap().remove("process")),
        "process",
        "required",
    );
}

#[test]
fn process_args_must_not_be_empty() {
    assert_one(
        |c| c["process"]["args"] = json!([]),
        "process.args",
        "must name the program",
    );
}

#[test]
fn process_cwd_must_be_absolute() {
    assert_one(
        |c| c["process"]["cwd"] = json!("home"),
        "process.cwd",
        "\"home\" is not an absolute path",
    );
}

#[test]
fn capability_must_be_known() {
    assert_one(
        |c| {
            c["process"]["capabilities"]["bounding"] =
                json!(["CAP_KILL", "CAP_CHOWN", "CAP_AUDIT_WRITE", "CAP_FOO"])
        },
        "process.capabilities.bounding[3]",
        r#"unknown capability "CAP_FOO""#,
    );
}

#[test]
fn capability_spelled_informally_gets_a_hint() {
    assert_one(
        |c| c["process"]["capabilities"]["ambient"] = json!(["kill"]),
        "process.capabilities.ambient[0]",
        r#"did you mean "CAP_KILL"?"#,
    );
}

#[test]
fn capability_unknown_to_kernel_is_warned_about_and_dropped() {
    let cfg = config(|c| {
        c["process"]["capabilities"]["permitted"] = json!(["CAP_KILL", "CAP_BPF", "CAP_CHOWN"])
    });
    let dir = bundle(&cfg);
    // Pretend the kernel stops at CAP_AUDIT_READ (37); CAP_BPF is 39.
    let loaded = load_with(dir.path(), Some(37)).unwrap();
    assert_eq!(
        loaded.warnings,
        vec!["process.capabilities.permitted[1]: CAP_BPF is not supported by the running kernel; skipping"]
    );
    let permitted = loaded
        .spec
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .as_ref()
        .unwrap()
        .permitted()
        .clone();
    let names: std::collections::BTreeSet<_> =
        permitted.unwrap().iter().map(|c| c.to_string()).collect();
    assert_eq!(names, ["CHOWN", "KILL"].map(String::from).into());
}

#[test]
fn rlimit_type_must_be_known() {
    assert_one(
        |c| c["process"]["rlimits"] = json!([{ "type": "RLIMIT_FOO", "hard": 1, "soft": 1 }]),
        "process.rlimits[0].type",
        r#"unknown rlimit type "RLIMIT_FOO" (allowed: RLIMIT_AS,"#,
    );
}

#[test]
fn rlimit_must_not_repeat() {
    let limit = json!({ "type": "RLIMIT_NOFILE", "hard": 10, "soft": 10 });
    assert_one(
        |c| c["process"]["rlimits"].as_array_mut().unwrap().push(limit),
        "process.rlimits[1].type",
        "RLIMIT_NOFILE is set more than once",
    );
}

#[test]
fn rlimit_soft_must_not_exceed_hard() {
    assert_one(
        |c| c["process"]["rlimits"][0]["soft"] = json!(2048),
        "process.rlimits[0]",
        "soft limit 2048 is greater than hard limit 1024",
    );
}

#[test]
fn hook_path_must_be_absolute() {
    assert_one(
        |c| c["hooks"] = json!({ "poststop": [{ "path": "/bin/true" }, { "path": "cleanup" }] }),
        "hooks.poststop[1].path",
        "\"cleanup\" is not an absolute path",
    );
}

#[test]
fn hook_timeout_must_be_positive() {
    assert_one(
        |c| c["hooks"] = json!({ "createRuntime": [{ "path": "/bin/true", "timeout": 0 }] }),
        "hooks.createRuntime[0].timeout",
        "0 is not a positive number of seconds",
    );
}

#[test]
fn net_sysctl_needs_network_namespace() {
    assert!(problems(&config(
        |c| c["linux"]["sysctl"] = json!({ "net.ipv4.ip_forward": "1" })
    ))
    .is_empty());
    assert_one(
        |c| {
            c["linux"]["namespaces"] = ns(&["pid", "ipc", "uts", "mount"]);
            c["linux"]["sysctl"] = json!({ "net.ipv4.ip_forward": "1" });
        },
        r#"linux.sysctl["net.ipv4.ip_forward"]"#,
        "needs a network namespace",
    );
}

#[test]
fn ipc_sysctl_needs_ipc_namespace() {
    assert_one(
        |c| {
            c["linux"]["namespaces"] = ns(&["pid", "network", "uts", "mount"]);
            c["linux"]["sysctl"] = json!({ "kernel.shmmax": "1", "fs.mqueue.msg_max": "1" });
            c["linux"]["sysctl"]
                .as_object_mut()
                .unwrap()
                .remove("kernel.shmmax");
        },
        r#"linux.sysctl["fs.mqueue.msg_max"]"#,
        "needs a ipc namespace",
    );
}

#[test]
fn uts_sysctl_needs_uts_namespace() {
    assert_one(
        |c| {
            c["linux"]["namespaces"] = ns(&["pid", "network", "ipc", "mount"]);
            c.as_object_mut().unwrap().remove("hostname");
            c["linux"]["sysctl"] = json!({ "kernel.domainname": "example.org" });
        },
        r#"linux.sysctl["kernel.domainname"]"#,
        "needs a uts namespace",
    );
}

#[test]
fn sysctl_must_be_namespaced() {
    assert_one(
        |c| c["linux"]["sysctl"] = json!({ "vm.swappiness": "10" }),
        r#"linux.sysctl["vm.swappiness"]"#,
        "not allowed: not namespaced",
    );
}

#[test]
fn hostname_needs_uts_namespace() {
    assert_one(
        |c| c["linux"]["namespaces"] = ns(&["pid", "network", "ipc", "mount"]),
        "hostname",
        "needs a uts namespace",
    );
}

#[test]
fn domainname_needs_uts_namespace() {
    assert_one(
        |c| {
            c["linux"]["namespaces"] = ns(&["pid", "network", "ipc", "mount"]);
            c["hostname"] = json!("");
            c["domainname"] = json!("example.org");
        },
        "domainname",
        "needs a uts namespace",
    );
}

#[test]
fn unimplemented_fields_are_errors() {
    let cases: &[(&str, &str, Value)] = &[
        ("linux", "intelRdt", json!({ "closID": "x" })),
        (
            "linux",
            "memoryPolicy",
            json!({ "mode": "MPOL_BIND", "nodes": "0" }),
        ),
        ("linux", "netDevices", json!({ "eth1": {} })),
    ];
    for (parent, name, value) in cases {
        let path = format!("{parent}.{name}");
        assert_one(
            |c| c[parent][name] = value.clone(),
            &path,
            "not supported yet",
        );
    }
}

#[test]
fn bad_seccomp_enum_is_named_by_its_path() {
    let mut c = config(|_| {});
    c["linux"]["seccomp"] = json!({ "defaultAction": "SCMP_ACT_NOPE" });
    let e = parse(&serde_json::to_vec(&c).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("linux.seccomp.defaultAction: unknown variant `SCMP_ACT_NOPE`"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
}

#[test]
fn empty_unimplemented_fields_are_ignored() {
    let found = problems(&config(|c| {
        c["process"]["apparmorProfile"] = json!("");
        c["linux"]["mountLabel"] = json!("");
        c["linux"]["resources"] = json!({ "memory": null, "unified": {}, "pids": null });
    }));
    assert_eq!(found, vec![]);
}

fn resources(res: Value) -> Vec<Problem> {
    problems(&config(|c| c["linux"]["resources"] = res))
}

/// The paths of the problems, in order.
fn paths(found: &[Problem]) -> Vec<&str> {
    found.iter().map(|p| p.path.as_str()).collect()
}

#[test]
fn resource_limits_in_range_are_accepted() {
    let found = resources(json!({
        "memory": { "limit": 1048576, "reservation": -1, "swap": 2097152, "kernelTCP": -1,
                    "swappiness": 60, "disableOOMKiller": true, "useHierarchy": true },
        "cpu": { "shares": 1024, "quota": 50000, "period": 100000, "burst": 10000,
                 "realtimeRuntime": 1000, "realtimePeriod": 10000, "cpus": "0-1", "mems": "0", "idle": 0 },
        "pids": { "limit": 0 },
        "blockIO": { "weight": 500, "weightDevice": [{ "major": 8, "minor": 0, "weight": 100 }],
                     "throttleReadBpsDevice": [{ "major": 8, "minor": 0, "rate": 1048576 }] },
        "hugepageLimits": [{ "pageSize": "2MB", "limit": 4194304 }],
        "network": { "classID": 1048577, "priorities": [{ "name": "eth0", "priority": 5 }] },
        "rdma": { "mlx4_0": { "hcaHandles": 3 } },
        "unified": { "memory.high": "max", "cgroup.max.depth": "3" },
    }));
    assert_eq!(found, vec![]);
}

#[test]
fn negative_values_in_unsigned_fields_are_named() {
    let found = resources(json!({
        "memory": { "swappiness": -1 },
        "cpu": { "shares": -2, "period": -100000 },
        "blockIO": { "weight": -5 },
    }));
    assert_eq!(
        paths(&found),
        [
            "linux.resources.memory.swappiness",
            "linux.resources.cpu.shares",
            "linux.resources.cpu.period",
            "linux.resources.blockIO.weight",
        ],
        "{found:#?}"
    );
    assert!(found[1].msg.contains("-2 is negative"), "{found:#?}");
}

#[test]
fn overflowing_values_are_named() {
    let found = resources(json!({
        "memory": { "limit": 18446744073709551615u64, "swap": 1e30 },
        "blockIO": { "weight": 70000 },
        "pids": { "limit": 9223372036854775808u64 },
    }));
    assert_eq!(
        paths(&found),
        [
            "linux.resources.memory.limit",
            "linux.resources.memory.swap",
            "linux.resources.pids.limit",
            "linux.resources.blockIO.weight",
        ],
        "{found:#?}"
    );
    assert!(
        found.iter().all(|p| p.msg.contains("out of range")),
        "{found:#?}"
    );
}

#[test]
fn non_numbers_in_number_fields_are_named() {
    assert_one(
        |c| c["linux"]["resources"] = json!({ "cpu": { "quota": "50000" } }),
        "linux.resources.cpu.quota",
        "expected an integer, got \"50000\"",
    );
    assert_one(
        |c| c["linux"]["resources"] = json!({ "cpu": { "period": 1.5 } }),
        "linux.resources.cpu.period",
        "not an integer",
    );
}

#[test]
fn negative_limits_other_than_minus_one_are_errors() {
    let found = resources(json!({
        "memory": { "limit": -2, "reservation": -1, "swap": -5, "kernelTCP": -3 },
        "pids": { "limit": -2 },
        "cpu": { "quota": -7, "realtimeRuntime": -2 },
        "hugepageLimits": [{ "pageSize": "2MB", "limit": -4 }],
    }));
    assert_eq!(
        paths(&found),
        [
            "linux.resources.memory.limit",
            "linux.resources.memory.swap",
            "linux.resources.memory.kernelTCP",
            "linux.resources.cpu.quota",
            "linux.resources.cpu.realtimeRuntime",
            "linux.resources.pids.limit",
            "linux.resources.hugepageLimits[0].limit",
        ],
        "{found:#?}"
    );
    assert!(found[0].msg.contains("-1 means unlimited"), "{found:#?}");
}

#[test]
fn cpu_ranges_are_the_kernels() {
    let found = resources(json!({
        "cpu": { "shares": 1, "quota": 999, "period": 2000000, "idle": 2 },
    }));
    assert_eq!(
        paths(&found),
        [
            "linux.resources.cpu.shares",
            "linux.resources.cpu.quota",
            "linux.resources.cpu.period",
            "linux.resources.cpu.idle",
        ],
        "{found:#?}"
    );
    assert_one(
        |c| c["linux"]["resources"] = json!({ "cpu": { "quota": 10000, "burst": 20000 } }),
        "linux.resources.cpu.burst",
        "more than cpu.quota 10000",
    );
    assert_one(
        |c| {
            c["linux"]["resources"] =
                json!({ "cpu": { "realtimeRuntime": 20000, "realtimePeriod": 10000 } })
        },
        "linux.resources.cpu.realtimeRuntime",
        "more than cpu.realtimePeriod",
    );
}

#[test]
fn zero_leaves_cpu_and_blkio_settings_unset() {
    let found = resources(json!({
        "cpu": { "shares": 0, "quota": 0, "period": 0, "realtimeRuntime": 0 },
        "blockIO": { "weight": 0, "leafWeight": 0 },
    }));
    assert_eq!(found, vec![]);
}

#[test]
fn cpus_and_mems_must_parse() {
    let found = resources(json!({ "cpu": { "cpus": "0-3, 5", "mems": "1-0" } }));
    assert_eq!(
        paths(&found),
        ["linux.resources.cpu.cpus", "linux.resources.cpu.mems"],
        "{found:#?}"
    );
    assert!(found[0].msg.contains("not a list like"), "{found:#?}");
    assert!(found[1].msg.contains("runs backwards"), "{found:#?}");
}

#[test]
fn swap_must_cover_the_memory_limit() {
    assert_one(
        |c| c["linux"]["resources"] = json!({ "memory": { "limit": 2097152, "swap": 1048576 } }),
        "linux.resources.memory.swap",
        "at least the memory limit",
    );
}

#[test]
fn kernel_memory_limit_is_refused() {
    assert_one(
        |c| c["linux"]["resources"] = json!({ "memory": { "kernel": 1048576 } }),
        "linux.resources.memory.kernel",
        "not enforced by Linux",
    );
    assert_eq!(resources(json!({ "memory": { "kernel": -1 } })), vec![]);
}

#[test]
fn blkio_weights_and_devices() {
    let found = resources(json!({ "blockIO": {
        "weight": 5,
        "leafWeight": 1001,
        "weightDevice": [{ "major": 8, "weight": 100 }, { "major": 8, "minor": 0, "weight": 2000 }],
        "throttleWriteIOPSDevice": [{ "major": -8, "minor": 0, "rate": 10 }],
    } }));
    assert_eq!(
        paths(&found),
        [
            "linux.resources.blockIO.weightDevice[0].minor",
            "linux.resources.blockIO.weight",
            "linux.resources.blockIO.leafWeight",
            "linux.resources.blockIO.weightDevice[1].weight",
            "linux.resources.blockIO.throttleWriteIOPSDevice[0].major",
        ],
        "{found:#?}"
    );
}

#[test]
fn hugepage_sizes_must_be_named_like_the_kernels() {
    let found = resources(json!({ "hugepageLimits": [
        { "pageSize": "2M", "limit": 0 },
        { "pageSize": "1GB", "limit": 0 },
        { "pageSize": "1GB", "limit": 0 },
        { "limit": 0 },
    ] }));
    assert_eq!(
        paths(&found),
        [
            "linux.resources.hugepageLimits[3].pageSize",
            "linux.resources.hugepageLimits[0].pageSize",
            "linux.resources.hugepageLimits[2].pageSize",
        ],
        "{found:#?}"
    );
}

#[test]
fn unified_keys_must_be_plain_files_berth_does_not_manage() {
    let found = resources(json!({ "unified": {
        "../../memory.max": "1",
        "cgroup.procs": "1",
        "cgroup.subtree_control": "+memory",
        "memory.max": 5,
    } }));
    assert_eq!(
        paths(&found),
        [
            r#"linux.resources.unified["memory.max"]"#,
            r#"linux.resources.unified["../../memory.max"]"#,
            r#"linux.resources.unified["cgroup.procs"]"#,
            r#"linux.resources.unified["cgroup.subtree_control"]"#,
        ],
        "{found:#?}"
    );
}

#[test]
fn interface_and_rdma_names_must_be_one_word() {
    let found = resources(json!({
        "network": { "priorities": [{ "name": "eth0 5\nlo", "priority": 1 }] },
        "rdma": { "": { "hcaHandles": 1 } },
    }));
    assert_eq!(
        paths(&found),
        [
            "linux.resources.network.priorities[0].name",
            r#"linux.resources.rdma[""]"#,
        ],
        "{found:#?}"
    );
}

#[test]
fn pids_without_a_limit_sets_nothing() {
    let dir = bundle(&config(|c| c["linux"]["resources"] = json!({ "pids": {} })));
    let b = load_with(dir.path(), Some(40)).unwrap();
    let res = b
        .spec
        .linux()
        .as_ref()
        .unwrap()
        .resources()
        .clone()
        .unwrap();
    assert!(res.pids().is_none());
}

#[test]
fn cgroups_path_must_not_climb() {
    for p in ["/a/../b", "../x", "system.slice:berth:..", "/a/.."] {
        assert_one(
            |c| c["linux"]["cgroupsPath"] = json!(p),
            "linux.cgroupsPath",
            "has a \"..\" component",
        );
    }
    let ok = problems(&config(|c| c["linux"]["cgroupsPath"] = json!("/a/..b/c")));
    assert_eq!(ok, vec![]);
}

#[test]
fn resources_file_is_checked_like_config() {
    let res = parse_resources(br#"{"memory": {"limit": 1048576}, "pids": {"limit": 5}}"#).unwrap();
    assert_eq!(res.memory().unwrap().limit(), Some(1048576));
    assert_eq!(res.pids().unwrap().limit(), 5);
    let e = parse_resources(
        br#"{"memory": {"limit": -5}, "cpu": {"shares": -1, "cpus": "x"}, "devices": [{"allow": true, "type": "q"}]}"#,
    )
    .unwrap_err();
    let BundleError::Invalid(found) = &e else {
        panic!("{e}")
    };
    assert_eq!(
        paths(found),
        [
            "linux.resources.devices[0].type",
            "linux.resources.cpu.shares",
            "linux.resources.memory.limit",
            "linux.resources.cpu.cpus",
        ],
        "{found:#?}"
    );
    assert_eq!(e.to_string().lines().count(), 1);
    let e = parse_resources(br#"{"cpu": {"cpus": 5}}"#).unwrap_err();
    assert!(
        e.to_string()
            .contains("linux.resources.cpu.cpus: expected a string"),
        "{e}"
    );
    let e = parse_resources(b"[1]").unwrap_err();
    assert!(e.to_string().contains("one JSON object"), "{e}");
    let e = parse_resources(br#"{"memory": "#).unwrap_err();
    let BundleError::Invalid(found) = &e else {
        panic!("{e}")
    };
    assert_eq!(found[0].path, "line 1 column 11", "{found:#?}");
    assert!(found[0].msg.starts_with("not JSON: EOF"), "{found:#?}");
}

#[test]
fn built_resources_are_checked() {
    let mut res = oci_spec::runtime::LinuxResources::default();
    let cpu = oci_spec::runtime::LinuxCpuBuilder::default()
        .period(10u64)
        .build()
        .unwrap();
    res.set_cpu(Some(cpu));
    let e = check_resources(&res).unwrap_err().to_string();
    assert!(
        e.contains("linux.resources.cpu.period: 10 is out of the kernel's range"),
        "{e}"
    );
}

#[test]
fn device_cgroup_rules_are_allowed() {
    let rules = json!({ "devices": [
        { "allow": false, "access": "rwm" },
        { "allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw" },
    ] });
    assert!(problems(&config(|c| c["linux"]["resources"] = rules)).is_empty());
}

#[test]
fn device_cgroup_type_must_be_a_b_or_c() {
    assert_one(
        |c| {
            c["linux"]["resources"] =
                json!({ "devices": [{ "allow": true, "type": "p", "access": "r" }] })
        },
        "linux.resources.devices[0].type",
        r#"unknown device type "p" (allowed: a, b, c)"#,
    );
}

#[test]
fn device_cgroup_access_must_be_rwm() {
    assert_one(
        |c| {
            c["linux"]["resources"] =
                json!({ "devices": [{ "allow": true, "type": "c", "access": "rx" }] })
        },
        "linux.resources.devices[0].access",
        r#"'x' in "rx" is not an access type (allowed: any of "rwm")"#,
    );
}

fn idmapped_bind(extra: Value) -> Value {
    let mut m = json!({ "destination": "/data", "type": "bind", "source": "/tmp", "options": ["rbind", "idmap"] });
    if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
        m.extend(extra.clone());
    }
    m
}

#[test]
fn idmap_option_takes_the_user_namespace_mappings() {
    let found = problems(&config(|c| {
        with_user_ns(c);
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(idmapped_bind(json!({})));
    }));
    assert_eq!(found, vec![]);
}

#[test]
fn idmap_option_without_mappings_needs_a_user_namespace() {
    assert_one(
        |c| c["mounts"].as_array_mut().unwrap().push(idmapped_bind(json!({}))),
        "mounts[7].options[1]",
        "\"idmap\" without uidMappings and gidMappings maps through the container's user namespace, but linux.namespaces has none",
    );
}

#[test]
fn mount_mappings_work_without_a_user_namespace() {
    let map = json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
    let found = problems(&config(|c| {
        let m =
            idmapped_bind(json!({ "options": ["bind"], "uidMappings": map, "gidMappings": map }));
        c["mounts"].as_array_mut().unwrap().push(m);
    }));
    assert_eq!(found, vec![]);
}

#[test]
fn idmapped_mount_must_be_a_bind_mount() {
    let map = json!([{ "containerID": 0, "hostID": 1000, "size": 1 }]);
    assert_one(
        |c| {
            c["mounts"][0]["uidMappings"] = map.clone();
            c["mounts"][0]["gidMappings"] = map;
        },
        "mounts[0]",
        "an idmapped mount (uidMappings/gidMappings, \"idmap\" or \"ridmap\") must be a bind mount",
    );
}

#[test]
fn mount_mappings_come_in_pairs() {
    let map = json!([{ "containerID": 0, "hostID": 1000, "size": 1 }]);
    assert_one(
        |c| {
            let m = idmapped_bind(json!({ "options": ["bind"], "uidMappings": map }));
            c["mounts"].as_array_mut().unwrap().push(m);
        },
        "mounts[7].gidMappings",
        "required with uidMappings",
    );
}

#[test]
fn mount_mappings_must_not_overlap() {
    let map = json!([
        { "containerID": 0, "hostID": 1000, "size": 10 },
        { "containerID": 5, "hostID": 2000, "size": 10 }
    ]);
    let ok = json!([{ "containerID": 0, "hostID": 1000, "size": 10 }]);
    assert_one(
        |c| {
            let m = idmapped_bind(json!({ "uidMappings": map, "gidMappings": ok }));
            c["mounts"].as_array_mut().unwrap().push(m);
        },
        "mounts[7].uidMappings[1]",
        "container ids overlap mounts[7].uidMappings[0]",
    );
}

#[test]
fn mount_id_options_must_be_mapped() {
    assert_one(
        |c| {
            with_user_ns(c);
            c["linux"]["gidMappings"] = json!([{ "containerID": 0, "hostID": 100000, "size": 1 }]);
        },
        "mounts[2].options[5]",
        "gid=5: gid 5 is not mapped in linux.gidMappings",
    );
}

#[test]
fn rootfs_propagation_must_be_known() {
    assert_one(
        |c| c["linux"]["rootfsPropagation"] = json!("rprivat"),
        "linux.rootfsPropagation",
        "unknown propagation \"rprivat\" (allowed: private,",
    );
}

#[test]
fn backend_annotation_must_name_a_backend() {
    assert_one(
        |c| c["annotations"] = json!({ "run.berth.backend": "lxc" }),
        r#"annotations["run.berth.backend"]"#,
        r#"unknown backend "lxc" (allowed: native, crun)"#,
    );
    assert!(problems(&config(
        |c| c["annotations"] = json!({ "run.berth.backend": "crun" })
    ))
    .is_empty());
}

#[test]
fn many_problems_at_once() {
    let found = problems(&config(|c| {
        c["ociVersion"] = json!("9.0.0");
        c["root"]["path"] = json!("missing");
        c["process"]["cwd"] = json!("relative");
        c["process"]["capabilities"]["bounding"] = json!(["CAP_FOO", "CAP_KILL", "CAP_BAR"]);
        c["process"]["rlimits"] = json!([{ "type": "RLIMIT_NOPE", "hard": 1, "soft": 1 }, { "type": "RLIMIT_CORE", "hard": 1, "soft": 2 }]);
        c["linux"]["namespaces"] = ns(&["pidd", "network", "ipc", "uts", "mount", "network"]);
        c["linux"]["resources"] = json!({ "cpu": { "shares": -2 } });
    }));
    let paths: Vec<_> = found.iter().map(|p| p.path.as_str()).collect();
    for path in [
        "ociVersion",
        "root.path",
        "process.cwd",
        "process.capabilities.bounding[0]",
        "process.capabilities.bounding[2]",
        "process.rlimits[0].type",
        "process.rlimits[1]", // index in the file, though [0] was removed
        "linux.namespaces[0].type",
        "linux.namespaces[5].type", // the duplicate network, also past the removed [0]
        "linux.resources.cpu.shares",
    ] {
        assert!(paths.contains(&path), "{path} missing from {paths:#?}");
    }
    assert_eq!(found.len(), 10, "{found:#?}");
}

#[test]
fn invalid_display_lists_every_problem_on_one_line() {
    let err = BundleError::Invalid(vec![Problem::new("a", "x"), Problem::new("b[1]", "y")]);
    assert_eq!(err.to_string(), "invalid config.json: a: x; b[1]: y");
}

#[test]
fn type_error_names_its_path() {
    let dir = bundle(&config(|c| c["process"]["user"]["uid"] = json!("x")));
    let err = load(dir.path()).unwrap_err();
    let BundleError::Parse { at, msg } = &err else {
        panic!("{err}")
    };
    assert_eq!(at, "process.user.uid");
    assert_eq!(msg, r#"invalid type: string "x", expected u32"#);
    assert_eq!(
        err.to_string(),
        r#"parse config.json: process.user.uid: invalid type: string "x", expected u32"#
    );
}

#[test]
fn type_error_path_counts_removed_entries() {
    let err = parse(
        &serde_json::to_vec(&config(|c| {
            c["linux"]["namespaces"] = json!([{ "type": "bogus" }, { "type": "pid", "path": 5 }]);
        }))
        .unwrap(),
    )
    .unwrap_err();
    let BundleError::Invalid(p) = err else {
        panic!()
    };
    assert_eq!(p[0].path, "linux.namespaces[0].type");
    assert_eq!(p[1].path, "linux.namespaces[1].path");
}

#[test]
fn malformed_json_names_line_and_column() {
    let err = parse(b"{\n  \"ociVersion\": \"1.0.0\",\n}").unwrap_err();
    let BundleError::Parse { at, msg } = err else {
        panic!()
    };
    assert_eq!(at, "line 3 column 1");
    assert_eq!(msg, "trailing comma");
}

#[test]
fn parse_reports_every_unknown_name() {
    let json = serde_json::to_vec(&config(|c| {
        c["process"]["capabilities"]["effective"] = json!(["CAP_X"]);
        c["linux"]["namespaces"][0]["type"] = json!("pidns");
    }))
    .unwrap();
    let Err(BundleError::Invalid(p)) = parse(&json) else {
        panic!()
    };
    let paths: Vec<_> = p.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "process.capabilities.effective[0]",
            "linux.namespaces[0].type"
        ]
    );
}

#[test]
fn parse_does_not_validate() {
    let json = serde_json::to_vec(&config(|c| {
        c["linux"]["seccomp"] = json!({ "defaultAction": "SCMP_ACT_ALLOW" })
    }))
    .unwrap();
    assert!(parse(&json).is_ok());
}

#[test]
fn missing_bundle_is_a_read_error() {
    let err = load(Path::new("/nonexistent/bundle")).unwrap_err();
    assert!(matches!(err, BundleError::Read { .. }), "{err}");
}

#[test]
fn features_come_from_the_tables() {
    let f = features(HostLsm::default());
    assert_eq!(f["ociVersionMin"], "1.0.0");
    assert_eq!(f["ociVersionMax"], OCI_VERSION_MAX);
    assert_eq!(f["hooks"], json!(HOOKS));
    let opts = f["mountOptions"].as_array().unwrap();
    assert!(opts.contains(&json!("rbind")) && opts.contains(&json!("tmpcopyup")));
    assert!(opts.contains(&json!("idmap")) && opts.contains(&json!("ridmap")));
    assert_eq!(f["linux"]["mountExtensions"]["idmap"]["enabled"], true);
    assert_eq!(
        f["linux"]["namespaces"].as_array().unwrap().len(),
        NAMESPACES.len()
    );
    assert_eq!(f["linux"]["capabilities"][0], "CAP_CHOWN");
    assert_eq!(
        f["linux"]["cgroup"],
        json!({ "v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": true })
    );
    assert_eq!(f["linux"]["seccomp"]["enabled"], true);
    assert_eq!(
        f["linux"]["seccomp"]["actions"],
        json!(berth_seccomp::ACTIONS)
    );
    assert_eq!(
        f["linux"]["seccomp"]["operators"],
        json!(berth_seccomp::OPERATORS)
    );
    assert_eq!(f["linux"]["apparmor"]["enabled"], true);
    assert_eq!(f["annotations"]["run.berth.host.apparmor"], "disabled");
    assert_eq!(f["annotations"]["run.berth.backends"], "native,crun");
    assert_eq!(
        f["annotations"]["run.berth.version"],
        env!("CARGO_PKG_VERSION")
    );
}

#[test]
#[ignore = "prints the template; run with --ignored --nocapture"]
fn print_template() {
    println!(
        "{}",
        serde_json::to_string_pretty(&template(false)).unwrap()
    );
    println!(
        "{}",
        serde_json::to_string_pretty(&features(HostLsm::default())).unwrap()
    );
}

#[test]
fn time_offsets_need_a_new_time_namespace_and_known_clocks() {
    assert_one(
        |c| c["linux"]["timeOffsets"] = json!({ "monotonic": { "secs": 1 } }),
        "linux.timeOffsets",
        "needs a new time namespace",
    );
    assert_one(
        |c| {
            c["linux"]["namespaces"]
                .as_array_mut()
                .unwrap()
                .push(json!({ "type": "time" }));
            c["linux"]["timeOffsets"] = json!({ "realtime": { "secs": 1 } });
        },
        "linux.timeOffsets.realtime",
        "unknown clock",
    );
}

#[test]
fn a_new_mount_namespace_is_required() {
    assert_one(
        |c| {
            let list = c["linux"]["namespaces"].as_array_mut().unwrap();
            list.retain(|ns| ns["type"] != "mount");
        },
        "linux.namespaces",
        "needs a new mount namespace",
    );
    assert_one(
        |c| {
            for ns in c["linux"]["namespaces"].as_array_mut().unwrap() {
                if ns["type"] == "mount" {
                    ns["path"] = json!("/proc/self/ns/mnt");
                }
            }
        },
        "linux.namespaces[4].path",
        "joining a mount namespace is not supported",
    );
}

#[test]
fn a_vm_section_is_refused() {
    let found = problems(&config(|c| {
        c["vm"] = json!({ "hypervisor": { "path": "/usr/bin/qemu" } });
    }));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].path, "vm");
    assert!(found[0].msg.contains("not supported yet"), "{found:#?}");
}

#[test]
fn oom_score_adj_must_be_in_range() {
    assert_one(
        |c| c["process"]["oomScoreAdj"] = json!(5000),
        "process.oomScoreAdj",
        "outside the kernel's range",
    );
}
