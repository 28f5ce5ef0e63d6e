//! Bad input: each case fails with exit status 1, a short message on stderr,
//! and leaves nothing behind (no state dir, no mounts from the bundle, no
//! process).

use berth_integration::serde_json::json;
use berth_integration::*;
use std::path::Path;

/// Assert the failure shape and that `id` left no trace.
#[track_caller]
fn assert_clean_failure(rt: &Runtime, o: &Out, id: &str, bundle: &Path) {
    assert!(!o.timed_out, "{o}");
    assert_eq!(o.code, Some(1), "exit status: {o}");
    let lines: Vec<&str> = o.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no error message: {o}");
    assert!(lines.len() <= 3, "error message too long: {o}");
    assert!(o.stdout.trim().is_empty(), "stdout not empty: {o}");
    if !id.contains('/') && id != "." && id != ".." && id.len() < 256 {
        assert!(!rt.root().join(id).exists(), "state dir left for {id}: {o}");
    }
    // Nothing under --root at all (this Runtime made no other container).
    let left: Vec<_> = std::fs::read_dir(rt.root())
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left under --root: {left:?}: {o}");
    assert!(
        host_mounts_under(bundle).is_empty(),
        "mounts left: {:?}",
        host_mounts_under(bundle)
    );
    assert!(rt.state(id).is_err(), "state still answers for {id}");
    let list = rt.run(&["list", "-q"]);
    assert!(
        !list.stdout.lines().any(|l| l == id),
        "list still shows {id}"
    );
    assert!(
        no_process_in(bundle),
        "a process is left with its root in the bundle"
    );
}

fn no_process_in(bundle: &Path) -> bool {
    std::thread::sleep(std::time::Duration::from_millis(50));
    let b = bundle.to_string_lossy().into_owned();
    std::fs::read_dir("/proc").unwrap().flatten().all(|e| {
        if e.file_name().to_string_lossy().parse::<u32>().is_err() {
            return true;
        }
        let inside = |l: &str| {
            std::fs::read_link(e.path().join(l))
                .map(|p| p.to_string_lossy().starts_with(&b))
                .unwrap_or(false)
        };
        !(inside("root") || inside("cwd"))
    })
}

fn create_with_config_text(name: &str, text: &str) {
    let rt = Runtime::new(name);
    let b = rt.bundle();
    std::fs::write(b.path().join("config.json"), text).unwrap();
    let id = rt.id();
    let o = rt.run(&["create", "--bundle", b.path_str(), &id]);
    assert_clean_failure(&rt, &o, &id, b.path());
}

#[test]
fn malformed_json() {
    create_with_config_text("badjson", "{ \"ociVersion\": \"1.0.2\", \"process\": ");
}

#[test]
fn empty_config() {
    create_with_config_text("emptyjson", "");
}

#[test]
fn wrong_type() {
    let mut cfg = default_config();
    cfg["process"]["user"]["uid"] = json!("x");
    create_with_config_text("wrongtype", &cfg.to_string());
}

#[test]
fn wrong_type_names_the_field() {
    // berth-only: berth's validator names the JSON path of the bad value.
    berth_only!();
    let rt = Runtime::new("wrongtypemsg");
    let b = rt.bundle();
    let mut cfg = default_config();
    cfg["process"]["user"]["uid"] = json!("x");
    std::fs::write(b.path().join("config.json"), cfg.to_string()).unwrap();
    let id = rt.id();
    let o = rt.run(&["create", "--bundle", b.path_str(), &id]).fails();
    assert!(o.stderr.contains("process.user.uid"), "{o}");
}

#[test]
fn missing_config_json() {
    let rt = Runtime::new("noconfig");
    let b = rt.bundle();
    // Never written.
    let id = rt.id();
    let o = rt.run(&["create", "--bundle", b.path_str(), &id]);
    assert_clean_failure(&rt, &o, &id, b.path());
    assert!(o.stderr.contains("config.json"), "{o}");
}

#[test]
fn missing_bundle_dir() {
    let rt = Runtime::new("nobundle");
    let dir = rt.tempdir().join("does-not-exist");
    let id = rt.id();
    let o = rt.run(&["create", "--bundle", dir.to_str().unwrap(), &id]);
    assert_clean_failure(&rt, &o, &id, &dir);
}

