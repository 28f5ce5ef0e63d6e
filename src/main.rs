//! `berth`: argv → command → library call. Each command builds a request,
//! calls `berth-backends`, and prints what runc would print.

mod cli;
mod commands;
mod exec;
mod images;
mod log;
mod manage;
mod sealed;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use berth_backends::{BackendError, CreateOptions, Runtime};
use clap::Parser;

use cli::{Cli, Command, CreateArgs, ListFormat};
use log::{Level, Logger};

fn main() -> ExitCode {
    if matches!(std::env::args().nth(1).as_deref(), Some("--version" | "-v")) {
        print!("{}", cli::VERSION);
        return ExitCode::SUCCESS;
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // Before anything is forked that the container could reach.
    if matches!(
        cli.command,
        Command::Create(_) | Command::Run(_) | Command::Exec(_) | Command::Restore(_)
    ) {
        if let Err(e) = sealed::ensure() {
            Logger::stderr().error(&format!(
                "run berth from a read-only copy of its binary (so a container cannot overwrite it): {e}"
            ));
            return ExitCode::from(1);
        }
    }
    // The kernel makes the first migration into a cgroup wait for an RCU
    // grace period; start it now so it overlaps with the set-up below
    // (create starts it once the container's cgroup exists, see the native
    // backend).
    if matches!(cli.command, Command::Exec(_)) {
        if let Ok(h) = berth_cgroups::Hierarchies::detect() {
            drop(berth_cgroups::prime_migration(&h));
        }
    }
    let logger = match Logger::open(cli.log.as_deref(), cli.log_format, cli.debug) {
        Ok(l) => std::rc::Rc::new(l),
        Err(e) => {
            Logger::stderr().error(&format!(
                "open log file {}: {e}",
                cli.log
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ));
            return ExitCode::from(1);
        }
    };
    match dispatch(&cli, &logger) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            report(&logger, &e);
            ExitCode::from(1)
        }
    }
}

/// One line per cause: each config.json problem on its own line.
fn report(logger: &Logger, e: &anyhow::Error) {
    let context = e.chain().next().map(|c| c.to_string()).unwrap_or_default();
    let invalid = e
        .chain()
        .find_map(|c| match c.downcast_ref::<BackendError>() {
            Some(BackendError::Bundle(berth_bundle::BundleError::Invalid(problems))) => {
                Some(problems)
            }
            _ => c
                .downcast_ref::<berth_bundle::BundleError>()
                .and_then(|b| match b {
                    berth_bundle::BundleError::Invalid(p) => Some(p),
                    _ => None,
                }),
        });
    match invalid {
        Some(problems) => {
            for p in problems {
                logger.error(&format!("{context}: invalid config.json: {p}"));
            }
        }
        None => logger.error(&one_line(e)),
    }
}

/// The error and its causes on one line, each cause once: library errors
/// often include their source's text already, which `{:#}` would repeat.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn dispatch(cli: &Cli, logger: &std::rc::Rc<Logger>) -> Result<u8> {
    let warn_logger = std::rc::Rc::clone(logger);
    let mut rt = Runtime::new(
        cli.root_dir(),
        Box::new(move |w| warn_logger.log(Level::Warning, w)),
    );
    rt.storage = cli.storage_flags();
    logger.log(Level::Debug, &format!("command {:?}", cli.command));
    match &cli.command {
        Command::Create(a) => {
            let opts = create_options(cli, a)?;
            rt.create(&a.id, &opts)
                .with_context(|| format!("create container {}", a.id))?;
        }
        Command::Run(a) => {
            if a.keep {
                return Err(anyhow!("run --keep is not supported yet"));
            }
            let opts = create_options(cli, &a.create)?;
            let status = rt
                .run(&a.create.id, &opts, a.detach)
                .with_context(|| format!("run container {}", a.create.id))?;
            return Ok(status.clamp(0, 255) as u8);
        }
        Command::Start(a) => rt
            .start(&a.id)
            .with_context(|| format!("start container {}", a.id))?,
        Command::State(a) => {
            let state = rt
                .state(&a.id)
                .with_context(|| format!("state of container {}", a.id))?;
            println!("{}", serde_json::to_string_pretty(&state)?);
        }
        Command::Kill(a) => {
            let sig = cli::parse_signal(&a.signal).map_err(|e| anyhow!(e))?;
            rt.kill(&a.id, sig, a.all)
                .with_context(|| format!("kill container {}", a.id))?;
        }
        Command::Delete(a) => rt
            .delete(&a.id, a.force)
            .with_context(|| format!("delete container {}", a.id))?,
        Command::List(a) => list(&rt, a)?,
        Command::Spec(a) => spec(a)?,
        Command::Exec(a) => return exec::exec(cli, &rt, a),
        Command::Ps(a) => manage::ps(&rt, a)?,
        Command::Pause(a) => rt
            .pause(&a.id)
            .with_context(|| format!("pause container {}", a.id))?,
        Command::Resume(a) => rt
            .resume(&a.id)
            .with_context(|| format!("resume container {}", a.id))?,
        Command::Update(a) => manage::update(&rt, a)?,
        Command::Events(a) => manage::events(&rt, a)?,
        Command::Checkpoint(a) => commands::checkpoint(cli, &rt, a)?,
        Command::Restore(a) => return commands::restore(cli, &rt, a),
        Command::Image(c) => images::image(cli, &rt, c)?,
        Command::Bundle(c) => images::bundle(cli, &rt, c)?,
        Command::Snapshot(c) => images::snapshot(&rt, c)?,
        Command::Features => println!(
            "{}",
            serde_json::to_string_pretty(&berth_bundle::features(berth_bundle::HostLsm {
                apparmor: berth_linux::lsm::apparmor_enabled(),
                selinux: berth_linux::lsm::selinux_enabled(),
            }))?
        ),
    }
    Ok(0)
}

