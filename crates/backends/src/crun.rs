//! The crun hand-off: the same bundle run by crun, with crun's own state
//! (`--root`) inside berth's container directory so `delete` of the berth
//! container removes it. berth keeps its own state.json as for any backend.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_state::{Container, Record, Status};

use crate::{io_err, Backend, BackendError, CreateRequest, Created, Result};

pub struct Crun {
    bin: PathBuf,
}

const NAME: &str = "crun";

impl Crun {
    /// crun from `BERTH_CRUN`, else the first `crun` on PATH.
    pub fn locate() -> Result<Crun> {
        if let Some(p) = std::env::var_os("BERTH_CRUN") {
            return Ok(Crun { bin: p.into() });
        }
        let path =
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
        std::env::split_paths(&path)
            .map(|d| d.join("crun"))
            .find(|p| p.is_file())
            .map(|bin| Crun { bin })
            .ok_or_else(|| BackendError::Engine {
                backend: NAME,
                op: "locate",
                detail: "crun is not installed (not found in PATH; set BERTH_CRUN to its path)"
                    .into(),
            })
    }

    fn root(dir: &Path) -> PathBuf {
        dir.join("crun")
    }

    fn cmd(&self, dir: &Path) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--root").arg(Self::root(dir));
        cmd
    }

    /// Run crun to completion, stdio captured; an error carries crun's message.
    fn run(&self, op: &'static str, mut cmd: Command) -> Result<String> {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(io_err(format!("run {}", self.bin.display())))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        Err(BackendError::Engine {
            backend: NAME,
            op,
            detail: last_line(&out.stderr, &out.status),
        })
    }

    fn crun_state(&self, dir: &Path, id: &str) -> Option<serde_json::Value> {
        let mut cmd = self.cmd(dir);
        cmd.args(["state", id]);
        let out = self.run("state", cmd).ok()?;
        serde_json::from_str(&out).ok()
    }
}

fn last_line(stderr: &[u8], status: &std::process::ExitStatus) -> String {
    let text = String::from_utf8_lossy(stderr);
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| format!("{status}"))
}

