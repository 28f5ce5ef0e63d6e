//! Running one hook: fork/exec, feed stdin, collect output, enforce the timeout.

use crate::sys::{self, ChildFds, Program, SigpipeBlocked};
use crate::HookError;
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::Hook;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

/// Bytes of stdout and of stderr kept (the last ones) per hook.
const OUTPUT_KEEP: usize = 16 * 1024;

/// Run `hooks` in order; stop at the first that fails.
pub fn run_all(hooks: &[Hook], state_json: &[u8]) -> Result<(), HookError> {
    hooks.iter().try_for_each(|h| run(h, state_json))
}

/// Run one hook with `state_json` on its stdin. Succeeds when it exits 0.
pub fn run(hook: &Hook, state_json: &[u8]) -> Result<(), HookError> {
    let path = hook.path().clone();
    let timeout = match hook.timeout() {
        Some(secs) if secs <= 0 => return Err(HookError::InvalidTimeout { path, secs }),
        Some(secs) => Some(secs),
        None => None,
    };
    let prog = program(hook)?;
    let io_err = |op| {
        let path = path.clone();
        move |source| HookError::Io { path, op, source }
    };

    let (in_r, in_w) = sys::pipe().map_err(io_err("pipe"))?;
    let (out_r, out_w) = sys::pipe().map_err(io_err("pipe"))?;
    let (err_r, err_w) = sys::pipe().map_err(io_err("pipe"))?;
    let (report_r, report_w) = sys::pipe().map_err(io_err("pipe"))?;
    let in_r = sys::above_stdio(in_r).map_err(io_err("dup"))?;
    let out_w = sys::above_stdio(out_w).map_err(io_err("dup"))?;
    let err_w = sys::above_stdio(err_w).map_err(io_err("dup"))?;
    let fds = ChildFds {
        stdin: in_r.as_raw_fd(),
        stdout: out_w.as_raw_fd(),
        stderr: err_w.as_raw_fd(),
        report: report_w.as_raw_fd(),
    };

    let _sigpipe = SigpipeBlocked::new();
    let pid = match sys::fork() {
        Ok(Some(pid)) => Pid::from_raw(pid),
        Ok(None) => sys::exec_child(&prog, &fds),
        Err(source) => return Err(HookError::Spawn { path, source }),
    };
    let mut child = Child { pid, reaped: false };
    drop((in_r, out_w, err_w, report_w));

    // The report pipe closes on a successful exec, or carries the errno.
    if let Some(errno) = read_exec_report(report_r).map_err(io_err("read exec status"))? {
        child.wait_blocking().map_err(io_err("wait"))?;
        return Err(HookError::Spawn {
            path,
            source: io::Error::from_raw_os_error(errno),
        });
    }

    let deadline = timeout.map(|s| Instant::now() + Duration::from_secs(s as u64));
    let mut session = Session::new(in_w, out_r, err_r, state_json).map_err(io_err("pipe"))?;
    let pidfd = berth_state::pidfd_open(pid.as_raw()).ok();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(io_err("wait"))? {
            break status;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            child.kill_and_reap().map_err(io_err("wait"))?;
            return Err(HookError::Timeout {
                path,
                secs: timeout.unwrap_or_default(),
            });
        }
        let mut wait_ms = deadline.map_or(-1, ms_until);
        if pidfd.is_none() {
            // No pidfd (pre-5.3 kernel): look at the child every 10 ms.
            wait_ms = if wait_ms < 0 { 10 } else { wait_ms.min(10) };
        }
        session
            .step(pidfd.as_ref(), state_json, wait_ms)
            .map_err(io_err("poll"))?;
    };
    let (stdout, stderr) = session.finish();
    match status {
        WaitStatus::Exited(_, 0) => Ok(()),
        WaitStatus::Exited(_, code) => Err(HookError::Failed {
            path,
            status: format!("exit status {code}"),
            stderr,
            stdout,
        }),
        WaitStatus::Signaled(_, sig, _) => Err(HookError::Failed {
            path,
            status: format!("signal {}", sig as i32),
            stderr,
            stdout,
        }),
        other => Err(HookError::Failed {
            path,
            status: format!("{other:?}"),
            stderr,
            stdout,
        }),
    }
}

