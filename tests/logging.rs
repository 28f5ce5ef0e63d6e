//! Error reporting: `--log`/`--log-format` lines as runc writes them (what
//! containerd's shim parses), one stderr line per validation problem, and
//! `--systemd-cgroup` refused (no systemd here) without leaving state.
//!
//! Real containers, as root: `cargo test -p berth --test logging`.

use berth_integration::serde_json::{self, json, Value};
use berth_integration::{Bundle, Runtime};
use std::path::Path;

/// A strict RFC 3339 date-time check (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`),
/// with every field in range.
fn check_rfc3339(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let bad = |why: &str| Err(format!("{s:?} is not RFC 3339: {why}"));
    if b.len() < 20 {
        return bad("too short");
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let (Some(y), Some(mo), Some(d), Some(h), Some(mi), Some(sec)) = (
        num(0..4),
        num(5..7),
        num(8..10),
        num(11..13),
        num(14..16),
        num(17..19),
    ) else {
        return bad("non-digit field");
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return bad("separators");
    }
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&d)
        || h > 23
        || mi > 59
        || sec > 60
    {
        return bad("field out of range");
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return bad("empty fraction");
        }
        rest = &frac[n..];
    }
    match rest {
        "Z" | "z" => Ok(()),
        tz if tz.len() == 6
            && matches!(tz.as_bytes()[0], b'+' | b'-')
            && tz.as_bytes()[3] == b':'
            && tz[1..3].parse::<u32>().is_ok_and(|h| h <= 23)
            && tz[4..6].parse::<u32>().is_ok_and(|m| m <= 59) =>
        {
            Ok(())
        }
        _ => bad("time zone"),
    }
}

#[test]
fn rfc3339_checker_rejects_garbage() {
    assert!(check_rfc3339("2024-02-03T04:05:06.123456789Z").is_ok());
    assert!(check_rfc3339("2024-02-03T04:05:06+01:00").is_ok());
    assert!(check_rfc3339("2024-02-03 04:05:06").is_err());
    assert!(check_rfc3339("2024-13-03T04:05:06Z").is_err());
    assert!(check_rfc3339("1700000000").is_err());
}

/// A bundle whose only problem is an unknown capability.
fn bad_cap_bundle(rt: &Runtime) -> Bundle {
    let mut b = rt.bundle();
    b.push("/process/capabilities/bounding", json!("CAP_BERTH_NOPE"));
    b.write();
    b
}

fn assert_root_has_no(root: &Path, id: &str) {
    assert!(
        !root.join(id).exists(),
        "a failed create left {}",
        root.join(id).display()
    );
}

#[test]
fn json_log_of_failed_create() {
    let rt = Runtime::new("log-json");
    let b = bad_cap_bundle(&rt);
    let log = rt.tempdir().join("berth.log");
    let id = rt.id();
    let o = rt
        .run(&[
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "create",
            "--bundle",
            b.path_str(),
            &id,
        ])
        .fails();
    assert_eq!(o.code, Some(1), "{o}");
    let text = std::fs::read_to_string(&log).expect("--log file was not written");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "empty log file");
    let mut errors = 0;
    for l in &lines {
        let v: Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"));
        assert!(v.is_object(), "{l}");
        let time = v["time"].as_str().unwrap_or_else(|| panic!("no time: {l}"));
        check_rfc3339(time).unwrap();
        assert!(v["msg"].is_string(), "no msg: {l}");
        assert!(v["level"].is_string(), "no level: {l}");
        if v["level"] == "error" {
            errors += 1;
            let msg = v["msg"].as_str().unwrap();
            assert!(
                msg.contains("CAP_BERTH_NOPE"),
                "error msg should name the cause: {l}"
            );
            assert!(
                msg.contains("process.capabilities.bounding"),
                "error msg should name the JSON path: {l}"
            );
        }
    }
    assert_eq!(errors, 1, "exactly one error line expected:\n{text}");
    assert_root_has_no(rt.root(), &id);
}

#[test]
fn text_log_of_failed_create() {
    let rt = Runtime::new("log-text");
    let b = bad_cap_bundle(&rt);
    let log = rt.tempdir().join("berth.log");
    let id = rt.id();
    rt.run(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "text",
        "create",
        "--bundle",
        b.path_str(),
        &id,
    ])
    .fails();
    let text = std::fs::read_to_string(&log).expect("--log file was not written");
    let line = text
        .lines()
        .find(|l| l.contains("level=error"))
        .unwrap_or_else(|| panic!("no level=error line in:\n{text}"));
    // time="…" level=error msg="…"
    let rest = line
        .strip_prefix("time=\"")
        .unwrap_or_else(|| panic!("line does not start with time=\": {line}"));
    let (time, rest) = rest.split_once('"').expect("closing quote of time");
    check_rfc3339(time).unwrap();
    let msg = rest
        .strip_prefix(" level=error msg=\"")
        .unwrap_or_else(|| panic!("expected ` level=error msg=\"` after time: {line}"));
    assert!(msg.ends_with('"'), "msg not quoted: {line}");
    assert!(msg.contains("CAP_BERTH_NOPE"), "{line}");
    assert!(
        !text.trim_start().starts_with('{'),
        "text format wrote JSON:\n{text}"
    );
    assert_root_has_no(rt.root(), &id);
}

