//! berth's native Linux backend: namespaces, root filesystem, devices,
//! process credentials and capabilities, the console, and the create/start
//! process model.
//!
//! `create` forks twice (see [`init`]): the container init ends up blocked on
//! `exec.fifo` in the container's state directory with everything set up;
//! `start` opens the fifo's read end, which lets it exec. The parent
//! builds the whole [`plan::Plan`] before it forks.
//!
//! [`exec()`] forks twice as well, joining the init's namespaces and cgroup
//! instead of creating them. The process part of the plan
//! ([`plan::ProcessPlan`]) and the steps that apply it are the same for the
//! init and an exec'd process (see `apply`).

pub mod plan;

mod apply;
mod detached;
mod exec;
mod init;
pub mod lsm;
mod notify;
pub mod process;
mod rootfs;
mod sync;
mod sys;
mod userns;

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use berth_cgroups::Cgroup;
use oci_spec::runtime::Spec;

pub use exec::{exec, ExecRequest, Executed};
pub use plan::Options;
pub use sync::recv_file;

/// Signals that can't be caught, and faults a process raises on itself:
/// neither berth's init nor a foreground `run` handles these.
pub fn is_uncatchable_or_fault(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGKILL
            | libc::SIGSTOP
            | libc::SIGSEGV
            | libc::SIGBUS
            | libc::SIGILL
            | libc::SIGFPE
            | libc::SIGTRAP
            | libc::SIGSYS
            | libc::SIGABRT
    )
}

/// The exec fifo's name in the container's state directory. Its existence
/// means the container is created and not yet started.
pub const EXEC_FIFO: &str = "exec.fifo";

/// The exec fifo's name while `create` is still running (hooks included);
/// renamed to [`EXEC_FIFO`] once the init is ready.
pub const CREATING_FIFO: &str = "creating.fifo";

#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    #[error("{0}")]
    Plan(String),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    /// A failure the container's set-up reported.
    #[error("{0}")]
    Init(String),
    #[error("container init exited during set-up without saying why")]
    InitExited,
    #[error("{stage} {source}")]
    Hook {
        stage: &'static str,
        source: berth_hooks::HookError,
    },
    #[error("cannot start a container that has stopped (its init exited before start)")]
    ExitedBeforeStart,
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> LinuxError {
    let what = what.into();
    move |source| LinuxError::Io { what, source }
}

/// Why a detached container with process.terminal needs --console-socket.
pub const NO_CONSOLE_SOCKET: &str =
    "process.terminal: cannot allocate a terminal without --console-socket when detached";

/// Where the pty master goes when process.terminal is true.
pub enum Console<'a> {
    None,
    /// `--console-socket`: a unix socket the caller listens on.
    Socket(&'a Path),
    /// Foreground `run`: hand the master back to berth.
    Keep,
}

impl Console<'_> {
    /// The sockets the pty master travels through, made before the fork:
    /// berth's end (to receive it, for `Keep`) and the child's end.
    fn ends(&self, terminal: bool) -> Result<(Option<OwnedFd>, Option<OwnedFd>), LinuxError> {
        match (self, terminal) {
            (_, false) => Ok((None, None)),
            (Console::Socket(path), true) => {
                let s = UnixStream::connect(path).map_err(io_err(format!(
                    "connect to console socket {}",
                    path.display()
                )))?;
                Ok((None, Some(OwnedFd::from(s))))
            }
            (Console::Keep, true) => {
                let (a, b) = UnixStream::pair().map_err(io_err("create console socket pair"))?;
                Ok((Some(OwnedFd::from(a)), Some(OwnedFd::from(b))))
            }
            (Console::None, true) => Err(LinuxError::Plan(NO_CONSOLE_SOCKET.into())),
        }
    }
}

pub struct CreateRequest<'a> {
    pub id: &'a str,
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub state_dir: &'a Path,
    pub cgroup: Option<&'a Cgroup>,
    pub console: Console<'a>,
    pub opts: Options,
    /// Descriptors the forked processes must close (the container lock).
    pub close_in_child: Vec<RawFd>,
}

pub struct Created {
    pub pid: i32,
    pub console_master: Option<OwnedFd>,
}

/// Hook states the backend builds (it owns the state format).
pub trait HookState {
    /// The state JSON for hooks, with `pid` and `status`.
    fn hook_state(&self, pid: i32, status: &str) -> Vec<u8>;
    /// Called once the init's pid is known, before any hook runs, so the
    /// container can be found and cleaned up if berth dies from here on.
    fn record_pid(&mut self, pid: i32) -> Result<(), LinuxError>;
}

