//! Root filesystem and mounts: readonly root, bind/rbind/ro/nosuid/nodev/noexec,
//! tmpfs data, propagation, symlinked destinations, devices, masked and
//! readonly paths, sysctls, --no-pivot.

use berth_integration::serde_json::{json, Value};
use berth_integration::*;
use std::path::Path;

const EROFS: i64 = 30;

fn mount_of<'a>(r: &'a Value, mp: &str) -> &'a Value {
    find_mount(r, mp).unwrap_or_else(|| {
        let all: Vec<&Value> = r["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["mountpoint"])
            .collect();
        panic!("no mount at {mp}; mounts: {all:?}")
    })
}

#[test]
fn readonly_root() {
    let rt = Runtime::new("roroot");
    let r = rt.probe_args(&["write", "/berth-test-file"], |b| {
        b.set("/root/readonly", json!(true));
    });
    assert_eq!(r["write"]["ok"], false, "{r}");
    assert_eq!(r["write"]["errno"], EROFS, "{r}");
    // Mounts on top of a readonly root stay writable.
    let r = rt.probe_args(&["write", "/dev/shm/x"], |b| {
        b.set("/root/readonly", json!(true));
    });
    assert_eq!(r["write"]["ok"], true, "{r}");
    let r = rt.probe(|b| {
        b.set("/root/readonly", json!(true));
    });
    assert!(mount_has_opt(mount_of(&r, "/"), "ro"));
}

#[test]
fn writable_root_by_default() {
    let rt = Runtime::new("rwroot");
    let mut b = rt.bundle();
    let r = rt.probe_in(&mut b, &["write", "/berth-test-file"]);
    assert_eq!(r["write"]["ok"], true, "{r}");
    assert!(b.rootfs().join("berth-test-file").exists());
}

#[test]
fn default_mounts() {
    let rt = Runtime::new("defmounts");
    let r = rt.probe(|_| {});
    assert_eq!(mount_of(&r, "/proc")["fstype"], "proc");
    assert_eq!(mount_of(&r, "/dev")["fstype"], "tmpfs");
    assert_eq!(mount_of(&r, "/dev/pts")["fstype"], "devpts");
    assert_eq!(mount_of(&r, "/dev/shm")["fstype"], "tmpfs");
    assert_eq!(mount_of(&r, "/dev/mqueue")["fstype"], "mqueue");
    let sys = mount_of(&r, "/sys");
    assert_eq!(sys["fstype"], "sysfs");
    assert!(mount_has_opt(sys, "ro"), "{sys}");
    for o in ["nosuid", "noexec", "nodev"] {
        assert!(
            mount_has_opt(mount_of(&r, "/dev/shm"), o),
            "/dev/shm lacks {o}"
        );
    }
}

fn host_dir_with_file(rt: &Runtime, content: &str) -> std::path::PathBuf {
    let d = rt.tempdir();
    std::fs::write(d.join("hello"), content).unwrap();
    d
}

#[test]
fn bind_mount_rw() {
    let rt = Runtime::new("bind");
    let d = host_dir_with_file(&rt, "from host\n");
    let src = d.to_str().unwrap().to_string();
    let mount =
        json!({"destination": "/mnt/data", "type": "bind", "source": src, "options": ["bind"]});
    let r = rt.probe_args(&["read", "/mnt/data/hello"], |b| {
        b.push("/mounts", mount.clone());
    });
    assert_eq!(r["read"]["data"], "from host\n");
    let r = rt.probe_args(&["write", "/mnt/data/new"], |b| {
        b.push("/mounts", mount.clone());
    });
    assert_eq!(r["write"]["ok"], true, "{r}");
    assert!(d.join("new").exists(), "write did not reach the host dir");
}

#[test]
fn bind_mount_ro_nosuid_nodev_noexec() {
    let rt = Runtime::new("bindro");
    let d = host_dir_with_file(&rt, "x");
    let mount = json!({"destination": "/mnt/ro", "type": "bind", "source": d.to_str().unwrap(),
                       "options": ["bind", "ro", "nosuid", "nodev", "noexec"]});
    let r = rt.probe_args(&["write", "/mnt/ro/new"], |b| {
        b.push("/mounts", mount.clone());
    });
    assert_eq!(r["write"]["errno"], EROFS, "{r}");
    assert!(!d.join("new").exists());
    let r = rt.probe(|b| {
        b.push("/mounts", mount.clone());
    });
    let m = mount_of(&r, "/mnt/ro");
    for o in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(
            m["options"].as_array().unwrap().iter().any(|x| x == o),
            "{o} missing: {m}"
        );
    }
}