#[test]
fn without_log_the_message_goes_to_stderr() {
    let rt = Runtime::new("log-stderr");
    let b = bad_cap_bundle(&rt);
    let id = rt.id();
    let o = rt.run(&["create", "--bundle", b.path_str(), &id]).fails();
    assert_eq!(o.code, Some(1), "{o}");
    assert!(o.stderr.contains("CAP_BERTH_NOPE"), "{o}");
    assert!(o.stdout.trim().is_empty(), "errors belong on stderr: {o}");
    assert_root_has_no(rt.root(), &id);
}

#[test]
fn missing_bundle_is_named_in_the_log() {
    let rt = Runtime::new("log-nobundle");
    let dir = rt.tempdir();
    let log = dir.join("berth.log");
    let missing = dir.join("no-such-bundle");
    let id = rt.id();
    let o = rt
        .run(&[
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "create",
            "--bundle",
            missing.to_str().unwrap(),
            &id,
        ])
        .fails();
    assert_eq!(o.code, Some(1), "{o}");
    let text = std::fs::read_to_string(&log).unwrap();
    let err = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["level"] == "error")
        .unwrap_or_else(|| panic!("no error line:\n{text}"));
    assert!(
        err["msg"]
            .as_str()
            .unwrap()
            .contains(missing.to_str().unwrap()),
        "msg should name the missing bundle path: {err}"
    );
    assert_root_has_no(rt.root(), &id);
}

#[test]
fn every_validation_problem_is_reported_with_its_path() {
    let rt = Runtime::new("log-multi");
    let mut b = rt.bundle();
    b.push(
        "/mounts",
        json!({ "destination": "relative/dest", "type": "tmpfs", "source": "tmpfs" }),
    );
    let mounts = b.config["mounts"].as_array().unwrap().len() - 1;
    b.push("/process/capabilities/effective", json!("CAP_BERTH_NOPE"));
    let caps = b.config["process"]["capabilities"]["effective"]
        .as_array()
        .unwrap()
        .len()
        - 1;
    b.push(
        "/hooks/createRuntime",
        json!({ "path": "bin/relative-hook" }),
    );
    b.write();
    let id = rt.id();
    let o = rt.run(&["create", "--bundle", b.path_str(), &id]).fails();
    assert_eq!(o.code, Some(1), "{o}");
    let expect = [
        (format!("mounts[{mounts}].destination"), "relative/dest"),
        (
            format!("process.capabilities.effective[{caps}]"),
            "CAP_BERTH_NOPE",
        ),
        (
            "hooks.createRuntime[0].path".to_string(),
            "bin/relative-hook",
        ),
    ];
    for (path, value) in &expect {
        let hits: Vec<&str> = o
            .stderr
            .lines()
            .filter(|l| l.contains(path.as_str()))
            .collect();
        assert_eq!(hits.len(), 1, "want one stderr line naming {path}: {o}");
        assert!(
            hits[0].contains(value),
            "line for {path} should show {value:?}: {o}"
        );
    }
    // Three problems, three distinct lines.
    let problem_lines = o
        .stderr
        .lines()
        .filter(|l| expect.iter().any(|(p, _)| l.contains(p.as_str())))
        .count();
    assert_eq!(problem_lines, 3, "{o}");
    // Nothing was made under --root.
    let leftovers: Vec<_> = std::fs::read_dir(rt.root())
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "a rejected config left {leftovers:?} under --root"
    );
}

#[test]
fn systemd_cgroup_is_refused_without_state() {
    let rt = Runtime::new("log-systemd");
    let mut b = rt.bundle();
    b.set("/process/args", json!(["/bin/sleep", "300"]));
    b.write();
    for cmd in ["create", "run"] {
        let id = rt.id();
        let mut args = vec!["--systemd-cgroup", cmd, "--bundle", b.path_str()];
        if cmd == "run" {
            args.push("--detach");
        }
        args.push(&id);
        let o = rt.run(&args).fails();
        assert_eq!(o.code, Some(1), "{o}");
        // This host has no systemd as PID 1: that is the reason given.
        assert!(
            o.stderr
                .contains("--systemd-cgroup: systemd is not running as PID 1"),
            "should say why --systemd-cgroup can't be used: {o}"
        );
        assert!(
            berth_integration::cgroup_dirs_named(&id).is_empty(),
            "cgroup left for {id}"
        );
        assert_root_has_no(rt.root(), &id);
        let st = rt.run(&["state", &id]).fails();
        assert!(st.stderr.contains("does not exist"), "{st}");
    }
}
