//! Container lifecycle: create/start/kill/delete/state/list/run/spec/features,
//! and the errors runc gives for operations in the wrong state.

use berth_integration::serde_json::{json, Value};
use berth_integration::*;
use std::time::Duration;

#[test]
fn create_start_kill_delete() {
    let rt = Runtime::new("life");
    let mut b = rt.bundle();
    b.set("/process/args", json!(["/bin/berth-probe", "sleep"]));
    b.write();
    let id = rt.id();
    let pidfile = rt.tempdir().join("pid");
    rt.run(&[
        "create",
        "--bundle",
        b.path_str(),
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
    ])
    .ok();

    let st = rt.state(&id).unwrap();
    assert_eq!(st["status"], "created", "{st}");
    assert_eq!(st["id"], id.as_str());
    assert!(st["ociVersion"].is_string(), "{st}");
    assert_eq!(st["bundle"], b.path_str(), "{st}");
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 0, "{st}");
    assert!(
        pid_alive(pid as i32),
        "created container's init {pid} is not alive"
    );
    let written: i64 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(written, pid, "pid file disagrees with state");

    rt.run(&["start", &id]).ok();
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    assert_eq!(rt.pid(&id) as i64, pid, "pid changed across start");

    rt.run(&["kill", &id, "KILL"]).ok();
    rt.wait_stopped(&id);
    assert!(
        !pid_alive(pid as i32),
        "process {pid} still alive after stop"
    );

    rt.run(&["delete", &id]).ok();
    let o = rt
        .state(&id)
        .expect_err("state of a deleted container must fail");
    assert_eq!(o.code, Some(1), "{o}");
    assert!(!rt.root().join(&id).exists(), "state dir left after delete");
}

#[test]
fn start_running_and_stopped_fail() {
    let rt = Runtime::new("startfail");
    let mut b = rt.bundle();
    let id = rt.start_sleeper(&mut b);
    let o = rt.run(&["start", &id]).fails();
    assert_eq!(o.code, Some(1), "{o}");
    assert!(!o.stderr.trim().is_empty(), "no error message: {o}");
    assert_eq!(rt.status(&id).as_deref(), Some("running"));

    rt.run(&["kill", &id, "KILL"]).ok();
    rt.wait_stopped(&id);
    let o = rt.run(&["start", &id]).fails();
    assert_eq!(o.code, Some(1), "{o}");
    assert_eq!(rt.status(&id).as_deref(), Some("stopped"));
}

#[test]
fn delete_running_needs_force() {
    let rt = Runtime::new("delrun");
    let mut b = rt.bundle();
    let id = rt.start_sleeper(&mut b);
    let pid = rt.pid(&id);
    let o = rt.run(&["delete", &id]).fails();
    assert_eq!(o.code, Some(1), "{o}");
    assert_eq!(
        rt.status(&id).as_deref(),
        Some("running"),
        "delete without --force changed the container"
    );
    assert!(pid_alive(pid));

    rt.run(&["delete", "--force", &id]).ok();
    assert!(
        rt.state(&id).is_err(),
        "container still there after delete --force"
    );
    // delete --force waits for the process to be gone.
    std::thread::sleep(Duration::from_millis(100));
    assert!(!pid_alive(pid), "process {pid} alive after delete --force");
}

#[test]
fn delete_force_created_container() {
    let rt = Runtime::new("delcreated");
    let mut b = rt.bundle();
    b.set("/process/args", json!(["/bin/berth-probe", "sleep"]));
    let id = rt.id();
    rt.create(&b, &id);
    let pid = rt.pid(&id);
    rt.run(&["delete", "--force", &id]).ok();
    assert!(rt.state(&id).is_err());
    std::thread::sleep(Duration::from_millis(100));
    assert!(!pid_alive(pid));
}

#[test]
fn kill_stopped_container_fails() {
    let rt = Runtime::new("killstopped");
    let mut b = rt.bundle();
    let id = rt.start_sleeper(&mut b);
    rt.run(&["kill", &id, "KILL"]).ok();
    rt.wait_stopped(&id);
    // runc: `container not running`, exit 1.
    let o = rt.run(&["kill", &id, "KILL"]).fails();
    assert_eq!(o.code, Some(1), "{o}");
    assert!(o.stderr.contains("not running"), "{o}");
}

#[test]
fn create_existing_id_fails() {
    let rt = Runtime::new("dupid");
    let mut b = rt.bundle();
    let id = rt.start_sleeper(&mut b);
    let pid = rt.pid(&id);
    let o = rt.run(&["create", "--bundle", b.path_str(), &id]).fails();
    assert_eq!(o.code, Some(1), "{o}");
    assert!(o.stderr.contains("exists"), "{o}");
    // The first container is untouched.
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    assert_eq!(rt.pid(&id), pid);
}

