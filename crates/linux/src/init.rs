//! The two processes `berth create` forks.
//!
//! Stage 1 joins the namespaces given by path, creates the user namespace
//! (the parent writes its id maps), unshares the other new namespaces and
//! forks the container init, then exits. The init (pid 1 of a new pid
//! namespace) sets up the root filesystem and the process, tells the parent it
//! is ready, and blocks opening the exec fifo until `berth start` opens the
//! other end; then it execs the user's program.
//!
//! Both run in a fresh fork of the single-threaded `berth` process and walk a
//! [`Plan`] built before the fork. Failures are sent to the parent as one
//! line and the process exits.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

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
    sync::send(sync, &Msg::Hello).ctx(|| "sync with parent".into())?;
    match sync::recv(sync) {
        Ok(Some(Msg::Go)) => {}
        Ok(_) => sys::exit_now(1), // the parent failed and reports it
        Err(e) => {
            return Err(Failed {
                what: "sync with parent".into(),
                err: Some(e),
            })
        }
    }
    if plan.in_userns() {
        sys::setresgid(0).ctx(|| "become root in the user namespace (setresgid 0)".into())?;
        sys::setresuid(0).ctx(|| "become root in the user namespace (setresuid 0)".into())?;
    }
    sys::unshare(plan.unshare_flags).ctx(|| "create namespaces".into())?;
    if let Some(offsets) = &plan.time_offsets {
        sys::write_file(c"/proc/self/timens_offsets", offsets)
            .ctx(|| "linux.timeOffsets: write /proc/self/timens_offsets".into())?;
    }
    let pid = sys::fork().ctx(|| "fork container init".into())?;
    if pid == 0 {
        init(plan, fds)
    }
    sync::send(sync, &Msg::Pid(pid)).ctx(|| "sync with parent".into())
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
    rootfs::prepare(plan)?;
    let root = rootfs::open_root(plan)?;
    rootfs::mount_all(plan, root.as_raw_fd())?;
    rootfs::setup_dev(plan, root.as_raw_fd())?;
    rootfs::make_cwd(plan, root.as_raw_fd())?;
    if let Some(v) = &plan.oom_score_adj {
        sys::write_file(c"/proc/self/oom_score_adj", v)
            .ctx(|| "process.oomScoreAdj: write /proc/self/oom_score_adj".into())?;
    }
    if let Some(h) = &plan.hostname {
        sys::sethostname(h).ctx(|| "set hostname".into())?;
    }
    if let Some(d) = &plan.domainname {
        sys::setdomainname(d).ctx(|| "set domainname".into())?;
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
    // The LSM attribute files are opened now, through the host's /proc:
    // after pivot_root a volume over the container's /proc could turn the
    // writes into writes to a plain file and leave the process unconfined.
    let mut lsm_fds: [Option<OwnedFd>; 3] = [None, None, None];
    if let Some(label) = &plan.extras.lsm {
        for (slot, w) in lsm_fds.iter_mut().zip(&label.writes) {
            *slot = Some(
                sys::openat(libc::AT_FDCWD, &w.path, libc::O_WRONLY | libc::O_CLOEXEC, 0)
                    .ctx(|| format!("{}: open {}", w.what, w.path.to_string_lossy()))?,
            );
        }
    }
    rootfs::enter(plan, &root)?;
    drop(root);
    if plan.terminal {
        setup_console(plan, fds)?;
    }
    rootfs::finish(plan)?;
    // After the container's /proc is in place; before the session keyring,
    // which takes the keycreate label.
    if let Some(label) = &plan.extras.lsm {
        for (fd, w) in lsm_fds.iter().zip(&label.writes) {
            if let Some(fd) = fd {
                sys::write_all_fd(fd.as_raw_fd(), &w.data)
                    .ctx(|| format!("{}: write {}", w.what, w.path.to_string_lossy()))?;
            }
        }
    }
    drop(lsm_fds);
    if let Some(k) = &plan.keyring {
        match sys::join_session_keyring(k) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {}
            other => {
                other.ctx(|| "join a new session keyring (use --no-new-keyring to skip)".into())?
            }
        }
    }
    for (res, soft, hard, name) in &plan.rlimits {
        sys::setrlimit(*res, *soft, *hard)
            .ctx(|| format!("process.rlimits: set {name} to {soft}/{hard}"))?;
    }
    // Still privileged: real-time classes need CAP_SYS_NICE / CAP_SYS_ADMIN.
    if let Some(attr) = &plan.extras.sched {
        sys::sched_setattr(attr).ctx(|| {
            format!(
                "process.scheduler: sched_setattr(policy {}, nice {}, priority {})",
                attr.policy, attr.nice, attr.priority
            )
        })?;
    }
    if let Some(prio) = plan.extras.ioprio {
        sys::ioprio_set(prio).ctx(|| {
            format!(
                "process.ioPriority: ioprio_set(class {}, priority {})",
                prio >> 13,
                prio & 0x1fff
            )
        })?;
    }
    credentials(plan)?;
    let exe = plan
        .exec_candidates
        .iter()
        .find(|c| sys::is_executable(c))
        .ok_or_else(|| not_found(plan))?;
    // Reopened now (the O_PATH descriptor is no use for writing); the open
    // blocks until `berth start` opens the read end.
    let fifo_path = sys::FdPath::new(fds.fifo.as_raw_fd());
    sys::fstatat(libc::AT_FDCWD, fifo_path.as_cstr(), 0).ctx(|| {
        "reach the exec fifo through /proc/self/fd (is /proc mounted in the container?)".into()
    })?;
    // A NOTIFY filter goes in now, as runc does it: its listener descriptor
    // must reach `create`, which hands it to the listener socket. Every other
    // filter waits until right before exec.
    let listener = match (&plan.extras.seccomp, plan.extras.notify.is_some()) {
        (Some(filter), true) => Some(
            berth_seccomp::install(filter)
                .ctx(|| "linux.seccomp: load the filter".into())?
                .ok_or_else(|| Failed {
                    what: "linux.seccomp: the kernel returned no notify listener".into(),
                    err: None,
                })?,
        ),
        _ => None,
    };
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
    let fifo = match sys::dup_above(fifo.as_raw_fd(), 3 + plan.preserve_fds) {
        Ok(f) => f,
        Err(_) => sys::exit_now(1),
    };
    let fifo = fifo.as_raw_fd();
    if !plan.start_container_hooks.is_empty() {
        if let Err(e) = berth_hooks::run_all(&plan.start_container_hooks, &started_state) {
            die(fifo, &format!("startContainer {e}"));
        }
    }
    // Nothing of berth's may reach the program: close every descriptor
    // above stdio and the preserved ones, except the fifo (close-on-exec).
    if let Err(e) = sys::close_all_from(3 + plan.preserve_fds, fifo) {
        die(fifo, &format!("close descriptors before exec: {e}"));
    }
    if let Some(p) = plan.extras.personality {
        if let Err(e) = sys::personality(p) {
            die(
                fifo,
                &format!("linux.personality: personality({p:#x}): {e}"),
            );
        }
    }
    // As late as possible, so a profile need not allow what berth itself
    // does before exec.
    if let (Some(filter), false) = (&plan.extras.seccomp, plan.extras.notify.is_some()) {
        if let Err(e) = berth_seccomp::install(filter) {
            die(fifo, &format!("linux.seccomp: load the filter: {e}"));
        }
    }
    let err = sys::execve(exe, &plan.argv_ptrs, &plan.envp_ptrs);
    die(fifo, &format!("exec {:?}: {err}", plan.arg0))
}

