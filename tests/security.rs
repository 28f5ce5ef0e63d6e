//! Process security settings observed from inside real containers: seccomp
//! profiles (errno, argument filters, NOTIFY to a listener this test runs),
//! personality, scheduler, I/O priority, CPU affinity, LSM labels on a host
//! without LSMs, and the /proc/PID/exe overwrite (CVE-2019-5736 class).
//!
//! As root: `cargo test -p berth --test security`.

use berth_integration::serde_json::{self, json, Value};
use berth_integration::*;

const DEFAULT_PROFILE: &str = include_str!("data/seccomp-default.json");

fn profile() -> Value {
    serde_json::from_str(DEFAULT_PROFILE).unwrap()
}

/// Error lines on stderr (the default config also draws a warning).
fn errors(stderr: &str) -> usize {
    stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("warning:"))
        .count()
}

/// `berth-probe call ARGS` in a fresh container patched by `patch`.
#[track_caller]
fn call(rt: &Runtime, args: &[&str], patch: impl FnOnce(&mut Bundle)) -> Value {
    let mut argv = vec!["call"];
    argv.extend_from_slice(args);
    rt.probe_args(&argv, patch)["call"].clone()
}

#[test]
fn default_shaped_profile_denies_with_the_errno_asked_for() {
    let rt = Runtime::new("seccompdef");
    let with_profile = |b: &mut Bundle| {
        b.set("/linux/seccomp", profile());
    };
    // Allowed by the big allow rule.
    let c = call(&rt, &["uname", "buf"], with_profile);
    assert_eq!(
        (c["ret"].as_i64(), c["errno"].as_i64()),
        (Some(0), Some(0)),
        "{c}"
    );
    // An explicit errno rule.
    let c = call(&rt, &["getcwd", "buf", "4096"], with_profile);
    assert_eq!(c["errno"], 1234, "{c}");
    let c = call(&rt, &["sethostname", "/x", "1"], with_profile);
    assert_eq!(c["errno"], libc::EACCES, "{c}");
    // Not listed: the default action with defaultErrnoRet (EPERM).
    let c = call(&rt, &["166", "/", "0"], with_profile); // umount2
    assert_eq!(c["errno"], libc::EPERM, "{c}");
    // The probe's own report works under the filter and shows filter mode.
    let r = rt.probe(with_profile);
    assert_eq!(r["seccomp"], 2, "Seccomp: 2 is filter mode: {r}");
}

#[test]
fn argument_filter_hits_only_the_matching_argument() {
    let rt = Runtime::new("seccomparg");
    let with_profile = |b: &mut Bundle| {
        b.set("/linux/seccomp", profile());
    };
    // personality(0xffffffff) only queries: allowed by its own rule.
    let c = call(&rt, &["personality", "0xffffffff"], with_profile);
    assert_eq!(c["errno"], 0, "{c}");
    // PER_LINUX32 (8) is allowed, PER_BSD (6) is not.
    let c = call(&rt, &["personality", "8"], with_profile);
    assert_eq!(c["errno"], 0, "{c}");
    let c = call(&rt, &["personality", "6"], with_profile);
    assert_eq!(c["errno"], libc::EPERM, "{c}");
    // A 64-bit value whose low word matches must not pass an EQ on 8.
    let c = call(&rt, &["personality", "0x100000008"], with_profile);
    assert_eq!(c["errno"], libc::EPERM, "{c}");
}

#[test]
fn every_operator_on_an_argument() {
    let rt = Runtime::new("seccompops");
    // umask(2) returns the old mask and never fails: an errno means the
    // rule matched. Each case: operator, value, valueTwo, (arg, matches).
    type Case = (&'static str, u64, u64, &'static [(u64, bool)]);
    let cases: &[Case] = &[
        ("SCMP_CMP_EQ", 0o22, 0, &[(0o22, true), (0o23, false)]),
        ("SCMP_CMP_NE", 0o22, 0, &[(0o22, false), (0o23, true)]),
        ("SCMP_CMP_LT", 0o20, 0, &[(0o17, true), (0o20, false)]),
        ("SCMP_CMP_LE", 0o20, 0, &[(0o20, true), (0o21, false)]),
        ("SCMP_CMP_GT", 0o20, 0, &[(0o21, true), (0o20, false)]),
        ("SCMP_CMP_GE", 0o20, 0, &[(0o20, true), (0o17, false)]),
        (
            "SCMP_CMP_MASKED_EQ",
            0o070,
            0o020,
            &[(0o027, true), (0o037, false)],
        ),
    ];
    for (op, value, two, probes) in cases {
        for (arg, hits) in *probes {
            let c = call(&rt, &["umask", &arg.to_string()], |b| {
                b.set(
                    "/linux/seccomp",
                    json!({
                        "defaultAction": "SCMP_ACT_ALLOW",
                        "syscalls": [{
                            "names": ["umask"], "action": "SCMP_ACT_ERRNO", "errnoRet": 99,
                            "args": [{"index": 0, "value": value, "valueTwo": two, "op": op}]
                        }]
                    }),
                );
            });
            let want = if *hits { 99 } else { 0 };
            assert_eq!(
                c["errno"], want,
                "{op} {value:#o}/{two:#o} on {arg:#o}: {c}"
            );
        }
    }
}

