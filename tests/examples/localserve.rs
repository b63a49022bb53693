//! `ryze` as built for the tests: the same commands, with the session host's clients skipping
//! WhatsApp's certificate check so that they talk to the fake server (loopback only). What
//! `tests/e2e/crash.rs` runs as `ryze-localserve serve` and kills with `kill -9`.
//!
//!   RYZE_DATA_DIR=… RYZE_LISTEN=127.0.0.1:P RYZE_WHATSAPP_URL=ws://127.0.0.1:Q/ws/chat \
//!   ryze-localserve serve

use clap::Parser;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    Ok(ryze::run(ryze::Cli::parse()).await?)
}
