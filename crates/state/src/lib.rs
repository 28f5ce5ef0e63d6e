//! berth-state: per-container state under the runtime root.
//!
//! - [`Root`] / [`Container`]: the directory `ROOT/ID`, its lock and the
//!   atomically replaced `state.json` ([`Record`]).
//! - [`OciState`] / [`HookState`]: the JSON `berth state` prints and hooks read.
//! - [`liveness`], [`pid_start_time`], [`pidfd_open`], [`wait_exit`]: is the
//!   recorded process still ours, and waiting for it to exit.
//! - [`now_rfc3339`]: creation timestamps without a date library.

mod error;
mod id;
mod pidfd;
mod process;
mod record;
mod root;
mod time;

pub use error::StateError;
pub use id::{validate_id, MAX_ID_LEN};
pub use pidfd::{pidfd_open, wait_exit};
pub use process::{liveness, pid_start_time, Liveness};
pub use record::{HookState, OciState, Record, Status, UnknownStatus, DEFAULT_OCI_VERSION};
pub use root::{Container, Root, DEFAULT_ROOT, STATE_FILE};
pub use time::{format_rfc3339, now_rfc3339};