#[test]
fn profile_denying_what_berth_uses_before_exec_still_runs() {
    // berth calls these while it sets up the process; the filter only goes
    // in right before exec, so denying them only affects the program.
    let rt = Runtime::new("seccomplate");
    let c = call(&rt, &["chdir", "/"], |b| {
        b.set("/process/noNewPrivileges", json!(true));
        b.set(
            "/linux/seccomp",
            json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{
                    "names": ["chdir", "capset", "setresuid", "setresgid", "setgroups",
                              "prctl", "getcwd", "sethostname", "umask", "close_range"],
                    "action": "SCMP_ACT_ERRNO", "errnoRet": 77
                }]
            }),
        );
    });
    assert_eq!(c["errno"], 77, "{c}");
}

#[test]
fn without_no_new_privs_the_filter_loads_and_sys_admin_is_not_left_over() {
    // Loading a filter without no_new_privs needs CAP_SYS_ADMIN, which the
    // config doesn't grant: the process must end up with exactly its sets.
    let rt = Runtime::new("seccompnnp");
    for (user, caps) in [
        (json!({"uid": 0, "gid": 0}), true),
        (json!({"uid": 1000, "gid": 1000}), true),
        // No capabilities object at all: setuid empties the effective set.
        (json!({"uid": 1000, "gid": 1000}), false),
    ] {
        let r = rt.probe(|b| {
            b.set("/process/noNewPrivileges", json!(false));
            b.set("/process/user", user.clone());
            if !caps {
                b.remove("/process/capabilities");
            }
            b.set(
                "/linux/seccomp",
                json!({"defaultAction": "SCMP_ACT_ALLOW",
                       "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]}),
            );
        });
        assert_eq!(r["seccomp"], 2, "{r}");
        assert_eq!(r["no_new_privs"], false, "{r}");
        let sys_admin = 1u64 << 21 /* CAP_SYS_ADMIN */;
        // Without a capabilities object the bounding set is left as is.
        let sets: &[&str] = if caps {
            &[
                "effective",
                "permitted",
                "bounding",
                "inheritable",
                "ambient",
            ]
        } else {
            &["effective", "permitted", "inheritable", "ambient"]
        };
        for set in sets {
            assert_eq!(
                cap_mask(&r["capabilities"][set]) & sys_admin,
                0,
                "{user}: CAP_SYS_ADMIN left in {set}: {r}"
            );
        }
        // The config's capabilities are still there for root.
        if user["uid"] == 0 {
            assert_ne!(
                cap_mask(&r["capabilities"]["effective"]) & (1 << 5/* CAP_KILL */),
                0,
                "{r}"
            );
        }
    }
}

#[test]
fn kill_and_trap_actions_end_the_program_with_the_signal() {
    let rt = Runtime::new("seccompkill");
    for (action, want) in [
        ("SCMP_ACT_KILL_PROCESS", 128 + libc::SIGSYS),
        ("SCMP_ACT_KILL_THREAD", 128 + libc::SIGSYS),
        ("SCMP_ACT_KILL", 128 + libc::SIGSYS),
        ("SCMP_ACT_TRAP", 128 + libc::SIGSYS),
    ] {
        let mut b = rt.bundle();
        b.set(
            "/process/args",
            json!(["/bin/berth-probe", "call", "getcwd", "buf", "4096"]),
        );
        b.set(
            "/linux/seccomp",
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["getcwd"], "action": action}]}),
        );
        b.write();
        let id = rt.id();
        let o = rt.run(&["run", "--bundle", b.path_str(), &id]);
        assert_eq!(o.code, Some(want), "{action}: {o}");
    }
    // LOG allows (and logs to the audit log).
    let c = call(&rt, &["getcwd", "buf", "4096"], |b| {
        b.set(
            "/linux/seccomp",
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_LOG"}]}),
        );
    });
    assert_eq!(c["errno"], 0, "{c}");
}