/// Create the container and leave its init waiting for `start`.
pub fn create(req: CreateRequest<'_>, cb: &mut dyn HookState) -> Result<Created, LinuxError> {
    let mut plan = plan::Plan::build(
        req.id, req.spec, req.rootfs, req.bundle, req.cgroup, &req.opts,
    )?;
    // Before the fork: bind sources the container's root could not reach,
    // and idmapped mounts, as detached mounts the init inherits.
    detached::clone_sources(&mut plan)?;
    #[allow(deprecated)]
    let (prestart, create_runtime) = {
        let h = req.spec.hooks().clone().unwrap_or_default();
        (
            h.prestart().clone().unwrap_or_default(),
            h.create_runtime().clone().unwrap_or_default(),
        )
    };

    let fifo_path = make_fifo(req.state_dir)?;
    let fifo = sys::openat(libc::AT_FDCWD, &path_c(&fifo_path)?, libc::O_PATH, 0)
        .map_err(io_err(format!("open exec fifo {}", fifo_path.display())))?;
    let (console_parent, console_child) = req.console.ends(plan.process.terminal)?;
    let (parent_sync, child_sync) = sync::socketpair().map_err(io_err("create sync socket"))?;
    let mut close = req.close_in_child.clone();
    close.push(parent_sync.as_raw_fd());
    if let Some(c) = &console_parent {
        close.push(c.as_raw_fd());
    }
    let fds = init::ChildFds {
        sync: child_sync,
        fifo,
        console: console_child,
        close,
    };

    // The only other thread berth may have here is the cgroup primer
    // (berth_cgroups::prime_migration): it reads and writes one cgroup file
    // and takes no lock of berth's, and glibc's fork leaves malloc usable in
    // the child whatever another thread was doing.
    let stage1 = sys::fork().map_err(io_err("fork"))?;
    if stage1 == 0 {
        init::stage1(&plan, &fds);
    }
    drop(fds);
    let mut guard = ChildGuard { stage1, init: 0 };
    let sock = parent_sync.as_raw_fd();

    expect(sock, |m| matches!(m, sync::Msg::Hello))?;
    if plan.new_userns {
        userns::write_id_maps(stage1, &plan.uid_map, &plan.gid_map)?;
    }
    sync::send(sock, &sync::Msg::Go).map_err(io_err("sync with container"))?;
    // The init sends nothing before it is told it is in its cgroup.
    let pid = match recv(sock)? {
        sync::Msg::Pid(p) => p,
        other => return Err(unexpected(other)),
    };
    guard.init = pid;
    guard.reap_stage1();
    cb.record_pid(pid)?;
    // Only the init is moved (stage 1 has exited): it mounts the root
    // filesystem meanwhile and waits for Go before anything that depends on
    // its cgroup (the cgroup namespace, hooks, its program).
    if let Some(cg) = req.cgroup {
        if let Err(e) = cg.add(pid) {
            return Err(
                queued_error(sock).unwrap_or_else(|| LinuxError::Init(format!("join cgroup: {e}")))
            );
        }
    }
    if let Err(e) = sync::send(sock, &sync::Msg::Go) {
        return Err(queued_error(sock).unwrap_or_else(|| io_err("sync with container")(e)));
    }

    loop {
        match recv(sock)? {
            sync::Msg::HookPoint => {
                let creating = cb.hook_state(pid, "creating");
                berth_hooks::run_all(&prestart, &creating).map_err(|source| LinuxError::Hook {
                    stage: "prestart",
                    source,
                })?;
                berth_hooks::run_all(&create_runtime, &creating).map_err(|source| {
                    LinuxError::Hook {
                        stage: "createRuntime",
                        source,
                    }
                })?;
                let created = cb.hook_state(pid, "created");
                sync::send(sock, &sync::Msg::Continue { creating, created })
                    .map_err(io_err("sync with container"))?;
            }
            sync::Msg::Ready => break,
            other => return Err(unexpected(other)),
        }
    }
    if let Some(listener) = &plan.process.extras.notify {
        let fd = sync::recv_file(sock).map_err(io_err("receive the seccomp notify listener"))?;
        let msg = notify::process_state(&cb.hook_state(pid, "creating"), pid, &listener.metadata);
        notify::hand_over(listener, &msg, fd.as_raw_fd())?;
    }
    let console_master = match console_parent {
        Some(c) => Some(sync::recv_file(c.as_raw_fd()).map_err(io_err("receive the pty master"))?),
        None => None,
    };
    // From now on the container is "created" rather than "creating".
    std::fs::rename(&fifo_path, req.state_dir.join(EXEC_FIFO))
        .map_err(io_err(format!("rename {}", fifo_path.display())))?;
    guard.disarm();
    Ok(Created {
        pid,
        console_master,
    })
}

