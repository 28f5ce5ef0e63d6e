//! checkpoint and restore: argv to library calls.

use anyhow::{anyhow, Result};
use berth_backends::Runtime;

use crate::cli::{CheckpointArgs, Cli, RestoreArgs};

pub fn checkpoint(_cli: &Cli, _rt: &Runtime, a: &CheckpointArgs) -> Result<()> {
    Err(anyhow!("checkpoint {}: not implemented yet", a.id))
}

pub fn restore(_cli: &Cli, _rt: &Runtime, a: &RestoreArgs) -> Result<u8> {
    Err(anyhow!("restore {}: not implemented yet", a.id))
}
