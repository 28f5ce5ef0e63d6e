//! The two processes `berth create` forks.
//!
//! Stage 1 joins the namespaces given by path, creates the user namespace
//! (the parent writes its id maps), unshares the other new namespaces but
//! the cgroup one and forks the container init, then exits. The init (pid 1
//! of a new pid namespace) mounts the root filesystem while the parent moves
//! it into the container's cgroup, waits for that, makes the cgroup
//! namespace, sets up the process, tells the parent it is ready, and blocks
//! opening the exec fifo until `berth start` opens the other end; then it
//! execs the user's program.
//!
//! Both run in a fresh fork of the `berth` process and walk a
//! [`Plan`] built before the fork. Failures are sent to the parent as one
//! line and the process exits.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::apply;
use crate::plan::Plan;
use crate::rootfs::{self, Context, Failed, Res};
use crate::sync::{self, Msg};
use crate::sys;

/// Descriptors the children use, opened by the parent before forking.
pub struct ChildFds {
    pub sync: OwnedFd,
    /// exec.fifo in the container's state directory, opened O_PATH: not a
    /// directory, so nothing can be reached through it; reopened for writing
    /// through /proc/self/fd once everything else is done.
    pub fifo: OwnedFd,
    /// Where to send the pty master, when process.terminal is set.
    pub console: Option<OwnedFd>,
    /// Descriptors of the parent the children must close (the container lock).
    pub close: Vec<RawFd>,
}

fn fail(sync: RawFd, f: Failed) -> ! {
    let _ = sync::send(sync, &Msg::Error(f.to_string()));
    sys::exit_now(1)
}

/// Stage 1. Never returns.
pub fn stage1(plan: &Plan, fds: &ChildFds) -> ! {
    let sync = fds.sync.as_raw_fd();
    for &fd in &fds.close {
        // SAFETY: closing the child's copy of a descriptor the parent keeps.
        unsafe { libc::close(fd) };
    }
    if let Err(f) = stage1_inner(plan, fds) {
        fail(sync, f)
    }
    sys::exit_now(0)
}

fn stage1_inner(plan: &Plan, fds: &ChildFds) -> Res<()> {
    let sync = fds.sync.as_raw_fd();
    // Still the caller's identity: the rootfs directory becomes the working
    // directory, which the mount namespace created below carries over.
    rootfs::enter_rootfs_dir(plan)?;
    for j in &plan.joins {
        sys::setns(j.fd.as_raw_fd(), j.flag).ctx(|| format!("join namespace {}", j.path))?;
    }
    if plan.new_userns {
        sys::unshare(libc::CLONE_NEWUSER).ctx(|| "create user namespace".into())?;
    }
    hello(sync)?;
    if plan.in_userns() {
        sys::setresgid(0).ctx(|| "become root in the user namespace (setresgid 0)".into())?;
        sys::setresuid(0).ctx(|| "become root in the user namespace (setresuid 0)".into())?;
    }
    // The cgroup namespace is made by the init once the parent has moved it
    // into the container's cgroup (its root is the cgroup it is made in).
    sys::unshare(plan.unshare_flags & !libc::CLONE_NEWCGROUP).ctx(|| "create namespaces".into())?;
    if let Some(offsets) = &plan.time_offsets {
        // Becoming root of a user namespace above made this process
        // undumpable, which gives its /proc files to the host's root: the
        // write would be refused. Dumpable only for the write.
        let undumpable = plan.in_userns();
        if undumpable {
            sys::prctl(libc::PR_SET_DUMPABLE, 1, 0).ctx(|| "make stage 1 dumpable".into())?;
        }
        sys::write_file(c"/proc/self/timens_offsets", offsets)
            .ctx(|| "linux.timeOffsets: write /proc/self/timens_offsets".into())?;
        if undumpable {
            sys::prctl(libc::PR_SET_DUMPABLE, 0, 0).ctx(|| "make stage 1 undumpable".into())?;
        }
    }
    let pid = sys::fork().ctx(|| "fork container init".into())?;
    if pid == 0 {
        init(plan, fds)
    }
    sync::send(sync, &Msg::Pid(pid)).ctx(|| "sync with parent".into())
}

/// Stage 1 (of create or exec) says hello and waits for the parent to
/// place it (id maps, cgroup) and say go; exits quietly if the parent
/// failed instead, which reports why.
pub(crate) fn hello(sync: RawFd) -> Res<()> {
    sync::send(sync, &Msg::Hello).ctx(|| "sync with parent".into())?;
    match sync::recv(sync) {
        Ok(Some(Msg::Go)) => Ok(()),
        Ok(_) => sys::exit_now(1),
        Err(e) => Err(Failed {
            what: "sync with parent".into(),
            err: Some(e),
        }),
    }
}

/// Wait until the parent has moved this process into the container's
/// cgroup (its second Go), then make the cgroup namespace, whose root is the
/// cgroup the process is in. Exits quietly if the parent failed instead.
fn placed(plan: &Plan, sync: RawFd) -> Res<()> {
    match sync::recv(sync) {
        Ok(Some(Msg::Go)) => {}
        Ok(_) => sys::exit_now(1),
        Err(e) => {
            return Err(Failed {
                what: "sync with parent".into(),
                err: Some(e),
            })
        }
    }
    if plan.unshare_flags & libc::CLONE_NEWCGROUP != 0 {
        sys::unshare(libc::CLONE_NEWCGROUP).ctx(|| "create cgroup namespace".into())?;
    }
    Ok(())
}

