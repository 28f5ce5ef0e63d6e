//! Regression tests for fixes made after a code review: each test fails if
//! berth loses one of them.
//!
//! - a bind-mounted `/dev` is the host's directory: no device is made in it;
//! - a cgroup that existed before the container (shared) survives `delete`;
//! - `linux.cgroupsPath` is cleaned inside cgroupfs, never leaves it;
//! - `rootfsPropagation: rshared` on a shared rootfs mount leaks no mount to the host;
//! - an unmapped `process.user.uid` fails `create`, not `start`;
//! - a hook may call `berth state` while `create` runs;
//! - the container's init leads its own session;
//! - a foreground `run` forwards signals to the container;
//! - a state larger than a socket buffer reaches createContainer hooks;
//! - `start` reports a failing startContainer hook.
//!
//! Real containers, as root: `cargo test -p berth --test review_fixes`.

use berth_integration::serde_json::{self, json, Value};
use berth_integration::{
    berth_only, catches, eventually, host_mounts_under, pid_alive, Bundle, Opts, Runtime,
};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A name unique to this test process and call.
fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "berth-test-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Every cgroup hierarchy mounted directly under /sys/fs/cgroup (a directory
/// holding `cgroup.procs`), or /sys/fs/cgroup itself on a v2-only host.
fn hierarchies() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.procs").exists() {
        return vec![root.to_path_buf()];
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .map(|e| e.path())
                .filter(|p| p.join("cgroup.procs").exists())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The `(controllers, path)` pairs of /proc/PID/cgroup.
fn proc_cgroups(pid: i32) -> Vec<(String, String)> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, c, p) = (f.next()?, f.next()?, f.next()?);
            Some((c.to_string(), p.to_string()))
        })
        .collect()
}

/// Removes cgroup directories (deepest first, retrying while the last
/// processes in them are reaped) when the test ends, pass or fail.
struct CgroupDirs(Vec<PathBuf>);
impl Drop for CgroupDirs {
    fn drop(&mut self) {
        let mut dirs = std::mem::take(&mut self.0);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            eventually(3, || !d.exists() || std::fs::remove_dir(&d).is_ok());
        }
    }
}