fn not_found(plan: &Plan) -> Failed {
    let why = if plan.arg0.contains('/') {
        "no such executable file"
    } else {
        "executable file not found in $PATH"
    };
    Failed {
        what: format!("exec: {:?}", plan.arg0),
        err: Some(std::io::Error::new(std::io::ErrorKind::NotFound, why)),
    }
}

/// After `start`: tell `berth start` through the fifo why the program
/// could not run, and exit.
fn die(fifo: RawFd, msg: &str) -> ! {
    let _ = sys::write_all_fd(fifo, msg.as_bytes());
    sys::exit_now(127)
}

fn setup_console(plan: &Plan, fds: &ChildFds) -> Res<()> {
    let Some(console) = &fds.console else {
        return Err(Failed {
            what: "process.terminal: no console socket".into(),
            err: None,
        });
    };
    let (master, slave) =
        sys::open_pty(c"/dev/ptmx").ctx(|| "process.terminal: open /dev/ptmx".into())?;
    if let Some((rows, cols)) = plan.console_size {
        sys::set_winsize(master.as_raw_fd(), rows, cols)
            .ctx(|| format!("process.consoleSize: set {cols}x{rows}"))?;
    }
    // /dev/console is the pty, as runc sets it up.
    let slave_at = sys::FdPath::new(slave.as_raw_fd());
    match sys::openat(
        libc::AT_FDCWD,
        c"/dev/console",
        libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW,
        0o600,
    ) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => {
            return Err(Failed {
                what: "create /dev/console".into(),
                err: Some(e),
            })
        }
    }
    sys::mount(
        Some(slave_at.as_cstr()),
        c"/dev/console",
        None,
        libc::MS_BIND,
        None,
    )
    .ctx(|| "bind the pty on /dev/console".into())?;
    sync::send_file(console.as_raw_fd(), master.as_raw_fd(), b"/dev/ptmx")
        .ctx(|| "send the pty master to the console socket".into())?;
    drop(master);
    sys::make_controlling_tty(slave.as_raw_fd())
        .ctx(|| "make the pty the controlling terminal".into())
}

