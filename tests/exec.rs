//! `berth exec`: a new process in a real container, through the CLI as
//! containerd's shim, podman and Kubernetes probes call it. The process is
//! observed from inside (berth-probe's report, busybox) and from the host
//! (/proc/PID of the process next to the container's init).
//!
//! As root: `cargo test -p berth --test exec`.

use berth_integration::serde_json::{self, json, Value};
use berth_integration::*;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A started container running `berth-probe sleep`, patched by `patch`.
fn sleeper(rt: &Runtime, patch: impl FnOnce(&mut Bundle)) -> String {
    let mut b = rt.bundle();
    patch(&mut b);
    rt.start_sleeper(&mut b)
}

fn exec(rt: &Runtime, args: &[&str]) -> Out {
    let mut argv = vec!["exec"];
    argv.extend_from_slice(args);
    rt.run(&argv)
}

/// `exec [FLAGS] ID berth-probe ARGS`, its JSON report.
#[track_caller]
fn probe(rt: &Runtime, id: &str, flags: &[&str], args: &[&str]) -> Value {
    let mut argv: Vec<&str> = flags.to_vec();
    argv.extend([id, "/bin/berth-probe"]);
    argv.extend_from_slice(args);
    exec(rt, &argv).ok().json()
}

/// Error lines on stderr (warnings aside).
fn errors(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("warning:"))
        .collect()
}

/// A failed exec as runc reports one: exit status 255, one line.
#[track_caller]
fn exec_fails(rt: &Runtime, args: &[&str], needle: &str) -> Out {
    let o = exec(rt, args);
    assert_eq!(o.code, Some(255), "{o}");
    let errs = errors(&o.stderr);
    assert_eq!(errs.len(), 1, "{o}");
    assert!(errs[0].contains(needle), "wanted {needle:?}: {o}");
    o
}

fn ns_link(pid: i32, name: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{name}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// `exec -d --pid-file F ID berth-probe sleep`: the process's pid, and
/// what berth printed.
#[track_caller]
fn detached_sleeper(rt: &Runtime, id: &str) -> (i32, Out) {
    let pidfile = rt.tempdir().join("exec.pid");
    let pf = pidfile.to_str().unwrap();
    let o = exec(
        rt,
        &["-d", "--pid-file", pf, id, "/bin/berth-probe", "sleep"],
    )
    .ok();
    (read_pid(&pidfile), o)
}

fn read_pid(file: &Path) -> i32 {
    let text = std::fs::read_to_string(file).unwrap();
    text.trim().parse().unwrap()
}

/// A field of /proc/PID/status, split at white space.
fn status_field(pid: i32, name: &str) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find_map(|l| l.strip_prefix(name)).unwrap();
    line.trim_start_matches(':')
        .split_whitespace()
        .map(String::from)
        .collect()
}

const NAMESPACES: &[&str] = &["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"];

/// The host directory of `pid`'s cgroup in the v1 `memory` hierarchy
/// (always mounted here; others may come and go while tests run).
fn memory_cgroup(pid: i32) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let rel = text
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
            (ctrl.split(',').any(|c| c == "memory")).then(|| path.to_string())
        })
        .expect("a memory cgroup line");
    Path::new("/sys/fs/cgroup/memory").join(rel.trim_start_matches('/'))
}

