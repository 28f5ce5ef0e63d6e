//! Foreground `run` of a `process.terminal: true` bundle without
//! `--console-socket`: berth makes the container's pty and relays it to its own
//! terminal, and passes the exit status through.
//!
//! Real containers, as root: `cargo test -p berth --test terminal`.

use berth_integration::serde_json::json;
use berth_integration::Runtime;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Run `cmd` as a session leader whose controlling terminal is a fresh pty we
/// own; returns (exit code, everything read from the master).
fn run_on_pty(mut cmd: std::process::Command, timeout: Duration) -> (Option<i32>, String) {
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let master: OwnedFd = pty.master;
    let slave: OwnedFd = pty.slave;
    let slave_fd = slave.as_raw_fd();
    cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()));
    // SAFETY: setsid and ioctl are async-signal-safe; slave_fd stays open in
    // the child (it is also dup'ed onto 0..2).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::ioctl(slave_fd, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn on pty");
    drop(cmd); // drops the Stdio copies of the slave
    drop(slave);

    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let mut reader = std::fs::File::from(master);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        // EIO once every slave descriptor is closed.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });

    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let code = loop {
        while let Ok(chunk) = rx.try_recv() {
            out.extend(chunk);
        }
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // Whatever the relay wrote before exiting.
    let grace = Instant::now() + Duration::from_millis(500);
    while let Ok(chunk) = rx.recv_timeout(grace.saturating_duration_since(Instant::now())) {
        out.extend(chunk);
    }
    (code, String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn foreground_run_with_terminal_relays_and_passes_status() {
    let rt = Runtime::new("tty-fg");
    let mut b = rt.bundle();
    b.set("/process/terminal", json!(true));
    b.set(
        "/process/args",
        json!(["/bin/sh", "-c", "tty; echo ok; exit 3"]),
    );
    b.write();
    let id = rt.id();
    let cmd = rt.command(&["run", "--bundle", b.path_str(), &id]);
    let (code, out) = run_on_pty(cmd, Duration::from_secs(20));
    assert!(
        out.contains("/dev/pts/"),
        "`tty` inside should name a pty: {out:?}"
    );
    assert!(!out.contains("not a tty"), "{out:?}");
    assert!(out.contains("ok"), "{out:?}");
    assert_eq!(
        code,
        Some(3),
        "exit status should pass through; output {out:?}"
    );
    assert!(
        !rt.root().join(&id).exists(),
        "foreground run left its state dir"
    );
}

#[test]
fn foreground_run_with_terminal_through_crun() {
    // The same through the crun backend: crun hands the pty master to a
    // socket berth listens on, and berth relays it.
    let crun_missing = !std::process::Command::new("crun")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    berth_integration::skip_if!(crun_missing, "crun is not installed");
    let rt = Runtime::new("tty-crun");
    let mut b = rt.bundle();
    b.set("/annotations/run.berth.backend", json!("crun"));
    b.set("/process/terminal", json!(true));
    b.set(
        "/process/args",
        json!(["/bin/sh", "-c", "tty; echo ok; exit 5"]),
    );
    b.write();
    let id = rt.id();
    let cmd = rt.command(&["run", "--bundle", b.path_str(), &id]);
    let (code, out) = run_on_pty(cmd, Duration::from_secs(20));
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert!(out.contains("ok"), "{out:?}");
    assert_eq!(code, Some(5), "{out:?}");
    assert!(!rt.root().join(&id).exists());
}

/// `process.consoleSize` sizes the pty berth sends to `--console-socket`.
#[test]
fn console_size_sets_the_pty_window() {
    let rt = Runtime::new("consolesize");
    let mut b = rt.bundle();
    b.set("/process/terminal", json!(true));
    b.set("/process/consoleSize", json!({"height": 33, "width": 101}));
    b.set("/process/args", json!(["true"]));
    b.write();
    let id = rt.id();
    let master = rt.create_with_console(&b, &id);
    // SAFETY: a zeroed winsize is valid; TIOCGWINSZ fills it.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize through the pointer.
    assert_eq!(
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) },
        0
    );
    assert_eq!((ws.ws_row, ws.ws_col), (33, 101));
    rt.run(&["delete", "--force", &id]).ok();
}