#[test]
fn bad_profiles_are_one_line_errors_and_leave_nothing() {
    let rt = Runtime::new("seccompbad");
    let cases = [
        (
            json!({"defaultAction": "SCMP_ACT_NOPE"}),
            "linux.seccomp.defaultAction",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO",
                                 "args": [{"index": 7, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
            "index",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_AARCH64"]}),
            "SCMP_ARCH_AARCH64",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_BOGUS"}]}),
            "linux.seccomp.syscalls[0].action",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_ERRNO",
                                 "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ALMOST"}]}]}),
            "linux.seccomp.syscalls[0].args[0].op",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_NOTIFY"}]}),
            "listenerPath",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/nonexistent.sock",
                   "syscalls": [{"names": ["write"], "action": "SCMP_ACT_NOTIFY"}]}),
            "SCMP_ACT_NOTIFY on write is not supported",
        ),
    ];
    for (seccomp, needle) in cases {
        let mut b = rt.bundle();
        b.set("/linux/seccomp", seccomp.clone());
        b.write();
        let id = rt.id();
        let o = rt.run(&["create", "--bundle", b.path_str(), &id]).fails();
        let err = o.stderr.trim();
        assert!(err.contains(needle), "{seccomp}: want {needle:?} in: {err}");
        assert_eq!(errors(err), 1, "one line: {err}");
        assert!(!rt.root().join(&id).exists(), "state left for {id}");
    }
}

#[test]
fn personality_linux32() {
    let rt = Runtime::new("persona");
    let r = rt.probe_args(&["sched"], |b| {
        b.set("/linux/personality", json!({"domain": "LINUX32"}));
    });
    assert_eq!(r["sched"]["personality"], 8, "{r}");
    let r = rt.probe_args(&["sched"], |_| {});
    assert_eq!(r["sched"]["personality"], 0, "{r}");
    // uname sees a 32-bit machine.
    let mut b = rt.bundle();
    b.set("/linux/personality", json!({"domain": "LINUX32"}));
    b.set("/process/args", json!(["/bin/uname", "-m"]));
    b.write();
    let id = rt.id();
    let o = rt.run(&["run", "--bundle", b.path_str(), &id]).ok();
    assert_eq!(o.stdout.trim(), "i686", "{o}");
}

#[test]
fn scheduler_policies() {
    let rt = Runtime::new("sched");
    let r = rt.probe_args(&["sched"], |b| {
        b.set(
            "/process/scheduler",
            json!({"policy": "SCHED_BATCH", "nice": 7}),
        );
    })["sched"]
        .clone();
    assert_eq!(
        (r["policy"].as_i64(), r["nice"].as_i64()),
        (Some(3), Some(7)),
        "{r}"
    );
    let r = rt.probe_args(&["sched"], |b| {
        b.set(
            "/process/scheduler",
            json!({"policy": "SCHED_IDLE", "flags": ["SCHED_RESET_ON_FORK"]}),
        );
    })["sched"]
        .clone();
    assert_eq!(r["policy"], 5, "{r}");
    assert_eq!(r["reset_on_fork"], true, "{r}");
    // Out of range: a plan error naming the field, nothing left.
    let mut b = rt.bundle();
    b.set(
        "/process/scheduler",
        json!({"policy": "SCHED_FIFO", "priority": 0}),
    );
    b.write();
    let id = rt.id();
    let o = rt.run(&["create", "--bundle", b.path_str(), &id]).fails();
    assert!(o.stderr.contains("process.scheduler.priority"), "{o}");
    assert!(!rt.root().join(&id).exists());
}

#[test]
fn io_priority() {
    let rt = Runtime::new("ioprio");
    for (class, level, want) in [
        ("IOPRIO_CLASS_IDLE", 0, 3),
        ("IOPRIO_CLASS_BE", 5, 2),
        ("IOPRIO_CLASS_RT", 1, 1),
    ] {
        let r = rt.probe_args(&["sched"], |b| {
            b.set(
                "/process/ioPriority",
                json!({"class": class, "priority": level}),
            );
        })["sched"]
            .clone();
        assert_eq!(r["ioprio_class"], want, "{class}: {r}");
        assert_eq!(r["ioprio_level"], level, "{class}: {r}");
    }
}