/// Pids in the container's cgroup.
fn procs(rt: &Runtime, id: &str) -> Vec<i32> {
    let file = memory_cgroup(rt.pid(id)).join("cgroup.procs");
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Only the init is left in the container's cgroup.
#[track_caller]
fn only_the_init(rt: &Runtime, id: &str) {
    let init = rt.pid(id);
    assert!(
        eventually(5, || procs(rt, id) == vec![init]),
        "processes left in {id}: {:?} (init {init})",
        procs(rt, id)
    );
}

#[test]
fn argv_with_and_without_double_dash_and_exit_status() {
    let rt = Runtime::new("exec-argv");
    let id = sleeper(&rt, |_| {});
    let o = exec(&rt, &[&id, "/bin/berth-probe", "echo", "a", "-b", "--c"]).ok();
    assert_eq!(o.stdout, "a -b --c\n", "{o}");
    let o = exec(
        &rt,
        &[&id, "--", "/bin/berth-probe", "echo", "-x", "--", "y"],
    )
    .ok();
    assert_eq!(o.stdout, "-x -- y\n", "{o}");
    // PATH lookup inside the container, the program's status is berth's.
    let o = exec(&rt, &[&id, "sh", "-c", "exit 3"]);
    assert_eq!(o.code, Some(3), "{o}");
    let o = exec(&rt, &[&id, "--", "sh", "-c", "exit 0"]).ok();
    assert!(o.stderr.is_empty(), "{o}");
    // Killed by a signal: 128+N, as a shell reports it.
    let o = exec(&rt, &[&id, "sh", "-c", "kill -KILL $$"]);
    assert_eq!(o.code, Some(128 + libc::SIGKILL), "{o}");
    // The container still runs, with nothing of the execs left.
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    only_the_init(&rt, &id);
}

#[test]
fn foreground_exec_forwards_signals() {
    let rt = Runtime::new("exec-signal");
    let id = sleeper(&rt, |_| {});
    let mut child = rt.command(&["exec", &id, "/bin/berth-probe", "sleep"]);
    child.stdout(std::process::Stdio::null());
    let mut child = child.spawn().unwrap();
    assert!(
        eventually(10, || procs(&rt, &id).len() == 2),
        "the exec'd process never showed up"
    );
    // SAFETY: kill(2) of the berth we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(
        eventually(10, || child.try_wait().unwrap().is_some()),
        "berth exec did not end with its process"
    );
    // The probe exits 128+N on SIGTERM; berth passes that on.
    assert_eq!(child.wait().unwrap().code(), Some(128 + libc::SIGTERM));
    only_the_init(&rt, &id);
}

#[test]
fn overrides_reach_the_process() {
    let rt = Runtime::new("exec-override");
    let id = sleeper(&rt, |_| {});
    let r = probe(
        &rt,
        &id,
        &[
            "-e",
            "A=b",
            "--env",
            "TERM=dumb",
            "--cwd",
            "/tmp",
            "-u",
            "1000:1000",
            "-g",
            "5",
            "--additional-gids",
            "6",
        ],
        &[],
    );
    assert_eq!(r["env"]["A"], "b", "{r}");
    // Replaces the container's TERM=xterm rather than adding a second one.
    assert_eq!(r["env"]["TERM"], "dumb", "{r}");
    assert_eq!(
        r["env"]["PATH"],
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    // No HOME in the config: the user's, from the container's /etc/passwd.
    assert_eq!(r["env"]["HOME"], "/home/berth", "{r}");
    assert_eq!(r["cwd"], "/tmp", "{r}");
    assert_eq!(
        (r["uid"].as_u64(), r["gid"].as_u64()),
        (Some(1000), Some(1000)),
        "{r}"
    );
    assert_eq!(r["groups"], json!([5, 6]), "{r}");
    // What the config says and the command line doesn't override.
    assert_eq!(r["rlimits"]["RLIMIT_NOFILE"], json!([1024, 1024]), "{r}");
    assert_eq!(r["no_new_privs"], true, "{r}");
    assert_eq!(r["tty"]["isatty0"], false, "no --tty, no terminal: {r}");
    // A uid alone keeps the config's gid.
    let r = probe(&rt, &id, &["--user", "1000"], &[]);
    assert_eq!(
        (r["uid"].as_u64(), r["gid"].as_u64()),
        (Some(1000), Some(0)),
        "{r}"
    );
    assert_eq!(r["cwd"], "/", "{r}");
    assert!(r["env"].get("A").is_none(), "{r}");
}

#[test]
fn process_json_replaces_the_configs_process() {
    let rt = Runtime::new("exec-pjson");
    let id = sleeper(&rt, |_| {});
    let dir = rt.tempdir();
    let file = dir.join("process.json");
    let caps = json!(["CAP_CHOWN"]);
    std::fs::write(
        &file,
        serde_json::to_vec(&json!({
            "args": ["/bin/berth-probe"],
            "cwd": "/home",
            "env": ["PATH=/bin", "X=1"],
            "user": {"uid": 1000, "gid": 1000, "additionalGids": [7], "umask": 63},
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 100, "soft": 50}],
            "noNewPrivileges": true,
            "oomScoreAdj": 500
        }))
        .unwrap(),
    )
    .unwrap();
    let o = exec(&rt, &["--process", file.to_str().unwrap(), &id]).ok();
    let r = o.json();
    assert_eq!(r["cwd"], "/home", "{r}");
    assert_eq!(r["env"]["X"], "1", "{r}");
    assert!(
        r["env"].get("TERM").is_none(),
        "the config's env is not merged: {r}"
    );
    assert_eq!(
        (r["uid"].as_u64(), r["gid"].as_u64()),
        (Some(1000), Some(1000)),
        "{r}"
    );
    assert_eq!(r["groups"], json!([7]), "{r}");
    assert_eq!(r["umask"], "0077", "{r}");
    assert_eq!(r["rlimits"]["RLIMIT_NOFILE"], json!([50, 100]), "{r}");
    assert_eq!(r["oom_score_adj"], 500, "{r}");
    // Its own capabilities: CAP_CHOWN only. As uid 1000 with no ambient
    // set, exec leaves it only in the bounding set.
    assert_eq!(cap_mask(&r["capabilities"]["bounding"]), 1 << 0, "{r}");
}

