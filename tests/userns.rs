//! User namespaces and idmapped mounts, as root: several mapping ranges,
//! container root as an unprivileged host id, a bundle only host root can
//! read, `idmap`/`ridmap` and per-mount mappings, and bad mappings refused
//! with nothing left behind.
//!
//! Real containers: `cargo test -p berth --test userns`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use berth_integration::serde_json::{json, Value};
use berth_integration::{
    cgroup_dirs_named, host_mounts_under, processes_related, Bundle, Out, Runtime,
};

/// Capabilities that would let root do anything to a file it owned or
/// could override: the mapping alone must stop it on host-owned files.
const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_KILL",
    "CAP_SETUID",
    "CAP_SETGID",
];

fn map(ranges: &[(u32, u32, u32)]) -> Value {
    Value::Array(
        ranges
            .iter()
            .map(|&(c, h, s)| json!({ "containerID": c, "hostID": h, "size": s }))
            .collect(),
    )
}

fn user_ns(b: &mut Bundle, uids: &[(u32, u32, u32)], gids: &[(u32, u32, u32)]) {
    b.namespace("user", None);
    b.set("/linux/uidMappings", map(uids));
    b.set("/linux/gidMappings", map(gids));
}

fn caps(b: &mut Bundle, caps: &[&str]) {
    let list = json!(caps);
    for set in ["bounding", "effective", "permitted"] {
        b.set(&format!("/process/capabilities/{set}"), list.clone());
    }
    b.remove("/process/capabilities/ambient");
}

fn sh(b: &mut Bundle, script: &str) {
    b.set("/process/args", json!(["/bin/sh", "-c", script]));
}

fn run(rt: &Runtime, b: &Bundle) -> (String, Out) {
    b.write();
    let id = rt.id();
    let out = rt.run(&["run", "--bundle", b.path_str(), &id]);
    (id, out)
}

/// `key=value` lines of a script's output.
fn value<'a>(out: &'a Out, key: &str) -> &'a str {
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= line in the output: {out}"))
}

/// (container, host, size) lines of a uid_map/gid_map text.
fn triples(text: &str) -> Vec<(u32, u32, u32)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<u32> = l
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            (f.len() == 3).then(|| (f[0], f[1], f[2]))
        })
        .collect()
}

fn chown_r(path: &Path, uid: u32, gid: u32) {
    let st = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{gid}"))
        .arg(path)
        .status()
        .expect("chown");
    assert!(st.success(), "chown -R {}", path.display());
}

fn mkdir(path: &Path, mode: u32, uid: u32, gid: u32) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

fn owner(path: &Path) -> (u32, u32) {
    let md = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (md.uid(), md.gid())
}

fn sh_ok(cmd: &str) {
    let st = Command::new("sh").args(["-c", cmd]).status().unwrap();
    assert!(st.success(), "{cmd}");
}

/// A failed create: exit status 1, each line of stderr one problem, and
/// no state directory, process, mount or cgroup left behind.
#[track_caller]
fn refused(rt: &Runtime, b: &Bundle, wants: &[&str]) -> Out {
    b.write();
    let id = rt.id();
    let out = rt.run(&["create", "--bundle", b.path_str(), &id]).fails();
    assert_eq!(out.code, Some(1), "{out}");
    for want in wants {
        assert!(
            out.stderr.lines().any(|l| l.contains(want)),
            "no line of stderr says {want:?}: {out}"
        );
    }
    assert!(!rt.root().join(&id).exists(), "state dir left: {out}");
    assert!(
        processes_related(&[&id], &[b.path()]).is_empty(),
        "processes left: {out}"
    );
    assert!(
        host_mounts_under(b.path()).is_empty(),
        "mounts left: {:?}",
        host_mounts_under(b.path())
    );
    assert!(cgroup_dirs_named(&id).is_empty(), "cgroups left: {out}");
    out
}

#[test]
fn several_ranges_reach_the_container() {
    let rt = Runtime::new("userns-ranges");
    let mut b = rt.bundle();
    let uids = [(0, 100000, 1000), (1000, 300000, 1000), (2000, 400000, 5)];
    let gids = [(0, 100000, 1000), (1000, 500000, 1000)];
    user_ns(&mut b, &uids, &gids);
    chown_r(&b.rootfs(), 100000, 100000);
    let shared = rt.tempdir();
    mkdir(&shared, 0o1777, 0, 0);
    b.push(
        "/mounts",
        json!({ "destination": "/shared", "type": "bind", "source": shared, "options": ["bind"] }),
    );
    // A process uid in the second range: host id 300000 + 500.
    b.set("/process/user", json!({ "uid": 1500, "gid": 1500 }));
    sh(
        &mut b,
        "echo uid=$(id -u) gid=$(id -g); cat /proc/self/uid_map; echo --; cat /proc/self/gid_map; touch /shared/made",
    );
    let (_, out) = run(&rt, &b);
    let out = out.ok();
    let (umap, gmap) = out.stdout.split_once("--").expect("both maps");
    assert_eq!(triples(umap), uids, "{out}");
    assert_eq!(triples(gmap), gids, "{out}");
    assert!(out.stdout.contains("uid=1500 gid=1500"), "{out}");
    assert_eq!(owner(&shared.join("made")), (300500, 500500));
}

