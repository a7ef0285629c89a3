//! `apos-hub sql` and the hidden `apos-hub sql-worker`: the locked-down process that runs analysts' read-only SQL (docs/hub.md, "SQL").

/// Arguments of the command.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
