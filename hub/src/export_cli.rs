//! `apos-hub export`: windows, KPIs, forecasts or alarms as CSV or Parquet (docs/export.md).

/// Arguments of the command.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