/// The init's own report, when it failed (and exited) before the parent's
/// next step, which then failed for that reason (ESRCH, EPIPE): a message
/// queued on the socket can still be read after its sender is gone.
fn queued_error(sock: RawFd) -> Option<LinuxError> {
    let mut pfd = libc::pollfd {
        fd: sock,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll(2) of one descriptor we own, without waiting.
    if unsafe { libc::poll(&mut pfd, 1, 0) } <= 0 {
        return None;
    }
    match sync::recv(sock) {
        Ok(Some(sync::Msg::Error(e))) => Some(LinuxError::Init(e)),
        _ => None,
    }
}

fn recv(sock: RawFd) -> Result<sync::Msg, LinuxError> {
    match sync::recv(sock).map_err(io_err("sync with container"))? {
        Some(sync::Msg::Error(e)) => Err(LinuxError::Init(e)),
        Some(m) => Ok(m),
        None => Err(LinuxError::InitExited),
    }
}

fn expect(sock: RawFd, ok: impl Fn(&sync::Msg) -> bool) -> Result<(), LinuxError> {
    let m = recv(sock)?;
    if ok(&m) {
        Ok(())
    } else {
        Err(unexpected(m))
    }
}

fn unexpected(m: sync::Msg) -> LinuxError {
    LinuxError::Init(format!("unexpected message from container set-up: {m:?}"))
}

/// Kills and reaps what `create` forked unless set-up succeeded.
struct ChildGuard {
    stage1: i32,
    init: i32,
}

impl ChildGuard {
    fn reap_stage1(&mut self) {
        if self.stage1 > 0 {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.stage1), None);
            self.stage1 = 0;
        }
    }
    fn disarm(&mut self) {
        self.init = 0;
        self.reap_stage1();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.init > 0 {
            // SAFETY: kill(2) of the init we forked; it may already be gone.
            unsafe { libc::kill(self.init, libc::SIGKILL) };
            if let Ok(fd) = berth_state::pidfd_open(self.init) {
                let _ = berth_state::wait_exit(
                    std::os::fd::AsFd::as_fd(&fd),
                    Some(Duration::from_secs(5)),
                );
            }
        }
        if self.stage1 > 0 {
            // SAFETY: as above, for stage 1.
            unsafe { libc::kill(self.stage1, libc::SIGKILL) };
            self.reap_stage1();
        }
    }
}

fn path_c(p: &Path) -> Result<CString, LinuxError> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| LinuxError::Plan(format!("{}: contains a NUL byte", p.display())))
}

fn make_fifo(state_dir: &Path) -> Result<std::path::PathBuf, LinuxError> {
    let path = state_dir.join(CREATING_FIFO);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o622)).map_err(|e| {
        LinuxError::Io {
            what: format!("create exec fifo {}", path.display()),
            source: e.into(),
        }
    })?;
    // Any user the container runs as may open it for writing.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o622))
        .map_err(io_err(format!("chmod {}", path.display())))?;
    Ok(path)
}

/// Whether the container is created and waiting for `start`.
pub fn is_created(state_dir: &Path) -> bool {
    state_dir.join(EXEC_FIFO).exists()
}

/// Whether `create` has not finished yet (or was killed before it did).
pub fn is_creating(state_dir: &Path) -> bool {
    state_dir.join(CREATING_FIFO).exists()
}

/// Let a created container's init exec its process: open the fifo's read
/// end (which unblocks the init's open for writing), then read until the
/// init's write end closes. It closes on exec (close-on-exec), after the
/// startContainer hooks ran; if they or the exec fail, the init writes why
/// first. Fails too if the init exits before it ever opens the fifo.
pub fn start(state_dir: &Path, pid: i32) -> Result<(), LinuxError> {
    // The pidfd comes first: once the fifo is open the init execs, and a
    // short program can exit and be reaped (by containerd's shim, its
    // subreaper) before a later pidfd_open, which would then call a
    // container that ran "exited before start".
    let pidfd = berth_state::pidfd_open(pid).map_err(|_| LinuxError::ExitedBeforeStart)?;
    let path = state_dir.join(EXEC_FIFO);
    let fifo = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
        .map_err(io_err(format!("open exec fifo {}", path.display())))?;
    // Gone from here on: the container counts as started, and a second
    // `start` (or one after this one is killed) cannot wait on it.
    std::fs::remove_file(&path).map_err(io_err(format!("remove {}", path.display())))?;
    let mut connected = false;
    let mut why = Vec::new();
    loop {
        let mut fds = [
            libc::pollfd {
                fd: fifo.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: fds is a valid array of two pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(io_err("wait for container init")(e));
        }
        // POLLHUP is only reported once a writer has come and gone.
        if fds[0].revents & (libc::POLLIN | libc::POLLHUP) != 0 {
            connected = true;
            let mut buf = [0u8; 4096];
            match io::Read::read(&mut &fifo, &mut buf) {
                Ok(0) => break,
                Ok(n) => why.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(io_err(format!("read exec fifo {}", path.display()))(e)),
            }
        } else if fds[1].revents != 0 && !connected {
            return Err(LinuxError::ExitedBeforeStart);
        }
    }
    if !why.is_empty() {
        return Err(LinuxError::Init(String::from_utf8_lossy(&why).into_owned()));
    }
    // EOF without a word: exec closed the fifo. (An init SIGKILLed in the
    // instant between opening the fifo and exec looks the same; `state`
    // then reports it stopped.)
    Ok(())
}
