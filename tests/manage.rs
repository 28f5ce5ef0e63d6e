//! `ps`, `update` and `events` through the CLI, the way containerd's shim
//! and podman call them, checked in the cgroup files and from inside.
//!
//! Real containers, as root: `cargo test -p berth --test manage`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use berth_integration::serde_json::{json, Value};
use berth_integration::{Opts, Runtime};

/// The directory of `pid`'s cgroup in the v1 hierarchy holding `controller`
/// (or in cgroup2 when the controller is "unified").
fn cgroup_dir(pid: i32, controller: &str) -> PathBuf {
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in own.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        let hit = if controller == "unified" {
            ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == controller)
        };
        if !hit {
            continue;
        }
        for m in mounts.lines() {
            let (pre, post) = m.split_once(" - ").unwrap();
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            let ok = if controller == "unified" {
                post[0] == "cgroup2"
            } else {
                post[0] == "cgroup" && post[2].split(',').any(|o| o == controller)
            };
            if ok {
                return PathBuf::from(pre[4]).join(path.trim_start_matches('/'));
            }
        }
    }
    panic!("pid {pid} has no {controller} cgroup:\n{own}");
}

fn read(dir: &std::path::Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

#[test]
fn ps_lists_the_containers_processes() {
    let rt = Runtime::new("ps");
    let mut b = rt.bundle();
    let id = rt.start_sleeper(&mut b);
    let pid = rt.pid(&id);
    let json = rt.run(&["ps", "--format", "json", &id]).ok().json();
    assert_eq!(json, json!([pid]), "ps --format json");
    let table = rt.run(&["ps", &id]).ok().stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].contains("PID") && lines[0].contains("CMD"),
        "{table}"
    );
    assert_eq!(lines.len(), 2, "header and the init only:\n{table}");
    assert!(lines[1].contains(&pid.to_string()), "{table}");
    // Options for ps(1) after the id, with or without `--`.
    for args in [
        vec!["ps", &id, "-o", "pid,comm"],
        vec!["ps", &id, "--", "-o", "pid,comm"],
    ] {
        let out = rt.run(&args).ok().stdout;
        let rows: Vec<&str> = out.lines().collect();
        assert_eq!(
            rows[0].split_whitespace().collect::<Vec<_>>(),
            ["PID", "COMMAND"]
        );
        assert_eq!(
            rows[1].split_whitespace().collect::<Vec<_>>(),
            [pid.to_string().as_str(), "berth-probe"],
            "{out}"
        );
    }
    let err = rt
        .run(&["ps", &id, "--format", "json", "-o", "pid"])
        .fails()
        .stderr;
    assert!(err.contains("cannot be used with --format json"), "{err}");
    rt.run(&["kill", &id, "KILL"]).ok();
    rt.wait_stopped(&id);
    assert_eq!(
        rt.run(&["ps", "--format", "json", &id]).ok().json(),
        json!([])
    );
    let err = rt.run(&["ps", "nonesuch"]).fails().stderr;
    assert!(
        err.contains("nonesuch") && err.lines().count() == 1,
        "{err}"
    );
}

