//! `berth exec`: a new process in an existing container.
//!
//! berth forks twice, as `create` does, but joins instead of creating. The
//! parent places stage 1 in the container's cgroup (execCPUAffinity.initial
//! applies while it moves, `final` once it is in). Stage 1 joins the
//! namespaces of the container's init other than the mount namespace and
//! forks the process (a pid namespace is entered only by a child forked
//! after setns), then exits. The process opens its LSM attribute files
//! through the host's /proc, joins the mount namespace (which gives it the
//! container's root and working directory), and from there applies its
//! [`ProcessPlan`] exactly as the container init does ([`crate::apply`]).
//!
//! Stage 1 and the process report on separate sockets, so the parent never
//! has to sort their messages. The process's socket is close-on-exec: EOF
//! after `Ready` means the program runs; anything else is why it does not.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use berth_cgroups::Cgroup;
use oci_spec::runtime::Spec;

use crate::apply;
use crate::plan::{Join, Options, ProcessPlan};
use crate::rootfs::{Context, Failed, Res};
use crate::sync::{self, Msg};
use crate::sys;
use crate::{io_err, Console, LinuxError};

pub struct ExecRequest<'a> {
    pub id: &'a str,
    /// The container's config with `process` set to the process to run:
    /// `linux` still gives the seccomp filter and personality.
    pub spec: &'a Spec,
    /// The container's root filesystem on the host (for HOME).
    pub rootfs: &'a Path,
    /// The container's init as recorded: its pid and start time.
    pub init_pid: i32,
    pub init_start: u64,
    /// The cgroup to join: the container's, or sub-cgroups of it.
    pub cgroup: Option<&'a Cgroup>,
    pub console: Console<'a>,
    pub preserve_fds: u32,
    /// Descriptors the forked processes must close (the container lock).
    pub close_in_child: Vec<RawFd>,
    /// The container's state JSON, for a seccomp notify listener.
    pub state: Vec<u8>,
}

pub struct Executed {
    /// The process's pid (in berth's pid namespace).
    pub pid: i32,
    /// The pty master, for `Console::Keep`.
    pub console_master: Option<OwnedFd>,
}

/// Namespaces in the order stage 1 tries them (the mount namespace is the
/// process's to join, see the module documentation).
const NAMESPACES: &[(&str, i32)] = &[
    ("user", libc::CLONE_NEWUSER),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("pid", libc::CLONE_NEWPID),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("time", libc::CLONE_NEWTIME),
    ("mnt", libc::CLONE_NEWNS),
];

/// What the children use, all made before the first fork.
struct Plan {
    process: ProcessPlan,
    /// Joined by stage 1; the user namespace among them comes first in
    /// this list but is tried last (see `stage1_inner`).
    joins: Vec<Join>,
    mnt: Option<Join>,
    stage1_sync: OwnedFd,
    process_sync: OwnedFd,
    console: Option<OwnedFd>,
    close: Vec<RawFd>,
    /// All CPUs: the process does not keep berth's own affinity.
    all_cpus: libc::cpu_set_t,
}

/// Start the process; returns once it runs the program (or could not).
pub fn exec(req: ExecRequest<'_>) -> Result<Executed, LinuxError> {
    let opts = Options {
        preserve_fds: req.preserve_fds,
        ..Options::default()
    };
    let process = ProcessPlan::build(req.id, req.spec, req.rootfs, &opts)?;
    let (joins, mnt) = namespaces(req.init_pid, req.init_start)?;
    let (console_parent, console_child) = req.console.ends(process.terminal)?;
    let (stage1_parent, stage1_child) = sync::socketpair().map_err(io_err("create sync socket"))?;
    let (process_parent, process_child) =
        sync::socketpair().map_err(io_err("create sync socket"))?;
    let mut close = req.close_in_child.clone();
    close.extend([stage1_parent.as_raw_fd(), process_parent.as_raw_fd()]);
    if let Some(c) = &console_parent {
        close.push(c.as_raw_fd());
    }
    let all_cpus = every_cpu();
    let plan = Plan {
        process,
        joins,
        mnt,
        stage1_sync: stage1_child,
        process_sync: process_child,
        console: console_child,
        close,
        all_cpus,
    };

    // See sys::fork for the threads berth may have here.
    let stage1_pid = sys::fork().map_err(io_err("fork"))?;
    if stage1_pid == 0 {
        stage1(&plan);
    }
    let listener = plan.process.extras.notify.clone();
    let initial = plan.process.extras.affinity_initial;
    drop(plan);
    let mut guard = Guard {
        stage1: stage1_pid,
        process: None,
    };
    let sock = stage1_parent.as_raw_fd();
    match recv(sock)? {
        Msg::Hello => {}
        other => return Err(unexpected(other)),
    }
    if let Some(set) = initial {
        sys::sched_setaffinity(stage1_pid, &set.0).map_err(|e| {
            LinuxError::Init(format!(
                "process.execCPUAffinity.initial: set {set:?} on pid {stage1_pid}: {e}"
            ))
        })?;
    }
    // Stage 1 is moved before it forks the process, so the process is born
    // in the cgroup: its pids limit and device rules apply from the fork
    // (the move itself may wait for an RCU grace period, which `berth exec`
    // started at its top, see berth_cgroups::prime_migration).
    if let Some(cg) = req.cgroup {
        cg.add(stage1_pid)
            .map_err(|e| LinuxError::Init(format!("join cgroup: {e}")))?;
    }
    sync::send(sock, &Msg::Go).map_err(io_err("sync with exec set-up"))?;
    let pid = match recv(sock)? {
        Msg::Pid(p) => p,
        other => return Err(unexpected(other)),
    };
    guard.process = berth_state::pidfd_open(pid).ok();
    guard.reap_stage1();

    let sock = process_parent.as_raw_fd();
    match recv_process(sock)? {
        Some(Msg::Ready) => {}
        Some(other) => return Err(unexpected(other)),
        None => return Err(exited()),
    }
    if let Some(l) = &listener {
        let fd = sync::recv_file(sock).map_err(io_err("receive the seccomp notify listener"))?;
        let msg = crate::notify::process_state(&req.state, pid, &l.metadata);
        crate::notify::hand_over(l, &msg, fd.as_raw_fd())?;
    }
    let console_master = match console_parent {
        Some(c) => Some(sync::recv_file(c.as_raw_fd()).map_err(io_err("receive the pty master"))?),
        None => None,
    };
    // EOF: exec closed the socket and the program runs.
    match recv_process(sock)? {
        None => {}
        Some(other) => return Err(unexpected(other)),
    }
    guard.process = None;
    Ok(Executed {
        pid,
        console_master,
    })
}