#[test]
fn exec_cpu_affinity_is_not_for_the_init() {
    // The runtime spec: execCPUAffinity "is not applicable to the
    // container's init process" (it is for exec'd processes). The init keeps
    // the cgroup's CPUs, and berth says so.
    let rt = Runtime::new("affinity");
    let baseline = rt.probe_args(&["sched"], |_| {})["sched"]["cpus"].clone();
    let mut b = rt.bundle();
    b.set(
        "/process/execCPUAffinity",
        json!({"initial": "0", "final": "0"}),
    );
    b.set("/process/args", json!(["/bin/berth-probe", "sched"]));
    b.write();
    let id = rt.id();
    let o = rt.run(&["run", "--bundle", b.path_str(), &id]).ok();
    assert_eq!(o.json()["sched"]["cpus"], baseline, "{o}");
    assert!(
        o.stderr.contains("warning") && o.stderr.contains("process.execCPUAffinity"),
        "{o}"
    );
    // A CPU list that isn't one is still an error naming the field.
    let mut b = rt.bundle();
    b.set("/process/execCPUAffinity", json!({"final": "99999"}));
    b.write();
    let id = rt.id();
    let o = rt.run(&["create", "--bundle", b.path_str(), &id]).fails();
    assert!(o.stderr.contains("process.execCPUAffinity.final"), "{o}");
    assert!(!rt.root().join(&id).exists());
}

#[test]
fn lsm_labels_without_the_lsm_are_errors() {
    // This host has neither AppArmor nor SELinux: asking for a label must
    // fail, never run the container unconfined.
    assert!(
        !std::path::Path::new("/sys/fs/selinux/enforce").exists()
            && std::fs::read("/sys/module/apparmor/parameters/enabled")
                .map_or(true, |v| !v.starts_with(b"Y")),
        "this test expects a host without AppArmor and SELinux"
    );
    let rt = Runtime::new("lsm");
    for (ptr, value, needle) in [
        (
            "/process/apparmorProfile",
            json!("berth-default"),
            "process.apparmorProfile: cannot apply profile \"berth-default\": AppArmor is not enabled",
        ),
        (
            "/process/selinuxLabel",
            json!("system_u:system_r:container_t:s0:c1,c2"),
            "process.selinuxLabel: cannot apply label",
        ),
        (
            "/linux/mountLabel",
            json!("system_u:object_r:container_file_t:s0:c1,c2"),
            "linux.mountLabel: cannot apply label",
        ),
    ] {
        let mut b = rt.bundle();
        b.set(ptr, value);
        b.write();
        let id = rt.id();
        let o = rt.run(&["create", "--bundle", b.path_str(), &id]).fails();
        assert!(o.stderr.contains(needle), "{ptr}: {o}");
        assert_eq!(errors(&o.stderr), 1, "{o}");
        assert!(!rt.root().join(&id).exists(), "state left for {ptr}");
    }
    // Empty values ask for nothing.
    let r = rt.probe(|b| {
        b.set("/process/apparmorProfile", json!(""));
        b.set("/process/selinuxLabel", json!(""));
    });
    assert_eq!(r["uid"], 0);
}

