//! No descriptor of berth's reaches the container's program (the
//! CVE-2024-21626 class): a PATH that walks out through /proc/self/fd/N of any
//! descriptor open at exec time must not find a host executable.
//!
//! Real containers, as root: `cargo test -p berth --test fd_escape`.

use berth_integration::serde_json::json;
use berth_integration::Runtime;
use std::os::unix::fs::PermissionsExt;

#[test]
fn path_through_proc_self_fd_cannot_reach_the_host() {
    let rt = Runtime::new("fdescape");
    // A host directory the container must never see, with an executable
    // that would leave a mark on the host if it ever ran.
    let host = rt.tempdir();
    let mark = host.join("escaped");
    let tool = host.join("berth-escape-tool");
    std::fs::write(
        &tool,
        format!("#!/bin/sh\necho escaped > {}\n", mark.display()),
    )
    .unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();

    // Every fd number berth could plausibly hold, each climbing far enough
    // to reach / from any directory berth might have open.
    let up = "../".repeat(16);
    let rel = host.strip_prefix("/").unwrap().display().to_string();
    let path: Vec<String> = (3..40)
        .map(|fd| format!("/proc/self/fd/{fd}/{up}{rel}"))
        .collect();

    let mut b = rt.bundle();
    b.set(
        "/process/env",
        json!([format!("PATH={}:/bin", path.join(":"))]),
    );
    b.set("/process/args", json!(["berth-escape-tool"]));
    b.write();
    let id = rt.id();
    let out = rt.run(&["run", "--bundle", b.path_str(), &id]);
    assert!(
        !out.success(),
        "the host tool was found through a leaked fd: {out:?}"
    );
    assert!(
        out.stderr.contains("executable file not found"),
        "expected a lookup failure: {out:?}"
    );
    assert!(
        !mark.exists(),
        "a host executable ran from inside the container"
    );
}

#[test]
fn only_stdio_is_open_in_the_program() {
    let rt = Runtime::new("fdonly");
    let r = rt.probe(|_| {});
    let fds = r["fds"].as_object().expect("fds in the probe report");
    // The probe's own directory read of /proc/self/fd may show one more fd.
    let extra: Vec<_> = fds
        .iter()
        .filter(|(n, target)| {
            let n: i32 = n.parse().unwrap_or(-1);
            n > 2 && !target.as_str().unwrap_or("").starts_with("/proc/")
        })
        .collect();
    assert!(
        extra.is_empty(),
        "descriptors leaked into the container: {extra:?}"
    );
}
