//! Test harness for running real containers with the runtime named by
//! `BERTH_BIN` (default `<workspace>/target/release/berth`).
//!
//! The suites are validated against runc (`BERTH_BIN=/usr/bin/runc`): where runc's
//! behaviour is the contract, a test is right when it passes on runc. Tests that
//! check something berth adds call [`berth_only!`] and are skipped on runc.
//!
//! Environment:
//! - `BERTH_BIN`: the runtime binary under test.
//! - `BERTH_TEST_ROOTFS`: a busybox root filesystem (from `hack/mkrootfs.sh OUT
//!   --probe PATH`). Without it the harness builds its own in
//!   `target/berth-test-cache/rootfs`.
//! - `BERTH_PROBE`: a statically linked `berth-probe`. Without it the harness
//!   uses `target/x86_64-unknown-linux-gnu/release/berth-probe`, building it
//!   (in a separate target dir) if missing.

use serde_json::{json, Value};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub use serde_json;

pub mod clients;
pub mod docker;
pub mod images;
pub mod oci;
pub mod podman;
pub mod storage;

/// Skip the rest of a test when the runtime under test is runc: the test checks
/// something berth adds beyond runc.
#[macro_export]
macro_rules! berth_only {
    () => {
        if $crate::is_runc() {
            eprintln!("skipped: berth-only test, BERTH_BIN is runc");
            return;
        }
    };
}

/// Skip the rest of a test (with a reason on stderr) when `cond` is true.
#[macro_export]
macro_rules! skip_if {
    ($cond:expr, $why:expr) => {
        if $cond {
            // CI installs everything these tests need (hack/deps.sh): a skip
            // there would hide a broken set-up, so it fails instead.
            if std::env::var_os("CI").is_some() {
                panic!("cannot run in CI: {}", $why);
            }
            eprintln!("skipped: {}", $why);
            return;
        }
    };
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn berth_bin() -> PathBuf {
    match std::env::var_os("BERTH_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace().join("target/release/berth"),
    }
}

/// True when the runtime under test is runc (basename of BERTH_BIN).
pub fn is_runc() -> bool {
    berth_bin()
        .file_name()
        .map(|n| n == "runc")
        .unwrap_or(false)
}

fn cache_dir() -> PathBuf {
    let d = workspace().join("target/berth-test-cache");
    std::fs::create_dir_all(&d).expect("create target/berth-test-cache");
    d
}

/// An exclusive flock on a file in the cache dir, for work shared between test
/// binaries (building the probe or the rootfs).
struct FileLock(std::fs::File);
impl FileLock {
    fn take(name: &str) -> FileLock {
        let f = std::fs::File::create(cache_dir().join(name)).expect("lock file");
        // SAFETY: flock on an fd we own; blocks until the lock is ours.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        FileLock(f)
    }
}
impl Drop for FileLock {
    fn drop(&mut self) {
        // SAFETY: unlocking our own fd.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Path of a statically linked berth-probe.
pub fn probe_bin() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        if let Some(p) = std::env::var_os("BERTH_PROBE") {
            return PathBuf::from(p);
        }
        let built = workspace().join("target/x86_64-unknown-linux-gnu/release/berth-probe");
        if built.exists() {
            return built;
        }
        // Build into our own target dir: the workspace's may be locked by the
        // cargo that runs us.
        let _l = FileLock::take("probe.lock");
        let tdir = cache_dir().join("probe-target");
        let out = tdir.join("x86_64-unknown-linux-gnu/release/berth-probe");
        if !out.exists() {
            let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args([
                    "build",
                    "--release",
                    "-p",
                    "berth-integration",
                    "--bin",
                    "berth-probe",
                ])
                .args(["--target", "x86_64-unknown-linux-gnu"])
                .env("RUSTFLAGS", "-C target-feature=+crt-static")
                .env("CARGO_TARGET_DIR", &tdir)
                .current_dir(workspace())
                .status()
                .expect("run cargo to build berth-probe");
            assert!(st.success(), "building berth-probe failed");
        }
        out
    })
    .clone()
}

