//! `cargo xtask demo`: the end-to-end walkthrough (a CI job's psql redirected through the agent,
//! policy decisions, masking, audit in the collector). The flow itself lives in [`run`], which
//! the lead engineer fills in; [`command`] only prepares the machine and the binaries.

use crate::build::{self, Binaries};
use crate::setup;

/// `cargo xtask demo`: setup if something is missing, build, then [`run`].
pub fn command() -> anyhow::Result<()> {
    setup::ensure()?;
    let bins = build::binaries(false)?;
    run(&bins)
}

/// Runs the demo against already built binaries.
pub fn run(bins: &Binaries) -> anyhow::Result<()> {
    let Binaries {
        agent: _,
        collector: _,
        jitgate_cli: _,
    } = bins;
    println!("demo not yet implemented");
    Ok(())
}
