//! podman 4.3 (with conmon) using berth as its OCI runtime: each test
//! starts its own podman with private storage, state and configuration
//! (berth_integration::podman), loads a locally built busybox image and
//! runs real containers through it. Every scenario runs twice: on berth's
//! native backend and handed to crun (the annotation run.berth.backend=crun,
//! which podman copies into config.json), where the test also proves crun
//! really ran the container.

use berth_integration::podman::{available, Backend, Podman, RUNTIME_NAME};
use berth_integration::{eventually, pid_alive};
use std::path::Path;
use std::time::Duration;

const IMAGE: &str = "localhost/busybox:test";
const USER_IMAGE: &str = "localhost/busybox:user";

fn setup() -> Option<Podman> {
    if !available() {
        if std::env::var_os("CI").is_some() {
            panic!("cannot run in CI: podman or conmon is not installed");
        }
        eprintln!("skipped: podman or conmon is not installed");
        return None;
    }
    let p = Podman::new();
    p.load_busybox();
    Some(p)
}

/// `podman run --rm IMAGE ARGS` on the backend; stdout, asserting exit 0.
#[track_caller]
fn run_ok(p: &Podman, b: Backend, args: &[&str]) -> String {
    p.run_rm(b, args).ok().stdout
}

fn basics(b: Backend) {
    let Some(p) = setup() else { return };

    // Exit code of the container's process.
    let o = p.run_rm(b, &[IMAGE, "sh", "-c", "echo out; exit 7"]);
    assert_eq!(o.code, Some(7), "exit status not passed through: {o}");
    assert_eq!(o.stdout.trim(), "out", "{o}");

    // -e, -w.
    let v = format!("bar-{}", std::process::id());
    let out = run_ok(
        &p,
        b,
        &["-e", &format!("FOO={v}"), IMAGE, "sh", "-c", "echo $FOO"],
    );
    assert_eq!(out.trim(), v);
    assert_eq!(run_ok(&p, b, &["-w", "/etc", IMAGE, "pwd"]).trim(), "/etc");

    // Users: -u, the image's User, and root by default.
    assert_eq!(
        run_ok(&p, b, &["-u", "1000:1000", IMAGE, "id"]).trim(),
        "uid=1000(berth) gid=1000(berth) groups=1000(berth)"
    );
    assert_eq!(run_ok(&p, b, &[USER_IMAGE, "id", "-u"]).trim(), "1000");
    assert_eq!(run_ok(&p, b, &[USER_IMAGE, "id", "-g"]).trim(), "1000");
    assert_eq!(run_ok(&p, b, &[IMAGE, "id", "-u"]).trim(), "0");

    // Bind mounts, read-write and read-only.
    let vol = p.dir().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("in"), "from-host\n").unwrap();
    let spec = format!("{}:/data", vol.display());
    let out = run_ok(
        &p,
        b,
        &[
            "-v",
            &spec,
            IMAGE,
            "sh",
            "-c",
            "cat /data/in; echo from-ctr > /data/out",
        ],
    );
    assert_eq!(out.trim(), "from-host");
    assert_eq!(
        std::fs::read_to_string(vol.join("out")).unwrap(),
        "from-ctr\n"
    );
    let ro = format!("{spec}:ro");
    let o = p.run_rm(
        b,
        &[
            "-v",
            &ro,
            IMAGE,
            "sh",
            "-c",
            "cat /data/in && echo x > /data/ro",
        ],
    );
    assert_eq!(o.code, Some(1), "write to a :ro bind mount must fail: {o}");
    assert_eq!(o.stdout.trim(), "from-host", "{o}");
    assert!(o.stderr.contains("Read-only file system"), "{o}");
    assert!(!vol.join("ro").exists(), "the write reached the host");

    // --read-only: / is read-only, podman's tmpfs on /tmp is writable.
    let o = p.run_rm(b, &["--read-only", IMAGE, "sh", "-c", "touch /x"]);
    assert_eq!(o.code, Some(1), "{o}");
    assert!(o.stderr.contains("Read-only file system"), "{o}");
    run_ok(
        &p,
        b,
        &[
            "--read-only",
            IMAGE,
            "sh",
            "-c",
            "touch /tmp/y && test -f /tmp/y",
        ],
    );
    run_ok(&p, b, &[IMAGE, "touch", "/x"]);

    // --cap-drop ALL: chown needs CAP_CHOWN (it works without the drop).
    run_ok(&p, b, &[IMAGE, "chown", "1000", "/tmp"]);
    let o = p.run_rm(b, &["--cap-drop", "ALL", IMAGE, "chown", "1000", "/tmp"]);
    assert_eq!(o.code, Some(1), "{o}");
    assert!(o.stderr.contains("Operation not permitted"), "{o}");

    // --memory and --pids-limit, as the container sees its cgroups (v1
    // controllers on this hybrid host, the unified files on a v2 host).
    let out = run_ok(
        &p,
        b,
        &[
            "--memory",
            "64m",
            "--pids-limit",
            "50",
            IMAGE,
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
             cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max",
        ],
    );
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines, ["67108864", "50"], "limits seen inside: {out:?}");

    let left = p.leftovers(&p.ids());
    assert!(left.is_empty(), "after --rm runs: {left:#?}");
}