const CAP_SYS_ADMIN: u32 = 21;

/// Credentials and capabilities, in the order the kernel needs: the
/// bounding set while still privileged, ids with capabilities kept, the
/// working directory as the user, then the capability sets and
/// no_new_privs. Done before `create` returns, so errors reach it.
fn credentials(plan: &Plan) -> Res<()> {
    if let Some(caps) = &plan.caps {
        for cap in 0..=plan.last_cap {
            if caps.bounding & (1 << cap) == 0 {
                sys::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0)
                    .ctx(|| format!("drop capability {cap} from the bounding set"))?;
            }
        }
    }
    sys::prctl(libc::PR_SET_KEEPCAPS, 1, 0).ctx(|| "keep capabilities across setuid".into())?;
    match sys::setgroups(&plan.additional_gids) {
        // A user namespace with setgroups "deny" refuses even an empty list;
        // only an error when groups were asked for.
        Err(e) if e.raw_os_error() == Some(libc::EPERM) && plan.additional_gids.is_empty() => {}
        other => other.ctx(|| "process.user.additionalGids: setgroups".into())?,
    }
    sys::setresgid(plan.gid).ctx(|| format!("process.user.gid: setgid {}", plan.gid))?;
    sys::setresuid(plan.uid).ctx(|| format!("process.user.uid: setuid {}", plan.uid))?;
    sys::prctl(libc::PR_SET_KEEPCAPS, 0, 0).ctx(|| "reset keep-capabilities".into())?;
    sys::chdir(&plan.cwd)
        .ctx(|| format!("process.cwd: chdir to {}", plan.cwd.to_string_lossy()))?;
    // A cwd through a descriptor still open here (/proc/self/fd/N/..) could
    // land outside the container (the CVE-2024-21626 class): the kernel
    // reports such a directory as unreachable from the root.
    if !sys::cwd_is_under_root() {
        return Err(Failed {
            what: format!(
                "process.cwd: {} resolves outside the container's root",
                plan.cwd.to_string_lossy()
            ),
            err: None,
        });
    }
    if let Some(caps) = &plan.caps {
        // Without no_new_privs, loading a seccomp filter needs CAP_SYS_ADMIN.
        // It stays in the effective and permitted sets until exec, which
        // drops it: exec recomputes both from the bounding, inheritable and
        // ambient sets, none of which gain it here.
        let keep = if plan.extras.seccomp.is_some() && !plan.no_new_privs {
            1u64 << CAP_SYS_ADMIN
        } else {
            0
        };
        sys::capset(
            caps.effective | keep,
            caps.permitted | keep,
            caps.inheritable,
        )
        .ctx(|| "process.capabilities: capset".into())?;
        sys::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
        )
        .ctx(|| "clear ambient capabilities".into())?;
        // Only a capability both permitted and inheritable can be raised
        // (validation warned about the others); runc leaves them out too.
        let raisable = caps.ambient & caps.permitted & caps.inheritable;
        for cap in 0..=plan.last_cap {
            if raisable & (1 << cap) != 0 {
                sys::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    cap as libc::c_ulong,
                )
                .ctx(|| format!("process.capabilities.ambient: raise capability {cap}"))?;
            }
        }
    }
    if plan.caps.is_none() && plan.uid != 0 && plan.extras.seccomp.is_some() && !plan.no_new_privs {
        // No capabilities object: setuid emptied the effective set, and the
        // filter still needs CAP_SYS_ADMIN to load (exec drops it again).
        let (_, permitted, inheritable) =
            sys::capget().ctx(|| "linux.seccomp: read capabilities".into())?;
        sys::capset(1 << CAP_SYS_ADMIN, permitted, inheritable)
            .ctx(|| "linux.seccomp: keep CAP_SYS_ADMIN to load the filter".into())?;
    }
    if plan.no_new_privs {
        sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0).ctx(|| "process.noNewPrivileges".into())?;
    }
    sys::umask(plan.umask);
    Ok(())
}