fn bad_id(name: &str, id: &str) {
    let rt = Runtime::new(name);
    let b = rt.bundle();
    b.write();
    // Deliberately not tracked for `delete --force` on drop: a broken runtime
    // given `..` could remove the directory above --root.
    let o = rt.run(&["create", "--bundle", b.path_str(), id]);
    assert_clean_failure(&rt, &o, id, b.path());
    // Nothing was created next to --root either.
    let parent = rt.root().parent().unwrap();
    assert!(
        !parent.join("berth-test-escape").exists(),
        "id escaped --root"
    );
}

#[test]
fn id_with_slash() {
    bad_id("idslash", "berth-test/x");
}

#[test]
fn id_dotdot() {
    bad_id("iddotdot", "..");
}

#[test]
fn id_dotdot_escape() {
    bad_id("idescape", "../berth-test-escape");
}

#[test]
fn id_too_long() {
    let id = format!("berth-test-{}", "x".repeat(1024));
    bad_id("idlong", &id);
}

#[test]
fn id_empty() {
    let rt = Runtime::new("idempty");
    let b = rt.bundle();
    b.write();
    let o = rt.run(&["create", "--bundle", b.path_str(), ""]);
    assert!(!o.success(), "{o}");
    assert!(host_mounts_under(b.path()).is_empty());
}

#[test]
fn rootfs_dangling_symlink() {
    let rt = Runtime::new("rootfslink");
    let b = rt.bundle();
    std::os::unix::fs::symlink("/nonexistent/berth-test-rootfs", b.path().join("dangling"))
        .unwrap();
    let mut b = b;
    b.set("/root/path", json!("dangling"));
    b.write();
    let id = rt.id();
    let o = rt.run(&["create", "--bundle", b.path_str(), &id]);
    assert_clean_failure(&rt, &o, &id, b.path());
}

#[test]
fn rootfs_missing() {
    let rt = Runtime::new("rootfsmissing");
    let mut b = rt.bundle();
    b.set("/root/path", json!("no-such-rootfs"));
    b.write();
    let id = rt.id();
    let o = rt.run(&["create", "--bundle", b.path_str(), &id]);
    assert_clean_failure(&rt, &o, &id, b.path());
}

#[test]
fn relative_mount_destination() {
    // runtime-spec 1.0: "destination ... MUST be an absolute path". runc 1.1
    // only warns and resolves it against "/" (berth-only).
    berth_only!();
    let rt = Runtime::new("reldest");
    let mut b = rt.bundle();
    b.push(
        "/mounts",
        json!({"destination": "relative/dest", "type": "tmpfs", "source": "tmpfs"}),
    );
    b.write();
    let id = rt.id();
    let o = rt.run(&["create", "--bundle", b.path_str(), &id]);
    assert_clean_failure(&rt, &o, &id, b.path());
    assert!(o.stderr.contains("relative/dest"), "{o}");
}

#[test]
fn unknown_mount_type_fails_cleanly() {
    let rt = Runtime::new("badmount");
    let mut b = rt.bundle();
    b.set("/process/args", json!(["/bin/berth-probe", "sleep"]));
    b.push(
        "/mounts",
        json!({"destination": "/x", "type": "berth-no-such-fs", "source": "none"}),
    );
    b.write();
    let id = rt.id();
    let o = rt.run(&["create", "--bundle", b.path_str(), &id]);
    assert_clean_failure(&rt, &o, &id, b.path());
}

#[test]
fn missing_process_binary_fails_cleanly() {
    // runc checks the binary during create (before the user process starts).
    let rt = Runtime::new("nobinary");
    let mut b = rt.bundle();
    b.set("/process/args", json!(["/bin/berth-no-such-binary"]));
    b.write();
    let id = rt.id();
    let o = rt.run(&["create", "--bundle", b.path_str(), &id]);
    assert_clean_failure(&rt, &o, &id, b.path());
}

#[test]
fn existing_id_leaves_first_alone() {
    let rt = Runtime::new("dupid2");
    let mut b1 = rt.bundle();
    let id = rt.start_sleeper(&mut b1);
    let b2 = rt.bundle();
    b2.write();
    let o = rt.run(&["create", "--bundle", b2.path_str(), &id]).fails();
    assert_eq!(o.code, Some(1), "{o}");
    assert!(host_mounts_under(b2.path()).is_empty());
    assert!(no_process_in(b2.path()));
    let st = rt.state(&id).unwrap();
    assert_eq!(st["status"], "running");
    assert_eq!(
        st["bundle"],
        b1.path_str(),
        "the existing container's state was overwritten"
    );
}