/// The counter file a detached container keeps incrementing, read from the
/// host through the container's overlay mount.
fn counter(merged: &Path) -> Option<u64> {
    std::fs::read_to_string(merged.join("tmp/c"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// berth keeps state for `id`; on the crun backend, crun's own state sits
/// under it and names the init process podman reports (proof crun ran it).
fn berth_state(b: Backend, id: &str, pid: i32) {
    let state_dir = Podman::berth_state_dir(id);
    assert!(
        state_dir.join("state.json").is_file(),
        "berth has no state for {id}"
    );
    let crun_root = state_dir.join("crun");
    match b {
        Backend::Native => assert!(!crun_root.exists(), "native container has crun state"),
        Backend::Crun => {
            // crun's own state for this container, under berth's, naming
            // the same init process podman reports.
            let o = berth_integration::exec(
                {
                    let mut c = std::process::Command::new("crun");
                    c.arg("--root").arg(&crun_root).args(["state", id]);
                    c
                },
                Default::default(),
            )
            .ok();
            let s = o.json();
            assert_eq!(s["status"], "running", "{o}");
            assert_eq!(s["pid"], pid, "{o}");
        }
    }
}

fn detached(b: Backend) {
    let Some(p) = setup() else { return };
    let id = p.run_detached(
        b,
        &[
            "--memory",
            "64m",
            IMAGE,
            "sh",
            "-c",
            "trap 'exit 42' TERM; i=0; while true; do i=$((i+1)); echo $i > /tmp/c; sleep 0.05; done",
        ],
    );

    // podman ran it with berth, and berth (or crun under berth) keeps it.
    assert_eq!(p.inspect(&id, "{{.OCIRuntime}}"), RUNTIME_NAME);
    let info = p.ok(&["info", "--format", "{{.Host.OCIRuntime.Path}}"]);
    assert_eq!(Path::new(info.trim()), berth_integration::berth_bin());
    assert_eq!(p.inspect(&id, "{{.State.Status}}"), "running");
    let pid: i32 = p.inspect(&id, "{{.State.Pid}}").parse().unwrap();
    assert!(pid > 0 && pid_alive(pid), "State.Pid {pid} is not alive");
    // berth's own state (runc, when the suite is checked against it,
    // keeps its state elsewhere).
    if !berth_integration::is_runc() {
        berth_state(b, &id, pid);
    }

    // exec: output, exit status, user.
    let merged = std::path::PathBuf::from(p.inspect(&id, "{{.GraphDriver.Data.MergedDir}}"));
    assert!(
        eventually(10, || counter(&merged).is_some()),
        "counter never written"
    );
    let n: u64 = p
        .ok(&["exec", &id, "cat", "/tmp/c"])
        .trim()
        .parse()
        .unwrap();
    assert!(n >= 1);
    let o = p.run(&["exec", &id, "sh", "-c", "exit 3"]);
    assert_eq!(o.code, Some(3), "{o}");
    assert_eq!(
        p.ok(&["exec", "-u", "1000", &id, "id", "-u"]).trim(),
        "1000"
    );

    // top lists the container's processes.
    let top = p.ok(&["top", &id]);
    assert!(
        top.contains("while true"),
        "top shows no container init: {top}"
    );

    // stats: the memory limit and a process count.
    let st = p.ok(&["stats", "--no-stream", "--format", "json", &id]);
    let st: serde_json::Value = serde_json::from_str(&st).expect("stats json");
    let mem = st[0]["mem_usage"].as_str().unwrap_or_default();
    assert!(mem.ends_with("/ 67.11MB"), "stats mem_usage {mem:?}");
    assert!(
        mem.chars().next().is_some_and(|c| c.is_ascii_digit()),
        "{mem:?}"
    );
    let pids: u64 = st[0]["pids"]
        .as_str()
        .unwrap_or("")
        .parse()
        .expect("stats pids");
    assert!(pids >= 1, "{st}");

    // pause: the counter stops; unpause: it moves again.
    p.ok(&["pause", &id]);
    assert_eq!(p.inspect(&id, "{{.State.Status}}"), "paused");
    let a = counter(&merged);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(counter(&merged), a, "counter moved while paused");
    p.ok(&["unpause", &id]);
    assert_eq!(p.inspect(&id, "{{.State.Status}}"), "running");
    assert!(
        eventually(10, || counter(&merged) != a),
        "counter did not move after unpause"
    );

    // stop delivers SIGTERM (the trap exits 42) well within the timeout.
    p.ok(&["stop", "--time", "20", &id]);
    assert_eq!(p.inspect(&id, "{{.State.Status}}"), "exited");
    assert_eq!(p.inspect(&id, "{{.State.ExitCode}}"), "42");
    p.ok(&["rm", &id]);
    let left = p.leftovers(std::slice::from_ref(&id));
    assert!(left.is_empty(), "after stop and rm: {left:#?}");
}

fn ten_containers(b: Backend) {
    let Some(p) = setup() else { return };
    for i in 0..10 {
        if i % 2 == 0 {
            let id = p.run_detached(b, &[IMAGE, "sleep", "100"]);
            p.ok(&["rm", "--force", "--time", "0", &id]);
        } else {
            let name = format!("loop-{}-{i}", std::process::id());
            let o = p.run_rm(b, &["--name", &name, IMAGE, "true"]);
            assert!(o.success(), "{o}");
        }
    }
    let ids = p.ids();
    assert_eq!(ids.len(), 10, "{ids:?}");
    // Exit commands (podman container cleanup) may still be finishing.
    let mut left = Vec::new();
    let clean = eventually(20, || {
        left = p.leftovers(&ids);
        left.is_empty()
    });
    assert!(clean, "left behind by 10 containers: {left:#?}");
}

macro_rules! both_backends {
    ($($name:ident),*) => {
        mod native {
            $(#[test] fn $name() { super::$name(super::Backend::Native) })*
        }
        mod crun {
            $(#[test] fn $name() {
                berth_integration::berth_only!();
                super::$name(super::Backend::Crun)
            })*
        }
    };
}

both_backends!(basics, detached, ten_containers);
