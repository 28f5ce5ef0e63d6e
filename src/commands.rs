//! ps, update, events, checkpoint and restore: argv to library calls.

use anyhow::{anyhow, Result};
use berth_backends::Runtime;

use crate::cli::{CheckpointArgs, Cli, EventsArgs, PsArgs, RestoreArgs, UpdateArgs};

pub fn ps(_rt: &Runtime, a: &PsArgs) -> Result<()> {
    Err(anyhow!("ps {}: not implemented yet", a.id))
}

pub fn update(_rt: &Runtime, a: &UpdateArgs) -> Result<()> {
    Err(anyhow!("update {}: not implemented yet", a.id))
}

pub fn events(_rt: &Runtime, a: &EventsArgs) -> Result<()> {
    Err(anyhow!("events {}: not implemented yet", a.id))
}

pub fn checkpoint(_cli: &Cli, _rt: &Runtime, a: &CheckpointArgs) -> Result<()> {
    Err(anyhow!("checkpoint {}: not implemented yet", a.id))
}

pub fn restore(_cli: &Cli, _rt: &Runtime, a: &RestoreArgs) -> Result<u8> {
    Err(anyhow!("restore {}: not implemented yet", a.id))
}
