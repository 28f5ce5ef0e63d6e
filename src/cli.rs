//! berth's command line: runc's global flags and commands, options accepted
//! before or after the container id.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `berth --version` / `-v`, in runc's shape ("runc version X" is what tools parse).
pub const VERSION: &str = concat!(
    "berth version ",
    env!("CARGO_PKG_VERSION"),
    "\nspec: ",
    "1.2.1\n"
);

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    about = "berth: a runc-compatible OCI container runtime",
    disable_version_flag = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Directory for container state (tmpfs recommended) [default:
    /// /run/berth, or $XDG_RUNTIME_DIR/berth when not run as root].
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Write log lines to this file instead of stderr.
    #[arg(long, value_name = "PATH")]
    pub log: Option<PathBuf>,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log debug lines too.
    #[arg(long)]
    pub debug: bool,
    /// Manage cgroups through systemd (not supported yet).
    #[arg(long)]
    pub systemd_cgroup: bool,
    /// Leave out cgroups the caller may not write, with a warning: true,
    /// false or auto (as runc: true when not root, or root in a user namespace).
    #[arg(long, default_value = "auto", value_parser = ["true", "false", "auto"], value_name = "VALUE")]
    pub rootless: String,
    /// Path to criu (accepted for runc compatibility; checkpointing comes later).
    #[arg(long, hide = true)]
    pub criu: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// `--root`, else runc's default: `$XDG_RUNTIME_DIR/berth` for a user
    /// that is not root (or is root only in a user namespace, logged in as
    /// someone else), else /run/berth.
    pub fn root_dir(&self) -> PathBuf {
        if let Some(r) = &self.root {
            return r.clone();
        }
        let xdg = std::env::var_os("XDG_RUNTIME_DIR").filter(|x| !x.is_empty());
        match xdg {
            Some(dir) if honour_xdg() => PathBuf::from(dir).join("berth"),
            _ => PathBuf::from(berth_state::DEFAULT_ROOT),
        }
    }

    /// `--rootless` resolved: "auto" means true when berth is not root, or
    /// is root only inside a user namespace.
    pub fn rootless(&self) -> bool {
        match self.rootless.as_str() {
            "true" => true,
            "false" => false,
            _ => euid() != 0 || in_user_namespace(),
        }
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

fn honour_xdg() -> bool {
    euid() != 0 || (in_user_namespace() && std::env::var("USER").is_ok_and(|u| u != "root"))
}

/// Whether this process runs in a user namespace other than the host's
/// (whose uid_map maps every id to itself).
fn in_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| {
        let f: Vec<&str> = m.split_whitespace().collect();
        f != ["0", "0", "4294967295"]
    })
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container, leaving its process waiting for `start`.
    Create(CreateArgs),
    /// Start a created container's process.
    Start(IdArg),
    /// Create and start a container; wait for it unless --detach.
    Run(RunArgs),
    /// Print a container's state as JSON.
    State(IdArg),
    /// Send a signal (default SIGTERM) to a container's init process.
    Kill(KillArgs),
    /// Delete a container and everything berth made for it.
    Delete(DeleteArgs),
    /// List containers.
    #[command(alias = "ls")]
    List(ListArgs),
    /// Write a starting config.json into the bundle.
    Spec(SpecArgs),
    /// Print what this build of berth supports, as JSON.
    Features,
}

#[derive(Args, Debug)]
pub struct IdArg {
    pub id: String,
}

#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    pub id: String,
    /// The bundle directory (default: the current directory).
    #[arg(short, long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// A unix socket to receive the pty master on.
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Write the container init's pid to this file.
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// Use MS_MOVE and chroot instead of pivot_root.
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not create a new session keyring.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass this many descriptors after stdio (3, 4, ...) to the container.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Return once the container started.
    #[arg(short, long)]
    pub detach: bool,
    /// Accepted for runc compatibility (keep the stopped container): not supported yet.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Args, Debug)]
pub struct KillArgs {
    pub id: String,
    /// A signal name (TERM, SIGTERM) or number.
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
    /// Signal every process in the container, not only its init.
    #[arg(short, long)]
    pub all: bool,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    pub id: String,
    /// Kill the container first if it still runs.
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// Print only the ids.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct SpecArgs {
    /// Where to write config.json (default: the current directory).
    #[arg(short, long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// A config for a container run by an unprivileged user.
    #[arg(long)]
    pub rootless: bool,
}

/// A signal by name (with or without SIG, any case) or number.
pub fn parse_signal(s: &str) -> Result<i32, String> {
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(format!("invalid signal: {s}"))
        };
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    if let Some(rt) = name.strip_prefix("SIGRTMIN") {
        let off: i32 = if rt.is_empty() {
            0
        } else {
            rt.strip_prefix('+')
                .and_then(|n| n.parse().ok())
                .ok_or(format!("invalid signal: {s}"))?
        };
        let n = libc::SIGRTMIN() + off;
        return if n <= libc::SIGRTMAX() {
            Ok(n)
        } else {
            Err(format!("invalid signal: {s}"))
        };
    }
    name.parse::<nix::sys::signal::Signal>()
        .map(|sig| sig as i32)
        .map_err(|_| format!("unknown signal {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal("TERM"), Ok(libc::SIGTERM));
        assert_eq!(parse_signal("SIGKILL"), Ok(libc::SIGKILL));
        assert_eq!(parse_signal("hup"), Ok(libc::SIGHUP));
        assert_eq!(parse_signal("9"), Ok(9));
        assert_eq!(parse_signal("RTMIN+2"), Ok(libc::SIGRTMIN() + 2));
        assert!(parse_signal("FOO").is_err());
        assert!(parse_signal("0").is_err());
        assert!(parse_signal("65").is_err());
    }

    #[test]
    fn options_after_the_id() {
        let cli =
            Cli::try_parse_from(["berth", "create", "c1", "--bundle", "/b", "--pid-file", "p"])
                .unwrap();
        let Command::Create(a) = cli.command else {
            panic!()
        };
        assert_eq!(
            (a.id.as_str(), a.bundle.as_deref()),
            ("c1", Some(std::path::Path::new("/b")))
        );
        let cli = Cli::try_parse_from(["berth", "kill", "c1", "KILL", "--all"]).unwrap();
        let Command::Kill(k) = cli.command else {
            panic!()
        };
        assert!(k.all && k.signal == "KILL");
        let cli = Cli::try_parse_from(["berth", "--root", "/r", "delete", "c1", "-f"]).unwrap();
        assert_eq!(cli.root_dir(), PathBuf::from("/r"));
        // As runc: the global --rootless takes a value; spec's is a switch.
        let cli =
            Cli::try_parse_from(["berth", "--rootless", "true", "spec", "--rootless"]).unwrap();
        assert_eq!(cli.rootless, "true");
    }
}
