//! `pause`, `resume` and `events --stats` through the CLI, as containerd's
//! shim calls them: a paused container's processes stop (a counter it writes
//! stops moving, its CPU time stops growing, the kernel's freezer says
//! FROZEN), `state` says `paused`, and `resume` lets it run again. A paused
//! container can be deleted with `--force`, leaving nothing behind.
//!
//! Real containers, as root: `cargo test -p berth --test pause_events`.

use berth_integration::serde_json::{json, Value};
use berth_integration::{cgroup_dirs_named, eventually, pid_alive, Bundle, Runtime};
use std::path::PathBuf;
use std::time::Duration;

/// A container whose shell bumps a counter in /tmp/count about every
/// millisecond; returns its id once the counter moves.
fn start_counter(rt: &Runtime, b: &mut Bundle) -> String {
    b.set(
        "/process/args",
        json!([
            "sh",
            "-c",
            "i=0; while :; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; usleep 1000; done"
        ]),
    );
    let id = rt.id();
    rt.create(b, &id);
    rt.run(&["start", &id]).ok();
    let file = b.rootfs().join("tmp/count");
    assert!(
        eventually(10, || count(&file).is_some_and(|n| n > 3)),
        "the counter in {id} never moved"
    );
    id
}

/// The counter's value (the file is replaced by rename, so never half-written).
fn count(file: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// The container's directory in the v1 `controller` hierarchy, from its
/// init's /proc/PID/cgroup.
fn v1_dir(pid: i32, controller: &str) -> Option<PathBuf> {
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    own.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        ctrls.split(',').any(|c| c == controller).then(|| {
            PathBuf::from(format!("/sys/fs/cgroup/{controller}")).join(path.trim_start_matches('/'))
        })
    })
}

fn cpu_total(rt: &Runtime, id: &str) -> u64 {
    let out = rt.run(&["events", "--stats", id]).ok();
    let v: Value = out.json();
    assert_eq!(v["type"], "stats", "{v}");
    assert_eq!(v["id"], id, "{v}");
    v["data"]["cpu"]["usage"]["total"]
        .as_u64()
        .unwrap_or_else(|| panic!("no cpu usage: {v}"))
}

#[test]
fn pause_stops_the_processes_and_resume_restarts_them() {
    let rt = Runtime::new("pause");
    let mut b = rt.bundle();
    let id = start_counter(&rt, &mut b);
    let file = b.rootfs().join("tmp/count");
    let pid = rt.pid(&id);

    rt.run(&["pause", &id]).ok();
    assert_eq!(rt.status(&id).as_deref(), Some("paused"));
    let state = rt.state(&id).unwrap();
    assert_eq!(state["pid"], pid, "{state}");
    if let Some(dir) = v1_dir(pid, "freezer") {
        let s = std::fs::read_to_string(dir.join("freezer.state")).unwrap();
        assert_eq!(s.trim(), "FROZEN", "{}", dir.display());
    }
    let frozen_at = count(&file).unwrap();
    let cpu = cpu_total(&rt, &id);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        count(&file),
        Some(frozen_at),
        "the counter moved while paused"
    );
    assert_eq!(cpu_total(&rt, &id), cpu, "CPU time grew while paused");

    // runc: pausing a paused container is an error and changes nothing.
    let err = rt.run(&["pause", &id]).fails().stderr;
    assert!(err.contains("paused"), "{err}");
    assert_eq!(rt.status(&id).as_deref(), Some("paused"));

    rt.run(&["resume", &id]).ok();
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    assert!(
        eventually(10, || count(&file).is_some_and(|n| n > frozen_at + 3)),
        "the counter did not move after resume"
    );
    assert!(
        eventually(10, || cpu_total(&rt, &id) > cpu),
        "no CPU time after resume"
    );
    // Resuming a running container is an error.
    let err = rt.run(&["resume", &id]).fails().stderr;
    assert!(err.contains("not paused"), "{err}");
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
}

#[test]
fn pause_and_resume_need_a_running_container() {
    let rt = Runtime::new("pausestate");
    let mut b = rt.bundle();
    b.set("/process/args", json!(["/bin/berth-probe", "sleep"]));
    let id = rt.id();
    rt.create(&b, &id);
    // created, not started: runc refuses to pause it.
    rt.run(&["pause", &id]).fails();
    assert_eq!(rt.status(&id).as_deref(), Some("created"));
    rt.run(&["resume", &id]).fails();
    rt.run(&["pause", "berth-test-no-such-container"]).fails();
}

#[test]
fn delete_force_of_a_paused_container_leaves_nothing() {
    let rt = Runtime::new("pausedel");
    let mut b = rt.bundle();
    let id = start_counter(&rt, &mut b);
    let pid = rt.pid(&id);
    let pids = rt.run(&["ps", "--format", "json", &id]).ok().json();
    let pids: Vec<i32> = pids
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap() as i32)
        .collect();
    assert!(pids.contains(&pid), "{pids:?}");
    rt.run(&["pause", &id]).ok();
    assert_eq!(rt.status(&id).as_deref(), Some("paused"));

    rt.run(&["delete", "--force", &id]).ok();
    assert!(rt.state(&id).is_err(), "state still answers after delete");
    assert!(
        eventually(5, || pids.iter().all(|&p| !pid_alive(p))),
        "processes of the paused container survived delete --force: {pids:?}"
    );
    let left = cgroup_dirs_named(&id);
    assert!(left.is_empty(), "cgroup directories left: {left:?}");
}

#[test]
fn events_stats_of_a_running_container() {
    let rt = Runtime::new("evpause");
    let mut b = rt.bundle();
    b.set(
        "/linux/resources",
        json!({"memory": {"limit": 64 << 20}, "pids": {"limit": 40}}),
    );
    let id = start_counter(&rt, &mut b);
    let out = rt.run(&["events", "--stats", &id]).ok().stdout;
    assert_eq!(out.lines().count(), 1, "one line: {out}");
    let v: Value = berth_integration::serde_json::from_str(&out).unwrap();
    assert_eq!(v["type"], "stats", "{v}");
    assert_eq!(v["id"], id.as_str(), "{v}");
    let d = &v["data"];
    assert!(d["pids"]["current"].as_u64().unwrap_or(0) >= 1, "{d}");
    assert_eq!(
        d["pids"]["limit"], 40,
        "the container's own pids cgroup: {d}"
    );
    assert!(
        d["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0,
        "{d}"
    );
    assert_eq!(d["memory"]["usage"]["limit"], 64u64 << 20, "{d}");
    assert!(d["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0, "{d}");
    assert!(d["memory"]["raw"].is_object(), "{d}");
    assert!(d["hugetlb"].is_object(), "{d}");
}