/// The base root filesystem the bundles are copied from.
pub fn base_rootfs() -> PathBuf {
    static R: OnceLock<PathBuf> = OnceLock::new();
    R.get_or_init(|| {
        if let Some(p) = std::env::var_os("BERTH_TEST_ROOTFS") {
            let p = PathBuf::from(p);
            assert!(
                p.join("bin").is_dir(),
                "BERTH_TEST_ROOTFS={} has no bin/",
                p.display()
            );
            return p;
        }
        let _l = FileLock::take("rootfs.lock");
        let dir = cache_dir().join("rootfs");
        if !dir.join(".complete").exists() {
            let _ = std::fs::remove_dir_all(&dir);
            build_rootfs(&dir);
            std::fs::write(dir.join(".complete"), b"").unwrap();
        }
        dir
    })
    .clone()
}

/// A minimal busybox rootfs (Debian's busybox-static).
fn build_rootfs(dir: &Path) {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("busybox not found: apt-get install -y busybox-static");
    for d in [
        "bin",
        "sbin",
        "etc",
        "dev",
        "proc",
        "sys",
        "tmp",
        "root",
        "home/berth",
        "var",
        "run",
        "usr/bin",
    ] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::set_permissions(
        dir.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    std::fs::copy(busybox, dir.join("bin/busybox")).unwrap();
    let list = Command::new(busybox)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for name in String::from_utf8_lossy(&list.stdout).lines() {
        let name = name.trim();
        if name.is_empty() || name == "busybox" {
            continue;
        }
        let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(name));
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nberth:x:1000:1000:berth:/home/berth:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("etc/group"),
        "root:x:0:\nberth:x:1000:\nnogroup:x:65534:\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/hostname"), "berth-rootfs\n").unwrap();
    std::fs::write(dir.join("etc/marker"), "rootfs\n").unwrap();
}

/// What one runtime invocation did.
#[derive(Debug, Clone)]
pub struct Out {
    /// Exit code, or None when killed by a signal or timed out.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    pub cmdline: String,
}

