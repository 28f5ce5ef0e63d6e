//! Docker (Debian's docker.io 20.10) with berth registered as a runtime in
//! the daemon's config file (`"runtimes": {"berth": {"path": BERTH_BIN}}`,
//! the snippet of docs/clients.md) and chosen per container with `docker
//! run --runtime berth`.
//!
//! Every test starts its own dockerd ([`Docker`]: private data and exec
//! roots, socket, cgroup parent; no bridge, no iptables) and loads the
//! busybox image from a `docker save` tar. dockerd hands the container to
//! its containerd's runc shim, which runs berth with runc's argv and
//! `--root DIR/exec/runtime-runc/moby`.
//!
//! As root: `cargo test -p berth-integration --test docker`. With
//! `BERTH_BIN=/usr/sbin/runc` the suite checks itself against runc.

use std::process::Command;

use berth_integration::docker::{Docker, BUSYBOX, RUNTIME};
use berth_integration::serde_json::Value;
use berth_integration::{berth_bin, eventually, exec, skip_if, Opts, Out};

fn daemon() -> Option<Docker> {
    if !Docker::available() {
        return None;
    }
    let d = Docker::start(&berth_bin());
    d.load_busybox();
    Some(d)
}

/// `docker run --runtime berth --network none EXTRA busybox:test CMD…`.
fn run(d: &Docker, extra: &[&str], cmd: &[&str]) -> Out {
    let mut args = vec!["run", "--runtime", RUNTIME, "--network", "none"];
    args.extend_from_slice(extra);
    args.push(BUSYBOX);
    args.extend_from_slice(cmd);
    d.docker(&args)
}

/// `docker inspect` of one container.
fn inspect(d: &Docker, id: &str) -> Value {
    d.docker(&["inspect", id]).ok().json()[0].clone()
}

/// The runtime under test, asked directly about a container in the root
/// the shim gave it: proof that it, not runc, runs the container.
fn runtime_state(d: &Docker, id: &str) -> Value {
    let mut cmd = Command::new(berth_bin());
    cmd.arg("--root").arg(d.runtime_root()).args(["state", id]);
    exec(cmd, Opts::default()).ok().json()
}

#[track_caller]
fn assert_clean(d: &Docker, ids: &[&str], baseline: &[String]) {
    let left = d.leftovers(ids, baseline);
    assert!(
        left.is_empty(),
        "left behind after {ids:?}:\n{}\n--- dockerd log ---\n{}",
        left.join("\n"),
        d.log_tail()
    );
}