#[test]
fn same_namespaces_and_cgroups_as_the_init() {
    let rt = Runtime::new("exec-ns");
    // Every kind of namespace berth can create, so each one is joined.
    let id = sleeper(&rt, |b| {
        b.namespace("cgroup", None);
        b.namespace("time", None);
        b.namespace("user", None);
        b.set(
            "/linux/uidMappings",
            json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
        );
        b.set(
            "/linux/gidMappings",
            json!([{"containerID": 0, "hostID": 100000, "size": 65536}]),
        );
        b.set(
            "/linux/timeOffsets",
            json!({"boottime": {"secs": 86400, "nanosecs": 0}}),
        );
    });
    let init = rt.pid(&id);
    // From inside: the report's namespace links are the init's.
    let r = probe(&rt, &id, &[], &[]);
    for ns in NAMESPACES {
        assert_eq!(r["namespaces"][ns], json!(ns_link(init, ns)), "{ns}: {r}");
        assert_ne!(
            ns_link(init, ns),
            host_ns(ns),
            "{ns} is not the container's own"
        );
    }
    // Root of the container's user namespace, seeing its cgroup namespace's root.
    assert_eq!(r["uid"], 0, "{r}");
    // From the host: a detached process, next to the init.
    let (pid, _) = detached_sleeper(&rt, &id);
    assert!(pid_alive(pid));
    for ns in NAMESPACES {
        assert_eq!(ns_link(pid, ns), ns_link(init, ns), "{ns}");
    }
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap(),
        std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap()
    );
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(cg.contains(&id), "{cg}");
    // The container's root and its clock offset.
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/root")).unwrap(),
        std::fs::read_link(format!("/proc/{init}/root")).unwrap()
    );
    // The time namespace's clock offsets (set at create) apply to the exec:
    // /proc/uptime counts from boot time.
    let o = exec(&rt, &[&id, "cat", "/proc/self/timens_offsets"]).ok();
    assert!(o.stdout.contains("86400"), "{o}");
    let uptime = exec(&rt, &[&id, "cat", "/proc/uptime"]).ok();
    let secs: f64 = uptime
        .stdout
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(secs > 86400.0, "{uptime}");
}

