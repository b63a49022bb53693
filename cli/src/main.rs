//! The `ryze` binary: see the library (`lib.rs`) for its commands.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ryze::run(ryze::Cli::parse()).await
}