impl Backend for Crun {
    fn name(&self) -> &'static str {
        NAME
    }

    fn create(&self, req: &CreateRequest<'_>, rec: &mut Record) -> Result<Created> {
        let c = req.container;
        // Recorded before crun makes anything, so `delete --force` after a
        // crash knows to ask crun to remove its container, and which cgroups
        // to remove if crun died before it knew them itself.
        rec.cgroup_paths = crun_cgroup(&req.bundle.spec, &rec.id)?.paths;
        c.save(rec)?;
        let pid_file = c.dir().join("crun.pid");
        let mut cmd = self.cmd(c.dir());
        cmd.arg("create")
            .arg("--bundle")
            .arg(&req.bundle.dir)
            .arg("--pid-file")
            .arg(&pid_file);
        // A foreground terminal: crun sends the pty master to our own socket.
        let listener = if req.keep_console
            && req.opts.console_socket.is_none()
            && crate::ops::terminal(&req.bundle.spec)
        {
            let path = c.dir().join("console.sock");
            let l = UnixListener::bind(&path)
                .map_err(io_err(format!("listen on {}", path.display())))?;
            cmd.arg("--console-socket").arg(&path);
            Some(l)
        } else {
            None
        };
        if let Some(s) = &req.opts.console_socket {
            cmd.arg("--console-socket").arg(s);
        }
        let preserve = req.opts.preserve_fds + req.opts.listen_fds;
        if preserve > 0 {
            cmd.arg(format!("--preserve-fds={preserve}"));
        }
        if req.opts.no_pivot {
            cmd.arg("--no-pivot");
        }
        if req.opts.no_new_keyring {
            cmd.arg("--no-new-keyring");
        }
        cmd.arg(&rec.id);
        // Nothing of the caller's beyond stdio and the preserved descriptors
        // reaches crun (and through it the container: a leaked host
        // directory is the CVE-2024-21626 class).
        let keep = 3 + preserve;
        // SAFETY: the closure only makes the close_range(2) syscall, which
        // is async-signal-safe; it runs in the child between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
                if libc::syscall(
                    libc::SYS_close_range,
                    keep,
                    libc::c_uint::MAX,
                    CLOSE_RANGE_CLOEXEC,
                ) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // The container inherits our stdio, as with the native backend.
        let status = cmd
            .status()
            .map_err(io_err(format!("run {}", self.bin.display())))?;
        if !status.success() {
            return Err(BackendError::Engine {
                backend: NAME,
                op: "create",
                detail: format!(
                    "{} exited with {status} (its message is above)",
                    self.bin.display()
                ),
            });
        }
        let pid = read_pid(&pid_file)?;
        rec.pid = pid;
        rec.pid_start = berth_state::pid_start_time(pid).unwrap_or(0);
        c.save(rec)?;
        let console_master = match listener {
            Some(l) => {
                let (stream, _) = l
                    .accept()
                    .map_err(io_err("accept crun's console connection"))?;
                Some(
                    berth_linux::recv_file(std::os::fd::AsRawFd::as_raw_fd(&stream))
                        .map_err(io_err("receive the pty master from crun"))?,
                )
            }
            None => None,
        };
        Ok(Created {
            pid,
            console_master,
        })
    }

    fn start(&self, c: &Container, rec: &Record) -> Result<()> {
        match self.status(c.dir(), rec) {
            Status::Created => {}
            other => return Err(BackendError::CannotStart(other)),
        }
        let mut cmd = self.cmd(c.dir());
        cmd.args(["start", &rec.id]);
        self.run("start", cmd).map(drop)
    }

    fn status(&self, dir: &Path, rec: &Record) -> Status {
        if rec.pid > 0
            && berth_state::liveness(rec.pid, rec.pid_start) == berth_state::Liveness::Dead
        {
            return Status::Stopped;
        }
        self.crun_state(dir, &rec.id)
            .and_then(|s| {
                s.get("status")
                    .and_then(|v| v.as_str())
                    .and_then(|s| s.parse().ok())
            })
            .unwrap_or(Status::Stopped)
    }

    fn kill(&self, dir: &Path, rec: &Record, signal: i32, all: bool) -> Result<()> {
        if self.status(dir, rec) == Status::Stopped {
            return Err(BackendError::NotRunning);
        }
        let mut cmd = self.cmd(dir);
        cmd.arg("kill");
        if all {
            cmd.arg("--all");
        }
        cmd.args([rec.id.as_str(), &signal.to_string()]);
        self.run("kill", cmd).map(drop)
    }

    fn exec(&self, c: &Container, rec: &Record, req: &crate::exec::ExecRequest<'_>) -> Result<i32> {
        // The process as crun reads it, beside crun's own state.
        let file = c.dir().join(format!("exec-{}.json", std::process::id()));
        let json = serde_json::to_vec(req.process)
            .map_err(|e| BackendError::Invalid(format!("exec: process: {e}")))?;
        std::fs::write(&file, json).map_err(io_err(format!("write {}", file.display())))?;
        let mut cmd = self.cmd(c.dir());
        cmd.arg("exec").arg("--process").arg(&file);
        if let Some(s) = req.console_socket {
            cmd.arg("--console-socket").arg(s);
        }
        if req.detach {
            cmd.arg("--detach");
        }
        if let Some(p) = req.pid_file {
            cmd.arg("--pid-file").arg(p);
        }
        if req.preserve_fds > 0 {
            cmd.arg(format!("--preserve-fds={}", req.preserve_fds));
        }
        for g in req.cgroups {
            cmd.arg("--cgroup").arg(g);
        }
        cmd.arg(&rec.id);
        // stdio is the process's, as with the native backend.
        let status = cmd.status();
        let _ = std::fs::remove_file(&file);
        let status = status.map_err(io_err(format!("run {}", self.bin.display())))?;
        Ok(
            match (
                status.code(),
                std::os::unix::process::ExitStatusExt::signal(&status),
            ) {
                (Some(code), _) => code,
                (None, Some(sig)) => 128 + sig,
                (None, None) => 1,
            },
        )
    }

    fn pause(&self, c: &Container, rec: &Record) -> Result<()> {
        let mut cmd = self.cmd(c.dir());
        cmd.args(["pause", &rec.id]);
        self.run("pause", cmd).map(drop)
    }

    fn resume(&self, c: &Container, rec: &Record) -> Result<()> {
        let mut cmd = self.cmd(c.dir());
        cmd.args(["resume", &rec.id]);
        self.run("resume", cmd).map(drop)
    }

    fn update(
        &self,
        c: &Container,
        rec: &Record,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        let file = c.dir().join("update.json");
        let json = serde_json::to_vec(resources)
            .map_err(|e| BackendError::Invalid(format!("update: resources: {e}")))?;
        std::fs::write(&file, json).map_err(io_err(format!("write {}", file.display())))?;
        let mut cmd = self.cmd(c.dir());
        cmd.args(["update", "--resources"]).arg(&file).arg(&rec.id);
        let out = self.run("update", cmd);
        let _ = std::fs::remove_file(&file);
        out.map(drop)
    }

    fn ps(&self, dir: &Path, rec: &Record) -> Result<Vec<i32>> {
        let mut cmd = self.cmd(dir);
        cmd.args(["ps", "--format", "json", &rec.id]);
        let out = self.run("ps", cmd)?;
        serde_json::from_str::<Option<Vec<i32>>>(&out)
            .map(Option::unwrap_or_default)
            .map_err(|e| BackendError::Engine {
                backend: NAME,
                op: "ps",
                detail: format!("unexpected output {:?}: {e}", out.trim()),
            })
    }

    fn stats(&self, dir: &Path, rec: &Record) -> Result<serde_json::Value> {
        let mut cmd = self.cmd(dir);
        cmd.args(["events", "--stats", &rec.id]);
        let out = self.run("events", cmd)?;
        let v: serde_json::Value =
            serde_json::from_str(out.trim()).map_err(|e| BackendError::Engine {
                backend: NAME,
                op: "events",
                detail: format!("unexpected output {:?}: {e}", out.trim()),
            })?;
        Ok(v.get("data").cloned().unwrap_or(v))
    }

    fn oom_kills(&self, _dir: &Path, rec: &Record) -> Result<u64> {
        // crun's cgroup is recorded (see create): read the counter directly.
        Ok(berth_cgroups::Cgroup {
            paths: rec.cgroup_paths.clone(),
        }
        .oom_kills()?)
    }

    fn destroy(&self, c: &Container, rec: &Record) -> Result<()> {
        if Self::root(c.dir()).join(&rec.id).exists() {
            let mut cmd = self.cmd(c.dir());
            cmd.args(["delete", "--force", &rec.id]);
            self.run("delete", cmd)?;
        }
        // crun removes its cgroups, except those of a container it was killed
        // while creating.
        berth_cgroups::Cgroup {
            paths: rec.cgroup_paths.clone(),
        }
        .kill_and_remove()?;
        Ok(())
    }
}

/// The cgroup crun gives a container with the cgroupfs manager:
/// `linux.cgroupsPath` from each hierarchy's root, else `/<id>`.
fn crun_cgroup(spec: &oci_spec::runtime::Spec, id: &str) -> Result<berth_cgroups::Cgroup> {
    let configured = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| !p.is_empty());
    let path = format!(
        "/{}",
        configured.as_deref().unwrap_or(id).trim_start_matches('/')
    );
    Ok(berth_cgroups::Hierarchies::detect()?.container(Some(&path), id)?)
}

fn read_pid(path: &Path) -> Result<i32> {
    let text = std::fs::read_to_string(path)
        .map_err(io_err(format!("read crun's pid file {}", path.display())))?;
    text.trim().parse().map_err(|_| {
        BackendError::Invalid(format!(
            "crun's pid file {} holds {:?}, not a pid",
            path.display(),
            text.trim()
        ))
    })
}