#[test]
fn state_of_unknown_id_fails() {
    let rt = Runtime::new("unknown");
    let o = rt.run(&["state", "berth-test-does-not-exist"]).fails();
    assert_eq!(o.code, Some(1), "{o}");
    assert!(o.stderr.contains("does not exist"), "{o}");
    assert!(o.stdout.trim().is_empty(), "{o}");
}

#[test]
fn run_exit_status() {
    let rt = Runtime::new("runexit");
    let mut b = rt.bundle();
    b.set("/process/args", json!(["/bin/berth-probe", "exit", "3"]));
    b.write();
    let id = rt.id();
    let o = rt.run(&["run", "--bundle", b.path_str(), &id]);
    assert_eq!(o.code, Some(3), "{o}");
    // A foreground run leaves a stopped container behind? runc deletes it.
    assert!(rt.state(&id).is_err(), "run left the container behind");
}

#[test]
fn run_killed_by_signal_exits_128_plus_n() {
    let rt = Runtime::new("runsig");
    let mut b = rt.bundle();
    b.set("/process/args", json!(["/bin/berth-probe", "sleep"]));
    b.write();
    let id = rt.id();
    let bundle = b.path_str().to_string();
    let (id2, bin, root) = (id.clone(), rt.bin.clone(), rt.root().to_path_buf());
    let h = std::thread::spawn(move || {
        let mut c = std::process::Command::new(bin);
        c.arg("--root")
            .arg(root)
            .args(["run", "--bundle", &bundle, &id2]);
        exec(c, Opts::default())
    });
    rt.wait_status(&id, "running");
    rt.run(&["kill", &id, "KILL"]).ok();
    let o = h.join().unwrap();
    assert_eq!(o.code, Some(128 + 9), "{o}");
}

#[test]
fn run_detach() {
    let rt = Runtime::new("detach");
    let mut b = rt.bundle();
    b.set("/process/args", json!(["/bin/berth-probe", "sleep"]));
    b.write();
    let id = rt.id();
    let o = rt
        .run(&["run", "--detach", "--bundle", b.path_str(), &id])
        .ok();
    assert!(!o.timed_out);
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    assert!(pid_alive(rt.pid(&id)));
}

fn kill_with(sig: &str) {
    let rt = Runtime::new("killsig");
    let mut b = rt.bundle();
    let id = rt.start_sleeper(&mut b);
    let pid = rt.pid(&id);
    rt.run(&["kill", &id, sig]).ok();
    rt.wait_stopped(&id);
    assert!(!pid_alive(pid));
}

#[test]
fn kill_term_name() {
    kill_with("TERM");
}
#[test]
fn kill_sigterm_name() {
    kill_with("SIGTERM");
}
#[test]
fn kill_number() {
    kill_with("15");
}
#[test]
fn kill_kill() {
    kill_with("KILL");
}
#[test]
fn kill_default_signal_is_term() {
    let rt = Runtime::new("killdef");
    let mut b = rt.bundle();
    let id = rt.start_sleeper(&mut b);
    rt.run(&["kill", &id]).ok();
    rt.wait_stopped(&id);
}

#[test]
fn kill_unknown_signal_fails() {
    let rt = Runtime::new("killbad");
    let mut b = rt.bundle();
    let id = rt.start_sleeper(&mut b);
    rt.run(&["kill", &id, "NOTASIGNAL"]).fails();
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
}

#[test]
fn kill_all() {
    let rt = Runtime::new("killall");
    let mut b = rt.bundle();
    // A shell with a background child: both are in the container.
    b.set(
        "/process/args",
        json!([
            "/bin/sh",
            "-c",
            "/bin/berth-probe sleep & /bin/berth-probe sleep"
        ]),
    );
    let id = rt.id();
    rt.create(&b, &id);
    rt.run(&["start", &id]).ok();
    let init = rt.pid(&id);
    // Wait for both sleepers to appear as children of the init.
    let mut kids = Vec::new();
    for _ in 0..200 {
        kids = children_of(init);
        if !kids.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    rt.run(&["kill", "--all", &id, "KILL"]).ok();
    rt.wait_stopped(&id);
    std::thread::sleep(Duration::from_millis(100));
    for k in kids {
        assert!(!pid_alive(k), "child {k} survived kill --all");
    }
}

fn children_of(pid: i32) -> Vec<i32> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
                let after = s.rsplit(')').next().unwrap_or("");
                let ppid: i32 = after
                    .split_whitespace()
                    .nth(1)
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(0);
                if ppid == pid {
                    v.push(p);
                }
            }
        }
    }
    v
}

