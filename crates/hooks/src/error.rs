//! Hook errors, each displayed as one line.

use std::io;
use std::path::PathBuf;

/// Why a hook did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// `path`, an argument or an environment entry holds a NUL byte.
    #[error("hook {}: {what} contains a NUL byte", path.display())]
    Nul { path: PathBuf, what: &'static str },

    /// The spec requires a timeout greater than zero.
    #[error("hook {}: timeout must be greater than zero, got {secs}", path.display())]
    InvalidTimeout { path: PathBuf, secs: i64 },

    /// The hook could not be started (execve failed, or fork did).
    #[error("hook {}: cannot execute: {}", path.display(), errno_text(source))]
    Spawn {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The hook ran and exited non-zero or was killed by a signal.
    /// `stderr` and `stdout` hold the (tail of the) captured output.
    #[error("hook {} failed: {status}{}", path.display(), output_suffix(stderr, stdout))]
    Failed {
        path: PathBuf,
        /// `"exit status N"` or `"signal N"`.
        status: String,
        stderr: String,
        stdout: String,
    },

    /// The hook outlived its `timeout`; it was killed with SIGKILL and reaped.
    #[error("hook {} timed out after {secs}s", path.display())]
    Timeout { path: PathBuf, secs: i64 },

    /// Plumbing around the hook (pipes, poll, wait) failed.
    #[error("hook {}: {op}: {}", path.display(), errno_text(source))]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

/// "No such file or directory" rather than "No such file or directory (os error 2)".
fn errno_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_string(),
        None => e.to_string(),
    }
}

/// Longest piece of hook output quoted in an error message, in bytes.
const QUOTE_MAX: usize = 512;

/// `": <last non-empty line of stderr (else stdout)>"`, or nothing.
fn output_suffix(stderr: &str, stdout: &str) -> String {
    let last = |s: &str| {
        s.lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .map(str::to_string)
    };
    let Some(mut line) = last(stderr).or_else(|| last(stdout)) else {
        return String::new();
    };
    if line.len() > QUOTE_MAX {
        let mut cut = QUOTE_MAX;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    format!(": {line}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_picks_last_line() {
        assert_eq!(output_suffix("a\nb\n\n", "x"), ": b");
        assert_eq!(output_suffix("", "out line\n"), ": out line");
        assert_eq!(output_suffix("  \n", ""), "");
        let long = "é".repeat(400);
        let s = output_suffix(&long, "");
        assert!(s.len() <= QUOTE_MAX + 2 + '…'.len_utf8(), "{}", s.len());
        assert!(s.ends_with('…'));
    }

    #[test]
    fn spawn_message_has_no_os_error_suffix() {
        let e = HookError::Spawn {
            path: "/x".into(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert_eq!(
            e.to_string(),
            "hook /x: cannot execute: No such file or directory"
        );
    }
}
