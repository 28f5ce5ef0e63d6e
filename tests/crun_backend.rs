//! The crun backend: a bundle annotated `run.berth.backend: "crun"` (or a host
//! default of `backend = "crun"` in the config file) is run by crun, with
//! crun's state kept under `<berth root>/<id>/crun`.
//!
//! Real containers, as root: run with `cargo test -p berth --test crun_backend`.

use berth_integration::serde_json::{json, Value};
use berth_integration::{cgroup_dirs_named, pid_alive, skip_if, Bundle, Opts, Runtime};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const ANNOTATION: &str = "/annotations/run.berth.backend";

fn crun_missing() -> bool {
    Command::new("crun")
        .arg("--version")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
}

fn sleeper(rt: &Runtime) -> Bundle {
    let mut b = rt.bundle();
    b.set("/process/args", json!(["/bin/sleep", "300"]));
    b
}

/// `crun --root <root>/<id>/crun state <id>`, parsed.
fn crun_state(rt: &Runtime, id: &str) -> Value {
    let out = Command::new("crun")
        .arg("--root")
        .arg(rt.root().join(id).join("crun"))
        .args(["state", id])
        .output()
        .expect("run crun state");
    assert!(
        out.status.success(),
        "crun state {id} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    berth_integration::serde_json::from_slice(&out.stdout).expect("crun state is JSON")
}

fn wait_gone(p: &Path) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while p.exists() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn run_exit_status_passes_through_crun() {
    skip_if!(crun_missing(), "crun is not installed");
    let rt = Runtime::new("crun-run");
    let mut b = rt.bundle();
    b.set(ANNOTATION, json!("crun"));
    b.set("/process/args", json!(["/bin/sh", "-c", "exit 7"]));
    b.write();
    let id = rt.id();
    let o = rt.run(&["run", "--bundle", b.path_str(), &id]);
    assert_eq!(o.code, Some(7), "exit status 7 should pass through: {o}");
    // Once run returns, nothing of the container is left.
    assert!(!rt.root().join(&id).exists(), "run left {id}'s state dir");
}

#[test]
fn create_start_kill_delete_through_crun() {
    skip_if!(crun_missing(), "crun is not installed");
    let rt = Runtime::new("crun-life");
    let mut b = sleeper(&rt);
    b.set(ANNOTATION, json!("crun"));
    let id = rt.id();
    rt.create(&b, &id);

    let crun_dir = rt.root().join(&id).join("crun");
    assert!(
        crun_dir.is_dir(),
        "crun's state dir {} missing",
        crun_dir.display()
    );
    let st = rt.state(&id).unwrap_or_else(|o| panic!("{o}"));
    assert_eq!(st["status"], "created", "{st}");
    let cs = crun_state(&rt, &id);
    assert_eq!(cs["status"], "created", "crun's own view: {cs}");
    let pid = st["pid"].as_i64().expect("pid") as i32;
    assert!(pid > 0, "{st}");
    assert_eq!(
        cs["pid"].as_i64(),
        Some(pid as i64),
        "berth's pid differs from crun's: berth {st}, crun {cs}"
    );
    assert!(pid_alive(pid));
    // crun made a cgroup for it (named after the id somewhere), which delete must remove.
    let cgroups = cgroup_dirs_named(&id);
    assert!(
        !cgroups.is_empty(),
        "no cgroup dir named {id} while created by crun"
    );

    rt.run(&["start", &id]).ok();
    rt.wait_status(&id, "running");
    assert_eq!(crun_state(&rt, &id)["status"], "running");

    rt.run(&["kill", &id, "KILL"]).ok();
    rt.wait_stopped(&id);
    let st = rt.state(&id).unwrap_or_else(|o| panic!("{o}"));
    assert_eq!(st["pid"], 0, "a stopped container reports pid 0: {st}");

    rt.run(&["delete", &id]).ok();
    assert!(
        !rt.root().join(&id).exists(),
        "delete left {}",
        rt.root().join(&id).display()
    );
    let left: Vec<PathBuf> = cgroups.into_iter().filter(|p| !wait_gone(p)).collect();
    assert!(left.is_empty(), "delete left crun's cgroups: {left:?}");
    assert!(
        cgroup_dirs_named(&id).is_empty(),
        "cgroup named {id} remains"
    );
    assert!(!pid_alive(pid));
    let o = rt.run(&["state", &id]).fails();
    assert!(o.stderr.contains("does not exist"), "{o}");
}

fn config_env(rt: &Runtime, text: &str) -> (PathBuf, Opts) {
    let dir = rt.tempdir();
    let cfg = dir.join("config.toml");
    std::fs::write(&cfg, text).unwrap();
    let opts = Opts {
        env: vec![("BERTH_CONFIG".into(), cfg.to_str().unwrap().into())],
        ..Default::default()
    };
    (cfg, opts)
}

#[test]
fn host_config_selects_crun_without_annotation() {
    skip_if!(crun_missing(), "crun is not installed");
    let rt = Runtime::new("crun-cfg");
    let (_cfg, opts) = config_env(&rt, "backend = \"crun\"\n");
    let b = sleeper(&rt);
    b.write();
    let id = rt.id();
    rt.run_opts(&["create", "--bundle", b.path_str(), &id], opts)
        .ok();
    assert!(
        rt.root().join(&id).join("crun").is_dir(),
        "backend = \"crun\" in BERTH_CONFIG, but no crun state under {}",
        rt.root().join(&id).display()
    );
    assert_eq!(crun_state(&rt, &id)["status"], "created");
    // The choice is remembered: later commands need no config file.
    assert_eq!(rt.status(&id).as_deref(), Some("created"));
    rt.run(&["delete", "--force", &id]).ok();
    assert!(!rt.root().join(&id).exists());
}

#[test]
fn host_config_without_backend_is_native() {
    let rt = Runtime::new("crun-cfg-native");
    let (_cfg, opts) = config_env(&rt, "# nothing here\n");
    let b = sleeper(&rt);
    b.write();
    let id = rt.id();
    rt.run_opts(&["create", "--bundle", b.path_str(), &id], opts)
        .ok();
    assert!(rt.root().join(&id).is_dir());
    assert!(
        !rt.root().join(&id).join("crun").exists(),
        "no backend configured, yet crun ran it"
    );
}

#[test]
fn bogus_backend_in_host_config_is_rejected() {
    let rt = Runtime::new("crun-bogus");
    let (cfg, opts) = config_env(&rt, "backend = \"bogus\"\n");
    let b = sleeper(&rt);
    b.write();
    let id = rt.id();
    let o = rt
        .run_opts(&["create", "--bundle", b.path_str(), &id], opts)
        .fails();
    assert_eq!(o.code, Some(1), "{o}");
    assert!(
        o.stderr.contains(cfg.to_str().unwrap()),
        "message should name the config file {}: {o}",
        cfg.display()
    );
    assert!(o.stderr.contains("bogus"), "{o}");
    for allowed in ["native", "crun"] {
        assert!(
            o.stderr.contains(&format!("\"{allowed}\"")),
            "message should list {allowed:?} as allowed: {o}"
        );
    }
    assert!(
        !rt.root().join(&id).exists(),
        "a rejected create left a state dir"
    );
}

#[test]
fn unknown_backend_annotation_is_a_validation_error() {
    let rt = Runtime::new("crun-lxd");
    let mut b = sleeper(&rt);
    b.set(ANNOTATION, json!("lxd"));
    b.write();
    let id = rt.id();
    let o = rt.run(&["create", "--bundle", b.path_str(), &id]).fails();
    assert_eq!(o.code, Some(1), "{o}");
    assert!(
        o.stderr.contains("annotations[\"run.berth.backend\"]"),
        "message should name the annotation's JSON path: {o}"
    );
    assert!(o.stderr.contains("lxd"), "{o}");
    assert!(!rt.root().join(&id).exists(), "left a state dir");
}
