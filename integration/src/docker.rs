//! A private Docker daemon (Debian's docker.io 20.10) for the Docker suite
//! (`tests/docker.rs`): berth registered as a runtime in the daemon's
//! config file, everything the daemon keeps under one temp dir, no network
//! set-up.

use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::clients::{remove_cgroup_tree, which};
use crate::oci::{Compression, ImageBuilder, LayerBuilder};

/// The name the runtime is registered under (`docker run --runtime NAME`).
pub const RUNTIME: &str = "berth";
/// The busybox image [`Docker::load_busybox`] loads.
pub const BUSYBOX: &str = "busybox:test";

/// Timeout for one `docker` call: the machine may be busy.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(90);

static DAEMONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Host-wide paths dockerd 20.10 writes whatever its flags say: the trust
/// key (`/etc/docker/key.json`, no flag moves it) and the plugin socket
/// dir (`/run/docker/plugins`). Each is removed when the last daemon of
/// this process stops, unless it was there before the first one started.
const HOST_PATHS: [&str; 3] = ["/etc/docker/key.json", "/run/docker/plugins", "/run/docker"];

/// Live daemons of this process, and which [`HOST_PATHS`] existed before
/// the first of them started.
static HOST: Mutex<(usize, [bool; 3])> = Mutex::new((0, [false; 3]));

/// Held while a daemon starts: two dockerds creating the trust key at the
/// same moment could read each other's half-written file.
static STARTING: Mutex<()> = Mutex::new(());

/// A private dockerd for one test. It starts its own containerd (state
/// under `exec/containerd`), keeps images and containers in `data/`,
/// listens on `docker.sock`, and runs with `--bridge=none --iptables=false
/// --ip6tables=false --ip-forward=false --ip-masq=false` so that it touches
/// neither the host's links nor its firewall; containers go under the cgroup
/// `/berth-docker-PID-N/ID` of every hierarchy (`--cgroup-parent`, cgroupfs
/// driver). Its `--config-file` (`daemon.json` in the temp dir, so the
/// host's `/etc/docker/daemon.json` is not read) registers the runtime under
/// test as `berth`; the runc shim then runs it with `--root
/// exec/runtime-runc/moby`.
///
/// Dropping it (also when the test panics) removes every container, stops
/// the daemon, kills any shim left, runs the runtime's `delete --force` on
/// whatever is left in its root, detaches the mounts under the temp dir,
/// removes the cgroup parent and the temp dir, and puts back the host-wide
/// paths (see [`HOST_PATHS`]).
pub struct Docker {
    pub dir: PathBuf,
    pub sock: PathBuf,
    pub cgroup_parent: String,
    log: PathBuf,
    child: Option<std::process::Child>,
}

impl Docker {
    /// Whether dockerd, Debian's docker client and the runc shim are there.
    pub fn available() -> bool {
        Path::new("/usr/bin/docker").is_file()
            && ["dockerd", "containerd", "containerd-shim-runc-v2"]
                .iter()
                .all(|b| which(b).is_some())
    }