/// A host dir with a tmpfs mounted on its `sub` (removed by the Runtime's
/// cleanup, which detaches mounts under its temp dirs).
fn host_dir_with_submount(rt: &Runtime) -> std::path::PathBuf {
    let d = rt.tempdir();
    std::fs::create_dir(d.join("sub")).unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "berth-test-sub"])
        .arg(d.join("sub"))
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(d.join("sub/inner"), "inner\n").unwrap();
    d
}

#[test]
fn rbind_includes_submounts_bind_does_not() {
    let rt = Runtime::new("rbind");
    let d = host_dir_with_submount(&rt);
    let src = d.to_str().unwrap();
    let r = rt.probe_args(&["read", "/mnt/r/sub/inner"], |b| {
        b.push(
            "/mounts",
            json!({"destination": "/mnt/r", "type": "bind", "source": src, "options": ["rbind"]}),
        );
    });
    assert_eq!(r["read"]["data"], "inner\n", "rbind lost the submount: {r}");
    let r = rt.probe_args(&["read", "/mnt/b/sub/inner"], |b| {
        b.push(
            "/mounts",
            json!({"destination": "/mnt/b", "type": "bind", "source": src, "options": ["bind"]}),
        );
    });
    assert!(
        r["read"]["data"].is_null(),
        "plain bind carried the submount: {r}"
    );
}

#[test]
fn tmpfs_size_and_mode() {
    let rt = Runtime::new("tmpfs");
    let mount = json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                       "options": ["nosuid", "nodev", "noexec", "size=1m", "mode=0710"]});
    let r = rt.probe(|b| {
        b.push("/mounts", mount.clone());
    });
    let m = mount_of(&r, "/scratch");
    assert_eq!(m["fstype"], "tmpfs");
    assert!(mount_has_opt(m, "size=1024k"), "{m}");
    assert!(mount_has_opt(m, "mode=710"), "{m}");
    for o in ["nosuid", "nodev", "noexec"] {
        assert!(mount_has_opt(m, o), "{o}: {m}");
    }
    // A fresh bundle: runc gives a tmpfs the mode of a mount point that
    // already existed, so only a new mount point shows the mode= option.
    let r = rt.probe_args(&["stat", "/scratch"], |b| {
        b.push("/mounts", mount.clone());
    });
    assert_eq!(r["stat"]["/scratch"]["mode"], "0710", "{r}");
}

#[test]
fn mount_destination_parents_created() {
    let rt = Runtime::new("mkdirp");
    let mut b = rt.bundle();
    b.push("/mounts", json!({"destination": "/a/b/c", "type": "tmpfs", "source": "tmpfs", "options": ["size=64k"]}));
    let r = rt.probe_in(&mut b, &[]);
    assert_eq!(mount_of(&r, "/a/b/c")["fstype"], "tmpfs");
}

#[test]
fn propagation_options() {
    let rt = Runtime::new("propagation");
    let d = rt.tempdir();
    let src = d.to_str().unwrap();
    let r = rt.probe(|b| {
        b.push("/mounts", json!({"destination": "/mnt/shared", "type": "bind", "source": src, "options": ["rbind", "rshared"]}));
        b.push("/mounts", json!({"destination": "/mnt/private", "type": "bind", "source": src, "options": ["rbind", "rprivate"]}));
    });
    let sh = mount_of(&r, "/mnt/shared");
    let pr = mount_of(&r, "/mnt/private");
    let has = |m: &Value, p: &str| {
        m["propagation"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x.as_str().unwrap_or("").starts_with(p))
    };
    assert!(has(sh, "shared:"), "{sh}");
    assert!(!has(pr, "shared:") && !has(pr, "master:"), "{pr}");
}

#[test]
fn rootfs_propagation_private() {
    let rt = Runtime::new("rootprop");
    let r = rt.probe(|b| {
        b.set("/linux/rootfsPropagation", json!("private"));
    });
    let root = mount_of(&r, "/");
    assert!(root["propagation"].as_array().unwrap().is_empty(), "{root}");
}