/// CVE-2019-5736 class: a process in the container opens the berth binary
/// through /proc/PID/exe of the container's init while that init is still
/// berth (after `create`, before `start`), then writes through the
/// descriptor once nothing executes the file any more. berth runs create
/// from a read-only view of its binary, so the write fails with EROFS; the
/// binary is a private copy, so a berth that got this wrong corrupts only
/// the copy, which the test compares.
#[test]
fn container_cannot_overwrite_berth_through_proc_pid_exe() {
    let rt = Runtime::new("cve5736");
    let dir = rt.tempdir();
    let bin = dir.join("berth");
    std::fs::copy(berth_bin(), &bin).unwrap();
    let before = std::fs::read(&bin).unwrap();
    let run = |args: &[&str]| {
        let mut c = std::process::Command::new(&bin);
        c.arg("--root").arg(rt.root()).args(args);
        exec(c, Opts::default())
    };

    // Container A: created, its init (a fork of berth) waits for start.
    let mut a = rt.bundle();
    a.set("/process/args", json!(["/bin/berth-probe", "sleep"]));
    a.write();
    let ida = rt.id();
    run(&["create", "--bundle", a.path_str(), &ida]).ok();
    let pid = rt.pid(&ida);

    // Container B joins A's pid namespace: A's init is its pid 1.
    let shared = rt.tempdir();
    let mut b = rt.bundle();
    b.namespace("pid", Some(&format!("/proc/{pid}/ns/pid")));
    b.push(
        "/mounts",
        json!({"destination": "/shared", "type": "bind",
               "source": shared, "options": ["rbind", "rw"]}),
    );
    let script = "exec 3</proc/1/exe || { echo open-failed > /shared/rc; exit 0; }; \
                  echo opened > /shared/opened; \
                  while [ ! -e /shared/go ]; do sleep 0.1; done; \
                  (echo pwned >/proc/self/fd/3) 2>/shared/err; echo $? > /shared/rc";
    b.set("/process/args", json!(["/bin/sh", "-c", script]));
    b.write();
    let idb = rt.id();
    run(&["run", "-d", "--bundle", b.path_str(), &idb]).ok();
    assert!(
        eventually(10, || shared.join("opened").exists()
            || shared.join("rc").exists()),
        "container B never opened /proc/1/exe"
    );
    assert!(
        shared.join("opened").exists(),
        "B could not even open /proc/1/exe: the attack was not attempted"
    );
    // A's init execs its program: nothing executes berth's file any more.
    run(&["start", &ida]).ok();
    std::fs::write(shared.join("go"), "").unwrap();
    assert!(
        eventually(10, || shared.join("rc").exists()),
        "container B never tried the write"
    );
    let rc = std::fs::read_to_string(shared.join("rc")).unwrap();
    let err = std::fs::read_to_string(shared.join("err")).unwrap_or_default();
    assert_ne!(rc.trim(), "0", "the container wrote to berth's binary");
    assert!(err.contains("Read-only file system"), "{err}");
    assert!(
        std::fs::read(&bin).unwrap() == before,
        "berth's binary changed"
    );
}

/// Reads the listener message: JSON with the notify descriptor attached.
fn recv_state_and_fd(s: &std::os::unix::net::UnixStream) -> (Value, std::os::fd::OwnedFd) {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut buf = vec![0u8; 1 << 16];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        s.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .unwrap();
    let mut fd = None;
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel installed this descriptor for us.
            fd = Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fds[0]) });
        }
    }
    let n = msg.bytes;
    let mut data = buf[..n].to_vec();
    (&*s).read_to_end(&mut data).unwrap();
    (
        serde_json::from_slice(&data).unwrap(),
        fd.expect("no descriptor with the state"),
    )
}

#[test]
fn notify_reaches_a_listener_the_test_runs() {
    use berth_seccomp::notify::{self, Response};
    let rt = Runtime::new("seccompnotify");
    let dir = rt.tempdir();
    let sock = dir.join("listener.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let agent = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let (state, fd) = recv_state_and_fd(&s);
        // The container's mkdir: answered with an errno of our choosing.
        let n = notify::recv(&fd).unwrap();
        notify::respond(&fd, n.id, Response::Errno(77)).unwrap();
        (state, n.nr)
    });
    let mut b = rt.bundle();
    b.set(
        "/linux/seccomp",
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock,
            "listenerMetadata": "from-the-test",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
        }),
    );
    b.set(
        "/process/args",
        json!(["/bin/berth-probe", "call", "mkdir", "/tmp/notified", "493"]),
    );
    b.write();
    let id = rt.id();
    let o = rt.run(&["run", "--bundle", b.path_str(), &id]).ok();
    assert_eq!(o.json()["call"]["errno"], 77, "{o}");
    let (state, nr) = agent.join().unwrap();
    assert_eq!(nr as i64, libc::SYS_mkdir, "{state}");
    assert_eq!(state["fds"], json!(["seccompFd"]), "{state}");
    assert_eq!(state["metadata"], "from-the-test", "{state}");
    assert_eq!(state["state"]["id"], json!(id), "{state}");
    assert_eq!(state["state"]["status"], "creating", "{state}");
    assert!(state["pid"].as_i64().unwrap() > 0, "{state}");
    assert_eq!(state["pid"], state["state"]["pid"], "{state}");
}
