//! `meniscus bench`: not written yet.

use clap::Args;

/// Arguments of `meniscus bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {}

pub async fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("meniscus bench is not implemented yet")
}