#[test]
fn symlink_destination_stays_in_rootfs() {
    let rt = Runtime::new("symlinkdst");
    let mut b = rt.bundle();
    // rootfs/berth-link -> /etc : must resolve to rootfs/etc, never the host's /etc.
    std::os::unix::fs::symlink("/etc", b.rootfs().join("berth-link")).unwrap();
    let host_before = std::fs::read("/etc/hostname").ok();
    let host_mounts_before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    b.push(
        "/mounts",
        json!({"destination": "/berth-link", "type": "tmpfs", "source": "tmpfs", "options": ["size=64k"]}),
    );
    let r = rt.probe_in(&mut b, &["ls", "/etc"]);
    // The tmpfs covers the container's /etc: it is empty inside.
    assert_eq!(r["ls"]["entries"], json!([]), "{r}");
    // The host's /etc is untouched and nothing was mounted on it.
    assert_eq!(std::fs::read("/etc/hostname").ok(), host_before);
    assert!(Path::new("/etc/passwd").exists());
    let after = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let on_etc = |mi: &str| {
        mi.lines()
            .filter(|l| l.split(' ').nth(4) == Some("/etc"))
            .count()
    };
    assert_eq!(
        on_etc(&after),
        on_etc(&host_mounts_before),
        "something was mounted on the host's /etc"
    );
    // And the rootfs's own /etc files are still there on disk.
    assert!(b.rootfs().join("etc/passwd").exists());
}

#[test]
fn default_devices() {
    let rt = Runtime::new("devices");
    let paths = [
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
        "/dev/tty",
    ];
    let mut args = vec!["stat"];
    args.extend(paths);
    args.extend([
        "/dev/fd",
        "/dev/stdin",
        "/dev/stdout",
        "/dev/stderr",
        "/dev/ptmx",
        "/dev/pts/ptmx",
    ]);
    let r = rt.probe_args(&args, |_| {});
    let s = &r["stat"];
    let want = [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0)];
    for (p, (maj, min)) in paths.iter().zip(want) {
        assert_eq!(s[p]["type"], "char", "{p}: {}", s[p]);
        assert_eq!(
            (s[p]["major"].as_u64(), s[p]["minor"].as_u64()),
            (Some(maj), Some(min)),
            "{p}: {}",
            s[p]
        );
        assert_eq!(s[p]["mode"], "0666", "{p}: {}", s[p]);
    }
    let links = [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ];
    for (p, t) in links {
        assert_eq!(s[p]["type"], "symlink", "{p}: {}", s[p]);
        assert_eq!(s[p]["target"], t, "{p}");
    }
    // /dev/ptmx points at the devpts instance's ptmx.
    assert_eq!(s["/dev/ptmx"]["type"], "symlink", "{}", s["/dev/ptmx"]);
    assert_eq!(s["/dev/ptmx"]["target"], "pts/ptmx");
    assert_eq!(s["/dev/pts/ptmx"]["type"], "char");
}

