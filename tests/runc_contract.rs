//! The parts of runc's observable behaviour that containerd's runc shim
//! (through go-runc), CRI-O and podman depend on, beyond what
//! `tests/logging.rs`, `tests/exec.rs`, `tests/crash.rs` and
//! `integration/tests/lifecycle.rs` already check:
//!
//! - the `--log FILE --log-format json` file read back the way the shim
//!   reads it after a failed command (the last `error` record's `msg`
//!   becomes the error containerd reports), for several failures, one file
//!   appended to across commands as the shim does;
//! - the strings containerd matches in a failed command's output
//!   (`container not running` for kill, `does not exist` for delete);
//! - the text format (the default) as logrus writes it, quoting included;
//! - `kill` reaching only the init and `kill --all` reaching every process;
//! - a container whose init was killed from the host;
//! - `delete --force` of a running container that has exec'd processes.
//!
//! Real containers, as root: `cargo test -p berth --test runc_contract`.
//! Every test here also passes with `BERTH_BIN=/usr/sbin/runc`.

use berth_integration::serde_json::{self, json, Map, Value};
use berth_integration::{cgroup_dirs_named, eventually, pid_alive, Bundle, Out, Runtime};
use std::path::Path;
use std::time::Duration;

// ---- what the shim does with the log file -----------------------------------

/// A strict RFC 3339 date-time (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`), the
/// only form Go's `time.Time` accepts from JSON.
fn check_rfc3339(s: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("time {s:?} is not RFC 3339: {why}"));
    let b = s.as_bytes();
    if b.len() < 20 || !s.is_ascii() {
        return bad("too short or not ASCII");
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        let t = &s[from..to];
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (Some(_y), Some(mo), Some(d), Some(h), Some(mi), Some(sec)) = (
        num(0, 4),
        num(5, 7),
        num(8, 10),
        num(11, 13),
        num(14, 16),
        num(17, 19),
    ) else {
        return bad("a field is not digits");
    };
    if (b[4], b[7], b[10], b[13], b[16]) != (b'-', b'-', b'T', b':', b':') {
        return bad("separators");
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 59 {
        return bad("a field is out of range");
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return bad("empty fraction");
        }
        rest = &frac[n..];
    }
    let zone_ok = rest == "Z"
        || (rest.len() == 6
            && matches!(rest.as_bytes()[0], b'+' | b'-')
            && rest.as_bytes()[3] == b':'
            && rest[1..3].parse::<u32>().is_ok_and(|h| h <= 23)
            && rest[4..6].parse::<u32>().is_ok_and(|m| m <= 59));
    if zone_ok {
        Ok(())
    } else {
        bad("time zone")
    }
}

/// What containerd's runc shim does after a failed runtime command: decode
/// the log file as a stream of JSON values, each into one reused
/// `struct { Level, Msg string; Time time.Time }` (Go matches the keys
/// `level`, `msg`, `time` ignoring case; a `null` leaves a field as it was;
/// any other type, or a time that is not RFC 3339, makes the whole read
/// fail), and keep the whitespace-trimmed `Msg` of the last record whose
/// level is `error`. `Ok("")` when there is none; `Err` when the shim
/// could not read the log ("unable to retrieve OCI runtime error").
fn shim_last_error(log: &[u8]) -> Result<String, String> {
    let mut level = String::new();
    let mut msg = String::new();
    let mut last_error = String::new();
    for value in serde_json::Deserializer::from_slice(log).into_iter::<Value>() {
        let value = value.map_err(|e| format!("log is not a stream of JSON values: {e}"))?;
        let record: Map<String, Value> = match value {
            Value::Null => Map::new(),
            Value::Object(m) => m,
            other => return Err(format!("a log record is not an object: {other}")),
        };
        // An exact key wins over a case-insensitive match, as in Go.
        let field = |name: &str| {
            record.get(name).or_else(|| {
                record
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v)
            })
        };
        for (name, slot) in [("level", &mut level), ("msg", &mut msg)] {
            match field(name) {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => *slot = s.clone(),
                Some(other) => return Err(format!("{name} is not a string: {other}")),
            }
        }
        match field("time") {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) => check_rfc3339(t)?,
            Some(other) => return Err(format!("time is not a string: {other}")),
        }
        if level == "error" {
            last_error = msg.trim().to_string();
        }
    }
    Ok(last_error)
}