/// While waiting for `start`, pid 1 of a pid namespace ignores signals it
/// has no handler for; this makes `kill` of a created container work.
extern "C" fn die_on_signal(sig: libc::c_int) {
    sys::exit_now(128 + sig)
}

/// Signals that keep their default action before exec: those that cannot be
/// caught, job control and notifications, and faults.
fn keeps_default(sig: i32) -> bool {
    crate::is_uncatchable_or_fault(sig)
        || matches!(
            sig,
            libc::SIGCHLD
                | libc::SIGCONT
                | libc::SIGWINCH
                | libc::SIGURG
                | libc::SIGTSTP
                | libc::SIGTTIN
                | libc::SIGTTOU
        )
        || (32..libc::SIGRTMIN()).contains(&sig)
}

/// The container init. Never returns.
fn init(plan: &Plan, fds: &ChildFds) -> ! {
    let sync = fds.sync.as_raw_fd();
    // exec resets these handlers to the default action.
    for sig in (1..=libc::SIGRTMAX()).filter(|&s| !keeps_default(s)) {
        sys::set_signal(sig, Some(die_on_signal));
    }
    sys::set_sigmask(None);
    // A session of its own, as runc gives every container: the caller's
    // terminal signals reach it only through berth.
    sys::setsid();
    match init_inner(plan, fds) {
        Ok(never) => match never {},
        Err(f) => fail(sync, f),
    }
}

enum Never {}

fn init_inner(plan: &Plan, fds: &ChildFds) -> Res<Never> {
    let sync = fds.sync.as_raw_fd();
    sys::umask(0);
    // A tmpcopyup mount copies files into memory: that is charged to the
    // container's memory cgroup only if the init is in it by then.
    let copies = plan.mounts.iter().any(|m| m.tmpcopyup);
    if copies {
        placed(plan, sync)?;
    }
    rootfs::prepare(plan)?;
    let root = rootfs::open_root(plan)?;
    rootfs::mount_all(plan, root.as_raw_fd())?;
    rootfs::setup_dev(plan, root.as_raw_fd())?;
    rootfs::make_cwd(plan, root.as_raw_fd())?;
    if let Some(v) = &plan.process.oom_score_adj {
        sys::write_file(c"/proc/self/oom_score_adj", v)
            .ctx(|| "process.oomScoreAdj: write /proc/self/oom_score_adj".into())?;
    }
    if let Some(h) = &plan.hostname {
        sys::sethostname(h).ctx(|| "set hostname".into())?;
    }
    if let Some(d) = &plan.domainname {
        sys::setdomainname(d).ctx(|| "set domainname".into())?;
    }
    // Everything above touches no cgroup, so it overlaps with the parent's
    // move of this process into the container's cgroup (which may wait for
    // an RCU grace period, see berth_cgroups::prime_migration). Hooks, the
    // console, the cgroup namespace and the user's program come after it.
    if !copies {
        placed(plan, sync)?;
    }
    let mut started_state = Vec::new();
    if plan.hook_sync {
        sync::send(sync, &Msg::HookPoint).ctx(|| "sync with parent".into())?;
        match sync::recv(sync) {
            Ok(Some(Msg::Continue { creating, created })) => {
                berth_hooks::run_all(&plan.create_container_hooks, &creating).map_err(|e| {
                    Failed {
                        what: format!("createContainer {e}"),
                        err: None,
                    }
                })?;
                started_state = created;
            }
            _ => sys::exit_now(1),
        }
    }
    let lsm = apply::open_lsm(&plan.process)?;
    rootfs::enter(plan, &root)?;
    drop(root);
    let p = &plan.process;
    if p.terminal {
        apply::console(p, fds.console.as_ref().map(|c| c.as_raw_fd()), true)?;
    }
    rootfs::finish(plan)?;
    let exe = apply::prepare(p, lsm)?;
    // Reopened now (the O_PATH descriptor is no use for writing); the open
    // blocks until `berth start` opens the read end.
    let fifo_path = sys::FdPath::new(fds.fifo.as_raw_fd());
    sys::fstatat(libc::AT_FDCWD, fifo_path.as_cstr(), 0).ctx(|| {
        "reach the exec fifo through /proc/self/fd (is /proc mounted in the container?)".into()
    })?;
    let listener = apply::install_notify(p)?;
    sync::send(sync, &Msg::Ready).ctx(|| "sync with parent".into())?;
    if let Some(l) = listener {
        sync::send_file(sync, l.as_raw_fd(), b"seccomp")
            .ctx(|| "linux.seccomp: send the notify listener to berth".into())?;
    }
    let fifo = match sys::openat(libc::AT_FDCWD, fifo_path.as_cstr(), libc::O_WRONLY, 0) {
        Ok(f) => f,
        Err(_) => sys::exit_now(1),
    };
    // The write end stays open until exec closes it: `start` sees EOF once
    // the program runs, or reads why it could not.
    let fifo = match sys::dup_above(fifo.as_raw_fd(), 3 + p.preserve_fds) {
        Ok(f) => f,
        Err(_) => sys::exit_now(1),
    };
    let fifo = fifo.as_raw_fd();
    if !plan.start_container_hooks.is_empty() {
        if let Err(e) = berth_hooks::run_all(&plan.start_container_hooks, &started_state) {
            die(fifo, &format!("startContainer {e}"));
        }
    }
    let why = apply::exec(p, exe, fifo);
    die(fifo, &why)
}

/// After `start`: tell `berth start` through the fifo why the program
/// could not run, and exit.
fn die(fifo: RawFd, msg: &str) -> ! {
    let _ = sys::write_all_fd(fifo, msg.as_bytes());
    sys::exit_now(127)
}