fn create_options(cli: &Cli, a: &CreateArgs) -> Result<CreateOptions> {
    let bundle = match &a.bundle {
        Some(b) => b.clone(),
        None => std::env::current_dir().context("current directory")?,
    };
    Ok(CreateOptions {
        bundle,
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: a.preserve_fds,
        listen_fds: listen_fds(),
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        rootless: cli.rootless(),
        systemd_cgroup: cli.systemd_cgroup,
    })
}

/// Socket activation: LISTEN_FDS for this process (LISTEN_PID is ours).
fn listen_fds() -> u32 {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    if !ours {
        return 0;
    }
    std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn list(rt: &Runtime, a: &cli::ListArgs) -> Result<()> {
    let states = rt.list()?;
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for s in &states {
            writeln!(out, "{}", s.id)?;
        }
        return Ok(());
    }
    match a.format {
        ListFormat::Json => writeln!(out, "{}", serde_json::to_string(&states)?)?,
        ListFormat::Table => {
            let mut rows =
                vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from)];
            for s in &states {
                rows.push([
                    s.id.clone(),
                    s.pid.to_string(),
                    s.status.as_str().to_string(),
                    s.bundle.display().to_string(),
                    s.created.clone(),
                    s.owner.clone(),
                ]);
            }
            write!(out, "{}", table(&rows))?;
        }
    }
    Ok(())
}

/// Columns padded as runc's tabwriter pads them (cell at least 12 wide, 3 spaces of padding).
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count() + 3)
                .max()
                .unwrap_or(0)
                .max(12)
        })
        .collect();
    let mut s = String::new();
    for r in rows {
        for (c, cell) in r.iter().enumerate() {
            if c == N - 1 {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}", w = widths[c]));
            }
        }
        s.push('\n');
    }
    s
}

fn spec(a: &cli::SpecArgs) -> Result<()> {
    let dir = a.bundle.clone().unwrap_or_else(|| PathBuf::from("."));
    write_config(&dir, &berth_bundle::template(a.rootless))
}

/// Write `dir/config.json` (refusing to overwrite one), capabilities sorted.
fn write_config(dir: &std::path::Path, spec: &oci_spec::runtime::Spec) -> Result<()> {
    let path = dir.join("config.json");
    if path.exists() {
        return Err(anyhow!("File {} exists. Remove it first", path.display()));
    }
    let mut value = serde_json::to_value(spec)?;
    sort_capabilities(&mut value);
    let text = serde_json::to_string_pretty(&value)? + "\n";
    std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))
}

/// oci-spec keeps capabilities in sets; print them in a stable order.
fn sort_capabilities(v: &mut serde_json::Value) {
    if let Some(caps) = v
        .pointer_mut("/process/capabilities")
        .and_then(|c| c.as_object_mut())
    {
        for set in caps.values_mut() {
            if let Some(list) = set.as_array_mut() {
                list.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_appear_once() {
        let io = std::io::Error::from_raw_os_error(libc::ENOENT);
        let e = anyhow::Error::new(berth_bundle::BundleError::Read {
            path: "/x/config.json".into(),
            source: io,
        })
        .context("create container c1");
        let line = one_line(&e);
        assert_eq!(
            line.matches("No such file or directory").count(),
            1,
            "{line}"
        );
        assert!(
            line.starts_with("create container c1: read /x/config.json: "),
            "{line}"
        );
    }

    #[test]
    fn table_pads_like_runc() {
        let rows = vec![
            ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from),
            ["c1", "42", "running", "/b", "2026-01-01T00:00:00Z", "root"].map(String::from),
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].starts_with(
                "ID          PID         STATUS      BUNDLE      CREATED                OWNER"
            ),
            "{t}"
        );
        assert!(
            lines[1].starts_with(
                "c1          42          running     /b          2026-01-01T00:00:00Z   root"
            ),
            "{t}"
        );
    }
}