#[test]
fn shim_parser_follows_go_runc() {
    let t = "2024-02-03T04:05:06.123Z";
    let two = format!(
        "{{\"level\":\"error\",\"msg\":\" first \",\"time\":\"{t}\"}}\n\
         {{\"level\":\"info\",\"msg\":\"later\",\"time\":\"{t}\"}}\n"
    );
    assert_eq!(shim_last_error(two.as_bytes()).unwrap(), "first");
    // Keys in any case; records need no newline between them.
    let caps = format!("{{\"Level\":\"error\",\"MSG\":\"x\",\"Time\":\"{t}\"}}{{}}");
    assert_eq!(shim_last_error(caps.as_bytes()).unwrap(), "x");
    // A record without a level keeps the previous one (the struct is reused).
    let reuse =
        format!("{{\"level\":\"error\",\"msg\":\"a\"}}\n{{\"msg\":\"b\",\"time\":\"{t}\"}}");
    assert_eq!(shim_last_error(reuse.as_bytes()).unwrap(), "b");
    assert_eq!(shim_last_error(b"").unwrap(), "");
    for broken in [
        "time=\"2024-02-03T04:05:06Z\" level=error msg=\"text\"",
        "{\"level\":\"error\",\"msg\":\"m\",\"time\":\"1700000000\"}",
        "{\"level\":\"error\",\"msg\":\"m\",\"time\":1700000000}",
        "{\"level\":3,\"msg\":\"m\"}",
        "[\"error\"]",
    ] {
        assert!(shim_last_error(broken.as_bytes()).is_err(), "{broken}");
    }
}

/// `ARGS` as the shim passes them: `--log LOG --log-format json` before the
/// command (the Runtime puts `--root` first).
fn shim_run(rt: &Runtime, log: &Path, args: &[&str]) -> Out {
    let mut argv = vec!["--log", log.to_str().unwrap(), "--log-format", "json"];
    argv.extend_from_slice(args);
    rt.run(&argv)
}

/// Every record in a JSON log is one line: an object with string `level`,
/// `msg` and an RFC 3339 `time`.
#[track_caller]
fn assert_json_lines(text: &str) {
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "unterminated:\n{text}"
    );
    for l in text.lines() {
        let v: Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON value ({e}): {l}"));
        for k in ["level", "msg", "time"] {
            assert!(v[k].is_string(), "{k} is not a string in {l}");
        }
        check_rfc3339(v["time"].as_str().unwrap()).unwrap();
    }
}

