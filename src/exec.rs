//! `berth exec`: a new process in a running container.

use anyhow::{anyhow, Result};
use berth_backends::Runtime;

use crate::cli::{Cli, ExecArgs};

pub fn exec(_cli: &Cli, _rt: &Runtime, a: &ExecArgs) -> Result<u8> {
    Err(anyhow!("exec into container {}: not implemented yet", a.id))
}
