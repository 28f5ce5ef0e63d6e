//! `berth exec`: a new process in a running container.

use anyhow::{Context, Result};
use berth_backends::exec::{ExecOptions, ExecProcess, Overrides};
use berth_backends::Runtime;

use crate::cli::{Cli, ExecArgs};

/// What runc exits with when exec fails before the program runs (the
/// program's own status is passed through as is).
const EXEC_FAILED: u8 = 255;

pub fn exec(cli: &Cli, rt: &Runtime, a: &ExecArgs) -> Result<u8> {
    match run(rt, a) {
        Ok(status) => Ok(status.clamp(0, 255) as u8),
        Err(e) => {
            let logger = crate::log::Logger::open(cli.log.as_deref(), cli.log_format, cli.debug)
                .unwrap_or_else(|_| crate::log::Logger::stderr());
            crate::report(&logger, &e);
            Ok(EXEC_FAILED)
        }
    }
}

fn run(rt: &Runtime, a: &ExecArgs) -> Result<i32> {
    let overrides;
    let process = match &a.process {
        Some(path) => ExecProcess::File(path),
        None => {
            overrides = Overrides {
                args: command(&a.command),
                env: a.env.clone(),
                cwd: a.cwd.clone(),
                user: a.user.clone(),
                additional_gids: a.additional_gids.clone(),
                tty: a.tty,
                caps: a.cap.clone(),
                no_new_privs: a.no_new_privs,
                apparmor: a.apparmor.clone(),
                process_label: a.process_label.clone(),
            };
            ExecProcess::Overrides(&overrides)
        }
    };
    let opts = ExecOptions {
        process,
        console_socket: a.console_socket.as_deref(),
        detach: a.detach,
        pid_file: a.pid_file.as_deref(),
        preserve_fds: a.preserve_fds,
        cgroups: &a.cgroup,
        ignore_paused: a.ignore_paused,
    };
    rt.exec(&a.id, &opts)
        .with_context(|| format!("exec failed: container {}", a.id))
}

/// The command after the container id; a leading `--` separates it
/// (`exec ID -- CMD ARGS`), as runc accepts it with or without.
fn command(words: &[String]) -> Vec<String> {
    match words.split_first() {
        Some((first, rest)) if first == "--" => rest.to_vec(),
        _ => words.to_vec(),
    }
}
