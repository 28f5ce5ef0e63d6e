//! A private podman (4.3, with conmon) whose OCI runtime is the binary under
//! test (`BERTH_BIN`), for `tests/podman.rs`.
//!
//! Everything podman keeps lives under one temporary directory: its image
//! and container storage (`root/`), run state (`runroot/`), temp dir with
//! its file locks, exit files and event log (`tmp/`), network config dir
//! (`net/`) and the `containers.conf` / `storage.conf` it reads
//! (`CONTAINERS_CONF`, `CONTAINERS_STORAGE_CONF`). berth keeps its state in
//! its default root, [`BERTH_ROOT`]: podman's `--runtime-flag` is not
//! handed to the exit command conmon runs (`podman container cleanup`), so
//! a private `--root` would make that cleanup's `berth delete` look in the
//! wrong place. Container ids are 64 random hex digits, so tests cannot
//! collide there. Dropping a [`Podman`] removes every container it made
//! (podman first, then `berth delete --force` for any of its ids berth
//! still has), kills any
//! conmon or container process still tied to the directory, removes the
//! containers' cgroups and unmounts and deletes the directory, also when a
//! test panicked.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::storage::{mounts_under, TempDir};

/// Podman instances alive in this process.
static LIVE: AtomicUsize = AtomicUsize::new(0);
use crate::{berth_bin, cgroup_dirs_named, exec, processes_related, Opts, Out};

/// The name the runtime is registered under in the private
/// containers.conf; `podman inspect` reports it as `OCIRuntime`.
pub const RUNTIME_NAME: &str = "berth";

/// berth's default `--root` as root, where podman's calls keep its state.
pub const BERTH_ROOT: &str = "/run/berth";

/// The annotation that hands a container to berth's crun backend; podman
/// copies `--annotation` into the bundle's config.json.
pub const CRUN_ANNOTATION: &str = "run.berth.backend=crun";

/// Which berth backend a test's containers run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Native,
    Crun,
}

impl Backend {
    /// The `podman run` options that select this backend.
    pub fn run_args(self) -> &'static [&'static str] {
        match self {
            Backend::Native => &[],
            Backend::Crun => &["--annotation", CRUN_ANNOTATION],
        }
    }
}

/// Whether podman and conmon are installed.
pub fn available() -> bool {
    ["/usr/bin/podman", "/usr/bin/conmon"]
        .iter()
        .all(|p| Path::new(p).exists())
}

/// One private podman. See the module documentation.
pub struct Podman {
    dir: TempDir,
    /// Every container id podman reported, for the cgroup clean-up on drop.
    ids: Mutex<Vec<String>>,
}

impl Podman {
    /// A podman with empty private storage, berth as its runtime.
    pub fn new() -> Podman {
        LIVE.fetch_add(1, Ordering::SeqCst);
        let bin = berth_bin();
        assert!(
            bin.exists(),
            "runtime under test {} not found: `cargo build --release -p berth`, or set BERTH_BIN",
            bin.display()
        );
        let dir = TempDir::new("podman");
        for d in ["root", "runroot", "tmp", "net", "cid"] {
            std::fs::create_dir(dir.join(d)).expect("create podman private dir");
        }
        // nofile: this machine caps open files at 20000 and gives no
        // CAP_SYS_RESOURCE, so podman's default (1048576, its own hard
        // limit as root) cannot be set by any runtime; the same for nproc.
        let conf = format!(
            r#"[containers]
netns = "none"
log_driver = "k8s-file"
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
lock_type = "file"
runtime = "{RUNTIME_NAME}"

[engine.runtimes]
{RUNTIME_NAME} = ["{bin}"]

[network]
network_config_dir = "{net}"
"#,
            bin = bin.display(),
            net = dir.join("net").display(),
        );
        std::fs::write(dir.join("containers.conf"), conf).expect("write containers.conf");
        let storage = format!(
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            dir.join("root").display(),
            dir.join("runroot").display(),
        );
        std::fs::write(dir.join("storage.conf"), storage).expect("write storage.conf");
        Podman {
            dir,
            ids: Mutex::new(Vec::new()),
        }
    }

    /// The private directory everything lives under.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// berth's state directory for container `id`.
    pub fn berth_state_dir(id: &str) -> PathBuf {
        Path::new(BERTH_ROOT).join(id)
    }

