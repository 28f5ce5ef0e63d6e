//! The lifecycle operations the CLI calls: state locked, backend chosen,
//! state saved. A failed `create` leaves nothing behind.

use std::path::{Path, PathBuf};

use berth_state::{Container, OciState, Record, Root, StateError, Status};

use crate::{
    backend, choose, config_path, io_err, BackendError, CreateRequest, Created, Result,
    StorageFlags,
};

/// `create`/`run` options (runc's flags).
#[derive(Debug, Default, Clone)]
pub struct CreateOptions {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    /// Descriptors passed by socket activation (LISTEN_FDS), kept after stdio.
    pub listen_fds: u32,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    /// `--rootless` resolved (runc's meaning): leave out the cgroup
    /// hierarchies the caller may not write, with a warning.
    pub rootless: bool,
    /// `--systemd-cgroup`: cgroups through systemd (an error unless systemd
    /// runs as PID 1; berth does not speak systemd's D-Bus API yet).
    pub systemd_cgroup: bool,
}

pub struct Runtime {
    pub root: Root,
    pub config: PathBuf,
    /// Where warnings go (the CLI's logger).
    pub warn: Box<dyn Fn(&str)>,
    /// The layer store flags, for bundles whose rootfs comes from an image.
    pub storage: StorageFlags,
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>, warn: Box<dyn Fn(&str)>) -> Runtime {
        Runtime {
            root: Root::new(root),
            config: config_path(),
            warn,
            storage: StorageFlags::default(),
        }
    }

    pub fn create(&self, id: &str, opts: &CreateOptions) -> Result<()> {
        self.create_locked(id, opts, false).map(drop)
    }

    fn create_locked(
        &self,
        id: &str,
        opts: &CreateOptions,
        keep_console: bool,
    ) -> Result<(Container, Record, Created)> {
        berth_state::validate_id(id)?;
        let bundle = berth_bundle::load(&opts.bundle)?;
        for w in &bundle.warnings {
            (self.warn)(w);
        }
        let backend_name = choose(&bundle.spec, &self.config)?;
        let engine = backend(&backend_name)?;
        // Both checked before anything exists on the host.
        match (opts.console_socket.is_some(), terminal(&bundle.spec)) {
            (true, false) => {
                return Err(BackendError::Invalid(
                    "--console-socket given but process.terminal is false".into(),
                ))
            }
            (false, true) if !keep_console => {
                return Err(BackendError::Invalid(berth_linux::NO_CONSOLE_SOCKET.into()))
            }
            _ => {}
        }
        let container = self.root.create(id)?;
        let mut rec = new_record(id, &bundle, backend_name);
        let req = CreateRequest {
            container: &container,
            bundle: &bundle,
            opts,
            keep_console,
            warn: &*self.warn,
        };
        let created = self
            .assemble_rootfs(&container, &bundle, &mut rec)
            .and_then(|()| engine.create(&req, &mut rec))
            .and_then(|created| {
                if let Some(p) = &opts.pid_file {
                    write_pid_file(p, created.pid)?;
                }
                Ok(created)
            });
        match created {
            Ok(created) => Ok((container, rec, created)),
            Err(e) => Err(abandon(engine.as_ref(), container, &rec, e)),
        }
    }

    pub fn start(&self, id: &str) -> Result<()> {
        let c = self.root.open(id)?;
        let rec = c.load()?;
        let engine = backend(&rec.backend)?;
        engine.start(&c, &rec)?;
        self.poststart(&rec);
        Ok(())
    }

    /// poststart hooks, run by berth for the native backend (crun runs its
    /// own). As the runtime spec says, a failing one is a warning and the
    /// rest still run.
    fn poststart(&self, rec: &Record) {
        self.warn_hooks(rec, Status::Running, |h| h.poststart().clone());
    }

    /// Run hooks whose failure is only a warning (poststart, poststop).
    fn warn_hooks(
        &self,
        rec: &Record,
        status: Status,
        pick: impl Fn(&oci_spec::runtime::Hooks) -> Option<Vec<oci_spec::runtime::Hook>>,
    ) {
        if rec.backend != "native" {
            return;
        }
        let hooks = hooks_of(rec, pick);
        let stage = if status == Status::Running {
            "poststart"
        } else {
            "poststop"
        };
        let state = serde_json::to_vec(&rec.hook_state(status)).unwrap_or_default();
        for hook in &hooks {
            if let Err(e) = berth_hooks::run(hook, &state) {
                (self.warn)(&format!("{stage} {e}"));
            }
        }
    }

    /// Lock-free: a hook may call `berth state` while `create` holds the lock.
    pub fn state(&self, id: &str) -> Result<OciState> {
        state_of(&self.root, id)
    }

    /// Lock-free, like `state`: signals need no exclusive access.
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let (dir, rec) = self.root.read(id)?;
        backend(&rec.backend)?.kill(&dir, &rec, signal, all)
    }

    /// `pause`: freeze a running container (status `paused`).
    pub fn pause(&self, id: &str) -> Result<()> {
        let c = self.root.open(id)?;
        let rec = c.load()?;
        let engine = backend(&rec.backend)?;
        match engine.status(c.dir(), &rec) {
            Status::Running => engine.pause(&c, &rec),
            Status::Paused => Err(BackendError::Invalid("container already paused".into())),
            _ => Err(BackendError::NotRunning),
        }
    }

    /// `resume`: thaw a paused container.
    pub fn resume(&self, id: &str) -> Result<()> {
        let c = self.root.open(id)?;
        let rec = c.load()?;
        let engine = backend(&rec.backend)?;
        match engine.status(c.dir(), &rec) {
            Status::Paused => engine.resume(&c, &rec),
            _ => Err(BackendError::Invalid("container not paused".into())),
        }
    }

    /// `ps`: the pids in the container's cgroup (lock-free, like `state`).
    pub fn ps(&self, id: &str) -> Result<Vec<i32>> {
        let (dir, rec) = self.root.read(id)?;
        backend(&rec.backend)?.ps(&dir, &rec)
    }

    /// `update`: apply `resources` (validated by the caller) to a container
    /// that is not stopped, and record them in its stored config so later
    /// commands see the new values.
    pub fn update(&self, id: &str, resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
        let c = self.root.open(id)?;
        let mut rec = c.load()?;
        let engine = backend(&rec.backend)?;
        match engine.status(c.dir(), &rec) {
            Status::Stopped => {
                return Err(BackendError::Invalid(
                    "cannot update a stopped container".into(),
                ))
            }
            Status::Creating => {
                return Err(BackendError::Invalid(
                    "cannot update a container that is still being created".into(),
                ))
            }
            _ => {}
        }
        engine.update(&c, &rec, resources)?;
        let patch = serde_json::to_value(resources).unwrap_or_default();
        let config = rec.config.as_object_mut().ok_or_else(|| {
            BackendError::Invalid("the container's stored config is not an object".into())
        })?;
        let linux = config
            .entry("linux")
            .or_insert_with(|| serde_json::json!({}));
        if let Some(linux) = linux.as_object_mut() {
            let res = linux
                .entry("resources")
                .or_insert_with(|| serde_json::json!({}));
            merge(res, &patch);
        }
        c.save(&rec)?;
        Ok(())
    }

    /// `events --stats`: the container's usage, runc's `data` object.
    pub fn stats(&self, id: &str) -> Result<serde_json::Value> {
        let (dir, rec) = self.running(id)?;
        backend(&rec.backend)?.stats(&dir, &rec)
    }

    /// OOM kills so far in the container's cgroup.
    pub fn oom_kills(&self, id: &str) -> Result<u64> {
        let (dir, rec) = self.running(id)?;
        backend(&rec.backend)?.oom_kills(&dir, &rec)
    }

    /// The container's record, if it has not stopped.
    fn running(&self, id: &str) -> Result<(PathBuf, Record)> {
        let (dir, rec) = self.root.read(id)?;
        match backend(&rec.backend)?.status(&dir, &rec) {
            Status::Stopped => Err(BackendError::NotRunning),
            _ => Ok((dir, rec)),
        }
    }

    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        berth_state::validate_id(id)?;
        let c = match self.root.open(id) {
            Ok(c) => c,
            Err(StateError::NotFound(_)) if force => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let rec = match c.load() {
            Ok(r) => r,
            // Killed before its first state was saved: only the directory exists.
            Err(e) if e.is_missing_record() => {
                c.destroy()?;
                return if force {
                    Ok(())
                } else {
                    Err(StateError::NotFound(id.into()).into())
                };
            }
            // An unreadable record (cut short by a power loss: state.json
            // is not fsynced) names nothing berth could clean up; --force
            // removes the directory so the id can be used again.
            Err(e @ StateError::Json { .. }) if force => {
                (self.warn)(&format!(
                    "delete {id}: {e}; removing its state directory only (its processes, cgroups and mounts, if any survive, are not known)"
                ));
                c.destroy()?;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let engine = backend(&rec.backend)?;
        let status = engine.status(c.dir(), &rec);
        if !force && !matches!(status, Status::Stopped | Status::Created) {
            return Err(BackendError::NotStopped {
                id: id.into(),
                status,
            });
        }
        engine.destroy(&c, &rec)?;
        teardown_rootfs(&rec)?;
        c.destroy()?;
        self.warn_hooks(&rec, Status::Stopped, |h| h.poststop().clone());
        Ok(())
    }

    pub fn list(&self) -> Result<Vec<OciState>> {
        let ids = self.root.list()?;
        let mut out = Vec::with_capacity(ids.len());
        for (id, state) in ids.iter().zip(states_of(&self.root, &ids)) {
            match state {
                Ok(s) => out.push(s),
                Err(BackendError::State(StateError::NotFound(_))) => {}
                Err(e) => (self.warn)(&format!("list: container {id}: {e}")),
            }
        }
        Ok(out)
    }

    /// `run`: create and start; detached, return at once; else wait, forward
    /// signals (and the terminal), delete, and return the exit status.
    pub fn run(&self, id: &str, opts: &CreateOptions, detach: bool) -> Result<i32> {
        let fg = if detach {
            None
        } else {
            Some(
                crate::foreground::Foreground::prepare()
                    .map_err(io_err("prepare to wait for the container"))?,
            )
        };
        let (c, rec, created) = self.create_locked(id, opts, !detach)?;
        let engine = backend(&rec.backend)?;
        if let Err(e) = engine.start(&c, &rec) {
            return Err(abandon(engine.as_ref(), c, &rec, e));
        }
        self.poststart(&rec);
        let Some(fg) = fg else { return Ok(0) };
        drop(c); // others may inspect the container while it runs
        let status = fg
            .wait(created.pid, created.console_master)
            .map_err(io_err("wait for the container"));
        match self.delete(id, true) {
            Ok(()) | Err(BackendError::State(StateError::NotFound(_))) => {}
            Err(e) => (self.warn)(&format!("delete {id} after it exited: {e}")),
        }
        status
    }
}

/// One container's state: its record without the config, and the status
/// its backend sees.
fn state_of(root: &Root, id: &str) -> Result<OciState> {
    let (dir, rec) = root.read_brief(id)?;
    let status = backend(&rec.backend)?.status(&dir, &rec);
    Ok(rec.oci_state(status))
}

/// The states of `ids`, in order. Each is a few small reads (state.json,
/// /proc/PID/stat, the exec fifo), so with many containers they are spread
/// over up to 4 threads, one per CPU.
fn states_of(root: &Root, ids: &[String]) -> Vec<Result<OciState>> {
    const PER_THREAD_MIN: usize = 64;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cpus.min(4).min(ids.len() / PER_THREAD_MIN).max(1);
    let one = |id: &String| state_of(root, id);
    if threads == 1 {
        return ids.iter().map(one).collect();
    }
    let chunk = ids.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut chunks = ids.chunks(chunk);
        let first = chunks.next().unwrap_or_default();
        let rest: Vec<_> = chunks
            .map(|c| scope.spawn(move || c.iter().map(one).collect::<Vec<_>>()))
            .collect();
        let mut out: Vec<_> = first.iter().map(one).collect();
        for h in rest {
            out.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        out
    })
}

