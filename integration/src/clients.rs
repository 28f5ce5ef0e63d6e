//! Fixtures for the real-client suites (`tests/containerd.rs`,
//! `tests/podman.rs`): a local busybox image as an OCI archive, and a
//! private containerd daemon.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};

use crate::oci::{Compression, ImageBuilder, LayerBuilder};

/// Ref name of the busybox image whose process runs as root.
pub const BUSYBOX_TEST: &str = "busybox:test";
/// Ref name of the same image whose config sets `User` to `1000:1000`.
pub const BUSYBOX_USER: &str = "busybox:user";

/// Build `DIR/busybox.oci.tar`: an OCI archive holding the busybox test root
/// filesystem ([`crate::base_rootfs`]: static busybox, /etc/passwd with root,
/// berth (1000:1000) and nobody, /etc/group, /etc/hostname) as one gzip
/// layer, under two index entries: `busybox:test` (Cmd `sh`) and
/// `busybox:user` (Cmd `sh`, User `1000:1000`). Both share the layer blob.
/// The index annotation `org.opencontainers.image.ref.name` carries each
/// name. Returns the archive's path.
pub fn busybox_archive(dir: &Path) -> PathBuf {
    let layout = dir.join("busybox-layout");
    let _ = std::fs::remove_dir_all(&layout);
    std::fs::create_dir_all(&layout).expect("create busybox layout dir");
    let env = json!(["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]);
    let image = |user: Option<&str>| {
        let env = env.clone();
        let user = user.map(String::from);
        ImageBuilder::new()
            .layer(
                LayerBuilder::from_dir(&crate::base_rootfs()),
                Compression::Gzip,
            )
            .config(move |c| {
                c["Cmd"] = json!(["sh"]);
                c["Env"] = env;
                if let Some(u) = user {
                    c["User"] = json!(u);
                }
            })
    };
    // Two layouts in one directory: blobs are content-addressed, so the
    // second write only adds its manifest and config; the indexes merge.
    image(None).write_layout(&layout, BUSYBOX_TEST);
    let first = read_index(&layout);
    image(Some("1000:1000")).write_layout(&layout, BUSYBOX_USER);
    let mut index = read_index(&layout);
    let mut manifests = first["manifests"].as_array().cloned().unwrap_or_default();
    manifests.extend(index["manifests"].as_array().cloned().unwrap_or_default());
    index["manifests"] = Value::Array(manifests);
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .expect("write merged index.json");
    let out = dir.join("busybox.oci.tar");
    crate::oci::tar_dir(&layout, &out);
    std::fs::remove_dir_all(&layout).expect("remove busybox layout dir");
    out
}

fn read_index(layout: &Path) -> Value {
    let p = layout.join("index.json");
    let b = std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    serde_json::from_slice(&b).unwrap_or_else(|e| panic!("parse {}: {e}", p.display()))
}

/// A private containerd (1.6) for one test: its own root, state, gRPC and
/// ttrpc sockets and `ctr` FIFO dir under a fresh temp dir, the CRI plugin
/// disabled (no CNI here), and a namespace named `berth-PID-N` so the
/// cgroups its containers get (`/NS/ID` in every hierarchy) are unique.
///
/// Dropping it (also when the test panics) removes every container and
/// task, stops the daemon, kills any shim it left, runs the runtime's
/// `delete --force` on every container left in the runc root, detaches
/// mounts under the temp dir, removes the `NS` cgroups and the temp dir.
pub struct Containerd {
    pub dir: PathBuf,
    pub sock: PathBuf,
    pub ns: String,
    /// The runtime's `--root` for this daemon's containers (`ctr run
    /// --runc-root`); the shim appends the namespace.
    pub runc_root: PathBuf,
    pub fifo_dir: PathBuf,
    log: PathBuf,
    child: Option<std::process::Child>,
}

static DAEMONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Timeout for one `ctr` call: the machine may be busy (CI, other builds).
const CTR_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl Containerd {
    /// Whether `containerd` and `ctr` are installed.
    pub fn available() -> bool {
        ["containerd", "ctr", "containerd-shim-runc-v2"]
            .iter()
            .all(|b| which(b).is_some())
    }

    /// Start a daemon with `env` added to its environment (the shim, and
    /// through it the runtime binary, inherit it) and wait until it answers.
    pub fn start(env: &[(&str, &str)]) -> Containerd {
        let n = DAEMONS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("berth-ctrd-{pid}-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create containerd temp dir");
        let sock = dir.join("c.sock");
        let mut d = Containerd {
            sock: sock.clone(),
            ns: format!("berth-{pid}-{n}"),
            runc_root: dir.join("runc"),
            fifo_dir: dir.join("fifo"),
            log: dir.join("containerd.log"),
            dir: dir.clone(),
            child: None,
        };
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  level = "debug"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            sock = sock.display(),
            opt = dir.join("opt").display(),
        );
        let cfg = dir.join("config.toml");
        std::fs::write(&cfg, config).expect("write containerd config.toml");
        let log = std::fs::File::create(&d.log).expect("create containerd.log");
        let mut cmd = std::process::Command::new("containerd");
        cmd.arg("--config")
            .arg(&cfg)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        d.child = Some(cmd.spawn().expect("spawn containerd"));
        let up = crate::eventually(30, || sock.exists() && d.ctr(&["version"]).success());
        assert!(
            up,
            "containerd did not answer on {}:\n{}",
            sock.display(),
            d.log_tail()
        );
        d
    }

    /// `ctr -a SOCK -n NS ARGS…`, with a timeout.
    pub fn ctr(&self, args: &[&str]) -> crate::Out {
        self.ctr_within(args, CTR_TIMEOUT)
    }

    fn ctr_within(&self, args: &[&str], timeout: std::time::Duration) -> crate::Out {
        let mut cmd = std::process::Command::new("ctr");
        cmd.arg("-a")
            .arg(&self.sock)
            .arg("-n")
            .arg(&self.ns)
            .args(args);
        crate::exec(
            cmd,
            crate::Opts {
                timeout,
                ..Default::default()
            },
        )
    }

    /// `ctr` under `script`, so that it has a terminal (`ctr run -t` and
    /// `ctr task exec -t` need one on their side). Arguments must not need
    /// shell quoting beyond what the caller put in.
    pub fn ctr_with_tty(&self, args: &str) -> crate::Out {
        let line = format!("ctr -a {} -n {} {args}", self.sock.display(), self.ns);
        let mut cmd = std::process::Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"]);
        crate::exec(
            cmd,
            crate::Opts {
                timeout: CTR_TIMEOUT,
                ..Default::default()
            },
        )
    }

    /// Import an OCI archive; the image names `ctr images ls -q` then shows.
    pub fn import(&self, archive: &Path) -> Vec<String> {
        self.ctr(&["images", "import", archive.to_str().unwrap()])
            .ok();
        self.ctr(&["images", "ls", "-q"])
            .ok()
            .stdout
            .lines()
            .map(String::from)
            .collect()
    }

    /// The `ctr run` flags that make the runc shim call `runtime` (it sets
    /// the runc options' `BinaryName`) with this daemon's runc root, and
    /// keep ctr's FIFOs under the temp dir.
    pub fn runtime_flags(&self, runtime: &Path) -> Vec<String> {
        vec![
            "--runc-binary".into(),
            runtime.display().to_string(),
            "--runc-root".into(),
            self.runc_root.display().to_string(),
            "--fifo-dir".into(),
            self.fifo_dir.display().to_string(),
        ]
    }

    /// The runtime's state dir for this namespace (`--root` as the shim
    /// passes it).
    pub fn runtime_root(&self) -> PathBuf {
        self.runc_root.join(&self.ns)
    }

    /// The last 60 lines of the daemon's debug log.
    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Shim processes of this daemon still alive (their command line names
    /// our socket).
    pub fn shims(&self) -> Vec<(i32, String)> {
        let needle = self.sock.to_string_lossy().into_owned();
        crate::processes_related(&[&needle], &[])
            .into_iter()
            .filter(|(_, c)| c.contains("containerd-shim"))
            .collect()
    }

    /// What is left of containers `ids`: containerd containers and tasks,
    /// mounts under the daemon's root/state, cgroups named after an id,
    /// shim processes, runtime state dirs. Empty when everything is gone.
    pub fn leftovers(&self, ids: &[&str]) -> Vec<String> {
        let mut left = Vec::new();
        let listed = |args: &[&str]| -> Vec<String> {
            self.ctr(args)
                .ok()
                .stdout
                .lines()
                .skip(1)
                .filter(|l| !l.trim().is_empty())
                .map(String::from)
                .collect()
        };
        for c in listed(&["containers", "ls"]) {
            left.push(format!("container: {c}"));
        }
        for t in listed(&["tasks", "ls"]) {
            left.push(format!("task: {t}"));
        }
        for sub in ["root", "state"] {
            for m in crate::host_mounts_under(&self.dir.join(sub)) {
                left.push(format!("mount: {m}"));
            }
        }
        for id in ids {
            for cg in crate::cgroup_dirs_named(id) {
                left.push(format!("cgroup: {}", cg.display()));
            }
            if self.runtime_root().join(id).exists() {
                left.push(format!(
                    "runtime state: {}",
                    self.runtime_root().join(id).display()
                ));
            }
        }
        for (pid, cmd) in self.shims() {
            left.push(format!("shim process {pid}: {cmd}"));
        }
        left
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let short = |args: &[&str]| self.ctr_within(args, std::time::Duration::from_secs(15));
        if self.child.is_some() {
            let ids: Vec<String> = short(&["containers", "ls", "-q"])
                .stdout
                .lines()
                .map(String::from)
                .collect();
            for id in &ids {
                // A frozen task cannot die: thaw it first.
                let _ = short(&["tasks", "resume", id]);
                let _ = short(&["tasks", "kill", "-a", "-s", "SIGKILL", id]);
                let _ = short(&["tasks", "delete", "--force", id]);
                let _ = short(&["containers", "rm", id]);
            }
        }
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) of the daemon we spawned and have not reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let stopped = crate::eventually(10, || matches!(child.try_wait(), Ok(Some(_))));
            if !stopped {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for (pid, _) in self.shims() {
            // SAFETY: kill(2) of a shim our daemon started (its command line
            // names our private socket).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // Containers the shims did not get to delete: the runtime removes
        // their processes, mounts and cgroups.
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
                        timeout: std::time::Duration::from_secs(15),
                        ..Default::default()
                    },
                );
            }
        }
        crate::detach_mounts_under(&self.dir);
        // /NS/ID cgroups: children first, then the namespace's own.
        for ns_cg in crate::cgroup_dirs_named(&self.ns) {
            remove_cgroup_tree(&ns_cg);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// rmdir a cgroup directory and every cgroup below it, deepest first.
pub(crate) fn remove_cgroup_tree(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// `bin` found in a directory of $PATH.
pub(crate) fn which(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}
