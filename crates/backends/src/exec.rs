//! `exec`: a new process in a running container (runc's `exec`).

use std::path::Path;

/// What `exec` needs besides the container.
pub struct ExecRequest<'a> {
    /// The process to run (from --process, or the config's process with
    /// the command line's overrides).
    pub process: &'a oci_spec::runtime::Process,
    pub console_socket: Option<&'a Path>,
    pub detach: bool,
    pub pid_file: Option<&'a Path>,
    pub preserve_fds: u32,
    /// `--cgroup`: `[controller[,controller]:]path` below the container's cgroup.
    pub cgroups: &'a [String],
    pub ignore_paused: bool,
    /// Where warnings go (the CLI's logger).
    pub warn: &'a dyn Fn(&str),
}

/// The native backend's exec (not implemented yet).
pub(crate) fn native_exec(
    _c: &berth_state::Container,
    _rec: &berth_state::Record,
    _req: &ExecRequest<'_>,
) -> crate::Result<i32> {
    Err(crate::BackendError::Unsupported {
        op: "exec",
        backend: "native",
    })
}