#[test]
fn list_formats() {
    let rt = Runtime::new("list");
    // Empty root: the table header only.
    let o = rt.run(&["list"]).ok();
    let first = o.stdout.lines().next().unwrap_or("");
    for col in ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"] {
        assert!(first.contains(col), "header lacks {col}: {o}");
    }
    let mut b = rt.bundle();
    let id = rt.start_sleeper(&mut b);
    let o = rt.run(&["list"]).ok();
    let row = o
        .stdout
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("no row for {id}: {o}"));
    assert!(row.contains("running"), "{row}");
    assert!(row.contains(b.path_str()), "{row}");

    let o = rt.run(&["list", "--format", "json"]).ok();
    let v = o.json();
    let arr = v.as_array().unwrap_or_else(|| panic!("not an array: {o}"));
    assert_eq!(arr.len(), 1, "{o}");
    assert_eq!(arr[0]["id"], id.as_str());
    assert_eq!(arr[0]["status"], "running");
    assert_eq!(arr[0]["pid"].as_i64().unwrap() as i32, rt.pid(&id));
    assert_eq!(arr[0]["bundle"], b.path_str());

    let o = rt.run(&["list", "-q"]).ok();
    assert_eq!(o.stdout.trim(), id, "{o}");
}

#[test]
fn options_after_id() {
    let rt = Runtime::new("optsafter");
    let mut b = rt.bundle();
    b.set("/process/args", json!(["/bin/berth-probe", "sleep"]));
    b.write();
    let id = rt.id();
    let pidfile = rt.tempdir().join("p");
    rt.run(&[
        "create",
        &id,
        "--bundle",
        b.path_str(),
        "--pid-file",
        pidfile.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(rt.status(&id).as_deref(), Some("created"));
    assert!(pidfile.exists());
    rt.run(&["delete", &id, "--force"]).ok();
    assert!(rt.state(&id).is_err());
}

#[test]
fn run_pid_file() {
    let rt = Runtime::new("runpid");
    let mut b = rt.bundle();
    b.set("/process/args", json!(["/bin/berth-probe", "sleep"]));
    b.write();
    let id = rt.id();
    let pidfile = rt.tempdir().join("pid");
    rt.run(&[
        "run",
        "-d",
        "--pid-file",
        pidfile.to_str().unwrap(),
        "--bundle",
        b.path_str(),
        &id,
    ])
    .ok();
    let written: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(written, rt.pid(&id));
}

#[test]
fn bundle_defaults_to_cwd() {
    let rt = Runtime::new("cwdbundle");
    let mut b = rt.bundle();
    b.set("/process/args", json!(["/bin/berth-probe", "exit", "4"]));
    b.write();
    let id = rt.id();
    let o = rt.run_opts(
        &["run", &id],
        Opts {
            cwd: Some(b.path().to_path_buf()),
            ..Default::default()
        },
    );
    assert_eq!(o.code, Some(4), "{o}");
}

#[test]
fn spec_output_is_accepted_by_create() {
    let rt = Runtime::new("spec");
    let b = rt.bundle();
    std::fs::remove_file(b.path().join("config.json")).ok();
    rt.run(&["spec", "--bundle", b.path_str()]).ok();
    let text =
        std::fs::read_to_string(b.path().join("config.json")).expect("spec wrote no config.json");
    let mut cfg: Value = serde_json::from_str(&text).expect("spec wrote invalid JSON");
    assert!(cfg["ociVersion"].is_string());
    assert_eq!(cfg["root"]["path"], "rootfs");
    assert!(cfg["linux"]["namespaces"]
        .as_array()
        .map(|a| !a.is_empty())
        .unwrap_or(false));
    // Only what a test without a terminal needs.
    cfg["process"]["terminal"] = json!(false);
    cfg["process"]["args"] = json!(["/bin/berth-probe", "exit", "0"]);
    std::fs::write(
        b.path().join("config.json"),
        serde_json::to_vec(&cfg).unwrap(),
    )
    .unwrap();
    let id = rt.id();
    rt.run(&["run", "--bundle", b.path_str(), &id]).ok();

    // `spec` refuses to overwrite an existing config.json.
    rt.run(&["spec", "--bundle", b.path_str()]).fails();
}

#[test]
fn features_json() {
    let rt = Runtime::new("features");
    let o = rt.run(&["features"]).ok();
    let v = o.json();
    let min = v["ociVersionMin"]
        .as_str()
        .unwrap_or_else(|| panic!("no ociVersionMin: {o}"));
    let max = v["ociVersionMax"]
        .as_str()
        .unwrap_or_else(|| panic!("no ociVersionMax: {o}"));
    assert!(min.starts_with("1."), "{min}");
    assert!(max.starts_with("1."), "{max}");
    let hooks: Vec<&str> = v["hooks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h.as_str())
        .collect();
    for h in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        assert!(hooks.contains(&h), "features.hooks lacks {h}: {hooks:?}");
    }
    let ns: Vec<&str> = v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h.as_str())
        .collect();
    for n in ["pid", "network", "ipc", "uts", "mount", "user", "cgroup"] {
        assert!(
            ns.contains(&n),
            "features.linux.namespaces lacks {n}: {ns:?}"
        );
    }
    assert!(v["mountOptions"]
        .as_array()
        .map(|a| a.iter().any(|o| o == "ro"))
        .unwrap_or(false));
}