#[test]
fn namespaces_shared_with_the_host_stay_shared() {
    let rt = Runtime::new("exec-hostns");
    let id = sleeper(&rt, |b| {
        b.without_namespace("pid");
        b.without_namespace("network");
    });
    let r = probe(&rt, &id, &[], &[]);
    assert_eq!(r["namespaces"]["pid"], json!(host_ns("pid")), "{r}");
    assert_eq!(r["namespaces"]["net"], json!(host_ns("net")), "{r}");
    assert_eq!(
        r["namespaces"]["mnt"],
        json!(ns_link(rt.pid(&id), "mnt")),
        "{r}"
    );
    assert!(r["pid"].as_i64().unwrap() > 1, "{r}");
}

fn deny_mkdir() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    })
}

#[test]
fn the_containers_seccomp_filter_applies() {
    let rt = Runtime::new("exec-seccomp");
    let id = sleeper(&rt, |b| {
        b.set("/linux/seccomp", deny_mkdir());
    });
    let c = probe(&rt, &id, &[], &["call", "mkdir", "/tmp/x", "493"])["call"].clone();
    assert_eq!(c["errno"], 38, "{c}");
    let r = probe(&rt, &id, &[], &[]);
    assert_eq!(r["seccomp"], 2, "filter mode: {r}");
    // Without no_new_privs too (berth keeps CAP_SYS_ADMIN to load it).
    let id = sleeper(&rt, |b| {
        b.set("/linux/seccomp", deny_mkdir());
        b.set("/process/noNewPrivileges", json!(false));
    });
    let c = probe(
        &rt,
        &id,
        &["-u", "1000"],
        &["call", "mkdir", "/tmp/y", "493"],
    )["call"]
        .clone();
    assert_eq!(c["errno"], 38, "{c}");
    let r = probe(&rt, &id, &["-u", "1000"], &[]);
    assert_eq!(cap_mask(&r["capabilities"]["effective"]), 0, "{r}");
}

const CAP_SYS_ADMIN: u64 = 1 << 21;
const CAP_KILL: u64 = 1 << 5;

#[test]
fn capabilities_and_no_new_privs() {
    let rt = Runtime::new("exec-caps");
    let id = sleeper(&rt, |b| {
        b.set("/process/noNewPrivileges", json!(false));
    });
    let r = probe(&rt, &id, &[], &[]);
    let eff = cap_mask(&r["capabilities"]["effective"]);
    assert_eq!(eff & CAP_SYS_ADMIN, 0, "{r}");
    assert_ne!(eff & CAP_KILL, 0, "{r}");
    assert_eq!(r["no_new_privs"], false, "{r}");
    // --cap adds to every set, as runc does.
    let r = probe(&rt, &id, &["--cap", "CAP_SYS_ADMIN", "--no-new-privs"], &[]);
    for set in ["bounding", "effective", "permitted"] {
        let m = cap_mask(&r["capabilities"][set]);
        assert_ne!(m & CAP_SYS_ADMIN, 0, "{set}: {r}");
        assert_ne!(m & CAP_KILL, 0, "{set}: {r}");
    }
    assert_eq!(r["no_new_privs"], true, "{r}");
    // An unknown capability is a one-line error naming it.
    exec_fails(&rt, &["--cap", "CAP_NOPE", &id, "true"], "CAP_NOPE");
    only_the_init(&rt, &id);
}

#[test]
fn terminal_through_a_console_socket_and_in_the_foreground() {
    let rt = Runtime::new("exec-tty");
    let id = sleeper(&rt, |_| {});
    let sock = rt.tempdir().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let accept = std::thread::spawn(move || {
        let (s, _) = listener.accept().ok()?;
        recv_fd(&s).ok()
    });
    exec(
        &rt,
        &[
            "--tty",
            "--detach",
            "--console-socket",
            sock.to_str().unwrap(),
            &id,
            "sh",
            "-c",
            "tty; [ -t 0 ] && [ -t 1 ] && echo both-ttys; sleep 1",
        ],
    )
    .ok();
    let master: OwnedFd = accept.join().unwrap().expect("no pty master received");
    let out = read_all(master, Duration::from_secs(5));
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert!(out.contains("both-ttys"), "{out:?}");
    // Foreground with --tty: berth relays the pty to its own stdout.
    let o = exec(&rt, &["-t", &id, "sh", "-c", "tty; exit 4"]);
    assert_eq!(o.code, Some(4), "{o}");
    assert!(o.stdout.contains("/dev/pts/"), "{o}");
    // runc's rules: a detached terminal needs a socket, a socket needs both.
    exec_fails(&rt, &["-t", "-d", &id, "true"], "--console-socket");
    exec_fails(
        &rt,
        &["--console-socket", sock.to_str().unwrap(), &id, "true"],
        "--console-socket",
    );
    only_the_init(&rt, &id);
}

