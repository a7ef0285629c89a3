//! `apos-hub import`: historian CSV/xlsx into the fleet database, with a progress bar and a validation report (docs/import.md).

/// Arguments of the command.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
