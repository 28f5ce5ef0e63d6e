//! berth-hooks: run OCI hooks (runtime spec, config.md "POSIX-platform Hooks").
//!
//! A hook is exec'd with its `args` as argv (argv\[0\] is `args[0]`, or `path`
//! when there are no args) and exactly its `env` (empty when absent). The
//! state JSON is written to its stdin; a hook that never reads stdin, or
//! closes it early, is fine. stdout and stderr are captured (their last
//! 16 KiB each) and quoted in the error when the hook fails, which is what
//! runc does with them too. With a `timeout`, a hook still running at the
//! deadline is killed with SIGKILL and reaped.
//!
//! This runs inside the freshly forked, single-threaded container init as
//! well, so it starts no threads: fork/exec, non-blocking pipes, one `poll`
//! loop with a deadline, and `waitpid`.

mod error;
mod runner;
mod sys;
#[cfg(test)]
mod tests;

pub use error::HookError;
pub use oci_spec::runtime::Hook;
pub use runner::{run, run_all};