/// Read from a pty master until the other side is gone or `timeout`.
fn read_all(master: OwnedFd, timeout: Duration) -> String {
    use std::io::Read;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut f = std::fs::File::from(master);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the slave side is closed.
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        let _ = tx.send(out);
    });
    String::from_utf8_lossy(&rx.recv_timeout(timeout).unwrap_or_default()).into_owned()
}

#[test]
fn detached_process_with_pid_file_dies_with_kill_all() {
    let rt = Runtime::new("exec-detach");
    let id = sleeper(&rt, |_| {});
    let init = rt.pid(&id);
    let (pid, o) = detached_sleeper(&rt, &id);
    assert!(o.stdout.is_empty(), "{o}");
    assert!(pid_alive(pid), "the exec'd process is gone");
    // In the container's pid namespace: a pid there besides the host's.
    let nspid = status_field(pid, "NSpid");
    assert_eq!(nspid.len(), 2, "{nspid:?}");
    assert_eq!(ns_link(pid, "pid"), ns_link(init, "pid"));
    assert!(procs(&rt, &id).contains(&pid));
    // The program runs, not berth.
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(exe.ends_with("berth-probe"), "{exe:?}");
    // berth is gone; the process is not its zombie-to-be.
    let ppid = &status_field(pid, "PPid")[0];
    assert!(
        std::fs::read_to_string(format!("/proc/{ppid}/cmdline"))
            .map_or(true, |c| !c.contains("exec")),
        "parent {ppid} still berth exec"
    );
    // kill --all reaches exec'd processes too.
    rt.run(&["kill", "--all", &id, "KILL"]).ok();
    assert!(
        eventually(10, || !pid_alive(pid)),
        "exec'd process survived kill --all"
    );
    rt.wait_stopped(&id);
}

#[test]
fn preserved_descriptors_and_no_others() {
    let rt = Runtime::new("exec-fds");
    let id = sleeper(&rt, |_| {});
    let (r, w) = pipe();
    let o = rt.run_opts(
        &[
            "exec",
            "--preserve-fds",
            "1",
            &id,
            "sh",
            "-c",
            "echo through-fd3 >&3",
        ],
        Opts {
            extra_fds: vec![w],
            ..Default::default()
        },
    );
    assert!(o.success(), "{o}");
    let mut got = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(r), &mut got).unwrap();
    assert_eq!(got, "through-fd3\n");
    // Without --preserve-fds, fd 3 is closed before exec; berth's own are
    // never there.
    let (_r, w) = pipe();
    let o = rt.run_opts(
        &["exec", &id, "/bin/berth-probe"],
        Opts {
            extra_fds: vec![w],
            ..Default::default()
        },
    );
    let r = o.clone().ok().json();
    let fds: Vec<&String> = r["fds"].as_object().unwrap().keys().collect();
    assert_eq!(fds, ["0", "1", "2"], "{o}");
}

