//! Every entry `berth features` reports works in a real container: seccomp
//! actions, operators, architectures and flags; namespaces; capabilities;
//! mount options. The lists are read from `berth features` itself, so an
//! entry added to the tables without working support fails here.
//!
//! As root: `cargo test -p berth --test features`.

use berth_integration::serde_json::{json, Value};
use berth_integration::*;

fn features(rt: &Runtime) -> Value {
    rt.run(&["features"]).ok().json()
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Run `berth-probe ARGS` in a bundle patched by `patch`; the exit code and
/// the parsed output (Null when there is none).
fn run(rt: &Runtime, args: &[&str], patch: impl FnOnce(&mut Bundle)) -> (Option<i32>, Value, Out) {
    let mut b = rt.bundle();
    let mut argv = vec!["/bin/berth-probe".to_string()];
    argv.extend(args.iter().map(|s| s.to_string()));
    b.set("/process/args", json!(argv));
    patch(&mut b);
    b.write();
    let id = rt.id();
    let o = rt.run(&["run", "--bundle", b.path_str(), &id]);
    let v = if o.stdout.trim().is_empty() {
        Value::Null
    } else {
        o.json()
    };
    (o.code, v, o)
}

/// Container ids 0..65536 as host ids 100000.. (the bundle's user
/// namespace entry is set by the caller).
fn map_root_to_100000(b: &mut Bundle) {
    let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.set("/linux/uidMappings", map.clone());
    b.set("/linux/gidMappings", map);
}

#[test]
fn every_seccomp_action() {
    let rt = Runtime::new("featact");
    let f = features(&rt);
    assert_eq!(f["linux"]["seccomp"]["enabled"], true);
    for action in names(&f["linux"]["seccomp"]["actions"]) {
        let rule = json!({"names": ["getcwd"], "action": action, "errnoRet": 42});
        let mut seccomp = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule]});
        // NOTIFY needs a listener: one that answers with errno 43.
        let agent = (action == "SCMP_ACT_NOTIFY").then(|| {
            let sock = rt.tempdir().join("l.sock");
            seccomp["listenerPath"] = json!(sock);
            let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
            std::thread::spawn(move || {
                let (s, _) = l.accept().unwrap();
                let fd = recv_fd(&s).unwrap();
                let n = berth_seccomp::notify::recv(&fd).unwrap();
                berth_seccomp::notify::respond(
                    &fd,
                    n.id,
                    berth_seccomp::notify::Response::Errno(43),
                )
                .unwrap();
            })
        });
        let (code, v, o) = run(&rt, &["call", "getcwd", "buf", "4096"], |b| {
            b.set("/linux/seccomp", seccomp.clone());
        });
        let errno = &v["call"]["errno"];
        let sigsys = Some(128 + libc::SIGSYS);
        match action.as_str() {
            "SCMP_ACT_ALLOW" | "SCMP_ACT_LOG" => assert_eq!(errno, 0, "{action}: {o}"),
            "SCMP_ACT_ERRNO" => assert_eq!(errno, 42, "{action}: {o}"),
            // No tracer attached: the syscall fails with ENOSYS.
            "SCMP_ACT_TRACE" => assert_eq!(errno, libc::ENOSYS, "{action}: {o}"),
            "SCMP_ACT_NOTIFY" => assert_eq!(errno, 43, "{action}: {o}"),
            "SCMP_ACT_KILL"
            | "SCMP_ACT_KILL_THREAD"
            | "SCMP_ACT_KILL_PROCESS"
            | "SCMP_ACT_TRAP" => assert_eq!(code, sigsys, "{action}: {o}"),
            other => panic!("features lists {other}: add what it does to this test"),
        }
        if let Some(a) = agent {
            a.join().unwrap();
        }
    }
}

#[test]
fn every_seccomp_operator_architecture_and_flag() {
    let rt = Runtime::new("featops");
    let f = features(&rt);
    let s = &f["linux"]["seccomp"];
    // umask(0o22) with a rule that matches 0o22 under each operator
    // (value, valueTwo chosen per operator) and one that doesn't.
    for op in names(&s["operators"]) {
        let (value, two, hit, miss) = match op.as_str() {
            "SCMP_CMP_EQ" => (0o22, 0, 0o22, 0o21),
            "SCMP_CMP_NE" => (0o22, 0, 0o21, 0o22),
            "SCMP_CMP_LT" => (0o22, 0, 0o21, 0o22),
            "SCMP_CMP_LE" => (0o22, 0, 0o22, 0o23),
            "SCMP_CMP_GT" => (0o22, 0, 0o23, 0o22),
            "SCMP_CMP_GE" => (0o22, 0, 0o22, 0o21),
            "SCMP_CMP_MASKED_EQ" => (0o7, 0o2, 0o22, 0o21),
            other => panic!("features lists {other}: add it to this test"),
        };
        for (arg, want) in [(hit, 42), (miss, 0)] {
            let (_, v, o) = run(&rt, &["call", "umask", &arg.to_string()], |b| {
                b.set(
                    "/linux/seccomp",
                    json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{
                        "names": ["umask"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42,
                        "args": [{"index": 0, "value": value, "valueTwo": two, "op": op}]}]}),
                );
            });
            assert_eq!(v["call"]["errno"], want, "{op} on {arg:#o}: {o}");
        }
    }
    // Each architecture alone (with the native one libseccomp-style added
    // by berth) and all together load, and x86_64 rules still apply.
    let mut archs = names(&s["archs"]);
    archs.push("all".into());
    for arch in archs {
        let list = if arch == "all" {
            s["archs"].clone()
        } else {
            json!([arch])
        };
        let (_, v, o) = run(&rt, &["call", "getcwd", "buf", "4096"], |b| {
            b.set(
                "/linux/seccomp",
                json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": list,
                       "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42}]}),
            );
        });
        assert_eq!(v["call"]["errno"], 42, "{arch}: {o}");
    }
    // Every flag the kernel supports loads.
    for flag in names(&s["supportedFlags"]) {
        let (_, v, o) = run(&rt, &["call", "getcwd", "buf", "4096"], |b| {
            b.set(
                "/linux/seccomp",
                json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": [flag],
                       "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 42}]}),
            );
        });
        assert_eq!(v["call"]["errno"], 42, "{flag}: {o}");
    }
}

