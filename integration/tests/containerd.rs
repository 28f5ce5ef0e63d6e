//! containerd 1.6 (Debian's) with berth as the runtime binary of the runc
//! shim (`io.containerd.runc.v2`), driven through `ctr`.
//!
//! Every test starts its own containerd ([`Containerd`]: private root, state,
//! sockets, namespace `berth-PID-N`, CRI disabled) and imports the busybox
//! archive from [`clients::busybox_archive`]. `ctr run --runc-binary B` sets
//! the runc options' `BinaryName` — the same field a CRI runtime entry's
//! `options.BinaryName` sets (see docs/clients.md) — and `--runc-root` keeps
//! the runtime's state under the daemon's temp dir.
//!
//! With `BERTH_BIN=/usr/sbin/runc` the suite checks itself against runc
//! (the crun test is berth-only).

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_integration::clients::{self, Containerd, BUSYBOX_TEST, BUSYBOX_USER};
use berth_integration::{berth_bin, berth_only, eventually, skip_if, Out};

/// A daemon with `env`, the busybox images imported.
fn daemon(env: &[(&str, &str)]) -> Containerd {
    let d = Containerd::start(env);
    let archive = clients::busybox_archive(&d.dir);
    let names = d.import(&archive);
    for want in [BUSYBOX_TEST, BUSYBOX_USER] {
        assert!(
            names.iter().any(|n| n == want),
            "ctr images ls -q after import shows {names:?}, not {want}"
        );
    }
    d
}

/// `ctr run --rm` with berth as the shim's runtime.
fn run(d: &Containerd, extra: &[&str], image: &str, id: &str, cmd: &[&str]) -> Out {
    let flags = d.runtime_flags(&berth_bin());
    let mut args: Vec<&str> = vec!["run", "--rm"];
    args.extend(flags.iter().map(String::as_str));
    args.extend_from_slice(extra);
    args.push(image);
    args.push(id);
    args.extend_from_slice(cmd);
    d.ctr(&args)
}

#[track_caller]
fn assert_clean(d: &Containerd, ids: &[&str]) {
    let left = d.leftovers(ids);
    assert!(
        left.is_empty(),
        "left behind after {ids:?}:\n{}\n--- containerd log ---\n{}",
        left.join("\n"),
        d.log_tail()
    );
}

/// Foreground runs: output, exit code, env, cwd, image user, read-only
/// bind mount, memory limit, terminal. `tag` keeps ids apart per backend.
fn foreground_scenarios(d: &Containerd, tag: &str) {
    let id = |s: &str| format!("{tag}-{s}");

    // Output and exit code.
    let o = run(
        d,
        &[],
        BUSYBOX_TEST,
        &id("exit"),
        &["sh", "-c", "echo hello-from-container; exit 7"],
    );
    assert_eq!(o.code, Some(7), "exit code not propagated: {o}");
    assert!(o.stdout.contains("hello-from-container"), "output: {o}");

    // --env and --cwd.
    let o = run(
        d,
        &["--env", "BERTH_T=value-1", "--cwd", "/tmp"],
        BUSYBOX_TEST,
        &id("env"),
        &["sh", "-c", "echo \"$BERTH_T:$(pwd)\""],
    )
    .ok();
    assert_eq!(o.stdout.trim(), "value-1:/tmp", "{o}");

    // The image's User 1000:1000 (ctr 1.6's `run` has no --user; `task
    // exec --user` is checked in the detached scenario).
    let o = run(
        d,
        &[],
        BUSYBOX_USER,
        &id("user"),
        &["sh", "-c", "echo $(id -u):$(id -g):$(id -un)"],
    )
    .ok();
    assert_eq!(o.stdout.trim(), "1000:1000:berth", "{o}");

    // A read-only bind mount: readable, a write fails.
    let host = d.dir.join(format!("ro-{tag}"));
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("f"), "host-data").unwrap();
    let mount = format!("type=bind,src={},dst=/ro,options=rbind:ro", host.display());
    let o = run(
        d,
        &["--mount", &mount],
        BUSYBOX_TEST,
        &id("romount"),
        &[
            "sh",
            "-c",
            "cat /ro/f; echo; if echo x > /ro/new; then echo WROTE; else echo REFUSED; fi",
        ],
    )
    .ok();
    assert!(
        o.stdout.contains("host-data"),
        "bind mount not visible: {o}"
    );
    assert!(
        o.stdout.contains("REFUSED"),
        "write to a ro bind mount: {o}"
    );
    assert!(!host.join("new").exists(), "file created through ro mount");

    // --memory-limit: on this hybrid host the memory controller is v1;
    // ctr's default spec has no /sys/fs/cgroup mount, so the test adds one
    // (as CRI does) and reads the container's own memory cgroup.
    let o = run(
        d,
        &[
            "--memory-limit",
            "67108864",
            "--mount",
            "type=cgroup,src=cgroup,dst=/sys/fs/cgroup,options=ro:nosuid:nodev:noexec",
        ],
        BUSYBOX_TEST,
        &id("mem"),
        &[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max",
        ],
    )
    .ok();
    assert_eq!(o.stdout.trim(), "67108864", "memory limit inside: {o}");

    // A terminal: ctr runs under script(1) so it has a pty to hand over.
    let flags = d.runtime_flags(&berth_bin()).join(" ");
    let o = d
        .ctr_with_tty(&format!(
            "run --rm -t {flags} {BUSYBOX_TEST} {} sh -c 'tty; test -t 0 && test -t 1 && echo IS-A-TTY'",
            id("tty")
        ))
        .ok();
    assert!(o.stdout.contains("/dev/pts/"), "tty: {o}");
    assert!(o.stdout.contains("IS-A-TTY"), "tty: {o}");

    let ids: Vec<String> = ["exit", "env", "user", "romount", "mem", "tty"]
        .iter()
        .map(|s| id(s))
        .collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_clean(d, &refs);
}

