//! Crash safety and stale state: berth killed in the middle of `create` leaves
//! nothing `delete --force` cannot remove; a recorded pid that now belongs to
//! another process (pid reuse) is not mistaken for the container.
//!
//! Real containers, as root: `cargo test -p berth --test crash`.

use berth_integration::serde_json::{self, json, Value};
use berth_integration::{
    cgroup_dirs_named, eventually, mountinfo_mentioning, pid_alive, processes_related, Runtime,
};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

fn read_json(p: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(p).ok()?).ok()
}

/// Kills the process group on drop, in case the test fails before it does.
struct Group(i32);
impl Drop for Group {
    fn drop(&mut self) {
        if self.0 > 0 {
            // SAFETY: kill(2) of a process group we created (its leader is our child).
            unsafe { libc::kill(-self.0, libc::SIGKILL) };
        }
    }
}

/// Process group id of `pid` (field 5 of /proc/PID/stat).
fn pgid_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// SIGKILL every member of process group `pgid` except `spare`.
fn kill_group_except(pgid: i32, spare: i32) {
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid != spare && pgid_of(pid) == Some(pgid) {
            // SAFETY: kill(2) of a process in the group we created.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// The whole process group berth was started in is SIGKILLed while
/// `create` waits for its createRuntime hook.
#[test]
fn sigkill_group_during_create_then_delete_force_removes_everything() {
    crash_in_create("crash-group", false, "native");
}

/// Only berth (and its hook) are SIGKILLed, not the container init. (The
/// native init notices berth is gone on its sync socket and exits by itself;
/// either way `delete --force` must leave no process, cgroup or directory.)
#[test]
fn sigkill_berth_alone_during_create_then_delete_force_removes_everything() {
    crash_in_create("crash-alone", true, "native");
}

/// The same through the crun backend: crun (berth's child, in the same group)
/// dies in the middle of its own `create`.
///
/// Fails today: berth had not yet written state.json (crun's create had not
/// returned), and `delete --force` then removes `<root>/<id>` (exit 0) but
/// leaves crun's cgroup `/sys/fs/cgroup/*/<id>` in every hierarchy.
#[test]
fn sigkill_group_during_crun_create_then_delete_force_removes_everything() {
    let crun_missing = !std::process::Command::new("crun")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    berth_integration::skip_if!(crun_missing, "crun is not installed");
    crash_in_create("crash-crun", false, "crun");
}

/// Removes (deepest first) any cgroup dir still named after the id when the
/// test ends, so a failing test does not leak cgroups onto the host. Runs
/// after the Runtime's own cleanup (declared before it).
struct CgroupSweep(String);
impl Drop for CgroupSweep {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let mut dirs = cgroup_dirs_named(&self.0);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            let _ = std::fs::remove_dir(&d);
        }
    }
}

