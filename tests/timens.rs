//! Time namespaces: `linux.timeOffsets` are written into a new time namespace
//! before the container process starts, and are refused without one.
//!
//! Real containers, as root: `cargo test -p berth --test timens`.

use berth_integration::serde_json::json;
use berth_integration::{skip_if, Bundle, Runtime};

const YEAR: u64 = 86400 * 365;

fn has_timens() -> bool {
    std::path::Path::new("/proc/self/ns/time").exists()
}

fn run_sh(rt: &Runtime, b: &mut Bundle, script: &str) -> String {
    b.set("/process/args", json!(["/bin/sh", "-c", script]));
    b.write();
    let id = rt.id();
    rt.run(&["run", "--bundle", b.path_str(), &id]).ok().stdout
}

/// `clock secs nanosecs` lines of /proc/self/timens_offsets.
fn offsets(text: &str) -> Vec<(String, i64, i64)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((
                f.next()?.to_string(),
                f.next()?.parse().ok()?,
                f.next()?.parse().ok()?,
            ))
        })
        .collect()
}

#[test]
fn monotonic_offset_is_applied() {
    skip_if!(!has_timens(), "kernel without time namespaces");
    let rt = Runtime::new("timens-mono");
    let mut b = rt.bundle();
    b.namespace("time", None);
    b.set(
        "/linux/timeOffsets",
        json!({ "monotonic": { "secs": YEAR, "nanosecs": 0 } }),
    );
    let out = run_sh(
        &rt,
        &mut b,
        "cat /proc/self/timens_offsets; echo ns=$(readlink /proc/self/ns/time)",
    );
    let offs = offsets(&out);
    let mono = offs
        .iter()
        .find(|(c, _, _)| c == "monotonic")
        .unwrap_or_else(|| panic!("no monotonic line in timens_offsets: {out:?}"));
    assert_eq!((mono.1, mono.2), (YEAR as i64, 0), "{out:?}");
    let boot = offs
        .iter()
        .find(|(c, _, _)| c == "boottime")
        .unwrap_or_else(|| panic!("no boottime line: {out:?}"));
    assert_eq!(
        (boot.1, boot.2),
        (0, 0),
        "boottime was not asked for: {out:?}"
    );
    // A new namespace, not the host's.
    let host = berth_integration::host_ns("time");
    let inside = out
        .lines()
        .find_map(|l| l.strip_prefix("ns="))
        .expect("ns line");
    assert_ne!(
        inside, host,
        "the container shares the host's time namespace"
    );
}

#[test]
fn boottime_offset_shows_in_uptime() {
    skip_if!(!has_timens(), "kernel without time namespaces");
    let rt = Runtime::new("timens-boot");
    let mut b = rt.bundle();
    b.namespace("time", None);
    b.set(
        "/linux/timeOffsets",
        json!({ "boottime": { "secs": 2 * YEAR, "nanosecs": 0 } }),
    );
    let out = run_sh(&rt, &mut b, "cat /proc/uptime");
    let host_up: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let up: f64 = out
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad /proc/uptime: {out:?}"));
    let diff = up - host_up;
    assert!(
        (diff - (2 * YEAR) as f64).abs() < 60.0,
        "uptime inside {up} should be host's {host_up} + {}: {out:?}",
        2 * YEAR
    );
}

#[test]
fn offsets_without_a_time_namespace_are_refused() {
    let rt = Runtime::new("timens-none");
    let mut b = rt.bundle();
    b.without_namespace("time");
    b.set(
        "/linux/timeOffsets",
        json!({ "monotonic": { "secs": YEAR, "nanosecs": 0 } }),
    );
    b.set("/process/args", json!(["/bin/true"]));
    b.write();
    let id = rt.id();
    let o = rt.run(&["create", "--bundle", b.path_str(), &id]).fails();
    assert_eq!(o.code, Some(1), "{o}");
    assert!(
        o.stderr.contains("linux.timeOffsets"),
        "the error should name linux.timeOffsets: {o}"
    );
    assert!(!rt.root().join(&id).exists(), "a refused create left state");
}

#[test]
fn offsets_with_a_joined_time_namespace_are_refused() {
    // Offsets can only be set on a namespace berth creates; joining one by
    // path and asking for offsets cannot be honoured.
    skip_if!(!has_timens(), "kernel without time namespaces");
    let rt = Runtime::new("timens-path");
    let mut b = rt.bundle();
    b.namespace("time", Some("/proc/self/ns/time"));
    b.set(
        "/linux/timeOffsets",
        json!({ "monotonic": { "secs": YEAR, "nanosecs": 0 } }),
    );
    b.set("/process/args", json!(["/bin/true"]));
    b.write();
    let id = rt.id();
    let o = rt.run(&["create", "--bundle", b.path_str(), &id]).fails();
    assert_eq!(o.code, Some(1), "{o}");
    assert!(o.stderr.contains("linux.timeOffsets"), "{o}");
    assert!(!rt.root().join(&id).exists(), "a refused create left state");
}