/// Kills and reaps a child process on drop.
struct Reap(Option<Child>);
impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Unmounts (lazily, deepest first) everything at or under a path on drop.
struct Unmount(PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        let mut m = host_mounts_under(&self.0);
        m.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for mp in m {
            if let Ok(c) = std::ffi::CString::new(mp) {
                // SAFETY: umount2 with a valid C string.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

fn cstr(p: &Path) -> std::ffi::CString {
    std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

/// A bundle running `/bin/true` whose `/dev` is a bind of `host_dev` (nothing
/// else mounted beneath it) and that asks for `/dev/fuse` in `linux.devices`.
fn bind_dev_bundle(rt: &Runtime, host_dev: &Path) -> Bundle {
    let mut b = rt.bundle();
    let mounts: Vec<Value> = b.config["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| !m["destination"].as_str().unwrap_or("").starts_with("/dev"))
        .cloned()
        .chain([json!({
            "destination": "/dev", "type": "bind",
            "source": host_dev.to_str().unwrap(), "options": ["rbind", "rw"]
        })])
        .collect();
    b.set("/mounts", json!(mounts));
    b.push(
        "/linux/devices",
        json!({ "path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                "fileMode": 0o666, "uid": 1234, "gid": 1234 }),
    );
    b.set("/process/args", json!(["/bin/true"]));
    b
}

/// A test-owned directory standing in for a host `/dev`: a `null` device
/// (the runtime needs one, as runc does) and a regular file named `fuse`.
fn fake_host_dev(rt: &Runtime) -> (PathBuf, std::fs::Metadata) {
    let host_dev = rt.tempdir();
    let null = cstr(&host_dev.join("null"));
    // SAFETY: mknod(2) with a valid C string, in our own temp dir.
    let r = unsafe { libc::mknod(null.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    assert_eq!(r, 0, "mknod null: {}", std::io::Error::last_os_error());
    let fuse = host_dev.join("fuse");
    std::fs::write(&fuse, b"not a device\n").unwrap();
    std::fs::set_permissions(&fuse, std::fs::Permissions::from_mode(0o644)).unwrap();
    let meta = std::fs::symlink_metadata(&fuse).unwrap();
    (host_dev, meta)
}

/// 1. A `/dev` bind-mounted from the host is the host's directory: berth must
///    neither make nor chown device nodes in it, even for `linux.devices`.
#[test]
fn bind_mounted_dev_is_left_alone() {
    let rt = Runtime::new("rf-binddev");
    let (host_dev, before) = fake_host_dev(&rt);
    let fuse = host_dev.join("fuse");
    let b = bind_dev_bundle(&rt, &host_dev);
    b.write();
    let id = rt.id();
    let out = rt.run(&["run", "--bundle", b.path_str(), &id]);
    // Whatever run did, the host's files must be untouched.
    let after = std::fs::symlink_metadata(&fuse)
        .unwrap_or_else(|e| panic!("the host's {} is gone ({e}); run: {out}", fuse.display()));
    assert!(
        after.file_type().is_file(),
        "the host's regular file {} was replaced: {:?}; run: {out}",
        fuse.display(),
        after.file_type()
    );
    assert_eq!(after.ino(), before.ino(), "{} was replaced", fuse.display());
    assert_eq!(
        (after.uid(), after.gid(), after.mode()),
        (before.uid(), before.gid(), before.mode()),
        "{} was chowned or chmodded",
        fuse.display()
    );
    assert_eq!(std::fs::read(&fuse).unwrap(), b"not a device\n");
    let nodes: Vec<String> = std::fs::read_dir(&host_dev)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name() != "null")
        .filter(|e| {
            e.file_type()
                .map(|t| t.is_char_device() || t.is_block_device())
                .unwrap_or(false)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        nodes.is_empty(),
        "device nodes were made in the host's directory: {nodes:?}"
    );
    out.ok();
}

/// 2. A cgroup that existed before the container holds other processes:
///    `delete --force` neither kills them nor removes the directories.
///    (berth-only: runc 1.1.5 removes them.)
#[test]
fn shared_cgroup_survives_delete() {
    berth_only!();
    let name = unique("shared");
    let hier = hierarchies();
    assert!(!hier.is_empty(), "no cgroup hierarchy under /sys/fs/cgroup");
    let dirs: Vec<PathBuf> = hier.iter().map(|h| h.join(&name)).collect();
    let _cg = CgroupDirs(dirs.clone());
    for d in &dirs {
        std::fs::create_dir(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
    }
    let pids_dir = hier
        .iter()
        .find(|h| h.file_name().is_some_and(|n| n == "pids"))
        .or(hier.first())
        .unwrap()
        .join(&name);
    let mut sleep = Reap(Some(
        Command::new("sleep")
            .arg("300")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sleep"),
    ));
    let sleep_pid = sleep.0.as_ref().unwrap().id() as i32;
    std::fs::write(pids_dir.join("cgroup.procs"), sleep_pid.to_string()).unwrap();

    let rt = Runtime::new("rf-shared");
    let mut b = rt.bundle();
    b.set("/linux/cgroupsPath", json!(format!("/{name}")));
    b.set("/process/args", json!(["/bin/berth-probe", "sleep"]));
    b.write();
    let id = rt.id();
    rt.run(&["run", "-d", "--bundle", b.path_str(), &id]).ok();
    let pid = rt.pid(&id);
    let cgs = proc_cgroups(pid);
    assert!(!cgs.is_empty(), "no /proc/{pid}/cgroup");
    for (ctrl, path) in &cgs {
        assert_eq!(
            path,
            &format!("/{name}"),
            "the init is not in the shared cgroup in hierarchy {ctrl:?}: {cgs:?}"
        );
    }

    rt.run(&["delete", "--force", &id]).ok();
    assert!(eventually(3, || !pid_alive(pid)), "init {pid} survived");
    assert!(!rt.root().join(&id).exists(), "state dir left");
    let gone: Vec<_> = dirs.iter().filter(|d| !d.is_dir()).collect();
    assert!(
        gone.is_empty(),
        "delete removed the shared cgroup directories {gone:?}"
    );
    assert!(
        pid_alive(sleep_pid),
        "delete killed a process of the shared cgroup"
    );
    let procs = std::fs::read_to_string(pids_dir.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l.trim() == sleep_pid.to_string()),
        "the shared cgroup lost its process: {procs:?}"
    );
    // Empty the cgroup before the guard removes it.
    let mut c = sleep.0.take().unwrap();
    let _ = c.kill();
    let _ = c.wait();
}

/// 3. `..` in an absolute cgroupsPath stops at the hierarchy's root: the
///    cgroup is made inside cgroupfs, nothing outside it.
#[test]
fn cgroups_path_cannot_leave_cgroupfs() {
    let name = unique("cgescape");
    let hier = hierarchies();
    // What berth may make: <hierarchy>/tmp/<name>/x. `tmp` is removed only
    // if this test made it.
    let mut cleanup = Vec::new();
    for h in &hier {
        if !h.join("tmp").exists() {
            cleanup.push(h.join("tmp"));
        }
        cleanup.push(h.join("tmp").join(&name));
        cleanup.push(h.join("tmp").join(&name).join("x"));
    }
    let _cg = CgroupDirs(cleanup);
    let outside = PathBuf::from("/tmp").join(&name);
    struct RmTree(PathBuf);
    impl Drop for RmTree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _outside = RmTree(outside.clone());

    let rt = Runtime::new("rf-cgescape");
    let mut b = rt.bundle();
    b.set(
        "/linux/cgroupsPath",
        json!(format!("/../../../../../tmp/{name}/x")),
    );
    b.set("/process/args", json!(["/bin/berth-probe", "sleep"]));
    b.write();
    let id = rt.id();
    let out = rt.run(&["run", "-d", "--bundle", b.path_str(), &id]);
    assert!(
        !outside.exists(),
        "cgroupsPath made {} outside cgroupfs: {out}",
        outside.display()
    );
    if !out.success() {
        // Refusing the path is fine, if clean.
        assert!(!out.timed_out, "{out}");
        assert!(!rt.root().join(&id).exists(), "state dir left: {out}");
        return;
    }
    let pid = rt.pid(&id);
    let cgs = proc_cgroups(pid);
    let want = format!("/tmp/{name}/x");
    assert!(!cgs.is_empty(), "no /proc/{pid}/cgroup");
    for (ctrl, path) in &cgs {
        assert_eq!(path, &want, "hierarchy {ctrl:?}: {cgs:?}");
    }
    for h in &hier {
        let d = h.join("tmp").join(&name).join("x");
        assert!(d.is_dir(), "{} was not made", d.display());
    }
    rt.run(&["delete", "--force", &id]).ok();
    assert!(!outside.exists());
}

/// 4. With `rootfsPropagation: rshared` and a rootfs that is itself a shared
///    mount, the container's mounts (proc, dev, sys, …) must not propagate to
///    the host's peer of the rootfs.
#[test]
fn rshared_rootfs_propagates_no_mount_to_the_host() {
    let rt = Runtime::new("rf-rshared");
    let mut b = rt.bundle();
    let rootfs = b.rootfs();
    let c = cstr(&rootfs);
    // SAFETY: mount(2) with valid C strings; undone by the Unmount guard.
    let r = unsafe {
        libc::mount(
            c.as_ptr(),
            c.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        )
    };
    assert_eq!(
        r,
        0,
        "bind {}: {}",
        rootfs.display(),
        std::io::Error::last_os_error()
    );
    let _unmount = Unmount(rootfs.clone());
    // SAFETY: as above; changes only the propagation of our own bind.
    let r = unsafe {
        libc::mount(
            std::ptr::null(),
            c.as_ptr(),
            std::ptr::null(),
            libc::MS_SHARED,
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "make-shared: {}", std::io::Error::last_os_error());

    b.set("/linux/rootfsPropagation", json!("rshared"));
    b.set("/process/args", json!(["/bin/berth-probe", "sleep"]));
    b.write();
    let id = rt.id();
    let out = rt.run(&["run", "-d", "--bundle", b.path_str(), &id]);
    let leaked: Vec<String> = host_mounts_under(&rootfs)
        .into_iter()
        .filter(|m| Path::new(m) != rootfs)
        .collect();
    assert!(
        leaked.is_empty(),
        "the container's mounts propagated to the host: {leaked:?}; run: {out}"
    );
    let out = out.ok();
    assert_eq!(rt.status(&id).as_deref(), Some("running"), "{out}");
    rt.run(&["delete", "--force", &id]).ok();
    let leaked: Vec<String> = host_mounts_under(&rootfs)
        .into_iter()
        .filter(|m| Path::new(m) != rootfs)
        .collect();
    assert!(leaked.is_empty(), "mounts left after delete: {leaked:?}");
}

/// 5. An unmapped `process.user.uid` is an error of `create`, not of `start`.
///    (berth-only: runc's message does not name the field.)
#[test]
fn unmapped_user_fails_create() {
    berth_only!();
    let rt = Runtime::new("rf-unmapped");
    let mut b = rt.bundle();
    b.namespace("user", None);
    let map = json!([{ "containerID": 0, "hostID": 100000, "size": 1000 }]);
    b.set("/linux/uidMappings", map.clone());
    b.set("/linux/gidMappings", map);
    b.set("/process/user/uid", json!(5000));
    b.set("/process/args", json!(["/bin/true"]));
    b.write();
    let id = rt.id();
    let o = rt.run(&["create", "--bundle", b.path_str(), &id]).fails();
    assert_eq!(o.code, Some(1), "{o}");
    assert!(o.stderr.contains("process.user.uid"), "{o}");
    assert!(
        !rt.root().join(&id).exists(),
        "create left the state dir: {o}"
    );
}

/// 6. A createRuntime hook may call `berth state` on the container being
///    created: no deadlock on the container's lock. Until `create` returns
///    the container is `creating` (the runtime spec's state for a create in
///    progress). (berth-only: runc has no state to show until create returns.)
#[test]
fn hook_may_call_state_during_create() {
    berth_only!();
    let rt = Runtime::new("rf-hookstate");
    let dir = rt.tempdir();
    let out_json = dir.join("out.json");
    let mut b = rt.bundle();
    b.set("/process/args", json!(["/bin/berth-probe", "sleep"]));
    let id = rt.id();
    b.push(
        "/hooks/createRuntime",
        json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", "\"$B\" --root \"$R\" state \"$I\" > \"$O\""],
            "env": [
                format!("B={}", rt.bin.display()),
                format!("R={}", rt.root().display()),
                format!("I={id}"),
                format!("O={}", out_json.display()),
            ],
            "timeout": 15
        }),
    );
    b.write();
    let o = rt.run(&["create", "--bundle", b.path_str(), &id]);
    assert!(!o.timed_out, "create hung while a hook called state: {o}");
    o.ok();
    let text = std::fs::read_to_string(&out_json).unwrap_or_default();
    let st: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the hook's `state` printed no JSON ({e}): {text:?}"));
    assert_eq!(st["id"], json!(id), "{st}");
    assert_eq!(st["status"], json!("creating"), "{st}");
}

/// 7. The container's init is the leader of its own session (setsid).
#[test]
fn init_leads_its_own_session() {
    let rt = Runtime::new("rf-setsid");
    let r = rt.probe_args(&["read", "/proc/self/stat"], |_| {});
    let stat = r["read"]["data"]
        .as_str()
        .unwrap_or_else(|| panic!("no /proc/self/stat: {r}"));
    // pid (comm) state ppid pgrp session …
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let pid: &str = stat.split_whitespace().next().unwrap();
    assert_eq!(pid, "1", "the probe is not pid 1: {stat}");
    assert_eq!(
        fields[3], "1",
        "pid 1's session id is not 1 (no setsid): {stat}"
    );
}

/// `run` (foreground) of `args`, which catch `sig` and then exit `want`;
/// once the container's handler is in place, `sig` goes to berth.
fn foreground_forwards(args: Value, sig: i32, want: i32) {
    let rt = Runtime::new("rf-fgsig");
    let mut b = rt.bundle();
    b.set("/process/args", args);
    b.write();
    let id = rt.id();
    let mut cmd = rt.command(&["run", "--bundle", b.path_str(), &id]);
    let stderr_path = rt.tempdir().join("berth-run.stderr");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    let mut berth = Reap(Some(cmd.spawn().expect("spawn berth run")));
    let berth_pid = berth.0.as_ref().unwrap().id() as i32;
    assert!(
        eventually(15, || rt.status(&id).as_deref() == Some("running")),
        "the container never ran (status {:?}); berth run: {:?}; stderr: {}",
        rt.status(&id),
        berth.0.as_mut().unwrap().try_wait(),
        std::fs::read_to_string(&stderr_path).unwrap_or_default()
    );
    // The init is pid 1 of its namespace: until its handler is in place a
    // forwarded signal would be ignored, so wait for it.
    let pid = rt.pid(&id);
    assert!(
        eventually(10, || catches(pid, sig)),
        "the container never installed its handler for signal {sig}"
    );
    // SAFETY: kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(berth_pid, sig) }, 0);
    let child = berth.0.as_mut().unwrap();
    let mut status = None;
    eventually(10, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let status = status.unwrap_or_else(|| panic!("berth run did not exit after signal {sig}"));
    berth.0 = None;
    assert_eq!(
        status.code(),
        Some(want),
        "berth run got signal {sig}: {status:?} (signal {:?})",
        status.signal()
    );
    assert!(eventually(3, || !pid_alive(pid)), "init {pid} survived");
}

/// 8. A foreground `run` forwards the signals it gets to the container and
///    exits with the container's status.
#[test]
fn foreground_run_forwards_sigusr1() {
    let sleeper = json!(["/bin/berth-probe", "sleep"]);
    foreground_forwards(sleeper, libc::SIGUSR1, 128 + libc::SIGUSR1);
}

#[test]
fn foreground_run_forwards_sighup() {
    let sleeper = json!(["/bin/berth-probe", "sleep"]);
    foreground_forwards(sleeper, libc::SIGHUP, 128 + libc::SIGHUP);
}

/// Every catchable signal is forwarded, not only a fixed list (SIGALRM was
/// not on berth's former one, and would have killed berth itself).
#[test]
fn foreground_run_forwards_sigalrm() {
    let trapper = json!([
        "/bin/sh",
        "-c",
        "trap 'exit 142' ALRM; while :; do sleep 1; done"
    ]);
    foreground_forwards(trapper, libc::SIGALRM, 128 + libc::SIGALRM);
}

/// 9. The state given to createContainer hooks may be far larger than a
///    socket buffer.
#[test]
fn large_state_reaches_create_container_hook() {
    let rt = Runtime::new("rf-bigstate");
    let dir = rt.tempdir();
    let out_json = dir.join("state.json");
    let mut b = rt.bundle();
    b.set("/process/args", json!(["/bin/true"]));
    let mut want = Vec::new();
    for i in 0..40 {
        let key = format!("berth-test.big.{i}");
        let value = char::from(b'a' + (i % 26) as u8)
            .to_string()
            .repeat(10 * 1024);
        b.set(&format!("/annotations/{key}"), json!(value));
        want.push((key, value));
    }
    b.push(
        "/hooks/createContainer",
        json!({ "path": "/bin/sh",
                "args": ["sh", "-c", format!("cat > {}", out_json.display())] }),
    );
    b.write();
    let id = rt.id();
    let o = rt.run_opts(
        &["create", "--bundle", b.path_str(), &id],
        Opts {
            timeout: Duration::from_secs(30),
            ..Default::default()
        },
    );
    o.ok();
    let text = std::fs::read(&out_json).expect("the hook wrote its stdin");
    let st: Value = serde_json::from_slice(&text)
        .unwrap_or_else(|e| panic!("the hook's stdin ({} bytes) is not JSON: {e}", text.len()));
    assert_eq!(st["id"], json!(id));
    for (k, v) in &want {
        assert!(
            st["annotations"][k].as_str() == Some(v.as_str()),
            "annotation {k} missing or cut in the hook's state ({} bytes)",
            text.len()
        );
    }
}

/// 10. `start` fails, naming the hook, when a startContainer hook fails; the
///     container is stopped afterwards. (berth-only: runc 1.1.5's `start`
///     returns before startContainer hooks run.)
#[test]
fn start_reports_failing_start_container_hook() {
    berth_only!();
    let rt = Runtime::new("rf-starthook");
    let mut b = rt.bundle();
    b.set("/process/args", json!(["/bin/berth-probe", "sleep"]));
    b.push("/hooks/startContainer", json!({ "path": "/bin/false" }));
    let id = rt.id();
    rt.create(&b, &id);
    let o = rt.run(&["start", &id]).fails();
    assert_eq!(o.code, Some(1), "{o}");
    assert!(
        o.stderr.contains("/bin/false"),
        "the hook is not named: {o}"
    );
    rt.wait_stopped(&id);
}
