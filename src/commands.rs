//! checkpoint and restore: argv to library calls.

use anyhow::{Context, Result};
use berth_backends::criu::{self, CriuOptions, RestoreOptions};
use berth_backends::Runtime;

use crate::cli::{CheckpointArgs, Cli, CriuArgs, RestoreArgs};

pub fn checkpoint(cli: &Cli, rt: &Runtime, a: &CheckpointArgs) -> Result<()> {
    let opts = CriuOptions {
        leave_running: a.leave_running,
        pre_dump: a.pre_dump,
        parent_path: a.parent_path.clone(),
        status_fd: a.status_fd,
        page_server: a.page_server.clone(),
        tcp_skip_in_flight: a.tcp_skip_in_flight,
        link_remap: a.link_remap,
        ..criu_options(cli, &a.criu)?
    };
    criu::checkpoint(rt, &a.id, &opts).with_context(|| format!("checkpoint container {}", a.id))
}

pub fn restore(cli: &Cli, rt: &Runtime, a: &RestoreArgs) -> Result<u8> {
    let opts = CriuOptions {
        lsm_profile: a.lsm_profile.clone(),
        lsm_mount_context: a.lsm_mount_context.clone(),
        ..criu_options(cli, &a.criu)?
    };
    let bundle = match &a.bundle {
        Some(b) => b.clone(),
        None => std::env::current_dir().context("current directory")?,
    };
    let ropts = RestoreOptions {
        console_socket: a.console_socket.clone(),
        pid_file: a.pid_file.clone(),
        detach: a.detach,
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
    };
    let status = criu::restore(rt, &a.id, &bundle, &opts, &ropts)
        .with_context(|| format!("restore container {}", a.id))?;
    Ok(status.clamp(0, 255) as u8)
}

// ---- checkpoint/restore ----

/// The flags checkpoint and restore share; the image path defaults to
/// `./checkpoint` as in runc.
fn criu_options(cli: &Cli, c: &CriuArgs) -> Result<CriuOptions> {
    let image_path = match &c.image_path {
        Some(p) => p.clone(),
        None => std::env::current_dir()
            .context("current directory")?
            .join("checkpoint"),
    };
    Ok(CriuOptions {
        criu: cli.criu.clone(),
        image_path,
        work_path: c.work_path.clone(),
        tcp_established: c.tcp_established,
        ext_unix_sk: c.ext_unix_sk,
        shell_job: c.shell_job,
        file_locks: c.file_locks,
        manage_cgroups_mode: c.manage_cgroups_mode.clone(),
        empty_ns: c.empty_ns.clone(),
        auto_dedup: c.auto_dedup,
        lazy_pages: c.lazy_pages,
        ..Default::default()
    })
}