/// The host path of a file in a running task's root filesystem.
fn in_rootfs(d: &Containerd, id: &str, path: &str) -> PathBuf {
    d.dir
        .join("state/io.containerd.runtime.v2.task")
        .join(&d.ns)
        .join(id)
        .join("rootfs")
        .join(path.trim_start_matches('/'))
}

fn counter(p: &Path) -> u64 {
    std::fs::read_to_string(p)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// The task's status and pid from `ctr tasks ls`.
fn task(d: &Containerd, id: &str) -> Option<(i32, String)> {
    let o = d.ctr(&["tasks", "ls"]).ok();
    o.stdout.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.first() == Some(&id)).then(|| (f[1].parse().unwrap_or(0), f[2].to_string()))
    })
}

/// A detached task: exec, ps, metrics, pause/resume, kill, delete, rm.
/// `check_running` sees the running task (its id and init pid).
fn detached_scenario(d: &Containerd, id: &str, check_running: impl Fn(&str, i32)) {
    let flags = d.runtime_flags(&berth_bin());
    let mut args: Vec<&str> = vec!["run", "-d"];
    args.extend(flags.iter().map(String::as_str));
    args.extend_from_slice(&[
        BUSYBOX_TEST,
        id,
        "sh",
        "-c",
        "i=0; while :; do i=$((i+1)); echo $i > /tmp/cnt; sleep 0.1; done",
    ]);
    d.ctr(&args).ok();
    let (pid, status) = task(d, id).expect("task listed after run -d");
    assert_eq!(status, "RUNNING");
    assert!(pid > 0);

    // The container's runtime options (containerd.runc.v1.Options, shown
    // as base64 protobuf) carry our runtime as BinaryName: field 6, bytes.
    let info = d.ctr(&["containers", "info", id]).ok().json();
    let opts = &info["Runtime"]["Options"];
    assert_eq!(opts["type_url"], "containerd.runc.v1.Options", "{info}");
    let raw = base64_decode(opts["value"].as_str().unwrap_or(""));
    let bin = berth_bin().display().to_string();
    let mut field = vec![(6 << 3) | 2, bin.len() as u8];
    field.extend_from_slice(bin.as_bytes());
    assert!(
        raw.windows(field.len()).any(|w| w == field),
        "runtime options do not carry BinaryName {bin}: {raw:?}"
    );

    check_running(id, pid);

    // exec: output, exit code, another user.
    let cnt = in_rootfs(d, id, "/tmp/cnt");
    assert!(
        eventually(10, || counter(&cnt) > 0),
        "counter never written"
    );
    let o = d
        .ctr(&[
            "tasks",
            "exec",
            "--fifo-dir",
            d.fifo_dir.to_str().unwrap(),
            "--exec-id",
            "x1",
            id,
            "cat",
            "/tmp/cnt",
        ])
        .ok();
    assert!(o.stdout.trim().parse::<u64>().is_ok(), "exec output: {o}");
    let o = d.ctr(&[
        "tasks",
        "exec",
        "--fifo-dir",
        d.fifo_dir.to_str().unwrap(),
        "--exec-id",
        "x2",
        id,
        "sh",
        "-c",
        "exit 5",
    ]);
    assert_eq!(o.code, Some(5), "exec exit code: {o}");
    let o = d
        .ctr(&[
            "tasks",
            "exec",
            "--fifo-dir",
            d.fifo_dir.to_str().unwrap(),
            "--exec-id",
            "x3",
            "--user",
            "1000:1000",
            id,
            "id",
            "-u",
        ])
        .ok();
    assert_eq!(o.stdout.trim(), "1000", "exec --user: {o}");

    // ps lists the init.
    let o = d.ctr(&["tasks", "ps", id]).ok();
    assert!(
        o.stdout
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().next() == Some(&pid.to_string())),
        "tasks ps does not list init {pid}: {o}"
    );

    // metrics: numbers.
    let o = d.ctr(&["tasks", "metrics", id]).ok();
    let value = |name: &str| -> Option<u64> {
        o.stdout.lines().find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some(name)).then(|| f.next()?.parse().ok())?
        })
    };
    assert!(
        value("memory.usage_in_bytes").is_some_and(|v| v > 0),
        "metrics: {o}"
    );
    assert!(
        value("pids.current").is_some_and(|v| v >= 1),
        "metrics: {o}"
    );

    // pause: the counter stops; resume: it moves again.
    d.ctr(&["tasks", "pause", id]).ok();
    assert_eq!(task(d, id).map(|t| t.1).as_deref(), Some("PAUSED"));
    std::thread::sleep(Duration::from_millis(150));
    let frozen = counter(&cnt);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(counter(&cnt), frozen, "counter moved while paused");
    d.ctr(&["tasks", "resume", id]).ok();
    assert_eq!(task(d, id).map(|t| t.1).as_deref(), Some("RUNNING"));
    assert!(
        eventually(10, || counter(&cnt) > frozen),
        "counter did not move after resume"
    );

    // kill (sh as pid 1 ignores TERM: KILL), delete, rm.
    d.ctr(&["tasks", "kill", "-s", "SIGKILL", id]).ok();
    assert!(
        eventually(15, || task(d, id).map(|t| t.1).as_deref()
            == Some("STOPPED")),
        "task not STOPPED after kill: {:?}",
        task(d, id)
    );
    d.ctr(&["tasks", "delete", id]).ok();
    d.ctr(&["containers", "rm", id]).ok();
    assert_clean(d, &[id]);
}