#[test]
fn every_namespace() {
    let rt = Runtime::new("featns");
    let f = features(&rt);
    for ns in names(&f["linux"]["namespaces"]) {
        let (code, v, o) = run(&rt, &["report"], |b| {
            b.namespace(&ns, None);
            if ns == "user" {
                map_root_to_100000(b);
            }
        });
        assert_eq!(code, Some(0), "{ns}: {o}");
        let key = match ns.as_str() {
            "network" => "net",
            "mount" => "mnt",
            other => other,
        };
        assert_ne!(
            v["namespaces"][key],
            json!(host_ns(key)),
            "{ns}: not a new namespace: {o}"
        );
    }
}

#[test]
fn every_capability() {
    let rt = Runtime::new("featcaps");
    let f = features(&rt);
    let last_cap: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // berth can only hand out what it holds itself.
    let own_bounding = {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        let hex = s
            .lines()
            .find_map(|l| l.strip_prefix("CapBnd:"))
            .unwrap()
            .trim()
            .to_string();
        u64::from_str_radix(&hex, 16).unwrap()
    };
    for (n, cap) in names(&f["linux"]["capabilities"]).into_iter().enumerate() {
        let (code, v, o) = run(&rt, &["report"], |b| {
            let one = json!([cap]);
            b.set(
                "/process/capabilities",
                json!({"bounding": one, "effective": one, "permitted": one}),
            );
        });
        let bit = 1u64 << n;
        if n as u32 > last_cap {
            // Known to berth, not to this kernel: skipped with a warning.
            assert_eq!(code, Some(0), "{cap}: {o}");
            assert!(o.stderr.contains(&cap), "{cap}: no warning: {o}");
        } else if own_bounding & bit == 0 {
            // This host's bounding set lacks it (CAP_SYS_RESOURCE here):
            // berth cannot grant it, and must say so rather than run without.
            assert_ne!(code, Some(0), "{cap} ran without the capability: {o}");
            assert!(
                o.stderr.contains(&cap) || o.stderr.contains("capab"),
                "{cap}: {o}"
            );
        } else {
            assert_eq!(code, Some(0), "{cap}: {o}");
            assert_eq!(cap_mask(&v["capabilities"]["effective"]), bit, "{cap}: {o}");
        }
    }
}

#[test]
fn every_mount_option() {
    let rt = Runtime::new("featmnt");
    let f = features(&rt);
    for opt in names(&f["mountOptions"]) {
        let host = rt.tempdir();
        std::fs::write(host.join("file"), "x").unwrap();
        let bind_like = opt == "bind"
            || opt == "idmap"
            || opt == "rbind"
            || opt.starts_with('r') && !["relatime", "remount", "rw", "ro"].contains(&opt.as_str())
            || ["private", "shared", "slave", "unbindable"].contains(&opt.as_str());
        let mount = if opt == "tmpcopyup" || !bind_like {
            json!({"destination": "/mnt/opt", "type": "tmpfs", "source": "tmpfs",
                   "options": [opt]})
        } else {
            let mut o = vec![json!(opt)];
            if opt != "bind" && opt != "rbind" {
                o.push(json!("rbind"));
            }
            json!({"destination": "/mnt/opt", "type": "bind", "source": host, "options": o})
        };
        let idmap = opt == "idmap" || opt == "ridmap";
        let (code, v, o) = run(&rt, &["report"], |b| {
            if opt == "remount" {
                // remount acts on what an earlier mount put there.
                b.push(
                    "/mounts",
                    json!({"destination": "/mnt/opt", "type": "tmpfs", "source": "tmpfs"}),
                );
                b.push(
                    "/mounts",
                    json!({"destination": "/mnt/opt", "type": "tmpfs", "source": "tmpfs",
                           "options": ["remount", "ro"]}),
                );
                return;
            }
            b.push("/mounts", mount.clone());
            if idmap {
                // A root filesystem the container's root owns, as a user
                // namespace needs to create the mount point.
                let st = std::process::Command::new("chown")
                    .args(["-R", "100000:100000"])
                    .arg(b.rootfs())
                    .status()
                    .unwrap();
                assert!(st.success());
                b.namespace("user", None);
                map_root_to_100000(b);
            }
        });
        assert_eq!(code, Some(0), "{opt}: {o}");
        let m = find_mount(&v, "/mnt/opt").unwrap_or_else(|| panic!("{opt}: no mount: {o}"));
        if opt == "remount" {
            assert!(mount_has_opt(m, "ro"), "{opt}: {m}");
        }
        // Per-mount flags the kernel shows must be there.
        for shown in [
            "ro",
            "nosuid",
            "nodev",
            "noexec",
            "noatime",
            "nodiratime",
            "nosymfollow",
        ] {
            if opt == shown || opt == format!("r{shown}") {
                assert!(mount_has_opt(m, shown), "{opt}: {m}");
            }
        }
    }
}
