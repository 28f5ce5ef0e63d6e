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
    /// Manage cgroups through systemd (needs systemd as PID 1; berth has no
    /// D-Bus client yet, so this is an error).
    #[arg(long)]
    pub systemd_cgroup: bool,
    /// Leave out cgroups the caller may not write, with a warning: true,
    /// false or auto (as runc: true when not root, or root in a user namespace).
    #[arg(long, default_value = "auto", value_parser = ["true", "false", "auto"], value_name = "VALUE")]
    pub rootless: String,
    /// Path to criu for checkpoint and restore [default: criu in PATH].
    #[arg(long, value_name = "PATH")]
    pub criu: Option<PathBuf>,
    /// The image layer store [default: `store` in /etc/berth/config.toml,
    /// else /var/lib/berth].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// How image root filesystems are made: overlay, zfs, btrfs or vfs
    /// [default: `storage-driver` in /etc/berth/config.toml, else overlay].
    #[arg(long, value_name = "DRIVER")]
    pub storage_driver: Option<String>,
    /// A storage driver option, KEY=VALUE (repeatable; e.g.
    /// zfs.dataset=POOL/PATH names the parent dataset).
    #[arg(long, value_name = "KEY=VALUE")]
    pub storage_opt: Vec<String>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    pub fn storage_flags(&self) -> berth_backends::StorageFlags {
        berth_backends::StorageFlags {
            store: self.store.clone(),
            driver: self.storage_driver.clone(),
            options: self.storage_opt.clone(),
        }
    }

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
    /// Run a new process inside a running container.
    Exec(ExecArgs),
    /// List the processes running in a container.
    Ps(PsArgs),
    /// Freeze every process of a container.
    Pause(IdArg),
    /// Thaw a paused container.
    Resume(IdArg),
    /// Change a running container's resource limits.
    Update(UpdateArgs),
    /// Print a container's resource usage and OOM events as JSON lines.
    Events(EventsArgs),
    /// Checkpoint a running container with CRIU.
    Checkpoint(CheckpointArgs),
    /// Restore a container from a CRIU checkpoint.
    Restore(RestoreArgs),
    /// Import, list, inspect and remove OCI images in the layer store.
    #[command(subcommand)]
    Image(ImageCmd),
    /// Make bundles from images.
    #[command(subcommand)]
    Bundle(BundleCmd),
    /// Snapshots of a container's writable layer (zfs and btrfs drivers).
    #[command(subcommand)]
    Snapshot(SnapshotCmd),
}

#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// Import an OCI image layout directory, an OCI archive or a `docker
    /// save` tar: every blob verified, each layer unpacked once.
    Import(ImageImportArgs),
    /// List the images in the store.
    #[command(alias = "list")]
    Ls(ImageLsArgs),
    /// Print an image's record and config as JSON.
    Inspect(ImageRefArgs),
    /// Remove images (layers another image or a container uses stay).
    #[command(alias = "remove")]
    Rm(ImageRmArgs),
}

#[derive(Args, Debug)]
pub struct ImageImportArgs {
    /// The layout directory or archive.
    pub path: PathBuf,
    /// The name to give it, NAME:TAG [default: the name the image carries].
    #[arg(long, value_name = "NAME:TAG")]
    pub name: Option<String>,
}

#[derive(Args, Debug)]
pub struct ImageLsArgs {
    #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// Print only the names.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct ImageRefArgs {
    /// NAME:TAG, NAME@sha256:…, or a manifest digest (or a prefix of its hex).
    pub image: String,
}

#[derive(Args, Debug)]
pub struct ImageRmArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum BundleCmd {
    /// Write DIR/config.json for a container of an image, and an empty
    /// DIR/rootfs that `create` mounts the image on.
    Create(BundleCreateArgs),
}

