//! `checkpoint` and `restore` through CRIU.
//!
//! `criu check` decides what runs: where CRIU works, a counter is
//! checkpointed and restored (and continues), with `--leave-running` and
//! with `--pre-dump` then a dump onto its parent. Where CRIU is missing or
//! `criu check` fails (Debian's CRIU 3.17 on kernel 6.18 fails to read the
//! vDSO), those tests print `skipped: <why>` and pass. The error paths
//! always run: no CRIU, a container that is not running, bad options, no
//! images, and (with any CRIU installed) CRIU itself failing: the container
//! is left as it was, or nothing at all is left behind.
//!
//! Real containers, as root: `cargo test -p berth --test checkpoint`.

use berth_integration::serde_json::json;
use berth_integration::{
    cgroup_dirs_named, host_mounts_under, pid_alive, processes_related, skip_if, Bundle, Opts,
    Runtime,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Whether a `criu` binary is in PATH.
fn criu_installed() -> bool {
    Command::new("criu")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Why CRIU cannot checkpoint on this host (`criu check`'s last error
/// line), or None when it can.
fn criu_unusable() -> Option<String> {
    let out = match Command::new("criu").arg("check").output() {
        Ok(o) => o,
        Err(e) => return Some(format!("criu is not installed ({e})")),
    };
    if out.status.success() {
        return None;
    }
    let said = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let last = said
        .lines()
        .rev()
        .find(|l| l.contains("Error"))
        .or_else(|| said.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("no output")
        .trim()
        .to_string();
    Some(format!("`criu check` failed ({}): {last}", out.status))
}

/// The rule: without a working CRIU, say why and pass.
macro_rules! require_working_criu {
    () => {
        if let Some(why) = criu_unusable() {
            eprintln!("skipped: {why}");
            return;
        }
    };
}

/// A container counting in a shell variable, writing each value to
/// /tmp/count: after a restore it goes on from where it was, not from 1.
fn counter(rt: &Runtime) -> Bundle {
    let mut b = rt.bundle();
    b.set(
        "/process/args",
        json!([
            "/bin/sh",
            "-c",
            "i=0; while :; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; sleep 0.1; done"
        ]),
    );
    b
}

fn count(b: &Bundle) -> Option<u64> {
    std::fs::read_to_string(b.rootfs().join("tmp/count"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Wait (up to 10 s) until the count exceeds `above`; the value seen.
#[track_caller]
fn count_above(b: &Bundle, above: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(n) = count(b).filter(|n| *n > above) {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "the counter never went above {above} (now {:?})",
            count(b)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_counter(rt: &Runtime) -> (Bundle, String) {
    let b = counter(rt);
    let id = rt.id();
    rt.create(&b, &id);
    rt.run(&["start", &id]).ok();
    count_above(&b, 2);
    (b, id)
}

/// Nothing of container `id` is left: no state, no cgroup directory on
/// any hierarchy, no mount under the runtime root.
#[track_caller]
fn nothing_left(rt: &Runtime, id: &str) {
    assert!(
        !rt.root().join(id).exists(),
        "state directory {} left behind",
        rt.root().join(id).display()
    );
    assert!(rt.state(id).is_err(), "state {id} still answers");
    let dirs = cgroup_dirs_named(id);
    assert!(dirs.is_empty(), "cgroup directories left: {dirs:?}");
    let mounts = host_mounts_under(rt.root());
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
}

/// Lines of stderr that are not warnings.
fn errors(stderr: &str) -> usize {
    stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("warning:"))
        .count()
}

fn image_dir(rt: &Runtime) -> PathBuf {
    rt.tempdir().join("images")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

// ---- always: the error paths --------------------------------------------

#[test]
fn without_criu_checkpoint_fails_clearly_and_the_container_runs_on() {
    let rt = Runtime::new("cr-nocriu");
    let mut b = rt.bundle();
    let id = rt.start_sleeper(&mut b);
    let pid = rt.pid(&id);
    let images = image_dir(&rt);

    let o = rt
        .run(&[
            "--criu",
            "/nonexistent/criu",
            "checkpoint",
            "--image-path",
            s(&images),
            &id,
        ])
        .fails();
    assert!(
        o.stderr
            .contains("CRIU not found at /nonexistent/criu (--criu)"),
        "{o}"
    );
    assert_eq!(errors(&o.stderr), 1, "one line: {o}");

    // No criu in PATH at all.
    let empty = rt.tempdir();
    let o = rt
        .run_opts(
            &["checkpoint", "--image-path", s(&images), &id],
            Opts {
                env: vec![("PATH".into(), s(&empty).into())],
                ..Default::default()
            },
        )
        .fails();
    assert!(
        o.stderr.contains(
            "CRIU is not installed (looked for \"criu\" in PATH; install the criu package or pass --criu PATH)"
        ),
        "{o}"
    );

    // A binary that is not CRIU.
    let o = rt
        .run(&[
            "--criu",
            "/bin/true",
            "checkpoint",
            "--image-path",
            s(&images),
            &id,
        ])
        .fails();
    assert!(
        o.stderr.contains("/bin/true: cannot tell which CRIU"),
        "{o}"
    );

    // Untouched: same process, running, no images written.
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    assert_eq!(rt.pid(&id), pid);
    assert!(pid_alive(pid));
    assert!(
        !images.exists(),
        "image directory made: {}",
        images.display()
    );
}

#[test]
fn checkpoint_of_a_created_or_stopped_container_is_refused() {
    let rt = Runtime::new("cr-state");
    let b = counter(&rt);
    let id = rt.id();
    rt.create(&b, &id);
    let images = image_dir(&rt);
    let o = rt
        .run(&["checkpoint", "--image-path", s(&images), &id])
        .fails();
    assert!(
        o.stderr
            .contains("Container cannot be checkpointed in created state"),
        "{o}"
    );
    assert_eq!(rt.status(&id).as_deref(), Some("created"));

    let mut b2 = rt.bundle();
    let id2 = rt.start_sleeper(&mut b2);
    rt.run(&["kill", &id2, "KILL"]).ok();
    rt.wait_stopped(&id2);
    let o = rt
        .run(&["checkpoint", "--image-path", s(&images), &id2])
        .fails();
    assert!(
        o.stderr
            .contains("Container cannot be checkpointed in stopped state"),
        "{o}"
    );
    assert_eq!(rt.status(&id2).as_deref(), Some("stopped"));
    assert!(!images.exists());

    let o = rt
        .run(&[
            "checkpoint",
            "--image-path",
            s(&images),
            "no-such-container",
        ])
        .fails();
    assert!(o.stderr.contains("container does not exist"), "{o}");
}

#[test]
fn bad_options_are_refused_before_criu_runs() {
    let rt = Runtime::new("cr-opts");
    let mut b = rt.bundle();
    let id = rt.start_sleeper(&mut b);
    let pid = rt.pid(&id);
    let images = image_dir(&rt);
    for (args, want) in [
        (
            vec!["--manage-cgroups-mode", "props"],
            "--manage-cgroups-mode \"props\": must be soft, full, strict or ignore",
        ),
        (
            vec!["--empty-ns", "ipc"],
            "--empty-ns \"ipc\": only \"network\" is supported",
        ),
        (
            vec!["--page-server", "nowhere"],
            "--page-server \"nowhere\": use ADDRESS:PORT",
        ),
        (
            vec!["--parent-path", "/abs"],
            "--parent-path /abs: must be relative",
        ),
    ] {
        let mut argv = vec!["checkpoint", "--image-path", s(&images)];
        argv.extend(args);
        argv.push(&id);
        let o = rt.run(&argv).fails();
        assert!(o.stderr.contains(want), "{want}: {o}");
    }
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    assert_eq!(rt.pid(&id), pid);
}

#[test]
fn restore_without_images_leaves_nothing() {
    let rt = Runtime::new("cr-noimg");
    let b = counter(&rt);
    b.write();
    let missing = rt.tempdir().join("missing");
    let empty = rt.tempdir();
    for (dir, want) in [
        (&missing, "No such file or directory"),
        (
            &empty,
            "inventory.img is missing (not a CRIU image directory)",
        ),
    ] {
        let id = rt.id();
        let o = rt
            .run(&[
                "restore",
                "--detach",
                "--image-path",
                s(dir),
                "--bundle",
                b.path_str(),
                &id,
            ])
            .fails();
        assert!(
            o.stderr.contains(&format!(
                "restore container {id}: no checkpoint to restore in {}",
                dir.display()
            )) && o.stderr.contains(want),
            "{o}"
        );
        nothing_left(&rt, &id);
    }
}

#[test]
fn a_container_with_a_terminal_is_refused() {
    let rt = Runtime::new("cr-tty");
    let mut b = rt.bundle();
    b.set("/process/terminal", json!(true));
    b.set("/process/args", json!(["/bin/sleep", "300"]));
    b.write();
    let id = rt.id();
    let _master = rt.create_with_console(&b, &id);
    rt.run(&["start", &id]).ok();
    let pid = rt.pid(&id);
    let images = image_dir(&rt);
    let o = rt
        .run(&["checkpoint", "--image-path", s(&images), &id])
        .fails();
    assert!(
        o.stderr
            .contains("the container has a terminal (process.terminal)"),
        "{o}"
    );
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    assert_eq!(rt.pid(&id), pid);

    // restore: neither a terminal bundle nor --console-socket.
    let id2 = rt.id();
    let o = rt
        .run(&[
            "restore",
            "-d",
            "--image-path",
            s(&images),
            "--bundle",
            b.path_str(),
            &id2,
        ])
        .fails();
    assert!(o.stderr.contains("has a terminal"), "{o}");
    nothing_left(&rt, &id2);
    let o = rt
        .run(&[
            "restore",
            "-d",
            "--console-socket",
            "/tmp/none.sock",
            "--image-path",
            s(&images),
            "--bundle",
            b.path_str(),
            &id2,
        ])
        .fails();
    assert!(
        o.stderr.contains(
            "--console-socket: restoring a container with a terminal is not supported yet"
        ),
        "{o}"
    );
    nothing_left(&rt, &id2);
}

#[test]
fn the_crun_backend_does_not_checkpoint_yet() {
    let rt = Runtime::new("cr-crun");
    let mut b = counter(&rt);
    b.set("/annotations/run.berth.backend", json!("crun"));
    b.write();
    let images = rt.tempdir();
    std::fs::write(images.join("inventory.img"), b"x").unwrap();
    let id = rt.id();
    let o = rt
        .run(&[
            "restore",
            "-d",
            "--image-path",
            s(&images),
            "--bundle",
            b.path_str(),
            &id,
        ])
        .fails();
    assert!(
        o.stderr
            .contains("restore is not supported by the crun backend yet"),
        "{o}"
    );
    nothing_left(&rt, &id);

    skip_if!(
        Command::new("crun").arg("--version").output().is_err(),
        "crun is not installed"
    );
    rt.create(&b, &id);
    rt.run(&["start", &id]).ok();
    let o = rt
        .run(&["checkpoint", "--image-path", s(&images), &id])
        .fails();
    assert!(
        o.stderr
            .contains("checkpoint is not supported by the crun backend yet"),
        "{o}"
    );
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
}

/// CRIU runs and fails on bogus images: the container it was restored
/// into (state, cgroups, CRIU's root mount) is gone again.
#[test]
fn restore_that_criu_fails_leaves_nothing() {
    skip_if!(!criu_installed(), "criu is not installed");
    let rt = Runtime::new("cr-badimg");
    let b = counter(&rt);
    b.write();
    let images = rt.tempdir();
    std::fs::write(images.join("inventory.img"), b"not an image").unwrap();
    let id = rt.id();
    let o = rt
        .run(&[
            "restore",
            "--detach",
            "--image-path",
            s(&images),
            "--bundle",
            b.path_str(),
            &id,
        ])
        .fails();
    assert!(
        o.stderr.contains(&format!(
            "restore container {id}: criu restore failed (exit status: "
        )),
        "{o}"
    );
    assert!(
        o.stderr
            .contains(&format!("(log: {})", images.join("restore.log").display())),
        "{o}"
    );
    assert_eq!(errors(&o.stderr), 1, "one line: {o}");
    nothing_left(&rt, &id);
    let procs = processes_related(&[&id], &[b.path()]);
    assert!(procs.is_empty(), "processes left: {procs:?}");
    assert!(count(&b).is_none(), "a counter ran");
}

/// On a host where CRIU is installed but broken (as here), checkpoint
/// says why with CRIU's own last error, and the container runs on.
#[test]
fn checkpoint_that_criu_fails_leaves_the_container_running() {
    skip_if!(!criu_installed(), "criu is not installed");
    if criu_unusable().is_none() {
        eprintln!("skipped: `criu check` passes here, so a dump does not fail (the round-trip tests cover it)");
        return;
    }
    let rt = Runtime::new("cr-fail");
    let (b, id) = start_counter(&rt);
    let pid = rt.pid(&id);
    let images = image_dir(&rt);
    let o = rt
        .run(&["checkpoint", "--image-path", s(&images), &id])
        .fails();
    let log = images.join("dump.log");
    assert!(
        o.stderr.contains(&format!(
            "checkpoint container {id}: criu dump failed (exit status: 1): Error ("
        )) && o.stderr.contains(&format!("(log: {})", log.display())),
        "{o}"
    );
    assert_eq!(errors(&o.stderr), 1, "one line: {o}");
    let logged = std::fs::read_to_string(&log).expect("CRIU wrote its log");
    let last = logged
        .lines()
        .rev()
        .find(|l| l.contains("Error ("))
        .expect("an error line in dump.log");
    let last = &last[last.find("Error (").unwrap()..];
    assert!(
        o.stderr.contains(last),
        "not the log's last error {last:?}: {o}"
    );

    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    assert_eq!(rt.pid(&id), pid);
    let n = count(&b).unwrap();
    count_above(&b, n);

    // --work-path takes the log.
    let work = rt.tempdir().join("work");
    let o = rt
        .run(&[
            "checkpoint",
            "--image-path",
            s(&images),
            "--work-path",
            s(&work),
            &id,
        ])
        .fails();
    assert!(
        o.stderr
            .contains(&format!("(log: {})", work.join("dump.log").display())),
        "{o}"
    );
    assert!(work.join("dump.log").exists());

    // Pre-dump asks CRIU whether it can track memory first.
    let o = rt
        .run(&["checkpoint", "--pre-dump", "--image-path", s(&images), &id])
        .fails();
    assert!(
        o.stderr
            .contains("`criu check --feature mem_dirty_track` failed"),
        "{o}"
    );
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
}

// ---- with a working CRIU --------------------------------------------------

fn checkpoint(rt: &Runtime, id: &str, images: &Path, extra: &[&str]) {
    let mut argv = vec!["checkpoint", "--image-path", s(images)];
    argv.extend(extra);
    argv.push(id);
    rt.run_opts(
        &argv,
        Opts {
            timeout: Duration::from_secs(60),
            ..Default::default()
        },
    )
    .ok();
}

fn restore(rt: &Runtime, b: &Bundle, id: &str, images: &Path) {
    rt.run_opts(
        &[
            "restore",
            "--detach",
            "--image-path",
            s(images),
            "--bundle",
            b.path_str(),
            id,
        ],
        Opts {
            timeout: Duration::from_secs(60),
            ..Default::default()
        },
    )
    .ok();
}

/// The counter stopped (its value stays put for a while).
#[track_caller]
fn stays_put(b: &Bundle) -> u64 {
    let n = count(b).expect("a count");
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(count(b), Some(n), "the counter still counts");
    n
}

#[test]
fn checkpoint_and_restore_a_counter() {
    require_working_criu!();
    let rt = Runtime::new("cr-trip");
    let (b, id) = start_counter(&rt);
    let images = image_dir(&rt);
    checkpoint(&rt, &id, &images, &[]);
    assert!(images.join("inventory.img").exists());
    assert!(images.join("descriptors.json").exists());
    // As runc: a dumped container is gone, its id free for restore.
    nothing_left(&rt, &id);
    let at_dump = stays_put(&b);

    restore(&rt, &b, &id, &images);
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    let pid = rt.pid(&id);
    assert!(pid_alive(pid));
    // It goes on from its own memory: past the dumped value, never from 1.
    let after = count_above(&b, at_dump);
    assert!(after > at_dump, "{after} after {at_dump}");
    // In its cgroup, as a created container is.
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(cg.contains(&id), "not in the container's cgroup: {cg}");

    rt.run(&["delete", "--force", &id]).ok();
    nothing_left(&rt, &id);
}

#[test]
fn leave_running_keeps_the_container() {
    require_working_criu!();
    let rt = Runtime::new("cr-leave");
    let (b, id) = start_counter(&rt);
    let pid = rt.pid(&id);
    let images = image_dir(&rt);
    checkpoint(&rt, &id, &images, &["--leave-running"]);
    assert!(images.join("inventory.img").exists());
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    assert_eq!(rt.pid(&id), pid);
    let n = count(&b).unwrap();
    count_above(&b, n);

    // The images restore into a second container once the first is gone.
    rt.run(&["delete", "--force", &id]).ok();
    let at_delete = stays_put(&b);
    let id2 = rt.id();
    restore(&rt, &b, &id2, &images);
    assert_eq!(rt.status(&id2).as_deref(), Some("running"));
    // Restored from the checkpoint, before the count went on to at_delete.
    let first = count_above(&b, 0);
    assert!(first > 2, "the count started over: {first}");
    count_above(&b, at_delete.max(first));
}

#[test]
fn pre_dump_then_dump_onto_its_parent() {
    require_working_criu!();
    let rt = Runtime::new("cr-pre");
    let (b, id) = start_counter(&rt);
    let pid = rt.pid(&id);
    let base = rt.tempdir();
    let pre = base.join("1");
    let full = base.join("2");
    checkpoint(&rt, &id, &pre, &["--pre-dump"]);
    assert_eq!(
        rt.status(&id).as_deref(),
        Some("running"),
        "pre-dump stops nothing"
    );
    assert_eq!(rt.pid(&id), pid);
    checkpoint(&rt, &id, &full, &["--parent-path", "../1"]);
    nothing_left(&rt, &id);
    let at_dump = stays_put(&b);
    restore(&rt, &b, &id, &full);
    assert_eq!(rt.status(&id).as_deref(), Some("running"));
    count_above(&b, at_dump);
}
