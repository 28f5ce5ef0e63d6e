//! The container process: args, env, cwd, user, umask, rlimits, oom score,
//! no_new_privs, capabilities, preserved fds and the console socket.

use berth_integration::serde_json::{json, Value};
use berth_integration::*;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

#[test]
fn args_are_passed_verbatim() {
    let rt = Runtime::new("args");
    let r = rt.probe_args(&["report", "a b", "", "--x=1", "ü"], |_| {});
    assert_eq!(
        r["args"],
        json!(["/bin/berth-probe", "report", "a b", "", "--x=1", "ü"])
    );
}

#[test]
fn args_resolved_through_path() {
    let rt = Runtime::new("argspath");
    let mut b = rt.bundle();
    b.set("/process/args", json!(["berth-probe", "exit", "5"]));
    b.set("/process/env", json!(["PATH=/bin"]));
    b.write();
    let id = rt.id();
    let o = rt.run(&["run", "--bundle", b.path_str(), &id]);
    assert_eq!(o.code, Some(5), "{o}");
}

#[test]
fn env_is_exact_plus_home() {
    let rt = Runtime::new("env");
    let r = rt.probe(|b| {
        b.set(
            "/process/env",
            json!(["PATH=/bin", "FOO=bar baz", "EMPTY="]),
        );
    });
    let env = r["env"].as_object().unwrap();
    assert_eq!(env["FOO"], "bar baz");
    assert_eq!(env["EMPTY"], "");
    assert_eq!(env["PATH"], "/bin");
    // runc adds HOME from the user's passwd entry when the config has none.
    assert_eq!(env["HOME"], "/root");
    // Nothing of the runtime's own environment leaks in.
    let extra: Vec<&String> = env
        .keys()
        .filter(|k| !["FOO", "EMPTY", "PATH", "HOME"].contains(&k.as_str()))
        .collect();
    assert!(extra.is_empty(), "unexpected variables {extra:?}");
}

#[test]
fn home_from_passwd_for_user() {
    let rt = Runtime::new("home");
    let r = rt.probe(|b| {
        b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
    });
    assert_eq!(r["env"]["HOME"], "/home/berth");
}

#[test]
fn cwd_is_set_and_created() {
    let rt = Runtime::new("cwd");
    let r = rt.probe(|b| {
        b.set("/process/cwd", json!("/tmp"));
    });
    assert_eq!(r["cwd"], "/tmp");
    let r = rt.probe(|b| {
        b.set("/process/cwd", json!("/does/not/exist"));
    });
    assert_eq!(r["cwd"], "/does/not/exist");
}

#[test]
fn user_and_additional_gids() {
    let rt = Runtime::new("user");
    let r = rt.probe(|b| {
        b.set(
            "/process/user",
            json!({"uid": 1000, "gid": 1001, "additionalGids": [65534, 5]}),
        );
    });
    assert_eq!(
        (r["uid"].as_u64(), r["euid"].as_u64()),
        (Some(1000), Some(1000)),
        "{r}"
    );
    assert_eq!(
        (r["gid"].as_u64(), r["egid"].as_u64()),
        (Some(1001), Some(1001)),
        "{r}"
    );
    let mut g: Vec<u64> = r["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    g.sort();
    assert!(g.contains(&5) && g.contains(&65534), "groups {g:?}");
    assert!(!g.contains(&0), "root group kept: {g:?}");
}

#[test]
fn umask_default_and_set() {
    let rt = Runtime::new("umask");
    let r = rt.probe(|_| {});
    assert_eq!(r["umask"], "0022");
    let r = rt.probe(|b| {
        b.set("/process/user/umask", json!(0o077));
    });
    assert_eq!(r["umask"], "0077");
}

fn host_nofile_hard() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit into a valid struct.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    r.rlim_max
}