impl Runtime {
    /// A bundle whose config names an image (`run.berth.image`): record
    /// what its root filesystem will be made of, then make it at root.path.
    fn assemble_rootfs(
        &self,
        c: &Container,
        bundle: &berth_bundle::Bundle,
        rec: &mut Record,
    ) -> Result<()> {
        let annotations = bundle.spec.annotations().as_ref();
        let Some(image) = annotations.and_then(|a| a.get(berth_storage::IMAGE_ANNOTATION)) else {
            return Ok(());
        };
        let manifest = annotations
            .and_then(|a| a.get(berth_storage::MANIFEST_ANNOTATION))
            .map(|m| {
                berth_storage::Digest::parse(m).map_err(|e| {
                    BackendError::Invalid(format!(
                        "annotation {}: {e}",
                        berth_storage::MANIFEST_ANNOTATION
                    ))
                })
            })
            .transpose()?;
        let store = berth_storage::Store::open(crate::store_config(&self.storage, &self.config)?)?;
        let key = berth_storage::container_key(self.root.path(), &rec.id);
        let plan = store.plan_rootfs(&key, image, manifest.as_ref(), &bundle.rootfs)?;
        rec.storage = Some(serde_json::to_value(&plan).unwrap_or_default());
        c.save(rec)?;
        berth_storage::mount_rootfs(&plan)?;
        Ok(())
    }
}