#[derive(Args, Debug)]
pub struct BundleCreateArgs {
    /// The image, NAME:TAG.
    #[arg(long, value_name = "NAME:TAG")]
    pub image: String,
    /// Give the process a terminal (process.terminal).
    #[arg(short, long)]
    pub tty: bool,
    /// The bundle directory (created if missing).
    pub dir: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum SnapshotCmd {
    /// Snapshot a stopped or paused container's writable layer.
    Create(SnapshotCreateArgs),
    /// List a container's snapshots, oldest first.
    #[command(alias = "ls")]
    List(SnapshotListArgs),
    /// Roll a stopped container's writable layer back to a snapshot.
    Restore(SnapshotNameArgs),
    /// Delete a snapshot.
    #[command(alias = "rm")]
    Delete(SnapshotNameArgs),
}

#[derive(Args, Debug)]
pub struct SnapshotCreateArgs {
    pub id: String,
    /// The snapshot's name [default: the current UTC time, YYYYMMDDTHHMMSSZ].
    pub name: Option<String>,
    /// Then delete the oldest snapshots beyond this many.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<usize>,
}

#[derive(Args, Debug)]
pub struct SnapshotListArgs {
    pub id: String,
    #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

#[derive(Args, Debug)]
pub struct SnapshotNameArgs {
    pub id: String,
    pub name: String,
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

#[derive(Args, Debug, Clone)]
pub struct ExecArgs {
    pub id: String,
    /// The command and its arguments (runc accepts them with or without `--`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
    /// A process.json (the OCI `process` object) instead of the command line.
    #[arg(short, long, value_name = "PATH")]
    pub process: Option<PathBuf>,
    /// A unix socket to receive the pty master on.
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Current working directory in the container.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// Set an environment variable (NAME=VALUE), repeatable.
    #[arg(short, long, value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// UID[:GID] to run as.
    #[arg(short, long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// Extra group ids, repeatable.
    #[arg(short = 'g', long, value_name = "GID")]
    pub additional_gids: Vec<u32>,
    /// Return once the process started.
    #[arg(short, long)]
    pub detach: bool,
    /// Write the process's pid to this file.
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// The AppArmor profile for the process.
    #[arg(long, value_name = "PROFILE")]
    pub apparmor: Option<String>,
    /// The SELinux label for the process.
    #[arg(long, value_name = "LABEL")]
    pub process_label: Option<String>,
    /// Add a capability to the process's sets, repeatable.
    #[arg(short, long, value_name = "CAP")]
    pub cap: Vec<String>,
    /// Set no_new_privs for the process.
    #[arg(long)]
    pub no_new_privs: bool,
    /// Pass this many descriptors after stdio (3, 4, ...) to the process.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
    /// Allow exec into a paused container.
    #[arg(long)]
    pub ignore_paused: bool,
    /// Accepted for runc compatibility (berth reaps the process itself).
    #[arg(long, hide = true)]
    pub no_subreaper: bool,
    /// Run in this sub-cgroup of the container's ([CONTROLLER[,C2]:]PATH), repeatable.
    #[arg(long, value_name = "PATH")]
    pub cgroup: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PsArgs {
    pub id: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// Options for ps(1) (default -ef).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PS_OPTIONS"
    )]
    pub ps_args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct UpdateArgs {
    pub id: String,
    /// Resources as JSON (linux.resources of config.json); "-" reads stdin.
    #[arg(short, long, value_name = "PATH")]
    pub resources: Option<PathBuf>,
    /// Block IO weight (10-1000).
    #[arg(long, value_name = "N")]
    pub blkio_weight: Option<u16>,
    /// CPU CFS period in microseconds.
    #[arg(long, value_name = "US")]
    pub cpu_period: Option<u64>,
    /// CPU CFS quota in microseconds (-1: none).
    #[arg(long, value_name = "US", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU shares (relative weight).
    #[arg(long, value_name = "N")]
    pub cpu_share: Option<u64>,
    /// CPU realtime period in microseconds.
    #[arg(long, value_name = "US")]
    pub cpu_rt_period: Option<u64>,
    /// CPU realtime runtime in microseconds.
    #[arg(long, value_name = "US", allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// CPUs the container may run on (0-3, 0,1).
    #[arg(long, value_name = "LIST")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use.
    #[arg(long, value_name = "LIST")]
    pub cpuset_mems: Option<String>,
    /// Kernel memory limit (deprecated by the kernel; refused).
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    pub kernel_memory: Option<String>,
    /// Kernel TCP buffer memory limit.
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    pub kernel_memory_tcp: Option<String>,
    /// Memory limit (bytes, or with k, m, g suffix; -1: none).
    #[arg(short, long, value_name = "BYTES", allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Memory soft limit.
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit (-1: none).
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Maximum number of processes (-1: none).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Intel RDT L3 cache schema (not supported: refused).
    #[arg(long, value_name = "SCHEMA")]
    pub l3_cache_schema: Option<String>,
    /// Intel RDT memory bandwidth schema (not supported: refused).
    #[arg(long, value_name = "SCHEMA")]
    pub mem_bw_schema: Option<String>,
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    pub id: String,
    /// Print stats once and exit.
    #[arg(long)]
    pub stats: bool,
    /// How often to print stats (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    pub interval: String,
}

#[derive(Args, Debug, Clone, Default)]
pub struct CriuArgs {
    /// Where the checkpoint images are (default: ./checkpoint).
    #[arg(long, value_name = "DIR")]
    pub image_path: Option<PathBuf>,
    /// Where CRIU writes its log and work files (default: the image path).
    #[arg(long, value_name = "DIR")]
    pub work_path: Option<PathBuf>,
    /// Allow open TCP connections.
    #[arg(long)]
    pub tcp_established: bool,
    /// Allow external unix sockets.
    #[arg(long)]
    pub ext_unix_sk: bool,
    /// Allow shell jobs.
    #[arg(long)]
    pub shell_job: bool,
    /// Handle file locks.
    #[arg(long)]
    pub file_locks: bool,
    /// cgroups mode: soft, full, strict or ignore.
    #[arg(long, value_name = "MODE")]
    pub manage_cgroups_mode: Option<String>,
    /// Empty namespaces to create (network).
    #[arg(long, value_name = "NS")]
    pub empty_ns: Vec<String>,
    /// Automatically deduplicate images.
    #[arg(long)]
    pub auto_dedup: bool,
    /// Use userfaultfd to restore memory lazily.
    #[arg(long)]
    pub lazy_pages: bool,
}

#[derive(Args, Debug)]
pub struct CheckpointArgs {
    pub id: String,
    #[command(flatten)]
    pub criu: CriuArgs,
    /// Keep the container running after the checkpoint.
    #[arg(long)]
    pub leave_running: bool,
    /// Dump memory only, leaving the container running (iterative migration).
    #[arg(long)]
    pub pre_dump: bool,
    /// A previous pre-dump's image path, relative to the image path.
    #[arg(long, value_name = "DIR")]
    pub parent_path: Option<PathBuf>,
    /// With --lazy-pages: the socket the page server's status goes to.
    #[arg(long, value_name = "FD")]
    pub status_fd: Option<i32>,
    /// Address of a page server (IP:PORT).
    #[arg(long, value_name = "ADDR")]
    pub page_server: Option<String>,
    /// Skip in-flight TCP connections.
    #[arg(long)]
    pub tcp_skip_in_flight: bool,
    /// Dump files that were unlinked but are still open.
    #[arg(long)]
    pub link_remap: bool,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    pub id: String,
    #[command(flatten)]
    pub criu: CriuArgs,
    /// The bundle directory (default: the current directory).
    #[arg(short, long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// A unix socket to receive the pty master on.
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Write the restored init's pid to this file.
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// Return once restored.
    #[arg(short, long)]
    pub detach: bool,
    /// Do not use pivot_root.
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not create a new session keyring.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// The LSM profile to restore the process with (TYPE:NAME).
    #[arg(long, value_name = "TYPE:NAME")]
    pub lsm_profile: Option<String>,
    /// The LSM mount context to restore mounts with.
    #[arg(long, value_name = "CONTEXT")]
    pub lsm_mount_context: Option<String>,
    /// Accepted for runc compatibility (berth waits for the restored process itself).
    #[arg(long)]
    pub no_subreaper: bool,
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
