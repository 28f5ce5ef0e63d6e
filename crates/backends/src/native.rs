//! berth's own Linux backend: cgroups from `berth-cgroups`, everything else
//! from `berth-linux`.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use berth_cgroups::{Cgroup, DeviceRule, Hierarchies};
use berth_linux::{Console, LinuxError};
use berth_state::{liveness, Container, Liveness, Record, Status};

use crate::{Backend, BackendError, CreateRequest, Created, Result};

pub struct Native;

fn cgroup_of(rec: &Record) -> Cgroup {
    Cgroup {
        paths: rec.cgroup_paths.clone(),
    }
}

/// The device cgroup rules, as runc applies them: deny everything, then the
/// config's rules in order, then the default devices and the devices the
/// config creates, which stay usable whatever the rules say.
pub(crate) fn device_rules(spec: &oci_spec::runtime::Spec) -> Vec<DeviceRule> {
    let linux = spec.linux().as_ref();
    let configured = linux
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.devices().clone())
        .unwrap_or_default();
    let mut rules = vec![DeviceRule {
        allow: false,
        kind: 'a',
        major: None,
        minor: None,
        access: "rwm".into(),
    }];
    rules.extend(configured.iter().map(|d| {
        DeviceRule {
            allow: d.allow(),
            kind: d
                .typ()
                .map_or('a', |t| t.as_str().chars().next().unwrap_or('a')),
            // -1 is runc's wildcard, as an absent number.
            major: d.major().filter(|&m| m != -1),
            minor: d.minor().filter(|&m| m != -1),
            access: d.access().clone().unwrap_or_else(|| "rwm".into()),
        }
    }));
    rules.extend(berth_cgroups::default_device_rules());
    for d in linux.and_then(|l| l.devices().clone()).unwrap_or_default() {
        rules.push(DeviceRule {
            allow: true,
            kind: d.typ().as_str().chars().next().unwrap_or('c'),
            major: Some(d.major()),
            minor: Some(d.minor()),
            access: "rwm".into(),
        });
    }
    rules
}

/// `--rootless` (by default, whenever berth is not root), as runc's
/// rootless cgroup manager: hierarchies the caller may not write (no
/// delegation) are left out with a warning that says why; a cgroupsPath
/// given in the config must be usable (a delegated cgroup2 subtree, say);
/// resource limits with no cgroup to hold them are an error.
fn rootless_cgroup(
    req: &CreateRequest<'_>,
    cgroup: &mut Cgroup,
    cgroups_path: Option<&str>,
    rec: &mut Record,
) -> Result<()> {
    let existed: Vec<String> = cgroup
        .paths
        .iter()
        .filter(|(_, p)| p.is_dir())
        .map(|(k, _)| k.clone())
        .collect();
    let skipped = cgroup.create_permitted()?;
    // SAFETY: geteuid cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    if !skipped.is_empty() {
        // Grouped by reason: "Permission denied: /sys/fs/cgroup/cpu/c1, ...".
        let mut reasons: Vec<(String, Vec<String>)> = Vec::new();
        for s in &skipped {
            let why = s.error.to_string();
            let path = s.path.display().to_string();
            match reasons.iter_mut().find(|(w, _)| *w == why) {
                Some((_, paths)) => paths.push(path),
                None => reasons.push((why, vec![path])),
            }
        }
        let list = reasons
            .iter()
            .map(|(why, paths)| format!("{why}: {}", paths.join(", ")))
            .collect::<Vec<_>>()
            .join("; ");
        if let Some(p) = cgroups_path.filter(|p| !p.is_empty() && cgroup.paths.is_empty()) {
            return Err(BackendError::Invalid(format!(
                "linux.cgroupsPath {p:?}: no cgroup hierarchy there is writable by uid {euid} (delegate a cgroup2 directory to the user): {list}"
            )));
        }
        if let Some(limit) = resource_limits(&req.bundle.spec) {
            return Err(BackendError::Invalid(format!(
                "linux.resources.{limit}: cannot be applied: berth runs as uid {euid} and may not write the container's cgroups: {list}"
            )));
        }
        (req.warn)(&format!(
            "rootless: the container runs without the cgroups uid {euid} may not create (no delegation; linux.cgroupsPath may name a delegated cgroup2 directory): {list}"
        ));
    }
    rec.cgroup_paths = cgroup.paths.clone();
    rec.cgroup_shared = cgroup.paths.keys().any(|k| existed.contains(k));
    req.container.save(rec)?;
    Ok(())
}