/// One log file, as containerd keeps one per container, written by a row of
/// failing commands: after each, the shim's reading of the file gives that
/// command's cause, the same text is on stderr, and what was in the file
/// before is still there, unchanged (appended, never truncated).
#[test]
fn shim_reads_each_failures_cause_from_one_appended_log() {
    let rt = Runtime::new("contract-log");
    let dir = rt.tempdir();
    let log = dir.join("log.json");

    let bad = rt.bundle();
    bad.write();
    let mut config = bad.config.clone();
    config["process"]["args"] = json!(3);
    std::fs::write(
        bad.path().join("config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    let missing = dir.join("no-such-bundle");

    // A container that ran and stopped (`berth-probe exit 0`).
    let mut done = rt.bundle();
    done.set("/process/args", json!(["/bin/berth-probe", "exit", "0"]));
    done.write();
    let stopped = rt.id();
    shim_run(
        &rt,
        &log,
        &["create", "--bundle", done.path_str(), &stopped],
    )
    .ok();
    shim_run(&rt, &log, &["start", &stopped]).ok();
    rt.wait_stopped(&stopped);
    let before = std::fs::read(&log).unwrap_or_default();
    assert_eq!(
        shim_last_error(&before).unwrap(),
        "",
        "successful commands logged an error:\n{}",
        String::from_utf8_lossy(&before)
    );

    let (id1, id2, unknown) = (rt.id(), rt.id(), rt.id());
    let process = dir.join("process.json");
    std::fs::write(
        &process,
        serde_json::to_vec(&json!({"args": ["true"], "cwd": "/", "user": {"uid": 0, "gid": 0}}))
            .unwrap(),
    )
    .unwrap();
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["create", "--bundle", bad.path_str(), &id1],
            vec!["process.args"],
        ),
        (
            vec!["create", "--bundle", missing.to_str().unwrap(), &id2],
            vec![missing.to_str().unwrap()],
        ),
        (vec!["start", &unknown], vec!["does not exist"]),
        // containerd's shim treats a kill error containing exactly this as
        // "process already finished" rather than a failure.
        (
            vec!["kill", &stopped, "KILL"],
            vec!["container not running"],
        ),
        (vec!["exec", &stopped, "true"], vec!["stopped"]),
        (
            vec![
                "exec",
                "--process",
                process.to_str().unwrap(),
                "--detach",
                &stopped,
            ],
            vec!["stopped"],
        ),
        // containerd ignores a delete error containing "does not exist".
        (vec!["delete", &unknown], vec!["does not exist"]),
    ];

    let mut previous = before;
    for (args, needles) in &cases {
        let o = shim_run(&rt, &log, args).fails();
        let now = std::fs::read(&log).unwrap();
        assert!(
            now.len() > previous.len() && now.starts_with(&previous),
            "{args:?} did not append to the log (was {} bytes, now {}):\n{}",
            previous.len(),
            now.len(),
            String::from_utf8_lossy(&now)
        );
        let text = String::from_utf8(now.clone()).expect("log is UTF-8");
        assert_json_lines(&text);
        let msg =
            shim_last_error(&now).unwrap_or_else(|e| panic!("{args:?}: shim can't read log: {e}"));
        for n in needles {
            assert!(
                msg.contains(n),
                "{args:?}: the shim would report {msg:?}, which does not name {n:?}"
            );
        }
        assert!(
            o.stderr.contains(&msg),
            "{args:?}: the logged error is not on stderr too: {msg:?}\n{o}"
        );
        previous = now;
    }
    assert!(!rt.root().join(&id1).exists() && !rt.root().join(&id2).exists());
}

/// The shim's successful path: global options before the command, and a
/// `create` whose log has no error record.
#[test]
fn shim_argv_shape_creates_and_logs_no_error() {
    let rt = Runtime::new("contract-argv");
    let mut b = rt.bundle();
    b.set("/process/args", json!(["/bin/berth-probe", "sleep"]));
    b.write();
    let dir = rt.tempdir();
    let (log, pidfile) = (dir.join("log.json"), dir.join("init.pid"));
    let id = rt.id();
    shim_run(
        &rt,
        &log,
        &[
            "create",
            "--bundle",
            b.path_str(),
            "--pid-file",
            pidfile.to_str().unwrap(),
            &id,
        ],
    )
    .ok();
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(rt.pid(&id), pid);
    shim_run(&rt, &log, &["start", &id]).ok();
    shim_run(&rt, &log, &["kill", &id, "KILL"]).ok();
    rt.wait_stopped(&id);
    shim_run(&rt, &log, &["delete", &id]).ok();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_json_lines(&text);
    assert_eq!(shim_last_error(text.as_bytes()).unwrap(), "", "{text}");
}

// ---- the text format ----------------------------------------------------------

