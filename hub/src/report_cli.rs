//! `apos-hub report`: make, list and print site reports (docs/hub.md, "Reports").

/// Arguments of the command.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
