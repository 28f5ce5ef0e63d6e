//! `exec`: a new process in a running container (runc's `exec`).
//!
//! [`Runtime::exec`](crate::Runtime::exec) checks the container's status,
//! turns `--process` or the command line into the process to run (the
//! container's own `process` with the command line's overrides, as runc
//! builds it), validates it as `create` validates config.json, and hands it
//! to the container's backend.

use std::os::fd::AsRawFd;
use std::path::{Component, Path, PathBuf};

use berth_cgroups::{Cgroup, UNIFIED};
use berth_state::{Container, Record, Status};
use oci_spec::runtime::Spec;
use serde_json::{json, Value};

use crate::{backend, io_err, BackendError, Result};

/// Where the process comes from.
pub enum ExecProcess<'a> {
    /// `--process`: an OCI `process` object in a JSON file, used as is.
    File(&'a Path),
    /// The container's `process`, with the command line's overrides.
    Overrides(&'a Overrides),
}

/// runc's `exec` flags that change the container's `process`.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// The command and its arguments (required).
    pub args: Vec<String>,
    /// NAME=VALUE, replacing a variable of the same name.
    pub env: Vec<String>,
    pub cwd: Option<String>,
    /// "UID[:GID]", numbers only.
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    /// A terminal for the process (runc gives none unless asked).
    pub tty: bool,
    /// Added to the bounding, effective, permitted and ambient sets.
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub apparmor: Option<String>,
    pub process_label: Option<String>,
}

/// `exec` as the CLI asks for it.
pub struct ExecOptions<'a> {
    pub process: ExecProcess<'a>,
    pub console_socket: Option<&'a Path>,
    pub detach: bool,
    pub pid_file: Option<&'a Path>,
    pub preserve_fds: u32,
    /// `--cgroup`: `[controller[,controller]:]path` below the container's cgroup.
    pub cgroups: &'a [String],
    pub ignore_paused: bool,
}

/// What a backend's `exec` gets: the process resolved and validated.
pub struct ExecRequest<'a> {
    /// The process to run (from --process, or the config's process with
    /// the command line's overrides), validated.
    pub process: &'a oci_spec::runtime::Process,
    /// The container's config with `process` replaced by the process to run.
    pub spec: &'a Spec,
    /// The container's status when `exec` checked it (running, created, or
    /// paused with `--ignore-paused`).
    pub status: Status,
    pub console_socket: Option<&'a Path>,
    pub detach: bool,
    pub pid_file: Option<&'a Path>,
    pub preserve_fds: u32,
    /// `--cgroup`: `[controller[,controller]:]path` below the container's cgroup.
    pub cgroups: &'a [String],
    /// Where warnings go (the CLI's logger).
    pub warn: &'a dyn Fn(&str),
}

impl ExecRequest<'_> {
    /// Whether the process gets a terminal.
    pub fn terminal(&self) -> bool {
        crate::ops::terminal(self.spec)
    }
}