/// Device rules a rootless berth could not write (they need CAP_SYS_ADMIN
/// in the host's user namespace, or there is no devices hierarchy it may
/// use): a warning when the config has any, as runc ignores them.
fn rootless_devices(req: &CreateRequest<'_>, err: &berth_cgroups::CgroupError) {
    let rules = req
        .bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.devices().as_ref())
        .is_some_and(|d| !d.is_empty());
    // SAFETY: geteuid cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    let why = match err {
        berth_cgroups::CgroupError::NoDevicesController => {
            format!("uid {euid} may not use the devices cgroup")
        }
        e => e.to_string(),
    };
    if rules {
        (req.warn)(&format!(
            "linux.resources.devices: not applied ({why}); in its user namespace the container cannot create device nodes, and opens the ones it is given with the host's permissions"
        ));
    }
}

/// The first resource limit the config sets other than device rules.
fn resource_limits(spec: &oci_spec::runtime::Spec) -> Option<String> {
    let res = spec.linux().as_ref()?.resources().as_ref()?;
    let value = serde_json::to_value(res).ok()?;
    value
        .as_object()?
        .iter()
        .find(|(k, v)| k.as_str() != "devices" && !v.is_null())
        .map(|(k, _)| k.clone())
}

struct Recorder<'a> {
    c: &'a Container,
    rec: &'a mut Record,
}

impl berth_linux::HookState for Recorder<'_> {
    fn hook_state(&self, pid: i32, status: &str) -> Vec<u8> {
        let mut r = self.rec.clone();
        r.pid = pid;
        let status = status.parse().unwrap_or(Status::Creating);
        serde_json::to_vec(&r.hook_state(status)).unwrap_or_default()
    }

    fn record_pid(&mut self, pid: i32) -> std::result::Result<(), LinuxError> {
        self.rec.pid = pid;
        self.rec.pid_start = berth_state::pid_start_time(pid).unwrap_or(0);
        self.c
            .save(self.rec)
            .map_err(|e| LinuxError::Plan(format!("record container pid: {e}")))
    }
}