/// Network links and iptables rules of the host, to check dockerd left
/// them alone.
fn host_network() -> String {
    let mut out = String::new();
    for (bin, args) in [
        ("ip", &["-o", "link", "show"][..]),
        ("iptables-save", &[][..]),
        ("ip6tables-save", &[][..]),
    ] {
        if let Ok(o) = Command::new(bin).args(args).output() {
            let text = String::from_utf8_lossy(&o.stdout);
            // Counters and the dump's timestamps change by themselves.
            for l in text.lines().filter(|l| !l.starts_with('#')) {
                let l = match l.find(" [") {
                    Some(i) if l.starts_with(':') => &l[..i],
                    _ => l,
                };
                // ip link: the state and counters of a line vary; its name
                // is what matters.
                let l = if bin == "ip" {
                    l.split(':').nth(1).unwrap_or(l).trim()
                } else {
                    l
                };
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

/// Foreground runs: output, exit code, env, workdir, user, a bind mount,
/// `--memory`/`--pids-limit` as the container sees them, `--read-only`.
#[test]
fn foreground_runs() {
    let d = daemon();
    skip_if!(d.is_none(), "docker.io (dockerd) is not installed");
    let d = d.unwrap();
    let baseline = d.mounts();

    let o = run(
        &d,
        &["--rm"],
        &["sh", "-c", "echo hello-from-docker; exit 3"],
    );
    assert_eq!(o.code, Some(3), "exit code not propagated: {o}");
    assert_eq!(o.stdout, "hello-from-docker\n", "{o}");

    let o = run(
        &d,
        &["--rm", "-e", "BERTH_T=v1", "-w", "/tmp", "-u", "1000:1000"],
        &["sh", "-c", "echo \"$BERTH_T:$(pwd):$(id -u):$(id -g)\""],
    )
    .ok();
    assert_eq!(o.stdout.trim(), "v1:/tmp:1000:1000", "{o}");

    let host = d.dir.join("vol");
    std::fs::create_dir_all(&host).unwrap();
    let vol = format!("{}:/data", host.display());
    run(
        &d,
        &["--rm", "-v", &vol],
        &["sh", "-c", "echo inside > /data/f"],
    )
    .ok();
    assert_eq!(std::fs::read_to_string(host.join("f")).unwrap(), "inside\n");
    let ro = format!("{vol}:ro");
    let o = run(
        &d,
        &["--rm", "-v", &ro],
        &["sh", "-c", "echo x > /data/g || echo REFUSED"],
    )
    .ok();
    assert!(o.stdout.contains("REFUSED"), "{o}");
    assert!(!host.join("g").exists(), "wrote through a :ro volume");

    // Docker mounts the container's cgroups read-only at /sys/fs/cgroup;
    // the v1 files on this hybrid host, the v2 ones on a v2 host.
    let o = run(
        &d,
        &["--rm", "--memory", "64m", "--pids-limit", "50"],
        &[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
             cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max",
        ],
    )
    .ok();
    assert_eq!(
        o.stdout.split_whitespace().collect::<Vec<_>>(),
        ["67108864", "50"],
        "{o}"
    );

    let o = run(
        &d,
        &["--rm", "--read-only"],
        &[
            "sh",
            "-c",
            "touch /x 2>/dev/null && echo WROTE || echo REFUSED",
        ],
    )
    .ok();
    assert_eq!(o.stdout.trim(), "REFUSED", "{o}");

    assert_clean(&d, &[], &baseline);
}

/// A detached container: the runtime's own state agrees with Docker;
/// exec (output, exit status), top, pause/unpause, stop (SIGTERM reaches
/// the trap: exit code 42), rm, and nothing left.
#[test]
fn detached_exec_pause_stop_rm() {
    let d = daemon();
    skip_if!(d.is_none(), "docker.io (dockerd) is not installed");
    let d = d.unwrap();
    let baseline = d.mounts();

    let o = run(
        &d,
        &["-d", "--memory", "64m"],
        &[
            "sh",
            "-c",
            "trap 'exit 42' TERM; i=0; while :; do i=$((i+1)); echo $i > /tmp/c; sleep 0.1; done",
        ],
    )
    .ok();
    let id = o.stdout.trim().to_string();
    assert_eq!(id.len(), 64, "{o}");
    let info = inspect(&d, &id);
    assert_eq!(info["HostConfig"]["Runtime"], RUNTIME, "{info}");
    assert_eq!(info["State"]["Status"], "running", "{info}");
    let pid = info["State"]["Pid"].as_i64().unwrap();
    let st = runtime_state(&d, &id);
    assert_eq!(st["status"], "running", "{st}");
    assert_eq!(st["pid"].as_i64(), Some(pid), "{st}");

    let o = d.docker(&["exec", &id, "sh", "-c", "echo in-exec; exit 5"]);
    assert_eq!(o.code, Some(5), "{o}");
    assert_eq!(o.stdout, "in-exec\n", "{o}");
    let o = d.docker(&["exec", "-u", "1000", &id, "id", "-u"]).ok();
    assert_eq!(o.stdout.trim(), "1000", "{o}");
    let o = d
        .docker(&[
            "exec",
            &id,
            "cat",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        ])
        .ok();
    assert_eq!(o.stdout.trim(), "67108864", "{o}");
    let o = d.docker(&["top", &id]).ok();
    assert!(o.stdout.contains("trap 'exit 42' TERM"), "{o}");

    let count = || -> u64 {
        d.docker(&["exec", &id, "cat", "/tmp/c"])
            .stdout
            .trim()
            .parse()
            .unwrap_or(0)
    };
    d.docker(&["pause", &id]).ok();
    assert_eq!(inspect(&d, &id)["State"]["Status"], "paused");
    assert_eq!(runtime_state(&d, &id)["status"], "paused");
    d.docker(&["unpause", &id]).ok();
    let c0 = count();
    assert!(
        eventually(10, || count() > c0),
        "the counter did not move after unpause"
    );

    let o = d.docker(&["stop", "-t", "20", &id]).ok();
    assert_eq!(o.stdout.trim(), id, "{o}");
    let info = inspect(&d, &id);
    assert_eq!(
        info["State"]["ExitCode"], 42,
        "SIGTERM not delivered: {info}"
    );
    d.docker(&["rm", &id]).ok();
    assert_clean(&d, &[&id], &baseline);
}

/// Ten containers in a row, half `run --rm`, half `run -d` + `rm --force`:
/// nothing left — containers, runtime state, cgroups, shims, mounts — and
/// the host's links and firewall rules as they were.
#[test]
fn ten_containers_leave_nothing() {
    let net_before = host_network();
    {
        let d = daemon();
        skip_if!(d.is_none(), "docker.io (dockerd) is not installed");
        let d = d.unwrap();
        let baseline = d.mounts();
        let mut ids = Vec::new();
        for i in 0..10 {
            let name = format!("berth-docker-loop-{}-{i}", std::process::id());
            if i % 2 == 0 {
                let cidfile = d.dir.join(format!("{name}.cid"));
                let cid = cidfile.to_str().unwrap();
                let o = run(
                    &d,
                    &["--rm", "--name", &name, "--cidfile", cid],
                    &["echo", "ok"],
                )
                .ok();
                assert_eq!(o.stdout, "ok\n", "{o}");
                let id = std::fs::read_to_string(&cidfile).unwrap();
                assert_eq!(id.len(), 64, "{id:?}");
                ids.push(id);
            } else {
                let o = run(&d, &["-d", "--name", &name], &["sleep", "60"]).ok();
                let id = o.stdout.trim().to_string();
                d.docker(&["rm", "--force", &id]).ok();
                ids.push(id);
            }
        }
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        assert_clean(&d, &refs, &baseline);
    }
    assert_eq!(
        host_network(),
        net_before,
        "dockerd changed the host's links or firewall"
    );
}