fn every_cpu() -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for cpu in 0..8 * std::mem::size_of::<libc::cpu_set_t>() {
        // SAFETY: cpu is below the set's size in bits.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    set
}

/// The container init's namespaces that differ from berth's own, opened
/// while the init is known to be the recorded process.
fn namespaces(init: i32, start: u64) -> Result<(Vec<Join>, Option<Join>), LinuxError> {
    let gone = || LinuxError::Init(format!("the container's init (pid {init}) has exited"));
    let pidfd = berth_state::pidfd_open(init).map_err(|_| gone())?;
    if berth_state::pid_start_time(init) != Some(start) {
        return Err(gone());
    }
    let mut joins = Vec::new();
    let mut mnt = None;
    for &(name, flag) in NAMESPACES {
        let path = format!("/proc/{init}/ns/{name}");
        let file = match File::open(&path) {
            Ok(f) => f,
            // A kernel without this kind of namespace.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(io_err(format!("open namespace {path}"))(e)),
        };
        let theirs = file
            .metadata()
            .map_err(io_err(format!("stat namespace {path}")))?;
        let ours = std::fs::metadata(format!("/proc/self/ns/{name}"))
            .map_err(io_err(format!("stat namespace /proc/self/ns/{name}")))?;
        if (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()) {
            continue;
        }
        let join = Join {
            fd: file.into(),
            flag,
            path,
        };
        if flag == libc::CLONE_NEWNS {
            mnt = Some(join);
        } else {
            joins.push(join);
        }
    }
    // The descriptors are the init's namespaces only if it still runs now.
    if berth_state::wait_exit(std::os::fd::AsFd::as_fd(&pidfd), Some(Default::default()))
        .unwrap_or(true)
    {
        return Err(gone());
    }
    Ok((joins, mnt))
}

fn recv(sock: RawFd) -> Result<Msg, LinuxError> {
    match sync::recv(sock).map_err(io_err("sync with exec set-up"))? {
        Some(Msg::Error(e)) => Err(LinuxError::Init(e)),
        Some(m) => Ok(m),
        None => Err(exited()),
    }
}

/// The process's next message; `None` at EOF.
fn recv_process(sock: RawFd) -> Result<Option<Msg>, LinuxError> {
    match sync::recv(sock).map_err(io_err("sync with the exec'd process"))? {
        Some(Msg::Error(e)) => Err(LinuxError::Init(e)),
        other => Ok(other),
    }
}

fn exited() -> LinuxError {
    LinuxError::Init("exec: the process exited during set-up without saying why".into())
}

fn unexpected(m: Msg) -> LinuxError {
    LinuxError::Init(format!("unexpected message from exec set-up: {m:?}"))
}

/// Kills what `exec` forked unless the program runs.
struct Guard {
    stage1: i32,
    process: Option<OwnedFd>,
}

impl Guard {
    fn reap_stage1(&mut self) {
        if self.stage1 > 0 {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.stage1), None);
            self.stage1 = 0;
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(fd) = &self.process {
            let _ = sys::pidfd_kill(fd.as_raw_fd(), libc::SIGKILL);
        }
        if self.stage1 > 0 {
            // SAFETY: kill(2) of stage 1, our unreaped child.
            unsafe { libc::kill(self.stage1, libc::SIGKILL) };
            self.reap_stage1();
        }
    }
}

fn fail(sync: RawFd, f: Failed) -> ! {
    let _ = sync::send(sync, &Msg::Error(f.to_string()));
    sys::exit_now(1)
}