#[test]
fn paused_stopped_and_created_containers() {
    let rt = Runtime::new("exec-status");
    let id = sleeper(&rt, |_| {});
    rt.run(&["pause", &id]).ok();
    assert_eq!(rt.status(&id).as_deref(), Some("paused"));
    exec_fails(&rt, &[&id, "true"], "paused");
    // --ignore-paused: the process joins the frozen cgroup and runs once
    // the container is resumed.
    let dir = rt.tempdir();
    let (pidfile, errfile) = (dir.join("pid"), dir.join("stderr"));
    let mut child = {
        let mut c = rt.command(&[
            "exec",
            "--ignore-paused",
            "-d",
            "--pid-file",
            pidfile.to_str().unwrap(),
            &id,
            "/bin/berth-probe",
            "sleep",
        ]);
        // Not a pipe: the detached process keeps berth's stdio.
        c.stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&errfile).unwrap());
        c.spawn().unwrap()
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "exec did not wait for resume"
    );
    rt.run(&["resume", &id]).ok();
    assert!(
        eventually(10, || child.try_wait().unwrap().is_some()),
        "exec never finished after resume"
    );
    assert!(
        child.wait().unwrap().success(),
        "{}",
        std::fs::read_to_string(&errfile).unwrap_or_default()
    );
    assert!(procs(&rt, &id).contains(&read_pid(&pidfile)));

    // Created, not started: runc allows exec there.
    let mut b = rt.bundle();
    b.set("/process/args", json!(["/bin/berth-probe", "sleep"]));
    let created = rt.id();
    rt.create(&b, &created);
    let o = exec(&rt, &[&created, "/bin/berth-probe", "echo", "in-created"]).ok();
    assert_eq!(o.stdout, "in-created\n");
    assert_eq!(rt.status(&created).as_deref(), Some("created"));

    // Stopped.
    let mut b = rt.bundle();
    b.set("/process/args", json!(["/bin/berth-probe", "exit", "0"]));
    let stopped = rt.id();
    rt.create(&b, &stopped);
    rt.run(&["start", &stopped]).ok();
    rt.wait_stopped(&stopped);
    exec_fails(
        &rt,
        &[&stopped, "true"],
        "cannot exec in a stopped container",
    );
    exec_fails(&rt, &["no-such-container", "true"], "no-such-container");
}

#[test]
fn sub_cgroup() {
    let rt = Runtime::new("exec-subcg");
    let id = sleeper(&rt, |_| {});
    let dir = memory_cgroup(rt.pid(&id));
    std::fs::create_dir(dir.join("sub")).unwrap();
    let o = exec(
        &rt,
        &["--cgroup", "memory:sub", &id, "cat", "/proc/self/cgroup"],
    )
    .ok();
    let line = |text: &str, ctrl: &str| {
        text.lines()
            .find(|l| {
                l.split(':')
                    .nth(1)
                    .is_some_and(|c| c.split(',').any(|x| x == ctrl))
            })
            .map(String::from)
            .unwrap_or_default()
    };
    let init_cg = std::fs::read_to_string(format!("/proc/{}/cgroup", rt.pid(&id))).unwrap();
    assert_eq!(
        line(&o.stdout, "memory"),
        format!("{}/sub", line(&init_cg, "memory")),
        "{o}"
    );
    assert_eq!(line(&o.stdout, "devices"), line(&init_cg, "devices"), "{o}");
    // A sub-cgroup that isn't there, a controller the container has no
    // cgroup for, a path out of the container's cgroup.
    exec_fails(
        &rt,
        &["--cgroup", "memory:nope", &id, "true"],
        "does not exist",
    );
    exec_fails(&rt, &["--cgroup", "net_cls:sub", &id, "true"], "net_cls");
    exec_fails(&rt, &["--cgroup", "../..", &id, "true"], "..");
    only_the_init(&rt, &id);
}