impl Out {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
    /// Panic with everything useful unless the command exited 0.
    #[track_caller]
    pub fn ok(self) -> Out {
        assert!(self.success(), "command failed: {self}");
        self
    }
    /// Panic unless the command exited non-zero (and did not time out).
    #[track_caller]
    pub fn fails(self) -> Out {
        assert!(!self.timed_out, "command timed out: {self}");
        assert!(
            self.code.is_some() && !self.success(),
            "command should have failed: {self}"
        );
        self
    }
    /// Parse stdout as one JSON value (the last non-empty line if several).
    #[track_caller]
    pub fn json(&self) -> Value {
        if let Ok(v) = serde_json::from_str(&self.stdout) {
            return v;
        }
        let line = self
            .stdout
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        serde_json::from_str(line).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` -> code {:?} signal {:?}{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline,
            self.code,
            self.signal,
            if self.timed_out { " (TIMED OUT)" } else { "" },
            self.stdout,
            self.stderr
        )
    }
}

/// Options for one invocation.
pub struct Opts {
    pub timeout: Duration,
    pub stdin: Option<Vec<u8>>,
    /// Extra fds: each is dup2'ed onto 3, 4, … in the child.
    pub extra_fds: Vec<OwnedFd>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            timeout: Duration::from_secs(20),
            stdin: None,
            extra_fds: Vec::new(),
            env: Vec::new(),
            cwd: None,
        }
    }
}

fn spawn_reader(
    mut r: impl Read + Send + 'static,
) -> (Arc<Mutex<Vec<u8>>>, std::sync::mpsc::Receiver<()>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let b2 = buf.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => b2.lock().unwrap().extend_from_slice(&chunk[..n]),
            }
        }
        let _ = tx.send(());
    });
    (buf, rx)
}

/// Run any command with a timeout, collecting its output. If a grandchild keeps
/// stdout/stderr open (e.g. `run --detach`), collection stops shortly after the
/// command itself exits.
pub fn exec(mut cmd: Command, mut opts: Opts) -> Out {
    let cmdline = format!("{cmd:?}");
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if opts.stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    for (k, v) in &opts.env {
        cmd.env(k, v);
    }
    if let Some(c) = &opts.cwd {
        cmd.current_dir(c);
    }
    let fds: Vec<i32> = opts.extra_fds.iter().map(|f| f.as_raw_fd()).collect();
    if !fds.is_empty() {
        // SAFETY: only dup/dup2/fcntl (async-signal-safe) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // First move every source fd above the target range so dup2
                // onto 3.. cannot clobber a source not yet copied.
                let mut high = Vec::with_capacity(fds.len());
                for &fd in &fds {
                    let h = libc::fcntl(fd, libc::F_DUPFD, 100);
                    if h < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    high.push(h);
                }
                for (i, &h) in high.iter().enumerate() {
                    let target = 3 + i as i32;
                    if libc::dup2(h, target) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(h);
                }
                Ok(())
            });
        }
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Out {
                code: Some(127),
                signal: None,
                timed_out: false,
                stdout: String::new(),
                stderr: format!("spawn failed: {e}"),
                cmdline,
            }
        }
    };
    opts.extra_fds.clear();
    if let Some(data) = opts.stdin.take() {
        let mut stdin = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&data);
        });
    }
    let (ob, orx) = spawn_reader(child.stdout.take().unwrap());
    let (eb, erx) = spawn_reader(child.stderr.take().unwrap());
    let deadline = Instant::now() + opts.timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) => {}
            Err(_) => break None,
        }
        if Instant::now() > deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let grace = Duration::from_millis(300);
    let _ = orx.recv_timeout(grace);
    let _ = erx.recv_timeout(grace);
    let stdout = String::from_utf8_lossy(&ob.lock().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&eb.lock().unwrap()).into_owned();
    Out {
        code: if timed_out {
            None
        } else {
            status.and_then(|s| s.code())
        },
        signal: status.and_then(|s| s.signal()),
        timed_out,
        stdout,
        stderr,
        cmdline,
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A runtime under test with its own `--root`. Everything it hands out (container
/// ids, bundles, temp dirs) is cleaned up on drop, even when the test panics:
/// `delete --force` for every id, then leaked mounts under our dirs are
/// detached, then the dirs are removed.
pub struct Runtime {
    pub bin: PathBuf,
    root: PathBuf,
    ids: Mutex<Vec<String>>,
    dirs: Mutex<Vec<PathBuf>>,
    pub name: String,
}

impl Runtime {
    /// `name` is a short tag used in container ids (e.g. the test name).
    pub fn new(name: &str) -> Runtime {
        let bin = berth_bin();
        assert!(
            bin.exists(),
            "runtime under test {} not found: `cargo build --release -p berth`, or set BERTH_BIN \
             (e.g. BERTH_BIN=/usr/sbin/runc to check the suite itself)",
            bin.display()
        );
        // SAFETY: geteuid cannot fail.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "the integration tests run real containers: run them as root"
        );
        let root = tempfile::Builder::new()
            .prefix("berth-test-root-")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        Runtime {
            bin,
            root: root.clone(),
            ids: Mutex::new(Vec::new()),
            dirs: Mutex::new(vec![root]),
            name: name.to_string(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A fresh, unique container id containing "berth-test", registered for cleanup.
    pub fn id(&self) -> String {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("berth-test-{}-{}-{}", self.name, std::process::id(), n);
        self.track(&id);
        id
    }

    /// Register an id for `delete --force` on drop.
    pub fn track(&self, id: &str) {
        self.ids.lock().unwrap().push(id.to_string());
    }

    /// A temp dir removed on drop.
    pub fn tempdir(&self) -> PathBuf {
        let d = tempfile::Builder::new()
            .prefix("berth-test-")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        self.dirs.lock().unwrap().push(d.clone());
        d
    }

    /// A bundle with a fresh copy of the test rootfs and the default config.
    pub fn bundle(&self) -> Bundle {
        let dir = self.tempdir();
        let rootfs = dir.join("rootfs");
        let st = Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(base_rootfs())
            .arg(&rootfs)
            .status()
            .expect("cp rootfs");
        assert!(st.success(), "copying rootfs failed");
        let probe_dst = rootfs.join("bin/berth-probe");
        if std::env::var_os("BERTH_TEST_ROOTFS").is_none() || !probe_dst.exists() {
            let _ = std::fs::remove_file(&probe_dst);
            std::fs::copy(probe_bin(), &probe_dst).expect("copy berth-probe into rootfs");
        }
        // Files some tests rely on, whichever rootfs we copied.
        let _ = std::fs::create_dir_all(rootfs.join("home/berth"));
        let _ = std::fs::create_dir_all(rootfs.join("tmp"));
        std::fs::write(rootfs.join("etc/marker"), "rootfs\n").expect("write etc/marker");
        Bundle {
            dir,
            config: default_config(),
        }
    }

    /// The command `BERTH_BIN --root R ARGS`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(&self.root).args(args);
        c
    }

    /// Run `BERTH_BIN --root R ARGS` with the default 20 s timeout.
    pub fn run(&self, args: &[&str]) -> Out {
        exec(self.command(args), Opts::default())
    }

    pub fn run_opts(&self, args: &[&str], opts: Opts) -> Out {
        exec(self.command(args), opts)
    }

    /// `create --bundle B ID` (asserting success).
    #[track_caller]
    pub fn create(&self, b: &Bundle, id: &str) -> Out {
        b.write();
        self.run(&["create", "--bundle", b.path_str(), id]).ok()
    }

    /// `state ID` parsed, or the failed Out.
    pub fn state(&self, id: &str) -> Result<Value, Out> {
        let o = self.run(&["state", id]);
        if o.success() {
            Ok(o.json())
        } else {
            Err(o)
        }
    }

    /// The `status` field of `state ID`, or None if state failed.
    pub fn status(&self, id: &str) -> Option<String> {
        self.state(id)
            .ok()
            .and_then(|v| v["status"].as_str().map(String::from))
    }

    /// Poll `state` until status is "stopped" (panics after 10 s).
    #[track_caller]
    pub fn wait_stopped(&self, id: &str) {
        self.wait_status(id, "stopped")
    }

    #[track_caller]
    pub fn wait_status(&self, id: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.status(id);
            if s.as_deref() == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "container {id} never reached {want:?}, last {s:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Run `/bin/berth-probe ARGS` in the foreground in `b` and parse its JSON.
    #[track_caller]
    pub fn probe_in(&self, b: &mut Bundle, args: &[&str]) -> Value {
        let mut argv = vec!["/bin/berth-probe".to_string()];
        argv.extend(args.iter().map(|s| s.to_string()));
        b.set("/process/args", json!(argv));
        b.write();
        let id = self.id();
        let o = self.run(&["run", "--bundle", b.path_str(), &id]).ok();
        o.json()
    }

    /// A fresh bundle, patched by `patch`, running the full probe report.
    #[track_caller]
    pub fn probe(&self, patch: impl FnOnce(&mut Bundle)) -> Value {
        let mut b = self.bundle();
        patch(&mut b);
        self.probe_in(&mut b, &[])
    }

    /// A fresh bundle, patched by `patch`, running `berth-probe ARGS`.
    #[track_caller]
    pub fn probe_args(&self, args: &[&str], patch: impl FnOnce(&mut Bundle)) -> Value {
        let mut b = self.bundle();
        patch(&mut b);
        self.probe_in(&mut b, args)
    }

    /// Create and start a container running `berth-probe sleep`; returns its id.
    #[track_caller]
    pub fn start_sleeper(&self, b: &mut Bundle) -> String {
        b.set("/process/args", json!(["/bin/berth-probe", "sleep"]));
        let id = self.id();
        self.create(b, &id);
        self.run(&["start", &id]).ok();
        // `start` returns once the program runs, a moment before it has its
        // handlers: pid 1 of a pid namespace ignores an unhandled SIGTERM,
        // so a test's `kill` must wait for them.
        let pid = self.pid(&id);
        assert!(
            eventually(10, || catches(pid, libc::SIGTERM) || !pid_alive(pid)),
            "the probe in {id} never installed its SIGTERM handler"
        );
        id
    }

    /// `create` the bundle with `--console-socket` on a socket this test
    /// listens on; the pty master the runtime sends.
    #[track_caller]
    pub fn create_with_console(&self, b: &Bundle, id: &str) -> std::os::fd::OwnedFd {
        let sock_path = self.tempdir().join("console.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
        let accept = std::thread::spawn(move || {
            let (s, _) = listener.accept().ok()?;
            recv_fd(&s).ok()
        });
        let sock = sock_path.to_str().unwrap();
        self.run(&[
            "create",
            "--bundle",
            b.path_str(),
            "--console-socket",
            sock,
            id,
        ])
        .ok();
        accept.join().unwrap().expect("no pty master received")
    }

    /// The pid of a container from `state`.
    #[track_caller]
    pub fn pid(&self, id: &str) -> i32 {
        let s = self
            .state(id)
            .unwrap_or_else(|o| panic!("state failed: {o}"));
        s["pid"].as_i64().expect("state has pid") as i32
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let ids = std::mem::take(&mut *self.ids.lock().unwrap());
        for id in ids.iter().rev() {
            let _ = exec(
                self.command(&["delete", "--force", id]),
                Opts {
                    timeout: Duration::from_secs(10),
                    ..Default::default()
                },
            );
        }
        let dirs = std::mem::take(&mut *self.dirs.lock().unwrap());
        for d in dirs.iter().rev() {
            detach_mounts_under(d);
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// Mount points in our mount namespace at or under `dir`.
pub fn host_mounts_under(dir: &Path) -> Vec<String> {
    let Ok(mi) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let prefix = dir.to_string_lossy().into_owned();
    mi.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| *mp == prefix || mp.starts_with(&format!("{prefix}/")))
        .map(String::from)
        .collect()
}

/// Lazily unmount anything left mounted at or under `dir` (deepest first), so
/// that removing the dir never reaches through a leaked bind mount.
pub(crate) fn detach_mounts_under(dir: &Path) {
    let mut m = host_mounts_under(dir);
    m.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for mp in m {
        if let Ok(c) = std::ffi::CString::new(mp) {
            // SAFETY: umount2 with a valid C string.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// A bundle directory: `rootfs/` plus a config.json built from a JSON value.
pub struct Bundle {
    pub dir: PathBuf,
    pub config: Value,
}

impl Bundle {
    pub fn path(&self) -> &Path {
        &self.dir
    }
    pub fn path_str(&self) -> &str {
        self.dir.to_str().unwrap()
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Set the value at JSON pointer `ptr`, creating objects on the way.
    pub fn set(&mut self, ptr: &str, v: Value) -> &mut Self {
        set_pointer(&mut self.config, ptr, v);
        self
    }

    /// Append to the array at `ptr` (created if missing).
    pub fn push(&mut self, ptr: &str, v: Value) -> &mut Self {
        if self.config.pointer(ptr).is_none() {
            self.set(ptr, json!([]));
        }
        self.config
            .pointer_mut(ptr)
            .unwrap()
            .as_array_mut()
            .expect("not an array")
            .push(v);
        self
    }

    /// Remove the value at `ptr` (object key or array index), if present.
    pub fn remove(&mut self, ptr: &str) -> &mut Self {
        let (parent, last) = ptr.rsplit_once('/').expect("pointer");
        if let Some(p) = self.config.pointer_mut(parent) {
            match p {
                Value::Object(m) => {
                    m.remove(last);
                }
                Value::Array(a) => {
                    if let Ok(i) = last.parse::<usize>() {
                        if i < a.len() {
                            a.remove(i);
                        }
                    }
                }
                _ => {}
            }
        }
        self
    }

    /// Add a namespace (type, optional path), replacing one of the same type.
    pub fn namespace(&mut self, ty: &str, path: Option<&str>) -> &mut Self {
        let ns = self
            .config
            .pointer_mut("/linux/namespaces")
            .unwrap()
            .as_array_mut()
            .unwrap();
        ns.retain(|n| n["type"] != ty);
        let mut n = json!({ "type": ty });
        if let Some(p) = path {
            n["path"] = json!(p);
        }
        ns.push(n);
        self
    }

    pub fn without_namespace(&mut self, ty: &str) -> &mut Self {
        let ns = self
            .config
            .pointer_mut("/linux/namespaces")
            .unwrap()
            .as_array_mut()
            .unwrap();
        ns.retain(|n| n["type"] != ty);
        self
    }

    /// Write config.json.
    pub fn write(&self) {
        std::fs::write(
            self.dir.join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .expect("write config.json");
    }
}

fn set_pointer(root: &mut Value, ptr: &str, v: Value) {
    if ptr.is_empty() {
        *root = v;
        return;
    }
    let mut cur = root;
    let parts: Vec<String> = ptr
        .split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    for (i, p) in parts.iter().enumerate() {
        let last = i == parts.len() - 1;
        if let Value::Array(a) = cur {
            let idx = if p == "-" {
                a.len()
            } else {
                p.parse::<usize>().expect("array index")
            };
            if last {
                if idx == a.len() {
                    a.push(v);
                } else {
                    a[idx] = v;
                }
                return;
            }
            cur = &mut a[idx];
            continue;
        }
        if !cur.is_object() {
            *cur = json!({});
        }
        let m = cur.as_object_mut().unwrap();
        if last {
            m.insert(p.clone(), v);
            return;
        }
        cur = m.entry(p.clone()).or_insert_with(|| json!({}));
    }
}

/// Our default config: the shape of `runc spec`, but with terminal off,
/// a writable root and the probe as the process.
pub fn default_config() -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": ["/bin/berth-probe"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps
            },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": false },
        "hostname": "berth-test",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] }
        ],
        "linux": {
            "resources": { "devices": [{ "allow": false, "access": "rwm" }] },
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                { "type": "uts" }, { "type": "mount" }
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

/// Host's /proc/self/ns/NAME link target (e.g. "net:[4026531840]").
pub fn host_ns(name: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{name}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// The mount entry for `mountpoint` in a probe report (last one wins, as the
/// kernel shows the topmost).
pub fn find_mount<'a>(report: &'a Value, mountpoint: &str) -> Option<&'a Value> {
    report["mounts"]
        .as_array()?
        .iter()
        .rev()
        .find(|m| m["mountpoint"] == mountpoint)
}

/// Whether a mount entry's per-mount or superblock options contain `opt`.
pub fn mount_has_opt(m: &Value, opt: &str) -> bool {
    let has = |k: &str| {
        m[k].as_array()
            .map(|a| a.iter().any(|o| o == opt))
            .unwrap_or(false)
    };
    has("options") || has("super_options")
}

/// Capability set as a u64 from a hex string from /proc/self/status.
pub fn cap_mask(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().expect("cap hex"), 16).expect("cap hex")
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Every directory named exactly `name` under any cgroup hierarchy mounted at
/// `/sys/fs/cgroup/*` (v1 controllers and the unified tree), or under
/// `/sys/fs/cgroup` itself on a pure v2 host. Symlinked hierarchies
/// (`cpu,cpuacct`) are not followed twice.
pub fn cgroup_dirs_named(name: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, name: &str, depth: usize, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if !ft.is_dir() {
                continue;
            }
            let p = e.path();
            if e.file_name() == name {
                out.push(p.clone());
            }
            if depth > 0 {
                walk(&p, name, depth - 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new("/sys/fs/cgroup"), name, 12, &mut out);
    out
}

/// Processes (pid, cmdline) whose command line contains any of `needles`, or
/// whose cwd or root directory lies at or under any of `dirs`. The calling
/// process is never listed.
pub fn processes_related(needles: &[&str], dirs: &[&Path]) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me || !pid_alive(pid) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let by_cmd = needles.iter().any(|n| cmdline.contains(n));
        let by_dir = ["cwd", "root"].iter().any(|l| {
            std::fs::read_link(format!("/proc/{pid}/{l}"))
                .map(|t| dirs.iter().any(|d| t.starts_with(d)))
                .unwrap_or(false)
        });
        if by_cmd || by_dir {
            out.push((pid, cmdline));
        }
    }
    out
}

/// Lines of `/proc/self/mountinfo` that mention `needle` anywhere (mount point,
/// root or source).
pub fn mountinfo_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(String::from)
        .collect()
}

/// Whether process `pid` has a handler for `sig` (`SigCgt` in its status).
pub fn catches(pid: i32, sig: i32) -> bool {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    s.lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .is_some_and(|m| m & (1u64 << (sig - 1)) != 0)
}

/// Poll `cond` every 20 ms for up to `secs` seconds; whether it became true.
pub fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Receive one fd over a unix stream socket (SCM_RIGHTS).
pub fn recv_fd(sock: &std::os::unix::net::UnixStream) -> std::io::Result<std::os::fd::OwnedFd> {
    let mut data = [0u8; 4096];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut cbuf = [0u64; 16];
    // SAFETY: msghdr is plain data; every pointer in it refers to live buffers.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&cbuf);
        let n = libc::recvmsg(
            std::os::fd::AsRawFd::as_raw_fd(sock),
            &mut msg,
            libc::MSG_CMSG_CLOEXEC,
        );
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const i32);
                return Ok(std::os::fd::FromRawFd::from_raw_fd(fd));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Err(std::io::Error::other("no SCM_RIGHTS in message"))
}

// ---- Attack tests (tests/hardening.rs) ----

/// The capabilities containerd and Docker give a container by default
/// (`runc spec`, like [`default_config`], gives only the last three).
pub const DEFAULT_CONTAINER_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_SYS_CHROOT",
    "CAP_AUDIT_WRITE",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
];

impl Bundle {
    /// The process gets exactly `caps` as its bounding, effective and
    /// permitted sets, and no inheritable or ambient ones.
    pub fn set_caps(&mut self, caps: &[&str]) -> &mut Self {
        for set in ["bounding", "effective", "permitted"] {
            self.set(&format!("/process/capabilities/{set}"), json!(caps));
        }
        self.remove("/process/capabilities/inheritable");
        self.remove("/process/capabilities/ambient")
    }

    /// Add a createRuntime hook (it runs on the host after the container's
    /// mounts, before pivot_root) that saves the init's mount table, in host
    /// paths, as `DIR/<pid>.mountinfo`; [`saved_mount_tables`] reads them.
    pub fn save_mounts_before_pivot(&mut self, dir: &Path) -> &mut Self {
        let script = format!(
            "pid=$(sed -n 's/.*\"pid\": *\\([0-9][0-9]*\\).*/\\1/p') && \
             cat /proc/$pid/mountinfo > '{}/'$pid.mountinfo",
            dir.display()
        );
        self.push(
            "/hooks/createRuntime",
            json!({ "path": "/bin/sh", "args": ["sh", "-c", script],
                    "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"] }),
        )
    }
}