/// The image rootfs a record describes, if any.
pub(crate) fn rootfs_record(rec: &Record) -> Result<Option<berth_storage::RootfsRecord>> {
    rec.storage
        .as_ref()
        .map(|v| {
            serde_json::from_value(v.clone()).map_err(|e| {
                BackendError::Invalid(format!("container {}: its storage record: {e}", rec.id))
            })
        })
        .transpose()
}

/// Take down the root filesystem berth assembled from an image (nothing
/// for a bundle with its own rootfs).
fn teardown_rootfs(rec: &Record) -> Result<()> {
    match rootfs_record(rec)? {
        Some(r) => Ok(berth_storage::teardown(&r)?),
        None => Ok(()),
    }
}

/// The first record of a container made from `bundle` (no process yet).
pub(crate) fn new_record(id: &str, bundle: &berth_bundle::Bundle, backend: String) -> Record {
    Record {
        id: id.to_string(),
        pid: 0,
        pid_start: 0,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: berth_state::now_rfc3339(),
        owner: String::new(),
        annotations: bundle
            .spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        backend,
        cgroup_paths: Default::default(),
        cgroup_shared: false,
        storage: None,
        config: serde_json::to_value(&bundle.spec).unwrap_or_default(),
    }
}

/// Merge `patch` into `base`: objects key by key, anything else replaced;
/// nulls in the patch leave the base alone.
fn merge(base: &mut serde_json::Value, patch: &serde_json::Value) {
    match (base, patch) {
        (serde_json::Value::Object(b), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    continue;
                }
                merge(b.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// Remove a container whose create or start failed with `cause`. The cause
/// comes first; what cleanup could not undo follows it.
fn abandon(
    engine: &dyn crate::Backend,
    c: Container,
    rec: &Record,
    cause: BackendError,
) -> BackendError {
    let undo = engine
        .destroy(&c, rec)
        .and_then(|()| teardown_rootfs(rec))
        .and_then(|()| Ok(c.destroy()?));
    match undo {
        Ok(()) => cause,
        Err(cleanup) => BackendError::Invalid(format!(
            "{cause} (and cleaning up after it failed: {cleanup})"
        )),
    }
}

pub(crate) fn terminal(spec: &oci_spec::runtime::Spec) -> bool {
    spec.process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false)
}

fn hooks_of(
    rec: &Record,
    pick: impl Fn(&oci_spec::runtime::Hooks) -> Option<Vec<oci_spec::runtime::Hook>>,
) -> Vec<oci_spec::runtime::Hook> {
    rec.config
        .get("hooks")
        .and_then(|h| serde_json::from_value::<oci_spec::runtime::Hooks>(h.clone()).ok())
        .and_then(|h| pick(&h))
        .unwrap_or_default()
}

/// Write the pid file as runc does: a temp file beside it, renamed over.
pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(io_err("current directory"))?
            .join(path)
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp = dir.join(format!(
        ".{}.berth-tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, pid.to_string())
        .map_err(io_err(format!("write pid file {}", tmp.display())))?;
    std::fs::rename(&tmp, &path).map_err(io_err(format!("write pid file {}", path.display())))
}

#[cfg(test)]
mod tests {
    #[test]
    fn merge_keeps_what_the_patch_does_not_set() {
        let mut base = serde_json::json!({"memory": {"limit": 1, "swap": 2}, "pids": {"limit": 5}});
        let patch = serde_json::json!({"memory": {"limit": 3, "swap": null}, "cpu": {"shares": 9}});
        super::merge(&mut base, &patch);
        assert_eq!(
            base,
            serde_json::json!({"memory": {"limit": 3, "swap": 2}, "pids": {"limit": 5}, "cpu": {"shares": 9}})
        );
    }
}