fn crash_in_create(name: &str, spare_init: bool, backend: &str) {
    let mut sweep = CgroupSweep(String::new());
    let rt = Runtime::new(name);
    let mut b = rt.bundle();
    b.set("/annotations/run.berth.backend", json!(backend));
    b.set("/process/args", json!(["/bin/sleep", "300"]));
    let marks: PathBuf = rt.tempdir();
    let hook_state = marks.join("hook-state.json");
    let hook_started = marks.join("hook-started");
    // The createRuntime hook runs on the host while the container init and
    // its cgroup exist: it saves the state it is given, says so, and sleeps.
    let script = format!(
        "cat > {st}.tmp && mv {st}.tmp {st} && touch {go} && sleep 30; true",
        st = hook_state.display(),
        go = hook_started.display()
    );
    b.push(
        "/hooks/createRuntime",
        json!({ "path": "/bin/sh", "args": ["sh", "-c", script] }),
    );
    b.write();
    let id = rt.id();
    sweep.0 = id.clone();

    let mut cmd = rt.command(&["create", "--bundle", b.path_str(), &id]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = cmd.spawn().expect("spawn berth create");
    let mut group = Group(child.id() as i32);

    let reached = eventually(20, || {
        hook_started.exists() || child.try_wait().ok().flatten().is_some()
    });
    assert!(reached, "the createRuntime hook never ran");
    assert!(
        child.try_wait().unwrap().is_none(),
        "berth create exited before the hook finished; it should be blocked in the hook"
    );

    // What berth had made by now.
    let dir = rt.root().join(&id);
    let hs = read_json(&hook_state).expect("hook got the state on stdin");
    let init = hs["pid"].as_i64().expect("hook state has the init pid") as i32;
    assert!(
        init > 0 && pid_alive(init),
        "init {init} should be alive: {hs}"
    );
    // berth's record as it stood (the native backend saves it before the
    // hooks run; crun's pid is only known once crun's create returns).
    let recorded = read_json(&dir.join("state.json"));
    if backend == "native" {
        assert!(
            recorded.is_some(),
            "berth had not written {}/state.json before running createRuntime hooks",
            dir.display()
        );
    }
    let cgroups = cgroup_dirs_named(&id);
    assert!(
        !cgroups.is_empty(),
        "no cgroup named {id} during createRuntime"
    );

    if spare_init {
        // SIGKILL berth, the hook and its sleep, but not the container init.
        kill_group_except(group.0, init);
    } else {
        // SIGKILL berth and everything in its process group.
        // SAFETY: kill(2) of the process group we created.
        unsafe { libc::kill(-group.0, libc::SIGKILL) };
    }
    let st = child.wait().unwrap();
    assert!(
        st.code().is_none(),
        "berth should have died of SIGKILL: {st}"
    );
    group.0 = 0; // done: a spared init is left for delete --force to find
    assert!(dir.exists());

    let o = rt.run(&["delete", "--force", &id]);
    assert!(o.success(), "delete --force after a crash: {o}");

    assert!(
        !dir.exists(),
        "delete --force left the state dir {}",
        dir.display()
    );
    assert!(
        eventually(3, || !pid_alive(init)),
        "delete --force left the init {init} alive"
    );
    if let Some(pid) = recorded.as_ref().and_then(|r| r["pid"].as_i64()) {
        if pid > 0 {
            assert!(!pid_alive(pid as i32), "recorded pid {pid} still alive");
        }
    }
    let left = cgroup_dirs_named(&id);
    assert!(left.is_empty(), "delete --force left cgroups {left:?}");
    let procs = processes_related(&[&id], &[b.path()]);
    assert!(
        procs.is_empty(),
        "processes related to the container remain: {procs:?}"
    );
    let mounts = mountinfo_mentioning(b.path_str());
    assert!(mounts.is_empty(), "mounts of the bundle remain: {mounts:?}");
}

#[test]
fn delete_of_missing_id() {
    let rt = Runtime::new("crash-missing");
    let id = rt.id();
    let o = rt.run(&["delete", "--force", &id]);
    assert!(
        o.success(),
        "delete --force of a missing id exits 0 (runc): {o}"
    );
    let o = rt.run(&["delete", &id]).fails();
    assert_eq!(o.code, Some(1), "{o}");
    assert!(o.stderr.contains("container does not exist"), "{o}");
    assert!(!rt.root().join(&id).exists());
}

#[test]
fn wrong_pid_start_means_stopped() {
    let rt = Runtime::new("stale-pid");
    let mut b = rt.bundle();
    b.set("/process/args", json!(["/bin/sleep", "300"]));
    let id = rt.id();
    rt.create(&b, &id);
    let pid = rt.pid(&id);
    assert!(pid_alive(pid));

    let path = rt.root().join(&id).join("state.json");
    let original = std::fs::read(&path).unwrap();
    let mut v: Value = serde_json::from_slice(&original).unwrap();
    assert_eq!(v["pid"].as_i64(), Some(pid as i64), "state.json pid: {v}");
    let start = v["pidStart"]
        .as_u64()
        .unwrap_or_else(|| panic!("state.json has no numeric pidStart: {v}"));
    assert!(start > 0, "{v}");
    // The same pid, started at another time: a different process.
    v["pidStart"] = json!(start + 987_654);
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();

    let st = rt.state(&id).unwrap_or_else(|o| panic!("{o}"));
    assert_eq!(st["status"], "stopped", "pid reuse not detected: {st}");
    assert_eq!(st["pid"], 0, "a stopped container reports pid 0: {st}");
    assert!(
        pid_alive(pid),
        "state must not touch the process behind a reused pid"
    );

    // Back to the truth: the container is there again.
    std::fs::write(&path, &original).unwrap();
    assert_eq!(rt.status(&id).as_deref(), Some("created"));
    rt.run(&["delete", "--force", &id]).ok();
    assert!(
        eventually(3, || !pid_alive(pid)),
        "init {pid} survived delete"
    );
    assert!(!rt.root().join(&id).exists());
}