/// The mount tables [`Bundle::save_mounts_before_pivot`] saved in `dir`.
pub fn saved_mount_tables(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".mountinfo"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect()
}

/// The mount points of a mountinfo text, with its octal escapes undone.
pub fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|mp| {
            let b = mp.as_bytes();
            let mut out = Vec::with_capacity(b.len());
            let mut i = 0;
            while i < b.len() {
                let octal = b
                    .get(i + 1..i + 4)
                    .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
                match octal {
                    Some(d) if b[i] == b'\\' => {
                        out.push(d.iter().fold(0u8, |v, c| v.wrapping_mul(8) + (c - b'0')));
                        i += 4;
                    }
                    _ => {
                        out.push(b[i]);
                        i += 1;
                    }
                }
            }
            PathBuf::from(std::ffi::OsString::from_vec(out))
        })
        .collect()
}

/// A pipe: (read end, write end), both close-on-exec.
pub fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors that we then own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both are fresh descriptors nothing else owns.
    unsafe {
        (
            std::os::fd::FromRawFd::from_raw_fd(fds[0]),
            std::os::fd::FromRawFd::from_raw_fd(fds[1]),
        )
    }
}

/// Mount a fresh tmpfs on `dir` and make it a shared mount: a container
/// whose mounts propagate back (`rootfsPropagation: rshared`) then shows on
/// the host anything mounted on a copy of it. In a [`Runtime::tempdir`] it
/// is unmounted when the runtime is dropped.
pub fn mount_shared_tmpfs(dir: &Path) {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: mount(2) with valid C strings on a directory the caller owns.
    let r = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            c.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            c"mode=755".as_ptr() as *const libc::c_void,
        )
    };
    assert_eq!(
        r,
        0,
        "mount tmpfs on {}: {}",
        dir.display(),
        std::io::Error::last_os_error()
    );
    // SAFETY: as above; changes only the propagation of our own mount.
    let r = unsafe {
        libc::mount(
            std::ptr::null(),
            c.as_ptr(),
            std::ptr::null(),
            libc::MS_SHARED,
            std::ptr::null(),
        )
    };
    assert_eq!(
        r,
        0,
        "make {} shared: {}",
        dir.display(),
        std::io::Error::last_os_error()
    );
}