/// Undo Go's `%q` quoting (what logrus's text formatter applies to a value
/// that needs it): `\"`, `\\`, `\n`, `\t`, `\r`, `\xHH`, `\uHHHH`,
/// `\UHHHHHHHH`. Returns the value and what follows the closing quote.
fn go_unquote(s: &str) -> Result<(String, &str), String> {
    let body = s.strip_prefix('"').ok_or("no opening quote")?;
    let mut out = Vec::new();
    let mut it = body.char_indices();
    while let Some((i, c)) = it.next() {
        match c {
            '"' => {
                let text = String::from_utf8(out).map_err(|e| e.to_string())?;
                return Ok((text, &body[i + 1..]));
            }
            '\\' => {
                let (_, e) = it.next().ok_or("dangling backslash")?;
                let mut hex = |n: usize| -> Result<u32, String> {
                    let h: String = (0..n).filter_map(|_| it.next().map(|(_, c)| c)).collect();
                    u32::from_str_radix(&h, 16).map_err(|_| format!("bad escape \\{e}{h}"))
                };
                match e {
                    '"' | '\\' => out.push(e as u8),
                    'n' => out.push(b'\n'),
                    't' => out.push(b'\t'),
                    'r' => out.push(b'\r'),
                    'x' => out.push(hex(2)? as u8),
                    'u' | 'U' => {
                        let ch = char::from_u32(hex(if e == 'u' { 4 } else { 8 })?)
                            .ok_or("bad code point")?;
                        out.extend_from_slice(ch.to_string().as_bytes());
                    }
                    other => return Err(format!("unknown escape \\{other}")),
                }
            }
            c if c.is_control() => return Err(format!("raw control character {c:?}")),
            c => out.extend_from_slice(c.to_string().as_bytes()),
        }
    }
    Err("no closing quote".into())
}

/// `time="RFC3339" level=error msg="…"`: the msg, unquoted.
fn text_error_msg(line: &str) -> Result<String, String> {
    let rest = line.strip_prefix("time=").ok_or("no time= first")?;
    let (time, rest) = go_unquote(rest)?;
    check_rfc3339(&time)?;
    let rest = rest
        .strip_prefix(" level=error msg=")
        .ok_or("no ` level=error msg=` after the time")?;
    let (msg, rest) = go_unquote(rest)?;
    if !rest.is_empty() {
        return Err(format!("text after msg: {rest:?}"));
    }
    Ok(msg)
}

/// The same failure logged three ways: without `--log-format` (text, runc's
/// default), with `text`, and with `json`. The text lines are logrus's
/// `time="…" level=error msg="…"` with the message Go-quoted (the message
/// below holds quotes), and carry the very message of the JSON record; the
/// shim cannot read a text log, which is why it asks for JSON.
#[test]
fn text_is_the_default_and_carries_the_json_message() {
    let rt = Runtime::new("contract-text");
    let dir = rt.tempdir();
    // A quote and a backslash in the path the error names.
    let missing = dir.join("no \"such\" \\bundle");
    // One id for all three: each create fails, so it never exists.
    let id = rt.id();
    let mut logs = Vec::new();
    for (name, format) in [
        ("default", None),
        ("text", Some("text")),
        ("json", Some("json")),
    ] {
        let log = dir.join(name);
        let mut argv = vec!["--log", log.to_str().unwrap()];
        if let Some(f) = format {
            argv.extend(["--log-format", f]);
        }
        argv.extend(["create", "--bundle", missing.to_str().unwrap(), &id]);
        rt.run(&argv).fails();
        logs.push(std::fs::read_to_string(&log).unwrap());
    }
    let json_msg = shim_last_error(logs[2].as_bytes()).unwrap();
    assert!(json_msg.contains(missing.to_str().unwrap()), "{json_msg}");
    for (name, text) in [("default", &logs[0]), ("text", &logs[1])] {
        assert!(
            shim_last_error(text.as_bytes()).is_err(),
            "{name}: a text log parsed as JSON:\n{text}"
        );
        let line = text
            .lines()
            .rfind(|l| l.contains("level=error"))
            .unwrap_or_else(|| panic!("{name}: no level=error line:\n{text}"));
        let msg = text_error_msg(line).unwrap_or_else(|e| panic!("{name}: {e}: {line}"));
        assert_eq!(msg, json_msg, "{name}: text and JSON disagree");
    }
}

// ---- signals ----------------------------------------------------------------

/// A shell that appends the name of every SIGUSR1/SIGUSR2 it gets to
/// /marks/NAME and says it is ready once its traps are set.
fn trap_script(name: &str) -> String {
    format!(
        "trap 'echo USR1 >> /marks/{name}' USR1; trap 'echo USR2 >> /marks/{name}' USR2; \
         touch /marks/{name}.ready; while :; do sleep 0.05; done"
    )
}

fn marks(b: &Bundle, name: &str) -> String {
    std::fs::read_to_string(b.rootfs().join("marks").join(name)).unwrap_or_default()
}