#[test]
fn linux_devices_created() {
    let rt = Runtime::new("linuxdev");
    let r = rt.probe_args(&["stat", "/dev/mynull", "/dev/sub/myzero"], |b| {
        b.set(
            "/linux/devices",
            json!([
                {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o640, "uid": 1000, "gid": 1000},
                {"path": "/dev/sub/myzero", "type": "c", "major": 1, "minor": 5}
            ]),
        );
    });
    let d = &r["stat"]["/dev/mynull"];
    assert_eq!(d["type"], "char", "{d}");
    assert_eq!(
        (d["major"].as_u64(), d["minor"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(d["mode"], "0640");
    assert_eq!(
        (d["uid"].as_u64(), d["gid"].as_u64()),
        (Some(1000), Some(1000))
    );
    let z = &r["stat"]["/dev/sub/myzero"];
    assert_eq!(
        (z["major"].as_u64(), z["minor"].as_u64()),
        (Some(1), Some(5)),
        "{z}"
    );
}

#[test]
fn masked_paths() {
    let rt = Runtime::new("masked");
    let patch = |b: &mut Bundle| {
        b.push("/linux/maskedPaths", json!("/etc/marker"));
        b.push("/linux/maskedPaths", json!("/home"));
        b.push("/linux/maskedPaths", json!("/does/not/exist"));
    };
    // A masked file reads empty.
    let r = rt.probe_args(&["read", "/etc/marker"], patch);
    assert_eq!(r["read"]["data"], "", "{r}");
    // /proc/keys is in the default maskedPaths and exists on the host.
    if Path::new("/proc/keys").exists() {
        let r = rt.probe_args(&["read", "/proc/keys"], patch);
        assert_eq!(r["read"]["data"], "", "{r}");
    }
    // A masked dir is empty and read-only.
    let r = rt.probe_args(&["ls", "/home"], patch);
    assert_eq!(r["ls"]["entries"], json!([]), "{r}");
    let r = rt.probe_args(&["write", "/home/x"], patch);
    assert_eq!(r["write"]["errno"], EROFS, "{r}");
    let r = rt.probe(patch);
    let m = mount_of(&r, "/home");
    assert_eq!(m["fstype"], "tmpfs");
    assert!(mount_has_opt(m, "ro"), "{m}");
}

#[test]
fn readonly_paths() {
    let rt = Runtime::new("ropaths");
    let patch = |b: &mut Bundle| {
        b.push("/linux/readonlyPaths", json!("/home/berth"));
    };
    let r = rt.probe_args(&["write", "/home/berth/x"], patch);
    assert_eq!(r["write"]["errno"], EROFS, "{r}");
    let r = rt.probe_args(&["write", "/proc/sys/kernel/hostname"], patch);
    assert_eq!(r["write"]["errno"], EROFS, "{r}");
    // Elsewhere still writable.
    let r = rt.probe_args(&["write", "/home/elsewhere"], patch);
    assert_eq!(r["write"]["ok"], true, "{r}");
}

#[test]
fn sysctls() {
    let rt = Runtime::new("sysctl");
    let host_fwd = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let host_shm = std::fs::read_to_string("/proc/sys/kernel/shmmax").unwrap();
    let r = rt.probe_args(&["sysctl", "net.ipv4.ip_forward", "kernel.shmmax"], |b| {
        let want_fwd = if host_fwd.trim() == "1" { "0" } else { "1" };
        b.set(
            "/linux/sysctl",
            json!({"net.ipv4.ip_forward": want_fwd, "kernel.shmmax": "123456789"}),
        );
    });
    let want_fwd = if host_fwd.trim() == "1" { "0" } else { "1" };
    assert_eq!(r["sysctl"]["net.ipv4.ip_forward"], want_fwd, "{r}");
    assert_eq!(r["sysctl"]["kernel.shmmax"], "123456789", "{r}");
    // The host's values are untouched (new net and ipc namespaces).
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_fwd
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/shmmax").unwrap(),
        host_shm
    );
}

#[test]
fn sysctl_net_without_netns_fails() {
    let rt = Runtime::new("sysctlbad");
    let host_fwd = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let mut b = rt.bundle();
    b.without_namespace("network");
    b.set(
        "/linux/sysctl",
        json!({"net.ipv4.ip_forward": if host_fwd.trim() == "1" { "0" } else { "1" }}),
    );
    b.write();
    let id = rt.id();
    rt.run(&["run", "--bundle", b.path_str(), &id]).fails();
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_fwd,
        "host sysctl changed!"
    );
}

#[test]
fn no_pivot() {
    let rt = Runtime::new("nopivot");
    let mut b = rt.bundle();
    b.set(
        "/process/args",
        json!(["/bin/berth-probe", "read", "/etc/marker"]),
    );
    b.write();
    let id = rt.id();
    let o = rt
        .run(&["run", "--no-pivot", "--bundle", b.path_str(), &id])
        .ok();
    assert_eq!(o.json()["read"]["data"], "rootfs\n", "{o}");
}

#[test]
fn no_mounts_leak_to_host() {
    let rt = Runtime::new("noleak");
    let mut b = rt.bundle();
    b.push(
        "/mounts",
        json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs"}),
    );
    let _ = rt.probe_in(&mut b, &[]);
    assert!(
        host_mounts_under(b.path()).is_empty(),
        "mounts leaked: {:?}",
        host_mounts_under(b.path())
    );
}