#[test]
fn container_root_is_an_unprivileged_host_id() {
    let rt = Runtime::new("userns-unpriv");
    let mut b = rt.bundle();
    // Only host root may enter the bundle; the container's root (host
    // 100000) owns the rootfs and a data directory inside the bundle, bound
    // by a path relative to the bundle.
    std::fs::set_permissions(b.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(owner(b.path()), (0, 0));
    chown_r(&b.rootfs(), 100000, 100000);
    mkdir(&b.path().join("data"), 0o755, 100000, 100000);
    let hostroot = b.path().join("hostroot");
    mkdir(&hostroot, 0o755, 0, 0);
    std::fs::write(hostroot.join("file"), "host\n").unwrap();
    user_ns(&mut b, &[(0, 100000, 65536)], &[(0, 100000, 65536)]);
    caps(&mut b, CAPS);
    b.push(
        "/mounts",
        json!({ "destination": "/data", "type": "bind", "source": "data", "options": ["rbind"] }),
    );
    b.push(
        "/mounts",
        json!({ "destination": "/hostroot", "type": "bind", "source": "hostroot", "options": ["bind"] }),
    );
    sh(
        &mut b,
        "exec 2>/dev/null; cat /proc/self/uid_map; echo uid=$(id -u); echo host=$(hostname)
         touch /data/made; echo made=$?
         mkdir /data/sub && chown 5:6 /data/sub; echo chown=$?
         echo x >> /hostroot/file; echo append=$?
         touch /hostroot/new; echo create=$?
         chown 0:0 /hostroot/file; echo chownhost=$?
         chmod 666 /hostroot/file; echo chmodhost=$?
         echo read=$(cat /hostroot/file)",
    );
    let (id, out) = run(&rt, &b);
    let out = out.ok();
    assert_eq!(triples(&out.stdout), [(0, 100000, 65536)], "{out}");
    assert_eq!(value(&out, "uid"), "0");
    assert_eq!(value(&out, "host"), "berth-test");
    assert_eq!(value(&out, "made"), "0");
    assert_eq!(value(&out, "chown"), "0");
    // Host root's files: readable as "other", nothing more, whatever the
    // container's capabilities.
    for denied in ["append", "create", "chownhost", "chmodhost"] {
        assert_ne!(value(&out, denied), "0", "{denied} succeeded: {out}");
    }
    assert_eq!(value(&out, "read"), "host");
    assert_eq!(owner(&b.path().join("data/made")), (100000, 100000));
    assert_eq!(owner(&b.path().join("data/sub")), (100005, 100006));
    assert_eq!(owner(&hostroot.join("file")), (0, 0));
    assert_eq!(
        std::fs::read_to_string(hostroot.join("file")).unwrap(),
        "host\n"
    );
    assert!(!hostroot.join("new").exists());
    assert!(!rt.root().join(&id).exists(), "state dir left behind");
    assert!(host_mounts_under(b.path()).is_empty());
}

/// A source with a root-owned file and a root-owned directory.
fn host_source(rt: &Runtime) -> std::path::PathBuf {
    let src = rt.tempdir();
    mkdir(&src, 0o755, 0, 0);
    std::fs::write(src.join("f"), "f\n").unwrap();
    mkdir(&src.join("w"), 0o755, 0, 0);
    src
}

#[test]
fn idmap_shows_host_root_as_container_root() {
    let rt = Runtime::new("userns-idmap");
    let mut b = rt.bundle();
    let src = host_source(&rt);
    user_ns(&mut b, &[(0, 100000, 65536)], &[(0, 100000, 65536)]);
    chown_r(&b.rootfs(), 100000, 100000);
    caps(&mut b, CAPS);
    b.push(
        "/mounts",
        json!({ "destination": "/idm", "type": "bind", "source": src, "options": ["bind", "idmap"] }),
    );
    b.push(
        "/mounts",
        json!({ "destination": "/plain", "type": "bind", "source": src, "options": ["bind"] }),
    );
    sh(
        &mut b,
        "echo idm=$(stat -c %u:%g /idm/f) plain=$(stat -c %u:%g /plain/f)
         touch /idm/w/new; echo made=$?",
    );
    let (_, out) = run(&rt, &b);
    let out = out.ok();
    assert!(out.stdout.contains("idm=0:0 plain=65534:65534"), "{out}");
    assert_eq!(value(&out, "made"), "0");
    // Created by container root through the idmapped mount: host root's.
    assert_eq!(owner(&src.join("w/new")), (0, 0));
}

/// A user namespace held open by a process of the test, mapped as given.
struct HeldUserns(std::process::Child);

impl HeldUserns {
    fn new(uid_map: &str, gid_map: &str) -> HeldUserns {
        let child = Command::new("unshare")
            .args(["--user", "sleep", "600"])
            .spawn()
            .expect("unshare --user");
        let held = HeldUserns(child);
        let pid = held.0.id();
        let ns = format!("/proc/{pid}/ns/user");
        let host = std::fs::read_link("/proc/self/ns/user").unwrap();
        assert!(
            berth_integration::eventually(5, || std::fs::read_link(&ns).is_ok_and(|t| t != host)),
            "unshare never made its user namespace"
        );
        std::fs::write(format!("/proc/{pid}/uid_map"), uid_map).unwrap();
        std::fs::write(format!("/proc/{pid}/gid_map"), gid_map).unwrap();
        held
    }

    fn path(&self) -> String {
        format!("/proc/{}/ns/user", self.0.id())
    }
}

impl Drop for HeldUserns {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `idmap` in a container that joins a user namespace maps through that one.
#[test]
fn idmap_maps_through_a_joined_user_namespace() {
    let rt = Runtime::new("userns-joined");
    let held = HeldUserns::new("0 200000 65536\n", "0 200000 65536\n");
    let mut b = rt.bundle();
    let src = host_source(&rt);
    b.namespace("user", Some(&held.path()));
    chown_r(&b.rootfs(), 200000, 200000);
    b.push(
        "/mounts",
        json!({ "destination": "/idm", "type": "bind", "source": src, "options": ["bind", "idmap"] }),
    );
    sh(
        &mut b,
        "cat /proc/self/uid_map; echo idm=$(stat -c %u:%g /idm/f); touch /idm/w/new; echo made=$?",
    );
    let (_, out) = run(&rt, &b);
    let out = out.ok();
    assert_eq!(triples(&out.stdout), [(0, 200000, 65536)], "{out}");
    assert_eq!(value(&out, "idm"), "0:0");
    assert_eq!(value(&out, "made"), "0");
    assert_eq!(owner(&src.join("w/new")), (0, 0));
}

#[test]
fn mount_mappings_work_without_a_user_namespace() {
    let rt = Runtime::new("userns-mntmap");
    let mut b = rt.bundle();
    let src = host_source(&rt);
    let m = map(&[(0, 100000, 65536)]);
    b.push(
        "/mounts",
        json!({ "destination": "/exp", "type": "bind", "source": src, "options": ["bind"],
                "uidMappings": m, "gidMappings": m }),
    );
    sh(
        &mut b,
        "echo exp=$(stat -c %u:%g /exp/f); touch /exp/w/new 2>/tmp/err; echo made=$?; echo err=$(cat /tmp/err)",
    );
    let (_, out) = run(&rt, &b);
    let out = out.ok();
    assert_eq!(value(&out, "exp"), "100000:100000");
    // Host root (uid 0) has no id on that mount: EOVERFLOW.
    assert_ne!(value(&out, "made"), "0");
    assert!(value(&out, "err").contains("Value too large"), "{out}");
    assert!(!src.join("w/new").exists());
}

#[test]
fn ridmap_maps_submounts_and_idmap_only_the_top() {
    let rt = Runtime::new("userns-ridmap");
    let mut b = rt.bundle();
    let src = host_source(&rt);
    let sub = src.join("sub");
    mkdir(&sub, 0o755, 0, 0);
    sh_ok(&format!(
        "mount -t tmpfs -o mode=755 berth-test-ridmap {0} && echo g > {0}/g",
        sub.display()
    ));
    user_ns(&mut b, &[(0, 100000, 65536)], &[(0, 100000, 65536)]);
    chown_r(&b.rootfs(), 100000, 100000);
    for (dest, opt) in [("/r", "ridmap"), ("/n", "idmap")] {
        b.push(
            "/mounts",
            json!({ "destination": dest, "type": "bind", "source": src, "options": ["rbind", opt] }),
        );
    }
    sh(
        &mut b,
        "echo r=$(stat -c %u /r/f) rsub=$(stat -c %u /r/sub/g) n=$(stat -c %u /n/f) nsub=$(stat -c %u /n/sub/g)",
    );
    let (_, out) = run(&rt, &b);
    let out = out.ok();
    assert!(out.stdout.contains("r=0 rsub=0 n=0 nsub=65534"), "{out}");
}

/// A bind source that is a shared mount on the host is cloned by berth;
/// mounts the container makes beneath it must not propagate back.
#[test]
fn container_mounts_under_a_shared_source_stay_inside() {
    let rt = Runtime::new("userns-shared");
    let mut b = rt.bundle();
    let src = host_source(&rt);
    mkdir(&src.join("sub"), 0o755, 100000, 100000);
    sh_ok(&format!(
        "mount --bind {0} {0} && mount --make-shared {0}",
        src.display()
    ));
    user_ns(&mut b, &[(0, 100000, 65536)], &[(0, 100000, 65536)]);
    chown_r(&b.rootfs(), 100000, 100000);
    caps(&mut b, &["CAP_SYS_ADMIN"]);
    b.push(
        "/mounts",
        json!({ "destination": "/shared", "type": "bind", "source": src, "options": ["rbind"] }),
    );
    sh(
        &mut b,
        "mount -t tmpfs berth-test-inner /shared/sub; echo mounted=$?; grep -c berth-test-inner /proc/self/mountinfo",
    );
    let (_, out) = run(&rt, &b);
    let out = out.ok();
    assert_eq!(value(&out, "mounted"), "0");
    let leaked: Vec<String> = host_mounts_under(&src)
        .into_iter()
        .filter(|m| Path::new(m) != src)
        .collect();
    assert!(
        leaked.is_empty(),
        "a mount made in the container reached the host: {leaked:?}"
    );
}

#[test]
fn overlapping_mappings_are_refused() {
    let rt = Runtime::new("userns-overlap");
    let mut b = rt.bundle();
    user_ns(
        &mut b,
        &[(0, 100000, 1000), (500, 200000, 1000)],
        &[(0, 100000, 1000), (1000, 100500, 10)],
    );
    refused(
        &rt,
        &b,
        &[
            "linux.uidMappings[1]: container ids overlap linux.uidMappings[0]",
            "linux.gidMappings[1]: host ids overlap linux.gidMappings[0]",
        ],
    );
}

#[test]
fn bad_idmapped_mounts_are_refused() {
    let rt = Runtime::new("userns-badidmap");
    let mut b = rt.bundle();
    // No user namespace to take the mappings from; not a bind mount.
    b.push(
        "/mounts",
        json!({ "destination": "/a", "type": "bind", "source": "/tmp", "options": ["rbind", "idmap"] }),
    );
    b.push(
        "/mounts",
        json!({ "destination": "/b", "type": "tmpfs", "source": "tmpfs",
                "uidMappings": map(&[(0, 1000, 1)]), "gidMappings": map(&[(0, 1000, 1)]) }),
    );
    refused(
        &rt,
        &b,
        &[
            "mounts[6].options[1]: \"idmap\" without uidMappings and gidMappings maps through the container's user namespace, but linux.namespaces has none",
            "mounts[7]: an idmapped mount",
        ],
    );
}

#[test]
fn unmapped_mount_option_ids_are_refused() {
    let rt = Runtime::new("userns-gidopt");
    let mut b = rt.bundle();
    // devpts in the default config asks for gid=5, which this maps not.
    user_ns(&mut b, &[(0, 100000, 65536)], &[(0, 100000, 1)]);
    refused(
        &rt,
        &b,
        &["mounts[2].options[5]: gid=5: gid 5 is not mapped in linux.gidMappings"],
    );
}

/// The temporary user namespace of an idmapped mount is gone however
/// create fails: here the filesystem (procfs) takes no idmapping.
#[test]
fn failed_idmapped_mount_leaves_nothing_behind() {
    let rt = Runtime::new("userns-idmapfail");
    let mut b = rt.bundle();
    let m = map(&[(0, 100000, 65536)]);
    b.push(
        "/mounts",
        json!({ "destination": "/ps", "type": "bind", "source": "/proc/sys", "options": ["bind"],
                "uidMappings": m, "gidMappings": m }),
    );
    let out = refused(&rt, &b, &["does not support idmapped mounts"]);
    let errors = out
        .stderr
        .lines()
        .filter(|l| !l.contains("warning"))
        .count();
    assert_eq!(errors, 1, "{out}");
}