#[test]
fn update_flags_land_in_the_cgroup_files() {
    let rt = Runtime::new("upd");
    let mut b = rt.bundle();
    let id = rt.start_sleeper(&mut b);
    let pid = rt.pid(&id);
    rt.run(&[
        "update",
        "--memory",
        "64m",
        "--memory-reservation",
        "32M",
        "--memory-swap",
        "128m",
        "--pids-limit",
        "17",
        "--cpu-period",
        "100000",
        "--cpu-quota",
        "50000",
        "--cpu-share",
        "512",
        "--cpuset-cpus",
        "0",
        &id,
    ])
    .ok();
    let mem = cgroup_dir(pid, "memory");
    assert_eq!(
        read(&mem, "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(
        read(&mem, "memory.soft_limit_in_bytes"),
        (32u64 << 20).to_string()
    );
    assert_eq!(
        read(&mem, "memory.memsw.limit_in_bytes"),
        (128u64 << 20).to_string()
    );
    assert_eq!(read(&cgroup_dir(pid, "pids"), "pids.max"), "17");
    let cpu = cgroup_dir(pid, "cpu");
    assert_eq!(read(&cpu, "cpu.cfs_period_us"), "100000");
    assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "50000");
    assert_eq!(read(&cpu, "cpu.shares"), "512");
    assert_eq!(read(&cgroup_dir(pid, "cpuset"), "cpuset.cpus"), "0");
    // From inside: the process may only run on CPU 0 now.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status.contains("Cpus_allowed_list:\t0\n"),
        "affinity not narrowed:\n{status}"
    );

    // Only what an update names changes: the pids limit stays.
    rt.run(&["update", "--memory", "-1", &id]).ok();
    assert_eq!(read(&cgroup_dir(pid, "pids"), "pids.max"), "17");
    let unlimited: u64 = read(&mem, "memory.limit_in_bytes").parse().unwrap();
    assert!(unlimited > 1 << 50, "memory limit not lifted: {unlimited}");

    // -r FILE and -r - (stdin), as containerd's shim passes them.
    let file = rt.tempdir().join("res.json");
    std::fs::write(&file, r#"{"pids": {"limit": 23}, "cpu": {"shares": 256}}"#).unwrap();
    rt.run(&["update", "-r", file.to_str().unwrap(), &id]).ok();
    assert_eq!(read(&cgroup_dir(pid, "pids"), "pids.max"), "23");
    assert_eq!(read(&cpu, "cpu.shares"), "256");
    rt.run_opts(
        &["update", "--resources", "-", &id],
        Opts {
            stdin: Some(br#"{"pids": {"limit": 29}}"#.to_vec()),
            ..Opts::default()
        },
    )
    .ok();
    assert_eq!(read(&cgroup_dir(pid, "pids"), "pids.max"), "29");

    // -1 lifts a limit.
    rt.run(&["update", "--pids-limit", "-1", &id]).ok();
    assert_eq!(read(&cgroup_dir(pid, "pids"), "pids.max"), "max");
}

#[test]
fn update_refuses_bad_input_and_changes_nothing() {
    let rt = Runtime::new("updbad");
    let mut b = rt.bundle();
    b.set("/linux/resources", json!({"pids": {"limit": 40}}));
    let id = rt.start_sleeper(&mut b);
    let pid = rt.pid(&id);
    let pids = cgroup_dir(pid, "pids");
    assert_eq!(read(&pids, "pids.max"), "40");
    let file = rt.tempdir().join("bad.json");
    for (args, want) in [
        (vec!["--memory", "lots"], "--memory"),
        (vec!["--cpuset-cpus", "0-x"], "cpus"),
        (vec!["--cpu-quota", "-7"], "quota"),
        (vec!["--l3-cache-schema", "L3:0=f"], "Intel RDT"),
        (vec![], "nothing to update"),
    ] {
        let mut argv = vec!["update"];
        argv.extend(args.iter().copied());
        argv.push(&id);
        let err = rt.run(&argv).fails().stderr;
        assert!(err.contains(want), "{argv:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{argv:?}: {err}");
    }
    for (json, want) in [
        (r#"{"memory": {"limit": -5}}"#, "memory.limit"),
        (
            r#"{"pids": {"limit": 5}, "cpu": {"mems": "zero"}}"#,
            "cpu.mems",
        ),
        (r#"{"unified": {"../../cgroup.procs": "1"}}"#, "unified"),
        (r#"[1, 2]"#, "object"),
        (r#"{"memory": "#, "resources"),
    ] {
        std::fs::write(&file, json).unwrap();
        let err = rt
            .run(&["update", "-r", file.to_str().unwrap(), &id])
            .fails()
            .stderr;
        assert!(err.contains(want), "{json}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{json}: {err}");
    }
    // Nothing changed by any of them (the pids.limit 5 came with a bad mems).
    assert_eq!(read(&pids, "pids.max"), "40");
    assert_eq!(
        read(&cgroup_dir(pid, "cpuset"), "cpuset.mems"),
        read(&cgroup_dir(1, "cpuset"), "cpuset.mems")
    );

    rt.run(&["kill", &id, "KILL"]).ok();
    rt.wait_stopped(&id);
    let err = rt.run(&["update", "--pids-limit", "9", &id]).fails().stderr;
    assert!(err.contains("cannot update a stopped container"), "{err}");
    let err = rt
        .run(&["update", "--pids-limit", "9", "nonesuch"])
        .fails()
        .stderr;
    assert!(err.contains("nonesuch"), "{err}");
}

#[test]
fn events_stats_in_runcs_schema() {
    let rt = Runtime::new("evstats");
    let mut b = rt.bundle();
    b.set(
        "/linux/resources",
        json!({"pids": {"limit": 50}, "memory": {"limit": 100 << 20}}),
    );
    let id = rt.start_sleeper(&mut b);
    let out = rt.run(&["events", "--stats", &id]).ok().stdout;
    assert_eq!(out.lines().count(), 1, "{out}");
    let v: Value = berth_integration::serde_json::from_str(&out).unwrap();
    assert_eq!(v["type"], "stats", "{v}");
    assert_eq!(v["id"], id.as_str(), "{v}");
    let d = &v["data"];
    assert!(d["pids"]["current"].as_u64().unwrap() >= 1, "{d}");
    assert_eq!(d["pids"]["limit"], 50, "{d}");
    assert!(d["cpu"]["usage"]["total"].as_u64().unwrap() > 0, "{d}");
    assert!(d["memory"]["usage"]["usage"].as_u64().unwrap() > 0, "{d}");
    assert_eq!(d["memory"]["usage"]["limit"], 100u64 << 20, "{d}");
    rt.run(&["kill", &id, "KILL"]).ok();
    rt.wait_stopped(&id);
    let err = rt.run(&["events", "--stats", &id]).fails().stderr;
    assert!(err.contains("not running"), "{err}");
}

/// `events` streams stats every --interval and an `oom` line when the OOM
/// killer strikes; it ends when the container is gone.
#[test]
fn events_stream_reports_an_oom_kill() {
    let rt = Runtime::new("evoom");
    let mut b = rt.bundle();
    // busybox tail keeps an endless line in memory: over the limit soon.
    b.set(
        "/linux/resources",
        json!({"memory": {"limit": 24 << 20, "swap": 24 << 20}}),
    );
    b.set(
        "/process/args",
        json!([
            "sh",
            "-c",
            "read go; tail /dev/zero; echo survived; sleep 100"
        ]),
    );
    b.set("/process/terminal", json!(false));
    b.write();
    let id = rt.id();
    let fifo = rt.tempdir().join("go");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // The container's stdin is the fifo: it starts eating memory on a line.
    let mut create = rt.command(&["create", "--bundle", b.path_str(), &id]);
    let stdin = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    // (Not a pipe for stderr: the container keeps it open.)
    let err_file = rt.tempdir().join("create.err");
    create
        .stdin(stdin.try_clone().unwrap())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_file).unwrap());
    let status = create.status().unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&err_file).unwrap_or_default()
    );
    rt.track(&id);
    rt.run(&["start", &id]).ok();
    let mut events = rt.command(&["events", "--interval", "200ms", &id]);
    events.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = events.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Two stats lines first, 200 ms apart.
    let t0 = Instant::now();
    for _ in 0..2 {
        let l = lines.next().unwrap().unwrap();
        let v: Value = berth_integration::serde_json::from_str(&l).unwrap();
        assert_eq!(v["type"], "stats", "{l}");
    }
    assert!(
        t0.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t0.elapsed()
    );
    std::io::Write::write_all(&mut &stdin, b"go\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut saw_oom = false;
    while Instant::now() < deadline {
        let Some(Ok(l)) = lines.next() else { break };
        let v: Value = berth_integration::serde_json::from_str(&l).unwrap();
        if v["type"] == "oom" {
            assert_eq!(v["id"], id.as_str());
            saw_oom = true;
            break;
        }
    }
    assert!(saw_oom, "no oom event within 20 s");
    // events ends once the container is gone.
    rt.run(&["delete", "--force", &id]).ok();
    let t = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "events outlived the container"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