/// Stage 1. Never returns.
fn stage1(plan: &Plan) -> ! {
    for &fd in &plan.close {
        // SAFETY: closing the child's copy of a descriptor the parent keeps.
        unsafe { libc::close(fd) };
    }
    let sync = plan.stage1_sync.as_raw_fd();
    if let Err(f) = stage1_inner(plan) {
        fail(sync, f)
    }
    sys::exit_now(0)
}

fn stage1_inner(plan: &Plan) -> Res<()> {
    let sync = plan.stage1_sync.as_raw_fd();
    // Until the program runs (exec makes it dumpable again), processes of
    // the container may not ptrace this one or open its /proc files: its
    // exe is berth, its descriptors berth's.
    sys::prctl(libc::PR_SET_DUMPABLE, 0, 0).ctx(|| "make the exec set-up undumpable".into())?;
    // Inherited by the process; written while berth's own /proc/self is
    // still writable by it (a user namespace joined below makes an
    // undumpable process's /proc files the host root's).
    if let Some(v) = &plan.process.oom_score_adj {
        sys::write_file(c"/proc/self/oom_score_adj", v)
            .ctx(|| "process.oomScoreAdj: write /proc/self/oom_score_adj".into())?;
    }
    crate::init::hello(sync)?;
    // In the container's cgroup now.
    match &plan.process.extras.affinity_final {
        Some(set) => sys::sched_setaffinity(0, &set.0)
            .ctx(|| format!("process.execCPUAffinity.final: set {set:?}"))?,
        // The kernel keeps only the CPUs the cgroup allows.
        None => {
            let _ = sys::sched_setaffinity(0, &plan.all_cpus);
        }
    }
    // Host root may join every namespace the container's user namespace
    // owns from outside it; a rootless berth has the rights to do so only
    // once inside. So: the others first, the user namespace, then those
    // that needed it.
    let user = plan.joins.iter().find(|j| j.flag == libc::CLONE_NEWUSER);
    let mut deferred = [false; NAMESPACES.len()];
    for (i, j) in plan.joins.iter().enumerate() {
        if j.flag == libc::CLONE_NEWUSER {
            continue;
        }
        match sys::setns(j.fd.as_raw_fd(), j.flag) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) && user.is_some() => deferred[i] = true,
            other => other.ctx(|| format!("join namespace {}", j.path))?,
        }
    }
    if let Some(u) = user {
        sys::setns(u.fd.as_raw_fd(), u.flag).ctx(|| format!("join namespace {}", u.path))?;
        sys::setresgid(0).ctx(|| "become root in the user namespace (setresgid 0)".into())?;
        sys::setresuid(0).ctx(|| "become root in the user namespace (setresuid 0)".into())?;
    }
    for (j, _) in plan.joins.iter().zip(deferred).filter(|(_, d)| *d) {
        sys::setns(j.fd.as_raw_fd(), j.flag).ctx(|| format!("join namespace {}", j.path))?;
    }
    let pid = sys::fork().ctx(|| "fork the process".into())?;
    if pid == 0 {
        process(plan)
    }
    sync::send(sync, &Msg::Pid(pid)).ctx(|| "sync with parent".into())
}

/// The process. Never returns.
fn process(plan: &Plan) -> ! {
    // berth's own dispositions (an ignored SIGPIPE) would survive exec.
    for sig in 1..=libc::SIGRTMAX() {
        sys::set_signal(sig, None);
    }
    sys::set_sigmask(None);
    // A session of its own, as runc gives exec'd processes.
    sys::setsid();
    match process_inner(plan) {
        Ok(never) => match never {},
        Err(f) => fail(plan.process_sync.as_raw_fd(), f),
    }
}

enum Never {}

/// Set up and exec; after `Ready`, failures go to berth as they happen.
fn process_inner(plan: &Plan) -> Res<Never> {
    let p = &plan.process;
    let lsm = apply::open_lsm(p)?;
    if let Some(m) = &plan.mnt {
        sys::setns(m.fd.as_raw_fd(), m.flag).ctx(|| format!("join namespace {}", m.path))?;
    }
    if p.terminal {
        apply::console(p, plan.console.as_ref().map(|c| c.as_raw_fd()), false)?;
    }
    let exe = apply::prepare(p, lsm)?;
    let listener = apply::install_notify(p)?;
    // Above the preserved descriptors, so closing the rest keeps it.
    let sync = sys::dup_above(plan.process_sync.as_raw_fd(), 3 + p.preserve_fds)
        .ctx(|| "sync with parent".into())?;
    let sync = sync.as_raw_fd();
    sync::send(sync, &Msg::Ready).ctx(|| "sync with parent".into())?;
    if let Some(l) = listener {
        sync::send_file(sync, l.as_raw_fd(), b"seccomp")
            .ctx(|| "linux.seccomp: send the notify listener to berth".into())?;
    }
    let why = apply::exec(p, exe, sync);
    let _ = sync::send(sync, &Msg::Error(why));
    sys::exit_now(127)
}
