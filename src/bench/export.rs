//! Issue 19 benchmark (docs/benchmarks.md): not written yet.

/// Arguments of the benchmark.
#[derive(clap::Args, Debug)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