#[test]
fn bad_inputs_are_one_line_and_leave_nothing() {
    let rt = Runtime::new("exec-bad");
    let id = sleeper(&rt, |_| {});
    let dir = rt.tempdir();
    let bad_json = dir.join("bad.json");
    std::fs::write(&bad_json, "{\"args\": [\"true\"],").unwrap();
    let no_args = dir.join("noargs.json");
    std::fs::write(&no_args, r#"{"cwd": "/"}"#).unwrap();
    let relative_cwd = dir.join("cwd.json");
    std::fs::write(&relative_cwd, r#"{"args": ["true"], "cwd": "tmp"}"#).unwrap();
    let missing = dir.join("missing.json");
    for (args, needle) in [
        (vec!["-u", "nobody", &id, "id"], "--user \"nobody\""),
        (vec!["-p", missing.to_str().unwrap(), &id], "missing.json"),
        (vec!["-p", bad_json.to_str().unwrap(), &id], "bad.json"),
        (vec!["-p", no_args.to_str().unwrap(), &id], "process.args"),
        (
            vec!["-p", relative_cwd.to_str().unwrap(), &id],
            "process.cwd",
        ),
        (vec!["--cwd", "/no/such/dir", &id, "true"], "/no/such/dir"),
        (
            vec![&id, "nope"],
            "exec: \"nope\": executable file not found in $PATH",
        ),
        (vec![&id, "/bin/nope"], "\"/bin/nope\""),
        (
            vec!["--apparmor", "berth-default", &id, "true"],
            "AppArmor is not enabled",
        ),
        (vec![&id], "no command given"),
    ] {
        exec_fails(&rt, &args, needle);
    }
    only_the_init(&rt, &id);
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
}

#[test]
fn twenty_concurrent_execs() {
    let rt = Runtime::new("exec-many");
    let id = sleeper(&rt, |_| {});
    let outs: Vec<Out> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let (rt, id) = (&rt, &id);
                s.spawn(move || {
                    rt.run_opts(
                        &["exec", id, "/bin/berth-probe", "echo", &format!("n{i}")],
                        Opts {
                            timeout: Duration::from_secs(60),
                            ..Default::default()
                        },
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, o) in outs.into_iter().enumerate() {
        let o = o.ok();
        assert_eq!(o.stdout, format!("n{i}\n"), "{o}");
    }
    only_the_init(&rt, &id);
}

#[test]
fn exec_cpu_affinity() {
    let rt = Runtime::new("exec-affinity");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    skip_if!(cpus < 2, "needs two CPUs");
    let id = sleeper(&rt, |_| {});
    let all = probe(&rt, &id, &[], &["sched"])["sched"]["cpus"].clone();
    // berth pinned to CPU 0 (taskset): the process does not keep that.
    let mut c = std::process::Command::new("taskset");
    c.args(["-c", "0"])
        .arg(&rt.bin)
        .arg("--root")
        .arg(rt.root());
    c.args(["exec", &id, "/bin/berth-probe", "sched"]);
    let o = berth_integration::exec(c, Opts::default()).ok();
    assert_eq!(o.json()["sched"]["cpus"], all, "{o}");
    assert_ne!(all, "0");
    let file = rt.tempdir().join("p.json");
    std::fs::write(
        &file,
        serde_json::to_vec(&json!({
            "args": ["/bin/berth-probe", "sched"], "cwd": "/",
            "execCPUAffinity": {"initial": "0", "final": "1"}
        }))
        .unwrap(),
    )
    .unwrap();
    let o = exec(&rt, &["-p", file.to_str().unwrap(), &id]).ok();
    assert_eq!(o.json()["sched"]["cpus"], "1", "{o}");
    assert!(
        !o.stderr.contains("execCPUAffinity"),
        "no warning for exec: {o}"
    );
}

/// CVE-2019-5736 through exec: while berth sets up an exec'd process (held
/// there by a seccomp NOTIFY rule on execve the test answers), its
/// /proc/PID/exe is berth's binary. A process in the container tries to
/// open it (and would write through it); the test (host root, allowed to)
/// opens it and, once nothing executes the file, tries to reopen it for
/// writing. berth keeps the set-up undumpable, so the container cannot even
/// open it, and runs from a read-only view of its binary, so the write
/// fails with EROFS. The binary (a private copy) is unchanged.
#[test]
fn container_cannot_overwrite_berth_through_an_exec() {
    use berth_seccomp::notify::{self, Response};
    let rt = Runtime::new("exec-cve5736");
    let dir = rt.tempdir();
    let bin = dir.join("berth");
    std::fs::copy(berth_bin(), &bin).unwrap();
    let before = std::fs::read(&bin).unwrap();
    let run = |args: &[&str]| {
        let mut c = std::process::Command::new(&bin);
        c.arg("--root").arg(rt.root()).args(args);
        berth_integration::exec(c, Opts::default())
    };

    // The listener: create's and exec's filters connect here; every execve
    // is let through, the exec'd berth's only once the attacker is ready.
    let sock = dir.join("listener.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let shared = rt.tempdir();
    let held = {
        let shared = shared.clone();
        std::thread::spawn(move || {
            let mut held = None;
            for (n, conn) in listener.incoming().enumerate().take(2) {
                let conn = conn.unwrap();
                let fd = recv_fd(&conn).unwrap();
                if n == 0 {
                    // The container's init: let its execs through.
                    std::thread::spawn(move || {
                        while let Ok(note) = notify::recv(&fd) {
                            let _ = notify::respond(&fd, note.id, Response::Continue);
                        }
                    });
                    continue;
                }
                // The exec: hold its execve until the attacker has opened
                // the exe, then let it through.
                let note = notify::recv(&fd).unwrap();
                let nspid = status_field(note.pid as i32, "NSpid");
                let inner = nspid.last().unwrap();
                let comm = std::fs::read_to_string(format!("/proc/{}/comm", note.pid)).ok();
                std::fs::write(shared.join("pid"), inner).unwrap();
                let tried = eventually(10, || {
                    shared.join("opened").exists() || shared.join("rc").exists()
                });
                // The host may open it (for reading: the file is busy).
                let host_exe = std::fs::File::open(format!("/proc/{}/exe", note.pid));
                notify::respond(&fd, note.id, Response::Continue).unwrap();
                held = Some((tried, comm, host_exe));
                while let Ok(note) = notify::recv(&fd) {
                    let _ = notify::respond(&fd, note.id, Response::Continue);
                }
            }
            held
        })
    };

    let mut b = rt.bundle();
    b.push(
        "/mounts",
        json!({"destination": "/shared", "type": "bind",
               "source": shared, "options": ["rbind", "rw"]}),
    );
    b.set(
        "/linux/seccomp",
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock,
            "syscalls": [{"names": ["execve"], "action": "SCMP_ACT_NOTIFY"}]
        }),
    );
    // pid 1 of the container: it must outlive the exec (its exit would
    // kill every process in the pid namespace), so the open is tried in a
    // subshell first (a failed redirection of `exec` ends the shell).
    let script = "while [ ! -e /shared/pid ]; do read -t 0.1 x </dev/zero 2>/dev/null; done; \
                  p=$(cat /shared/pid); \
                  if ( : </proc/$p/exe ) 2>/dev/null && exec 3</proc/$p/exe; then \
                    echo opened > /shared/opened; \
                    (echo pwned >/proc/self/fd/3) 2>/shared/err; echo $? > /shared/rc; \
                  else echo open-failed > /shared/rc; fi; \
                  while :; do read -t 1 x </dev/zero 2>/dev/null; done";
    b.set("/process/args", json!(["/bin/sh", "-c", script]));
    b.write();
    let id = rt.id();
    run(&["run", "-d", "--bundle", b.path_str(), &id]).ok();
    let o = run(&["exec", &id, "/bin/berth-probe", "echo", "ran"]).ok();
    assert_eq!(o.stdout, "ran\n", "{o}");
    let (tried, comm, host_exe) = held
        .join()
        .unwrap()
        .expect("the exec's listener never connected");
    assert_eq!(
        comm.as_deref(),
        Some("berth\n"),
        "the held process was not berth"
    );
    assert!(tried, "the container never tried to open the exe");
    // Nothing executes the copy any more: only the mount is read-only now.
    let host_exe = host_exe.expect("host root could not open the held exe");
    let e = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/self/fd/{}", host_exe.as_raw_fd()))
        .expect_err("berth's binary reopened for writing");
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    // Undumpable: the container could not open it at all.
    let rc = std::fs::read_to_string(shared.join("rc")).unwrap_or_default();
    assert_eq!(rc.trim(), "open-failed", "the container opened the exe");
    assert!(
        std::fs::read(&bin).unwrap() == before,
        "berth's binary changed"
    );
}