/// `kill ID SIG` signals the init alone; `kill --all ID SIG` signals every
/// process of the container, the exec'd ones included.
#[test]
fn kill_all_reaches_every_process_kill_only_the_init() {
    let rt = Runtime::new("contract-killall");
    let mut b = rt.bundle();
    std::fs::create_dir_all(b.rootfs().join("marks")).unwrap();
    b.set(
        "/process/args",
        json!(["/bin/sh", "-c", trap_script("init")]),
    );
    let id = rt.id();
    rt.create(&b, &id);
    rt.run(&["start", &id]).ok();
    for name in ["exec1", "exec2"] {
        rt.run(&["exec", "--detach", &id, "/bin/sh", "-c", &trap_script(name)])
            .ok();
    }
    let ready = ["init", "exec1", "exec2"];
    assert!(
        eventually(10, || ready
            .iter()
            .all(|n| b.rootfs().join(format!("marks/{n}.ready")).exists())),
        "not every shell set its traps"
    );

    rt.run(&["kill", &id, "USR2"]).ok();
    assert!(
        eventually(5, || marks(&b, "init") == "USR2\n"),
        "init did not get USR2: {:?}",
        marks(&b, "init")
    );
    std::thread::sleep(Duration::from_millis(300));
    for n in ["exec1", "exec2"] {
        assert_eq!(marks(&b, n), "", "kill without --all reached {n}");
    }

    rt.run(&["kill", "--all", &id, "USR1"]).ok();
    assert!(
        eventually(5, || ready.iter().all(|n| marks(&b, n).contains("USR1"))),
        "kill --all USR1 missed some: init {:?}, exec1 {:?}, exec2 {:?}",
        marks(&b, "init"),
        marks(&b, "exec1"),
        marks(&b, "exec2")
    );
    assert_eq!(marks(&b, "init"), "USR2\nUSR1\n");
    assert_eq!(marks(&b, "exec1"), "USR1\n");
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    rt.run(&["kill", "--all", &id, "KILL"]).ok();
    rt.wait_stopped(&id);
}

// ---- an init that died behind berth's back ------------------------------------

fn host_sigkill(pid: i32) {
    // SAFETY: kill(2) of a container init this test created.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
}

/// The init of a running and of a created container SIGKILLed from the
/// host: `state` says stopped with pid 0, `kill` fails the way containerd
/// recognises, `start` and `exec` fail, `ps` lists nothing, and a plain
/// `delete` removes the state and the cgroups.
#[test]
fn state_of_a_container_whose_init_was_killed_from_the_host() {
    let rt = Runtime::new("contract-dead");
    for started in [true, false] {
        let mut b = rt.bundle();
        b.set("/process/args", json!(["/bin/berth-probe", "sleep"]));
        let id = rt.id();
        rt.create(&b, &id);
        if started {
            rt.run(&["start", &id]).ok();
        }
        let pid = rt.pid(&id);
        assert!(!cgroup_dirs_named(&id).is_empty(), "no cgroup for {id}");
        host_sigkill(pid);
        assert!(eventually(5, || !pid_alive(pid)), "{pid} survived SIGKILL");

        let st = rt.state(&id).unwrap_or_else(|o| panic!("{o}"));
        assert_eq!(st["status"], "stopped", "started={started}: {st}");
        assert_eq!(st["pid"], 0, "started={started}: {st}");
        let o = rt.run(&["kill", &id, "TERM"]).fails();
        assert!(o.stderr.contains("container not running"), "{o}");
        rt.run(&["start", &id]).fails();
        rt.run(&["exec", &id, "true"]).fails();
        // go-runc decodes this into a list of pids: `[]` or runc's `null`.
        let ps = rt.run(&["ps", "--format", "json", &id]).ok().json();
        assert!(
            ps == json!([]) || ps.is_null(),
            "ps of a dead container: {ps}"
        );
        let listed = rt.run(&["list", "--format", "json"]).ok().json();
        let entry = listed
            .as_array()
            .and_then(|a| a.iter().find(|c| c["id"] == id.as_str()))
            .unwrap_or_else(|| panic!("{id} not listed: {listed}"));
        assert_eq!(entry["status"], "stopped", "{entry}");

        rt.run(&["delete", &id]).ok();
        assert!(!rt.root().join(&id).exists(), "state dir left for {id}");
        assert!(rt.state(&id).is_err());
        let left = cgroup_dirs_named(&id);
        assert!(left.is_empty(), "delete left cgroups {left:?}");
    }
}