#[test]
fn containerd_foreground_runs() {
    skip_if!(!Containerd::available(), "containerd/ctr not installed");
    let d = daemon(&[]);
    foreground_scenarios(&d, "fg");
}

#[test]
fn containerd_detached_task_lifecycle() {
    skip_if!(!Containerd::available(), "containerd/ctr not installed");
    let d = daemon(&[]);
    detached_scenario(&d, "detached", |_, _| {});
}

#[test]
fn containerd_ten_containers_leave_nothing() {
    skip_if!(!Containerd::available(), "containerd/ctr not installed");
    let d = daemon(&[]);
    let ids: Vec<String> = (0..10).map(|i| format!("loop-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let o = run(
            &d,
            &[],
            BUSYBOX_TEST,
            id,
            &["sh", "-c", &format!("exit {i}")],
        );
        assert_eq!(o.code, Some(i as i32), "run {i}: {o}");
    }
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_clean(&d, &refs);
}

/// The same scenarios with every container handed to crun: containerd
/// runs with `BERTH_CONFIG` naming a config with `backend = "crun"`; the
/// shim passes its environment down to berth.
#[test]
fn containerd_crun_backend() {
    skip_if!(!Containerd::available(), "containerd/ctr not installed");
    berth_only!();
    let crun = which("crun");
    skip_if!(crun.is_none(), "crun not installed");
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = cfg_dir.path().join("berth.toml");
    std::fs::write(&cfg, "backend = \"crun\"\n").unwrap();
    let d = daemon(&[("BERTH_CONFIG", cfg.to_str().unwrap())]);
    foreground_scenarios(&d, "crun");
    let root = d.runtime_root();
    detached_scenario(&d, "crun-detached", |id, pid| {
        // crun keeps its state under berth's container dir: ask crun.
        let crun_root = root.join(id).join("crun");
        let mut cmd = std::process::Command::new(crun.as_ref().unwrap());
        cmd.arg("--root").arg(&crun_root).args(["state", id]);
        let o = berth_integration::exec(cmd, Default::default()).ok();
        let st = o.json();
        assert_eq!(st["status"], "running", "crun state: {o}");
        assert_eq!(st["pid"], pid, "crun's pid is not the task's: {o}");
    });
}

/// The CRI route (a runtime entry naming berth as `BinaryName`) cannot run
/// here (no CNI), but the snippet docs/clients.md gives must parse into the
/// runc options containerd hands to the shim.
#[test]
fn containerd_cri_runtime_entry_parses() {
    skip_if!(!Containerd::available(), "containerd/ctr not installed");
    let dir = tempfile::tempdir().unwrap();
    let bin = berth_bin();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"version = 2
root = "{root}"
state = "{state}"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.berth]
  runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.berth.options]
    BinaryName = "{bin}"
    SystemdCgroup = false
"#,
            root = dir.path().join("root").display(),
            state = dir.path().join("state").display(),
            bin = bin.display()
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new("containerd");
    cmd.arg("--config").arg(&cfg).args(["config", "dump"]);
    let o = berth_integration::exec(cmd, Default::default()).ok();
    let dump = &o.stdout;
    let at = dump
        .find("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.berth]")
        .unwrap_or_else(|| panic!("no berth runtime in the dump: {o}"));
    let section = &dump[at..];
    assert!(
        section.contains("runtime_type = \"io.containerd.runc.v2\""),
        "{o}"
    );
    assert!(
        section.contains(&format!("BinaryName = \"{}\"", bin.display())),
        "{o}"
    );
}

fn which(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

/// Standard base64 (with padding) to bytes.
fn base64_decode(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = A.iter().position(|&a| a == c).expect("base64 character") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
