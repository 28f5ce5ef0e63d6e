//! Real hooks: shell scripts in a temp dir.

use crate::{run, run_all, HookError};
use oci_spec::runtime::{Hook, HookBuilder};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A hook that runs `script` with /bin/sh (so the script need not be
/// executable: avoids ETXTBSY races with other tests forking).
fn sh(script: &str, extra: &[&str], env: Option<Vec<String>>, timeout: Option<i64>) -> Hook {
    let mut args = vec![
        "sh".to_string(),
        "-c".to_string(),
        script.to_string(),
        "hook".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut b = HookBuilder::default().path("/bin/sh").args(args);
    if let Some(env) = env {
        b = b.env(env);
    }
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    b.build().unwrap()
}

fn p(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn stdin_receives_the_state() {
    let tmp = tempfile::tempdir().unwrap();
    let out = p(tmp.path(), "stdin");
    let state = br#"{"ociVersion":"1.2.1","id":"c","status":"created","pid":1,"bundle":"/b"}"#;
    run(&sh(r#"cat > "$1""#, &[s(&out)], None, None), state).unwrap();
    assert_eq!(fs::read(&out).unwrap(), state);
}

#[test]
fn large_stdin_is_received_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let out = p(tmp.path(), "stdin");
    let state: Vec<u8> = (0..300 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    run(
        &sh(r#"sleep 0.1; cat > "$1""#, &[s(&out)], None, None),
        &state,
    )
    .unwrap();
    assert_eq!(fs::read(&out).unwrap(), state);
}

#[test]
fn argv_and_env_exactly_as_given() {
    let tmp = tempfile::tempdir().unwrap();
    let (argv, envf) = (p(tmp.path(), "argv"), p(tmp.path(), "env"));
    let script = r#"cat /proc/$$/cmdline > "$1"; cat /proc/$$/environ > "$2""#;
    let hook = HookBuilder::default()
        .path("/bin/sh")
        .args(vec![
            "custom-argv0".to_string(),
            "-c".to_string(),
            script.to_string(),
            "zero".to_string(),
            s(&argv).to_string(),
            s(&envf).to_string(),
        ])
        .env(vec!["FOO=bar".to_string(), "EQ=a=b".to_string()])
        .build()
        .unwrap();
    run(&hook, b"{}").unwrap();
    let expected = format!(
        "custom-argv0\0-c\0{script}\0zero\0{}\0{}\0",
        s(&argv),
        s(&envf)
    );
    assert_eq!(fs::read_to_string(&argv).unwrap(), expected);
    assert_eq!(fs::read_to_string(&envf).unwrap(), "FOO=bar\0EQ=a=b\0");
}

#[test]
fn no_env_means_empty_env_and_no_args_means_path_as_argv0() {
    let tmp = tempfile::tempdir().unwrap();
    let envf = p(tmp.path(), "env");
    run(
        &sh(r#"cat /proc/$$/environ > "$1""#, &[s(&envf)], None, None),
        b"{}",
    )
    .unwrap();
    assert_eq!(fs::read(&envf).unwrap(), b"");

    // No args: argv is [path]. /bin/true ignores it; just check it runs.
    let hook = HookBuilder::default().path("/bin/true").build().unwrap();
    run(&hook, b"{}").unwrap();
}

#[test]
fn nonzero_exit_is_failed_with_status_and_stderr() {
    let hook = sh(
        "echo noise; echo first >&2; echo 'boom happened' >&2; exit 3",
        &[],
        None,
        None,
    );
    let err = run(&hook, b"{}").unwrap_err();
    match &err {
        HookError::Failed {
            status,
            stderr,
            stdout,
            ..
        } => {
            assert_eq!(status, "exit status 3");
            assert_eq!(stderr, "first\nboom happened\n");
            assert_eq!(stdout, "noise\n");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "hook /bin/sh failed: exit status 3: boom happened"
    );
}

#[test]
fn killed_by_signal() {
    let err = run(&sh("kill -9 $$", &[], None, None), b"{}").unwrap_err();
    assert_eq!(err.to_string(), "hook /bin/sh failed: signal 9");
}

#[test]
fn huge_stderr_is_truncated_to_its_tail() {
    let script = "i=0; while [ $i -lt 3000 ]; do echo \"line $i of noise noise noise\" >&2; i=$((i+1)); done; exit 1";
    let err = run(&sh(script, &[], None, None), b"{}").unwrap_err();
    let HookError::Failed { stderr, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(stderr.len() <= 16 * 1024);
    assert!(stderr.ends_with("line 2999 of noise noise noise\n"));
    assert!(
        err.to_string()
            .ends_with(": line 2999 of noise noise noise"),
        "{err}"
    );
}

#[test]
fn timeout_kills_the_hook() {
    let hook = sh("exec sleep 100", &[], None, Some(1));
    let t = Instant::now();
    let err = run(&hook, b"{}").unwrap_err();
    let took = t.elapsed();
    assert!(matches!(err, HookError::Timeout { secs: 1, .. }), "{err:?}");
    assert_eq!(err.to_string(), "hook /bin/sh timed out after 1s");
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn timeout_with_output_pipes_held_by_a_grandchild() {
    // sh keeps running `sleep` in the foreground; both hold stdout/stderr.
    let hook = sh("sleep 5; echo never", &[], None, Some(1));
    let t = Instant::now();
    assert!(matches!(run(&hook, b"{}"), Err(HookError::Timeout { .. })));
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[test]
fn exit_is_not_delayed_by_a_background_grandchild() {
    let t = Instant::now();
    run(&sh("sleep 3 & exit 0", &[], None, Some(10)), b"{}").unwrap();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn hook_that_ignores_stdin_with_large_state() {
    let state = vec![b'x'; 200 * 1024];
    run(&sh("exit 0", &[], None, Some(10)), &state).unwrap();
    // Reads a little, then closes stdin and keeps running: EPIPE, not a failure.
    run(
        &sh(
            "head -c 10 >/dev/null; exec 0<&-; sleep 0.2",
            &[],
            None,
            Some(10),
        ),
        &state,
    )
    .unwrap();
    // Never reads and never exits on its own before the pipe fills.
    run(&sh("sleep 0.3", &[], None, Some(10)), &state).unwrap();
}

#[test]
fn missing_binary_is_a_spawn_error() {
    let hook = HookBuilder::default()
        .path("/nonexistent/hook")
        .build()
        .unwrap();
    let err = run(&hook, b"{}").unwrap_err();
    assert!(matches!(err, HookError::Spawn { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "hook /nonexistent/hook: cannot execute: No such file or directory"
    );
}

#[test]
fn not_executable_is_a_spawn_error() {
    let tmp = tempfile::tempdir().unwrap();
    let f = p(tmp.path(), "plain");
    fs::write(&f, "#!/bin/sh\nexit 0\n").unwrap();
    let hook = HookBuilder::default().path(&f).build().unwrap();
    let err = run(&hook, b"{}").unwrap_err();
    assert!(
        err.to_string()
            .ends_with("cannot execute: Permission denied"),
        "{err}"
    );
}

#[test]
fn executable_script_with_shebang() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let script = p(tmp.path(), "hook.sh");
    let out = p(tmp.path(), "out");
    fs::write(&script, format!("#!/bin/sh\ncat > {}\nexit 0\n", s(&out))).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let hook = HookBuilder::default().path(&script).build().unwrap();
    // Another test thread may fork while our write fd is open (ETXTBSY).
    let mut tries = 0;
    loop {
        match run(&hook, b"state") {
            Err(HookError::Spawn { source, .. })
                if source.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 =>
            {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            r => break r.unwrap(),
        }
    }
    assert_eq!(fs::read(&out).unwrap(), b"state");
}

#[test]
fn invalid_timeout_and_nul_bytes() {
    let hook = sh("exit 0", &[], None, Some(0));
    assert!(matches!(
        run(&hook, b"{}"),
        Err(HookError::InvalidTimeout { secs: 0, .. })
    ));
    let hook = sh("exit 0", &[], Some(vec!["A=\0".to_string()]), None);
    assert!(matches!(run(&hook, b"{}"), Err(HookError::Nul { .. })));
}

#[test]
fn run_all_stops_at_first_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, c) = (p(tmp.path(), "a"), p(tmp.path(), "c"));
    let hooks = [
        sh(r#"touch "$1""#, &[s(&a)], None, None),
        sh("exit 7", &[], None, None),
        sh(r#"touch "$1""#, &[s(&c)], None, None),
    ];
    let err = run_all(&hooks, b"{}").unwrap_err();
    assert!(err.to_string().contains("exit status 7"), "{err}");
    assert!(a.exists());
    assert!(!c.exists());
    run_all(&hooks[..1], b"{}").unwrap();
    run_all(&[], b"{}").unwrap();
}

#[test]
fn works_in_a_forked_single_threaded_child() {
    // The container init calls this after fork; run it there and report
    // through the exit code.
    let tmp = tempfile::tempdir().unwrap();
    let out = p(tmp.path(), "out");
    let hook = sh(r#"cat > "$1""#, &[s(&out)], None, Some(5));
    let fail = sh("exit 4", &[], None, Some(5));
    // SAFETY: test-only fork; the child runs the hook runner (what berth's
    // init does) and leaves with _exit, never returning into the harness.
    match unsafe { libc::fork() } {
        0 => {
            let ok = run(&hook, b"from-child").is_ok();
            let failed = matches!(run(&fail, b"{}"), Err(HookError::Failed { .. }));
            // SAFETY: _exit ends the forked child without running destructors.
            unsafe { libc::_exit(if ok && failed { 0 } else { 1 }) }
        }
        pid => {
            assert!(pid > 0);
            let mut status = 0;
            // SAFETY: waits for the child we just forked; `status` is a valid int.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "{status}"
            );
        }
    }
    assert_eq!(fs::read(&out).unwrap(), b"from-child");
}
