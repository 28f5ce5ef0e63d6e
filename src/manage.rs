//! ps, update and events: argv to library calls.

use anyhow::{anyhow, Result};
use berth_backends::Runtime;

use crate::cli::{EventsArgs, PsArgs, UpdateArgs};

pub fn ps(_rt: &Runtime, a: &PsArgs) -> Result<()> {
    Err(anyhow!("ps {}: not implemented yet", a.id))
}

pub fn update(_rt: &Runtime, a: &UpdateArgs) -> Result<()> {
    Err(anyhow!("update {}: not implemented yet", a.id))
}

pub fn events(_rt: &Runtime, a: &EventsArgs) -> Result<()> {
    Err(anyhow!("events {}: not implemented yet", a.id))
}