impl crate::Runtime {
    /// Run a process in container `id`: its exit status (128+N for signal
    /// N), or 0 once it runs when detached.
    pub fn exec(&self, id: &str, opts: &ExecOptions<'_>) -> Result<i32> {
        let c = self.root.open(id)?;
        let rec = c.load()?;
        let engine = backend(&rec.backend)?;
        let status = engine.status(c.dir(), &rec);
        match status {
            Status::Running | Status::Created => {}
            Status::Paused if opts.ignore_paused => {}
            // runc's wording.
            Status::Paused => {
                return Err(BackendError::Invalid(
                    "cannot exec in a paused container (use --ignore-paused to override)".into(),
                ))
            }
            Status::Stopped => {
                return Err(BackendError::Invalid(
                    "cannot exec in a stopped container".into(),
                ))
            }
            Status::Creating => {
                return Err(BackendError::Invalid(
                    "cannot exec in a container that is still being created".into(),
                ))
            }
        }
        // Held no longer: a process joining a paused container waits for
        // `resume`, which needs the lock, and execs need not queue behind
        // each other. What exec relies on is checked again as it joins (the
        // init by pid and start time, the cgroup by writing to it).
        release_lock(&c);
        let spec = resolve(&rec, &opts.process, &*self.warn)?;
        let Some(process) = spec.process() else {
            return Err(BackendError::Invalid("exec: no process".into()));
        };
        let req = ExecRequest {
            process,
            spec: &spec,
            status,
            console_socket: opts.console_socket,
            detach: opts.detach,
            pid_file: opts.pid_file,
            preserve_fds: opts.preserve_fds,
            cgroups: opts.cgroups,
            warn: &*self.warn,
        };
        // As runc checks them: a terminal needs someone to hold it.
        match (req.console_socket.is_some(), req.terminal(), req.detach) {
            (false, true, true) => Err(BackendError::Invalid(
                "exec --detach with a terminal needs --console-socket to hand the pty master to"
                    .into(),
            )),
            (true, false, _) | (true, _, false) => Err(BackendError::Invalid(
                "--console-socket is only used with --detach and a terminal (--tty or process.terminal)"
                    .into(),
            )),
            _ => engine.exec(&c, &rec, &req),
        }
    }
}

/// The container's config with the process to run in place of its own,
/// parsed and checked as `create` checks config.json.
fn resolve(rec: &Record, src: &ExecProcess<'_>, warn: &dyn Fn(&str)) -> Result<Spec> {
    let mut config = rec.config.clone();
    let (origin, process) = match src {
        ExecProcess::File(path) => {
            let origin = format!("--process {}", path.display());
            let bytes = std::fs::read(path).map_err(io_err(format!("read {origin}")))?;
            let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
                BackendError::Invalid(format!("{origin}: not a JSON process object: {e}"))
            })?;
            let Value::Object(mut map) = value else {
                return Err(BackendError::Invalid(format!(
                    "{origin}: not a JSON process object"
                )));
            };
            // runc reads a missing user as uid 0, gid 0.
            map.entry("user")
                .or_insert_with(|| json!({"uid": 0, "gid": 0}));
            (origin, Value::Object(map))
        }
        ExecProcess::Overrides(o) => {
            let mut p = config.get("process").cloned().unwrap_or_else(|| json!({}));
            apply(o, &mut p)?;
            ("exec".to_string(), p)
        }
    };
    config["process"] = process;
    let bytes = serde_json::to_vec(&config).map_err(|e| BackendError::Invalid(e.to_string()))?;
    let spec = berth_bundle::parse(&bytes).map_err(|e| match e {
        berth_bundle::BundleError::Parse { at, msg } => {
            BackendError::Invalid(format!("{origin}: {at}: {msg}"))
        }
        berth_bundle::BundleError::Invalid(problems) => {
            BackendError::Invalid(format!("{origin}: {}", join(&problems)))
        }
        other => other.into(),
    })?;
    // Only the process is new: the rest passed these checks at create.
    let checked = berth_bundle::validate(&spec, &rec.bundle);
    let problems: Vec<_> = checked
        .problems
        .into_iter()
        .filter(|p| p.path == "process" || p.path.starts_with("process."))
        .collect();
    if !problems.is_empty() {
        return Err(BackendError::Invalid(format!(
            "{origin}: {}",
            join(&problems)
        )));
    }
    // What create said about the container's own process is not news; the
    // one about execCPUAffinity is for the container's init.
    let known = serde_json::from_value::<Spec>(rec.config.clone())
        .map(|own| berth_bundle::validate(&own, &rec.bundle).warnings)
        .unwrap_or_default();
    for w in checked.warnings.iter().filter(|w| {
        w.starts_with("process.") && !w.starts_with("process.execCPUAffinity") && !known.contains(w)
    }) {
        warn(&format!("{origin}: {w}"));
    }
    Ok(spec)
}