    /// `podman GLOBAL-FLAGS ARGS` with the private configuration.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .arg("--tmpdir")
            .arg(self.dir.join("tmp"))
            .args(["--runtime", RUNTIME_NAME])
            .args([
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
                "--storage-driver",
                "overlay",
            ])
            .args(args);
        c
    }

    /// Run podman with a 60 s timeout (the machine is shared and slow).
    pub fn run(&self, args: &[&str]) -> Out {
        exec(
            self.command(args),
            Opts {
                timeout: Duration::from_secs(60),
                ..Default::default()
            },
        )
    }

    /// Run podman; panic with its output unless it exited 0.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        self.run(args).ok().stdout
    }

    /// Bring both images of the busybox archive
    /// ([`crate::clients::busybox_archive`]) into podman's storage and check
    /// their names resolve. podman 4.3's `load` refuses an OCI archive that
    /// holds more than one image ("more than one image in oci, choose an
    /// image"), so each is pulled by its ref name from the `oci-archive:`
    /// transport; podman names it `localhost/REF`.
    pub fn load_busybox(&self) {
        let archive = crate::clients::busybox_archive(&self.dir);
        for name in [crate::clients::BUSYBOX_TEST, crate::clients::BUSYBOX_USER] {
            let src = format!("oci-archive:{}:{name}", archive.display());
            self.ok(&["pull", "--quiet", &src]);
            let full = format!("localhost/{name}");
            let r = self.run(&["image", "exists", &full]);
            assert!(
                r.success(),
                "after `podman pull {src}` image {full} does not exist: {r}"
            );
        }
        let _ = std::fs::remove_file(&archive);
    }

    /// `podman run -d` with the backend's options; the container's full id.
    #[track_caller]
    pub fn run_detached(&self, backend: Backend, args: &[&str]) -> String {
        let mut a = vec!["run", "-d"];
        a.extend_from_slice(backend.run_args());
        a.extend_from_slice(args);
        let id = self.ok(&a).trim().to_string();
        assert_eq!(id.len(), 64, "podman run -d printed no id: {id:?}");
        self.remember(&id);
        id
    }

    /// `podman run --rm` (attached) with the backend's options; the
    /// container's id (from `--cidfile`) is remembered.
    pub fn run_rm(&self, backend: Backend, args: &[&str]) -> Out {
        static N: AtomicUsize = AtomicUsize::new(0);
        let cidfile = self
            .dir
            .join("cid")
            .join(N.fetch_add(1, Ordering::Relaxed).to_string());
        let cid = cidfile.to_str().unwrap().to_string();
        let mut a = vec!["run", "--rm", "--cidfile", &cid];
        a.extend_from_slice(backend.run_args());
        a.extend_from_slice(args);
        let out = self.run(&a);
        if let Ok(id) = std::fs::read_to_string(&cidfile) {
            self.remember(id.trim());
        }
        out
    }

    /// Every container id this podman reported so far.
    pub fn ids(&self) -> Vec<String> {
        self.ids.lock().unwrap().clone()
    }

    /// Record a container id for the cgroup clean-up on drop.
    pub fn remember(&self, id: &str) {
        self.ids.lock().unwrap().push(id.to_string());
    }

    /// `podman inspect --format FORMAT ID`, trimmed.
    #[track_caller]
    pub fn inspect(&self, id: &str, format: &str) -> String {
        self.ok(&["inspect", "--format", format, id])
            .trim()
            .to_string()
    }

    /// Ids of every container podman knows.
    pub fn all_ids(&self) -> Vec<String> {
        let out = self.run(&["ps", "-a", "-q", "--no-trunc"]);
        out.stdout
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    }

    /// What is left of the containers `ids` and of podman's work: containers
    /// podman still lists, berth state directories of `ids`, mounts under the private
    /// directory, live processes tied to it (conmon, container processes,
    /// podman's cleanup) and cgroups named after the ids. Empty when clean.
    pub fn leftovers(&self, ids: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for id in self.all_ids() {
            out.push(format!("podman still lists container {id}"));
        }
        for m in mounts_under(&self.dir) {
            out.push(format!("mount {}", m.display()));
        }
        for (pid, cmd) in processes_related(&[&self.needle()], &[&self.dir]) {
            out.push(format!("process {pid}: {cmd}"));
        }
        for id in ids {
            let state = Self::berth_state_dir(id);
            if state.exists() {
                out.push(format!("berth state dir {}", state.display()));
            }
            for c in cgroup_dirs_named(&format!("libpod-{id}"))
                .into_iter()
                .chain(cgroup_dirs_named(id))
            {
                out.push(format!("cgroup {}", c.display()));
            }
        }
        out
    }

    /// What the command line of a process started for this podman holds:
    /// the private dir with a trailing slash (so `…-1/` never matches the
    /// paths of another instance's `…-10/`).
    fn needle(&self) -> String {
        format!("{}/", self.dir.display())
    }

    fn berth_delete(ids: &[String]) {
        for id in ids {
            if !Self::berth_state_dir(id).exists() {
                continue;
            }
            let mut c = Command::new(berth_bin());
            c.arg("--root")
                .arg(BERTH_ROOT)
                .args(["delete", "--force", id]);
            let _ = exec(
                c,
                Opts {
                    timeout: Duration::from_secs(20),
                    ..Default::default()
                },
            );
        }
    }
}

impl Default for Podman {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let mut ids = std::mem::take(&mut *self.ids.lock().unwrap());
        ids.extend(self.all_ids());
        let _ = exec(
            self.command(&["rm", "--force", "--all", "--time", "0"]),
            Opts {
                timeout: Duration::from_secs(60),
                ..Default::default()
            },
        );
        Self::berth_delete(&ids);
        // conmon, podman's exit command and any process of a container
        // that outlived the above: all were started for this podman.
        for (pid, _) in processes_related(&[&self.needle()], &[&self.dir]) {
            // SAFETY: kill(2) on a pid we just read; no memory involved.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // The containers' cgroups (cgroupfs: /libpod_parent/libpod-ID in
        // each hierarchy), deepest first; podman's shared parent stays.
        let mut cgroups: Vec<PathBuf> = ids
            .iter()
            .flat_map(|id| cgroup_dirs_named(&format!("libpod-{id}")))
            .collect();
        cgroups.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for c in cgroups {
            let _ = std::fs::remove_dir(c);
        }
        // The last podman of this process also takes podman's shared
        // parents if they are empty (rmdir fails otherwise), so no cgroup
        // outlives the suite: tests/cgroup_v2.rs can only move a
        // controller whose hierarchy holds nothing but its root.
        if LIVE.fetch_sub(1, Ordering::SeqCst) == 1 {
            for parent in ["libpod_parent/conmon", "libpod_parent"] {
                for c in cgroup_dirs_named(parent.rsplit('/').next().unwrap_or(parent))
                    .into_iter()
                    .filter(|c| c.ends_with(parent))
                {
                    let _ = std::fs::remove_dir(c);
                }
            }
        }
        // TempDir's drop detaches mounts under the directory and removes it.
    }
}