/// A foreground `run` whose init is SIGKILLed from the host exits 137 (128
/// + 9), as runc does, and removes the container.
#[test]
fn run_exits_137_when_the_host_kills_the_init() {
    let rt = Runtime::new("contract-run137");
    let mut b = rt.bundle();
    b.set("/process/args", json!(["/bin/berth-probe", "sleep"]));
    b.write();
    let id = rt.id();
    let mut child = rt
        .command(&["run", "--bundle", b.path_str(), &id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    rt.wait_status(&id, "running");
    host_sigkill(rt.pid(&id));
    assert!(
        eventually(10, || child.try_wait().unwrap().is_some()),
        "run did not return after its init died"
    );
    assert_eq!(child.wait().unwrap().code(), Some(137));
    assert!(rt.state(&id).is_err(), "run left {id} behind");
    assert!(cgroup_dirs_named(&id).is_empty(), "run left cgroups");
}

// ---- delete --force -----------------------------------------------------------

/// `delete --force` of a running container with an exec'd process: both
/// processes die, the cgroups and the state go, and a second `delete
/// --force` of the now unknown id still succeeds (containerd retries).
#[test]
fn delete_force_of_a_running_container_with_an_exec() {
    let rt = Runtime::new("contract-delforce");
    let mut b = rt.bundle();
    let id = rt.start_sleeper(&mut b);
    let init = rt.pid(&id);
    let pidfile = rt.tempdir().join("exec.pid");
    rt.run(&[
        "exec",
        "--detach",
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
        "/bin/berth-probe",
        "sleep",
    ])
    .ok();
    let exec: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid_alive(exec));
    rt.run(&["delete", "--force", &id]).ok();
    assert!(rt.state(&id).is_err(), "{id} still there");
    assert!(!rt.root().join(&id).exists());
    for (what, pid) in [("init", init), ("exec'd process", exec)] {
        assert!(
            eventually(3, || !pid_alive(pid)),
            "{what} {pid} survived delete --force"
        );
    }
    let left = cgroup_dirs_named(&id);
    assert!(left.is_empty(), "delete --force left cgroups {left:?}");
    rt.run(&["delete", "--force", &id]).ok();
}

// ---- failures during create -------------------------------------------------

/// The init fails while it mounts, before the parent has moved it into its
/// cgroup: the error berth reports is the init's own, every time, not the
/// broken pipe the parent's next step meets once the init has exited.
#[test]
fn an_init_that_fails_before_its_cgroup_move_reports_its_own_error() {
    let rt = Runtime::new("early-fail");
    let mut b = rt.bundle();
    b.push(
        "/mounts",
        json!({"destination": "/mnt", "type": "bogusfs", "source": "none"}),
    );
    b.write();
    for _ in 0..8 {
        let id = rt.id();
        let o = rt.run(&["create", "--bundle", b.path_str(), &id]).fails();
        assert!(
            o.stderr.contains("bogusfs") && !o.stderr.contains("Broken pipe"),
            "not the init's mount error: {o}"
        );
        assert!(rt.state(&id).is_err(), "a failed create left state: {o}");
    }
}

/// A record cut short (state.json is not fsynced, so a power loss can leave
/// it empty where /run is on disk): `delete --force` removes the directory
/// with a warning; without --force the error names the record.
#[test]
fn delete_force_removes_a_container_whose_record_is_unreadable() {
    berth_integration::berth_only!();
    let rt = Runtime::new("bad-record");
    let id = rt.id();
    let dir = rt.root().join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("state.json"), b"").unwrap();
    let o = rt.run(&["delete", &id]).fails();
    assert!(o.stderr.contains("state.json"), "{o}");
    assert!(dir.exists());
    let o = rt.run(&["delete", "--force", &id]).ok();
    assert!(o.stderr.contains("removing its state directory"), "{o}");
    assert!(!dir.exists(), "state directory left: {o}");
}
