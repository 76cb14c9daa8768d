//! `meniscus parse`: not written yet.

use clap::Args;

/// Arguments of `meniscus parse`.
#[derive(Args, Debug)]
pub struct ParseArgs {}

pub fn run(_args: ParseArgs) -> anyhow::Result<()> {
    anyhow::bail!("meniscus parse is not implemented yet")
}