#[test]
fn rlimits_applied() {
    let rt = Runtime::new("rlimit");
    // Never above the host's hard limit: CAP_SYS_RESOURCE may be missing.
    let hard = host_nofile_hard().min(4096);
    let soft = hard / 2;
    let r = rt.probe(|b| {
        b.set(
            "/process/rlimits",
            json!([
                {"type": "RLIMIT_NOFILE", "soft": soft, "hard": hard},
                {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
                {"type": "RLIMIT_NPROC", "soft": 500, "hard": 600}
            ]),
        );
    });
    assert_eq!(r["rlimits"]["RLIMIT_NOFILE"], json!([soft, hard]));
    assert_eq!(r["rlimits"]["RLIMIT_CORE"], json!([0, 0]));
    assert_eq!(r["rlimits"]["RLIMIT_NPROC"], json!([500, 600]));
}

#[test]
fn rlimit_unknown_type_fails() {
    let rt = Runtime::new("rlimitbad");
    let mut b = rt.bundle();
    b.set(
        "/process/rlimits",
        json!([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]),
    );
    b.write();
    let id = rt.id();
    rt.run(&["run", "--bundle", b.path_str(), &id]).fails();
}

#[test]
fn oom_score_adj() {
    let rt = Runtime::new("oom");
    let cur: i64 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let want = (cur + 123).min(1000);
    let r = rt.probe(|b| {
        b.set("/process/oomScoreAdj", json!(want));
    });
    assert_eq!(r["oom_score_adj"], want);
}

#[test]
fn no_new_privileges() {
    let rt = Runtime::new("nnp");
    let r = rt.probe(|b| {
        b.set("/process/noNewPrivileges", json!(true));
    });
    assert_eq!(r["no_new_privs"], true);
    let r = rt.probe(|b| {
        b.set("/process/noNewPrivileges", json!(false));
    });
    assert_eq!(r["no_new_privs"], false);
}

const CAP_CHOWN: u64 = 1 << 0;
const CAP_KILL: u64 = 1 << 5;
const CAP_NET_BIND_SERVICE: u64 = 1 << 10;
const CAP_SYS_ADMIN: u64 = 1 << 21;

#[test]
fn capabilities_root() {
    let rt = Runtime::new("capsroot");
    let r = rt.probe(|b| {
        b.set(
            "/process/capabilities",
            json!({
                "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "inheritable": ["CAP_KILL"],
                "ambient": ["CAP_KILL"]
            }),
        );
    });
    let c = &r["capabilities"];
    let all = CAP_CHOWN | CAP_KILL | CAP_NET_BIND_SERVICE;
    assert_eq!(cap_mask(&c["bounding"]), all, "{c}");
    assert_eq!(cap_mask(&c["permitted"]), all, "{c}");
    assert_eq!(cap_mask(&c["effective"]), all, "{c}");
    assert_eq!(cap_mask(&c["inheritable"]), CAP_KILL, "{c}");
    assert_eq!(cap_mask(&c["ambient"]), CAP_KILL, "{c}");
}

#[test]
fn capabilities_non_root_keep_ambient() {
    // For a non-root user, execve leaves permitted = effective = ambient: so
    // the ambient set must have been raised (needs permitted + inheritable).
    let rt = Runtime::new("capsuser");
    let r = rt.probe(|b| {
        b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
        b.set(
            "/process/capabilities",
            json!({
                "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "inheritable": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "ambient": ["CAP_NET_BIND_SERVICE"]
            }),
        );
    });
    let c = &r["capabilities"];
    assert_eq!(
        cap_mask(&c["bounding"]),
        CAP_CHOWN | CAP_KILL | CAP_NET_BIND_SERVICE,
        "{c}"
    );
    assert_eq!(
        cap_mask(&c["inheritable"]),
        CAP_KILL | CAP_NET_BIND_SERVICE,
        "{c}"
    );
    assert_eq!(cap_mask(&c["ambient"]), CAP_NET_BIND_SERVICE, "{c}");
    assert_eq!(cap_mask(&c["permitted"]), CAP_NET_BIND_SERVICE, "{c}");
    assert_eq!(cap_mask(&c["effective"]), CAP_NET_BIND_SERVICE, "{c}");
}

#[test]
fn capabilities_empty_drops_everything() {
    let rt = Runtime::new("capsnone");
    let r = rt.probe(|b| {
        b.set("/process/capabilities", json!({}));
    });
    let c = &r["capabilities"];
    for set in [
        "bounding",
        "permitted",
        "effective",
        "inheritable",
        "ambient",
    ] {
        assert_eq!(cap_mask(&c[set]), 0, "{set} not empty: {c}");
    }
    let r = rt.probe(|_| {});
    assert_eq!(cap_mask(&r["capabilities"]["bounding"]) & CAP_SYS_ADMIN, 0);
}

// berth-only: runc 1.1 warns "ignoring unknown or unavailable capabilities"
// and runs anyway; berth's validator rejects the config, naming the JSON path.
#[test]
fn unknown_capability_fails() {
    berth_only!();
    let rt = Runtime::new("capsbad");
    let mut b = rt.bundle();
    b.set("/process/capabilities/bounding", json!(["CAP_NOT_A_CAP"]));
    b.write();
    let id = rt.id();
    let o = rt.run(&["run", "--bundle", b.path_str(), &id]).fails();
    assert!(o.stderr.contains("CAP_NOT_A_CAP"), "{o}");
    assert!(o.stderr.contains("process.capabilities.bounding"), "{o}");
    assert!(rt.state(&id).is_err());
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds that we then own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn fd_target(fd: &OwnedFd) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn preserve_fds() {
    let rt = Runtime::new("preserve");
    let mut b = rt.bundle();
    b.set("/process/args", json!(["/bin/berth-probe"]));
    b.write();
    let (r1, _w1) = pipe();
    let (r2, _w2) = pipe();
    let (t1, t2) = (fd_target(&r1), fd_target(&r2));
    let id = rt.id();
    let o = rt
        .run_opts(
            &["run", "--preserve-fds", "1", "--bundle", b.path_str(), &id],
            Opts {
                extra_fds: vec![r1, r2],
                ..Default::default()
            },
        )
        .ok();
    let r = o.json();
    let fds = r["fds"].as_object().unwrap();
    assert_eq!(
        fds.get("3").and_then(Value::as_str),
        Some(t1.as_str()),
        "fd 3 not preserved: {r}"
    );
    // Only the number asked for: fd 4 is not passed on.
    assert_ne!(
        fds.get("4").and_then(Value::as_str),
        Some(t2.as_str()),
        "fd 4 leaked: {r}"
    );
    let extra: Vec<&String> = fds
        .keys()
        .filter(|k| k.parse::<i32>().unwrap_or(0) > 3)
        .collect();
    assert!(extra.is_empty(), "unexpected fds inside: {fds:?}");
}

#[test]
fn no_fds_leak_by_default() {
    let rt = Runtime::new("noleak");
    let b = rt.bundle();
    b.write();
    let (r1, _w1) = pipe();
    let id = rt.id();
    let o = rt
        .run_opts(
            &["run", "--bundle", b.path_str(), &id],
            Opts {
                extra_fds: vec![r1],
                ..Default::default()
            },
        )
        .ok();
    let r = o.json();
    let fds: Vec<&String> = r["fds"].as_object().unwrap().keys().collect();
    assert_eq!(fds, vec!["0", "1", "2"], "{r}");
}

#[test]
fn listen_fds_socket_activation() {
    // With LISTEN_FDS/LISTEN_PID addressed to the runtime (systemd socket
    // activation), runc passes the fds on and sets LISTEN_FDS, LISTEN_PID=1.
    let rt = Runtime::new("listenfds");
    let b = rt.bundle();
    b.write();
    let (r1, _w1) = pipe();
    let t1 = fd_target(&r1);
    let id = rt.id();
    // `sh` sets LISTEN_PID to its own pid, which the runtime keeps over exec.
    let script = format!(
        "LISTEN_PID=$$ exec '{}' --root '{}' run --bundle '{}' '{}'",
        rt.bin.display(),
        rt.root().display(),
        b.path_str(),
        id
    );
    let mut c = std::process::Command::new("/bin/sh");
    c.args(["-c", &script]);
    let o = exec(
        c,
        Opts {
            extra_fds: vec![r1],
            env: vec![("LISTEN_FDS".into(), "1".into())],
            ..Default::default()
        },
    )
    .ok();
    let r = o.json();
    assert_eq!(r["env"]["LISTEN_FDS"], "1", "{r}");
    assert_eq!(r["env"]["LISTEN_PID"], "1", "{r}");
    assert_eq!(r["fds"]["3"], t1.as_str(), "{r}");
}

// ---- terminal: true with --console-socket ----

#[test]
fn terminal_console_socket() {
    use std::io::Read;
    let rt = Runtime::new("tty");
    let mut b = rt.bundle();
    b.set("/process/terminal", json!(true));
    b.set("/process/args", json!(["/bin/berth-probe"]));
    b.write();
    let id = rt.id();
    let master = rt.create_with_console(&b, &id);
    // The fd received is a pty master.
    let target = fd_target(&master);
    assert!(
        target.contains("ptmx"),
        "received fd is {target}, not a pty master"
    );

    rt.run(&["start", &id]).ok();
    let mut f = std::fs::File::from(master);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // Read until EIO (slave side closed) or EOF.
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        let _ = tx.send(out);
    });
    let out = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("no output from the pty");
    let text = String::from_utf8_lossy(&out);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON: {text:?}"));
    let r: Value = serde_json::from_str(line).unwrap();
    for fd in 0..3 {
        assert_eq!(r["tty"][format!("isatty{fd}")], true, "{r}");
    }
    let name = r["tty"]["name"].as_str().unwrap_or_default();
    assert!(name.starts_with("/dev/pts/"), "tty name {name:?}");
    // The container's /dev/console is the same pty (bind-mounted).
    rt.wait_stopped(&id);
}

#[test]
fn terminal_without_console_socket_fails_create() {
    let rt = Runtime::new("ttynosock");
    let mut b = rt.bundle();
    b.set("/process/terminal", json!(true));
    b.write();
    let id = rt.id();
    rt.run(&["create", "--bundle", b.path_str(), &id]).fails();
    assert!(rt.state(&id).is_err(), "failed create left a container");
}