fn join(problems: &[berth_bundle::Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// runc's `getProcess`: the command line's flags over the container's process.
fn apply(o: &Overrides, p: &mut Value) -> Result<()> {
    if o.args.is_empty() {
        return Err(BackendError::Invalid(
            "exec: no command given (name one after the container id, or use --process)".into(),
        ));
    }
    p["args"] = json!(o.args);
    if let Some(cwd) = &o.cwd {
        p["cwd"] = json!(cwd);
    }
    if let Some(a) = &o.apparmor {
        p["apparmorProfile"] = json!(a);
    }
    if let Some(l) = &o.process_label {
        p["selinuxLabel"] = json!(l);
    }
    // No capabilities object means no restriction: nothing to add to.
    if let Some(caps) = p.get_mut("capabilities").and_then(Value::as_object_mut) {
        for set in ["bounding", "effective", "permitted", "ambient"] {
            let list = caps.entry(set).or_insert_with(|| json!([]));
            if !list.is_array() {
                *list = json!([]);
            }
            if let Some(list) = list.as_array_mut() {
                for cap in &o.caps {
                    if !list.iter().any(|c| c == cap) {
                        list.push(json!(cap));
                    }
                }
            }
        }
    }
    if !o.env.is_empty() {
        let mut env: Vec<Value> = p
            .get("env")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for e in &o.env {
            let name = e.split_once('=').map_or(e.as_str(), |(n, _)| n);
            env.retain(|v| {
                v.as_str()
                    .is_none_or(|s| s.split_once('=').map_or(s, |(n, _)| n) != name)
            });
            env.push(json!(e));
        }
        p["env"] = Value::Array(env);
    }
    p["terminal"] = json!(o.tty);
    if o.no_new_privs {
        p["noNewPrivileges"] = json!(true);
    }
    if !p.get("user").is_some_and(Value::is_object) {
        p["user"] = json!({"uid": 0, "gid": 0});
    }
    if let Some(u) = &o.user {
        let (uid, gid) = parse_user(u)?;
        p["user"]["uid"] = json!(uid);
        if let Some(gid) = gid {
            p["user"]["gid"] = json!(gid);
        }
    }
    if !o.additional_gids.is_empty() {
        let mut gids: Vec<Value> = p["user"]
            .get("additionalGids")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        gids.extend(o.additional_gids.iter().map(|g| json!(g)));
        p["user"]["additionalGids"] = Value::Array(gids);
    }
    Ok(())
}

/// "UID[:GID]": numbers only, as runc takes them (no name lookup).
fn parse_user(u: &str) -> Result<(u32, Option<u32>)> {
    let bad = |what: &str, v: &str| {
        BackendError::Invalid(format!(
            "--user {u:?}: {what} {v:?} is not a number (UID[:GID], names are not looked up)"
        ))
    };
    let (uid, gid) = match u.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (u, None),
    };
    let uid = uid.parse().map_err(|_| bad("uid", uid))?;
    let gid = gid
        .map(|g| g.parse().map_err(|_| bad("gid", g)))
        .transpose()?;
    Ok((uid, gid))
}

/// `--cgroup`: the container's cgroup with sub-cgroups in place, as runc
/// reads the flag: `PATH` alone (the only --cgroup) for every hierarchy,
/// `CONTROLLER[,CONTROLLER]:PATH` for those controllers' hierarchies. The
/// sub-cgroups must exist.
fn sub_cgroup(base: &Cgroup, args: &[String]) -> Result<Cgroup> {
    let mut out = base.clone();
    for arg in args {
        let bad = |why: String| BackendError::Invalid(format!("--cgroup {arg:?}: {why}"));
        let (controllers, path) = match arg.split_once(':') {
            None => (None, arg.as_str()),
            Some((c, p)) if !p.contains(':') => (Some(c), p),
            Some(_) => return Err(bad("expected [CONTROLLER[,CONTROLLER]:]PATH".into())),
        };
        if controllers.is_none() && args.len() > 1 {
            return Err(bad(
                "a PATH without CONTROLLER: must be the only --cgroup".into()
            ));
        }
        let sub = below(path).ok_or_else(|| {
            bad("PATH must name a sub-cgroup below the container's (no \"..\", not empty)".into())
        })?;
        let keys: Vec<String> = match controllers {
            None => base.paths.keys().cloned().collect(),
            Some(list) => list
                .split(',')
                .map(|ctrl| {
                    hierarchy_of(base, ctrl).ok_or_else(|| {
                        bad(format!(
                            "the container has no cgroup for controller {ctrl:?}"
                        ))
                    })
                })
                .collect::<Result<_>>()?,
        };
        for key in keys {
            let dir = base.paths[&key].join(&sub);
            if !dir.is_dir() {
                return Err(bad(format!(
                    "{} does not exist (exec joins an existing sub-cgroup)",
                    dir.display()
                )));
            }
            out.paths.insert(key, dir);
        }
    }
    Ok(out)
}

/// `path` as a relative path that stays below its parent.
fn below(path: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// The hierarchy of `base` that holds `controller`: a v1 hierarchy naming
/// it, or the unified one when it lists it in cgroup.controllers.
fn hierarchy_of(base: &Cgroup, controller: &str) -> Option<String> {
    base.paths
        .iter()
        .find(|(key, dir)| {
            if key.as_str() == UNIFIED {
                controller == UNIFIED
                    || std::fs::read_to_string(dir.join("cgroup.controllers"))
                        .is_ok_and(|c| c.split_whitespace().any(|x| x == controller))
            } else {
                key.split(',')
                    .any(|k| k == controller || k.strip_prefix("name=") == Some(controller))
            }
        })
        .map(|(key, _)| key.clone())
}

/// The native backend's exec.
pub(crate) fn native_exec(c: &Container, rec: &Record, req: &ExecRequest<'_>) -> Result<i32> {
    let base = Cgroup {
        paths: rec.cgroup_paths.clone(),
    };
    let cgroup = sub_cgroup(&base, req.cgroups)?;
    let console = match (req.console_socket, req.terminal()) {
        (Some(p), _) => berth_linux::Console::Socket(p),
        (None, true) => berth_linux::Console::Keep,
        (None, false) => berth_linux::Console::None,
    };
    // Before the fork: berth must be the subreaper the process is
    // reparented to, and signals must queue until berth forwards them.
    let fg = if req.detach {
        None
    } else {
        Some(
            crate::foreground::Foreground::prepare()
                .map_err(io_err("prepare to wait for the process"))?,
        )
    };
    let state = serde_json::to_vec(&rec.oci_state(req.status)).unwrap_or_default();
    let executed = berth_linux::exec(berth_linux::ExecRequest {
        id: &rec.id,
        spec: req.spec,
        rootfs: &rec.rootfs,
        init_pid: rec.pid,
        init_start: rec.pid_start,
        cgroup: Some(&cgroup),
        console,
        preserve_fds: req.preserve_fds,
        close_in_child: vec![c.lock_fd().as_raw_fd()],
        state,
    })?;
    if let Some(path) = req.pid_file {
        if let Err(e) = crate::ops::write_pid_file(path, executed.pid) {
            // As runc: a process nobody can find is killed.
            // SAFETY: kill(2) of the process that has just started running.
            unsafe { libc::kill(executed.pid, libc::SIGKILL) };
            return Err(e);
        }
    }
    let Some(fg) = fg else { return Ok(0) };
    fg.wait(executed.pid, executed.console_master)
        .map_err(io_err("wait for the exec'd process"))
}

/// Drop the container's lock while berth still holds the `Container`.
fn release_lock(c: &Container) {
    // SAFETY: flock(2) on the lock's own descriptor, which stays open.
    unsafe { libc::flock(c.lock_fd().as_raw_fd(), libc::LOCK_UN) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process() -> Value {
        json!({
            "args": ["/bin/sh"], "cwd": "/", "terminal": true,
            "env": ["PATH=/bin", "TERM=xterm", "A=1"],
            "user": {"uid": 0, "gid": 0},
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                             "permitted": ["CAP_KILL"]}
        })
    }

    #[test]
    fn overrides_as_runc_applies_them() {
        let mut p = process();
        let o = Overrides {
            args: vec!["id".into(), "-u".into()],
            env: vec!["A=2".into(), "B=3".into()],
            cwd: Some("/tmp".into()),
            user: Some("1000:1001".into()),
            additional_gids: vec![5, 6],
            caps: vec!["CAP_CHOWN".into(), "CAP_KILL".into()],
            no_new_privs: true,
            ..Default::default()
        };
        apply(&o, &mut p).unwrap();
        assert_eq!(p["args"], json!(["id", "-u"]));
        assert_eq!(p["env"], json!(["PATH=/bin", "TERM=xterm", "A=2", "B=3"]));
        assert_eq!(p["cwd"], "/tmp");
        assert_eq!(
            p["user"],
            json!({"uid": 1000, "gid": 1001, "additionalGids": [5, 6]})
        );
        for set in ["bounding", "effective", "permitted", "ambient"] {
            let list = p["capabilities"][set].as_array().unwrap();
            assert!(list.contains(&json!("CAP_CHOWN")), "{set}: {p}");
            // Added once, never twice (the config's sets already hold it).
            assert_eq!(list.iter().filter(|c| *c == "CAP_KILL").count(), 1, "{set}");
        }
        assert!(p["capabilities"].get("inheritable").is_none());
        // No --tty: no terminal, whatever the container's process has.
        assert_eq!(p["terminal"], false);
        assert_eq!(p["noNewPrivileges"], true);

        let mut p = process();
        let o = Overrides {
            args: vec!["true".into()],
            user: Some("7".into()),
            ..Default::default()
        };
        apply(&o, &mut p).unwrap();
        assert_eq!(p["user"], json!({"uid": 7, "gid": 0}));
        assert!(p.get("noNewPrivileges").is_none());
    }

    #[test]
    fn bad_overrides() {
        for (o, needle) in [
            (Overrides::default(), "no command given"),
            (
                Overrides {
                    args: vec!["id".into()],
                    user: Some("nobody".into()),
                    ..Default::default()
                },
                "--user \"nobody\": uid \"nobody\" is not a number",
            ),
            (
                Overrides {
                    args: vec!["id".into()],
                    user: Some("1:x".into()),
                    ..Default::default()
                },
                "gid \"x\" is not a number",
            ),
        ] {
            let e = apply(&o, &mut process()).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
    }

    #[test]
    fn sub_cgroups() {
        let dir = tempfile::tempdir().unwrap();
        let mk = |p: &str| {
            std::fs::create_dir_all(dir.path().join(p)).unwrap();
            dir.path().join(p)
        };
        let base = Cgroup {
            paths: [
                ("cpu,cpuacct".to_string(), mk("cpu/c")),
                ("memory".to_string(), mk("memory/c")),
                ("name=systemd".to_string(), mk("systemd/c")),
            ]
            .into(),
        };
        mk("cpu/c/sub");
        mk("memory/c/sub");
        mk("systemd/c/sub");
        mk("memory/c/other");
        assert_eq!(sub_cgroup(&base, &[]).unwrap(), base);
        let all = sub_cgroup(&base, &["/sub".into()]).unwrap();
        assert!(all.paths.values().all(|p| p.ends_with("c/sub")), "{all:?}");
        let some = sub_cgroup(
            &base,
            &["cpuacct,systemd:sub".into(), "memory:other".into()],
        )
        .unwrap();
        assert_eq!(some.paths["cpu,cpuacct"], dir.path().join("cpu/c/sub"));
        assert_eq!(some.paths["name=systemd"], dir.path().join("systemd/c/sub"));
        assert_eq!(some.paths["memory"], dir.path().join("memory/c/other"));
        for (args, needle) in [
            (vec!["missing"], "does not exist"),
            (vec!["../x"], "no \"..\""),
            (vec!["cpu:a:b"], "expected [CONTROLLER"),
            (vec!["pids:sub"], "no cgroup for controller \"pids\""),
            (vec!["sub", "memory:other"], "must be the only --cgroup"),
        ] {
            let args: Vec<String> = args.into_iter().map(String::from).collect();
            let e = sub_cgroup(&base, &args).unwrap_err().to_string();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }
}