/// Build argv and envp before forking.
fn program(hook: &Hook) -> Result<Program, HookError> {
    let path = hook.path();
    let c = |s: &[u8], what| {
        CString::new(s).map_err(|_| HookError::Nul {
            path: path.clone(),
            what,
        })
    };
    let c_path = c(path.as_os_str().as_bytes(), "path")?;
    let args = match hook.args() {
        Some(args) if !args.is_empty() => args
            .iter()
            .map(|a| c(a.as_bytes(), "an argument"))
            .collect::<Result<Vec<_>, _>>()?,
        _ => vec![c_path.clone()],
    };
    let env = hook
        .env()
        .iter()
        .flatten()
        .map(|e| c(e.as_bytes(), "an environment entry"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Program::new(c_path, args, env))
}

fn read_exec_report(report: OwnedFd) -> io::Result<Option<i32>> {
    let mut f = File::from(report);
    let mut buf = [0u8; 4];
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((got == buf.len()).then(|| i32::from_ne_bytes(buf)))
}

fn ms_until(deadline: Instant) -> i32 {
    let left = deadline.saturating_duration_since(Instant::now());
    left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32
}

/// The forked hook; killed and reaped on drop unless already reaped, so no
/// early return leaves a stray process or a zombie.
struct Child {
    pid: Pid,
    reaped: bool,
}

impl Child {
    fn try_wait(&mut self) -> io::Result<Option<WaitStatus>> {
        loop {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => return Ok(None),
                Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    self.reaped = true;
                    return Ok(Some(s));
                }
                Ok(_) => return Ok(None),
                Err(Errno::EINTR) => {}
                Err(e) => {
                    self.reaped = true; // ECHILD: someone else reaped it
                    return Err(e.into());
                }
            }
        }
    }

    fn wait_blocking(&mut self) -> io::Result<WaitStatus> {
        loop {
            match waitpid(self.pid, None) {
                Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    self.reaped = true;
                    return Ok(s);
                }
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    self.reaped = true;
                    return Err(e.into());
                }
            }
        }
    }

    fn kill_and_reap(&mut self) -> io::Result<WaitStatus> {
        let _ = kill(self.pid, Signal::SIGKILL);
        self.wait_blocking()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.kill_and_reap();
        }
    }
}

/// The parent's ends of the hook's stdio.
struct Session {
    stdin: Option<File>,
    written: usize,
    stdout: Option<File>,
    stderr: Option<File>,
    out: Tail,
    err: Tail,
}

impl Session {
    fn new(stdin: OwnedFd, stdout: OwnedFd, stderr: OwnedFd, data: &[u8]) -> io::Result<Session> {
        for fd in [&stdin, &stdout, &stderr] {
            sys::set_nonblocking(fd)?;
        }
        Ok(Session {
            // Nothing to write: close stdin now so the hook sees EOF.
            stdin: (!data.is_empty()).then(|| File::from(stdin)),
            written: 0,
            stdout: Some(File::from(stdout)),
            stderr: Some(File::from(stderr)),
            out: Tail::default(),
            err: Tail::default(),
        })
    }

    /// One poll round: write what stdin takes, read what the outputs have.
    /// Returns when something happened or `wait_ms` passed.
    fn step(&mut self, pidfd: Option<&OwnedFd>, data: &[u8], wait_ms: i32) -> io::Result<()> {
        let ev = |fd: Option<&File>, events| libc::pollfd {
            fd: fd.map_or(-1, |f| f.as_raw_fd()),
            events,
            revents: 0,
        };
        let mut fds = [
            ev(self.stdin.as_ref(), libc::POLLOUT),
            ev(self.stdout.as_ref(), libc::POLLIN),
            ev(self.stderr.as_ref(), libc::POLLIN),
            libc::pollfd {
                fd: pidfd.map_or(-1, |f| f.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        match sys::poll(&mut fds, wait_ms) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        if fds[0].revents != 0 {
            self.feed(data);
        }
        if fds[1].revents != 0 {
            drain(&mut self.stdout, &mut self.out);
        }
        if fds[2].revents != 0 {
            drain(&mut self.stderr, &mut self.err);
        }
        Ok(())
    }

    /// Write as much of `data` as the pipe takes. A hook that closed stdin
    /// (EPIPE) or any other write error just ends the feeding: whether the
    /// hook succeeded is decided by its exit status alone.
    fn feed(&mut self, data: &[u8]) {
        let Some(stdin) = self.stdin.as_mut() else {
            return;
        };
        loop {
            match stdin.write(&data[self.written..]) {
                Ok(n) => {
                    self.written += n;
                    if self.written == data.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => break,
            }
        }
        self.stdin = None;
    }

    /// The captured output once the hook exited. Whatever is already in the
    /// pipes is read; a grandchild still holding them open is not waited for.
    fn finish(mut self) -> (String, String) {
        self.stdin = None;
        drain(&mut self.stdout, &mut self.out);
        drain(&mut self.stderr, &mut self.err);
        (self.out.into_string(), self.err.into_string())
    }
}

/// Read until the pipe is empty (`WouldBlock`) or closed (closes our end).
fn drain(pipe: &mut Option<File>, tail: &mut Tail) {
    let Some(f) = pipe.as_mut() else {
        return;
    };
    let mut buf = [0u8; 8192];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => tail.push(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(_) => break,
        }
    }
    *pipe = None;
}

/// The last [`OUTPUT_KEEP`] bytes of a stream.
#[derive(Default)]
struct Tail {
    buf: Vec<u8>,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        if self.buf.len() > 2 * OUTPUT_KEEP {
            self.buf.drain(..self.buf.len() - OUTPUT_KEEP);
        }
    }

    fn into_string(mut self) -> String {
        if self.buf.len() > OUTPUT_KEEP {
            self.buf.drain(..self.buf.len() - OUTPUT_KEEP);
        }
        String::from_utf8_lossy(&self.buf).into_owned()
    }
}