    /// Start a daemon with `runtime` registered as [`RUNTIME`] and wait
    /// until it answers.
    pub fn start(runtime: &Path) -> Docker {
        let _starting = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let n = DAEMONS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("berth-docker-{pid}-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("cli")).expect("create docker temp dir");
        {
            let mut host = HOST.lock().unwrap_or_else(|e| e.into_inner());
            if host.0 == 0 {
                for (i, p) in HOST_PATHS.iter().enumerate() {
                    host.1[i] = Path::new(p).exists();
                }
            }
            host.0 += 1;
        }
        let mut d = Docker {
            sock: dir.join("docker.sock"),
            cgroup_parent: format!("berth-docker-{pid}-{n}"),
            log: dir.join("dockerd.log"),
            dir: dir.clone(),
            child: None,
        };
        // Our own config file, so /etc/docker/daemon.json is not read. It
        // registers the runtime exactly as docs/clients.md tells users to.
        let cfg = dir.join("daemon.json");
        let config = json!({"runtimes": {RUNTIME: {"path": runtime}}});
        std::fs::write(&cfg, serde_json::to_vec_pretty(&config).unwrap())
            .expect("write daemon.json");
        let log = std::fs::File::create(&d.log).expect("create dockerd.log");
        let mut cmd = std::process::Command::new("dockerd");
        cmd.arg("--config-file")
            .arg(&cfg)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("--host")
            .arg(format!("unix://{}", d.sock.display()))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--userland-proxy=false",
                "--storage-driver=overlay2",
                "--exec-opt=native.cgroupdriver=cgroupfs",
            ])
            .arg(format!("--cgroup-parent={}", d.cgroup_parent))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        d.child = Some(cmd.spawn().expect("spawn dockerd"));
        let up = crate::eventually(60, || {
            d.sock.exists()
                && d.docker_timeout(&["version"], Duration::from_secs(10))
                    .success()
        });
        assert!(
            up,
            "dockerd did not answer on {}:\n{}",
            d.sock.display(),
            d.log_tail()
        );
        d
    }

    /// `docker -H unix://SOCK ARGS…` (Debian's client, its config dir in
    /// the temp dir), with a timeout.
    pub fn docker(&self, args: &[&str]) -> crate::Out {
        self.docker_timeout(args, DOCKER_TIMEOUT)
    }

    fn docker_timeout(&self, args: &[&str], timeout: Duration) -> crate::Out {
        let mut cmd = std::process::Command::new("/usr/bin/docker");
        cmd.env("DOCKER_CONFIG", self.dir.join("cli"))
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(args);
        crate::exec(
            cmd,
            crate::Opts {
                timeout,
                ..Default::default()
            },
        )
    }

    /// Load [`BUSYBOX`] (the test root filesystem as one layer, Cmd `sh`)
    /// from a `docker save` tar: Docker 20.10 loads no OCI archives.
    pub fn load_busybox(&self) {
        let tar = self.dir.join("busybox.docker.tar");
        ImageBuilder::new()
            .layer(
                LayerBuilder::from_dir(&crate::base_rootfs()),
                Compression::Gzip,
            )
            .config(|c| {
                c["Cmd"] = json!(["sh"]);
                c["Env"] =
                    json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]);
            })
            .write_docker_save(&tar, BUSYBOX);
        let o = self.docker(&["load", "-i", tar.to_str().unwrap()]).ok();
        assert!(o.stdout.contains(BUSYBOX), "docker load said: {o}");
        let _ = std::fs::remove_file(&tar);
    }

    /// The runtime's `--root` as the runc shim passes it for Docker's
    /// containers.
    pub fn runtime_root(&self) -> PathBuf {
        self.dir.join("exec/runtime-runc/moby")
    }

    /// The last 60 lines of the daemon's log.
    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Shim processes of this daemon still alive (their command line names
    /// its containerd socket, under our temp dir).
    pub fn shims(&self) -> Vec<(i32, String)> {
        let needle = format!("{}/", self.dir.display());
        crate::processes_related(&[&needle], &[])
            .into_iter()
            .filter(|(_, c)| c.contains("containerd-shim"))
            .collect()
    }

    /// Mount points under the temp dir.
    pub fn mounts(&self) -> Vec<String> {
        crate::host_mounts_under(&self.dir)
    }

    /// What is left of containers `ids` (full ids): Docker containers,
    /// cgroups named after an id, runtime state dirs, shim processes, and
    /// mounts under the temp dir not in `baseline`. Empty when all is gone.
    pub fn leftovers(&self, ids: &[&str], baseline: &[String]) -> Vec<String> {
        let mut left = Vec::new();
        let ps = self.docker(&["ps", "-aq", "--no-trunc"]).ok();
        for c in ps.stdout.lines().filter(|l| !l.trim().is_empty()) {
            left.push(format!("container: {c}"));
        }
        for id in ids {
            for cg in crate::cgroup_dirs_named(id) {
                left.push(format!("cgroup: {}", cg.display()));
            }
            let state = self.runtime_root().join(id);
            if state.exists() {
                left.push(format!("runtime state: {}", state.display()));
            }
        }
        for (pid, cmd) in self.shims() {
            left.push(format!("shim process {pid}: {cmd}"));
        }
        for m in self.mounts() {
            if !baseline.contains(&m) {
                left.push(format!("mount: {m}"));
            }
        }
        left
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        if self.child.is_some() {
            let short = Duration::from_secs(20);
            let ids = self.docker_timeout(&["ps", "-aq"], short).stdout;
            for id in ids.lines().filter(|l| !l.trim().is_empty()) {
                // A frozen container cannot die: thaw it first.
                let _ = self.docker_timeout(&["unpause", id], short);
                let _ = self.docker_timeout(&["rm", "--force", id], short);
            }
        }
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) of the daemon we spawned and have not reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let stopped = crate::eventually(20, || matches!(child.try_wait(), Ok(Some(_))));
            if !stopped {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // The daemon's containerd and shims: their command lines name our
        // temp dir.
        let needle = format!("{}/", self.dir.display());
        for (pid, _) in crate::processes_related(&[&needle], &[]) {
            // SAFETY: kill(2) of a process our daemon started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Ok(rd) = std::fs::read_dir(self.runtime_root()) {
            for e in rd.flatten() {
                let mut cmd = std::process::Command::new(crate::berth_bin());
                cmd.arg("--root")
                    .arg(self.runtime_root())
                    .args(["delete", "--force"])
                    .arg(e.file_name());
                let _ = crate::exec(
                    cmd,
                    crate::Opts {
                        timeout: Duration::from_secs(15),
                        ..Default::default()
                    },
                );
            }
        }
        crate::detach_mounts_under(&self.dir);
        for cg in crate::cgroup_dirs_named(&self.cgroup_parent) {
            remove_cgroup_tree(&cg);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let mut host = HOST.lock().unwrap_or_else(|e| e.into_inner());
        host.0 = host.0.saturating_sub(1);
        if host.0 == 0 {
            for (i, p) in HOST_PATHS.iter().enumerate() {
                if !host.1[i] {
                    // The key file, then the dirs if empty.
                    let _ = std::fs::remove_file(p);
                    let _ = std::fs::remove_dir(p);
                }
            }
        }
    }
}
