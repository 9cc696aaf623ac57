//! `strata image …`: filled in by the image change.

use crate::common::Global;
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Not available yet.
    Todo,
}

pub async fn run(_g: &Global, _cmd: Cmd) -> Result<(), Box<dyn std::error::Error>> {
    Err("not implemented yet".into())
}