impl Backend for Native {
    fn name(&self) -> &'static str {
        "native"
    }

    fn create(&self, req: &CreateRequest<'_>, rec: &mut Record) -> Result<Created> {
        let spec = &req.bundle.spec;
        let cgroups_path = spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| p.to_string_lossy().into_owned());
        let hierarchies = Hierarchies::detect()?;
        let mut cgroup = hierarchies.container_with(
            cgroups_path.as_deref(),
            &rec.id,
            req.opts.systemd_cgroup,
        )?;
        if req.opts.systemd_cgroup {
            // systemd runs (container_with checked): the unit would have to
            // be made through its D-Bus API, which berth lacks.
            return Err(BackendError::Invalid(
                "--systemd-cgroup: berth cannot create systemd units (no D-Bus client yet); drop --systemd-cgroup to use the cgroupfs driver".into(),
            ));
        }
        // Recorded before anything exists, so delete finds it after a crash.
        rec.cgroup_paths = cgroup.paths.clone();
        rec.cgroup_shared = cgroup.exists();
        req.container.save(rec)?;
        if req.opts.rootless {
            rootless_cgroup(req, &mut cgroup, cgroups_path.as_deref(), rec)?;
        } else {
            cgroup.create()?;
        }
        // Limits the config asks for are applied even to a shared cgroup
        // (as runc does: leaving them out would be a silent downgrade); its
        // device rules belong to whoever made it.
        if let Some(res) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
            cgroup.apply_resources(res, berth_cgroups::Mode::Create)?;
        }
        if !rec.cgroup_shared {
            match cgroup.apply_devices(&device_rules(spec)) {
                Ok(()) => {}
                Err(e) if req.opts.rootless => rootless_devices(req, &e),
                Err(e) => return Err(e.into()),
            }
        }
        // The init is moved into the cgroup after the fork, which waits for
        // an RCU grace period unless one has just passed: start it now, so it
        // runs while the init mounts its root filesystem. Not earlier: while
        // it waits, the kernel holds the lock every cgroup mkdir and write
        // above takes.
        drop(berth_cgroups::prime_migration(&hierarchies));
        let console = match (&req.opts.console_socket, req.keep_console) {
            (Some(p), _) => Console::Socket(p),
            (None, true) => Console::Keep,
            (None, false) => Console::None,
        };
        let id = rec.id.clone();
        let created = berth_linux::create(
            berth_linux::CreateRequest {
                id: &id,
                spec,
                rootfs: &req.bundle.rootfs,
                bundle: &req.bundle.dir,
                state_dir: req.container.dir(),
                cgroup: Some(&cgroup),
                console,
                opts: berth_linux::Options {
                    no_pivot: req.opts.no_pivot,
                    no_new_keyring: req.opts.no_new_keyring,
                    preserve_fds: req.opts.preserve_fds + req.opts.listen_fds,
                    listen_fds: req.opts.listen_fds,
                },
                close_in_child: vec![req.container.lock_fd().as_raw_fd()],
            },
            &mut Recorder {
                c: req.container,
                rec,
            },
        )?;
        // Limits that would stop berth's own set-up (a pids limit below the
        // two processes it forks) go in now: the init is in the cgroup and
        // waits for `start`, so the user's program runs under them.
        if let Some(res) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
            cgroup.apply_resources(res, berth_cgroups::Mode::Started)?;
        }
        Ok(Created {
            pid: created.pid,
            console_master: created.console_master,
        })
    }

    fn start(&self, c: &Container, rec: &Record) -> Result<()> {
        match self.status(c.dir(), rec) {
            Status::Created => {}
            other => return Err(BackendError::CannotStart(other)),
        }
        berth_linux::start(c.dir(), rec.pid).map_err(|e| match e {
            LinuxError::ExitedBeforeStart => BackendError::CannotStart(Status::Stopped),
            e => e.into(),
        })
    }

    fn status(&self, dir: &Path, rec: &Record) -> Status {
        if rec.pid <= 0 {
            // Recorded before the init existed: a create in progress (or
            // one that berth was killed in; `delete --force` removes it).
            return Status::Creating;
        }
        if liveness(rec.pid, rec.pid_start) == Liveness::Dead {
            return Status::Stopped;
        }
        if berth_linux::is_created(dir) {
            Status::Created
        } else if berth_linux::is_creating(dir) {
            Status::Creating
        } else if cgroup_of(rec).is_frozen() {
            Status::Paused
        } else {
            Status::Running
        }
    }

    fn kill(&self, dir: &Path, rec: &Record, signal: i32, all: bool) -> Result<()> {
        let status = self.status(dir, rec);
        if matches!(status, Status::Stopped | Status::Creating) && !all {
            return Err(BackendError::NotRunning);
        }
        if all {
            cgroup_of(rec).signal_all(signal)?;
        }
        if !matches!(status, Status::Stopped | Status::Creating) {
            // SAFETY: kill(2) of the recorded init, checked alive by pid and start time.
            if unsafe { libc::kill(rec.pid, signal) } < 0 && !all {
                return Err(crate::io_err(format!("kill pid {}", rec.pid))(
                    std::io::Error::last_os_error(),
                ));
            }
        }
        Ok(())
    }

    fn exec(&self, c: &Container, rec: &Record, req: &crate::exec::ExecRequest<'_>) -> Result<i32> {
        crate::exec::native_exec(c, rec, req)
    }

    fn update(
        &self,
        _c: &Container,
        rec: &Record,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        Ok(cgroup_of(rec).apply_resources(resources, berth_cgroups::Mode::Update)?)
    }

    fn ps(&self, _dir: &Path, rec: &Record) -> Result<Vec<i32>> {
        Ok(cgroup_of(rec).pids()?)
    }

    fn stats(&self, _dir: &Path, rec: &Record) -> Result<serde_json::Value> {
        Ok(cgroup_of(rec).stats()?)
    }

    fn oom_kills(&self, _dir: &Path, rec: &Record) -> Result<u64> {
        Ok(cgroup_of(rec).oom_kills()?)
    }

    fn pause(&self, _c: &Container, rec: &Record) -> Result<()> {
        Ok(cgroup_of(rec).freeze()?)
    }

    fn resume(&self, _c: &Container, rec: &Record) -> Result<()> {
        Ok(cgroup_of(rec).thaw()?)
    }

    fn destroy(&self, c: &Container, rec: &Record) -> Result<()> {
        let status = self.status(c.dir(), rec);
        // A create that was killed may have left its init outside the cgroup
        // (it is moved in while it mounts): kill the recorded init itself.
        let creating_init = status == Status::Creating
            && rec.pid > 0
            && liveness(rec.pid, rec.pid_start) == Liveness::Alive;
        if creating_init || !matches!(status, Status::Stopped | Status::Creating) {
            // SAFETY: kill(2) of the recorded, live init.
            unsafe { libc::kill(rec.pid, libc::SIGKILL) };
            // A frozen process dies only once thawed (the kill is pending).
            if status == Status::Paused {
                let _ = cgroup_of(rec).thaw();
            }
            if let Ok(fd) = berth_state::pidfd_open(rec.pid) {
                let _ = berth_state::wait_exit(
                    std::os::fd::AsFd::as_fd(&fd),
                    Some(Duration::from_secs(10)),
                );
            }
        }
        // Without a pid namespace, other processes can outlive the init. A
        // shared cgroup holds others' processes: leave it alone.
        if !rec.cgroup_shared {
            let cgroup = cgroup_of(rec);
            if cgroup.is_frozen() {
                // Killed while frozen: the signals land once thawed.
                cgroup.signal_all(libc::SIGKILL)?;
                let _ = cgroup.thaw();
            }
            cgroup.kill_and_remove()?;
        }
        Ok(())
    }
}
