//! `flashfusion`: parse the command line (with `.env` loaded first) and run it.

use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A missing .env is the normal case outside development.
    let _ = dotenvy::dotenv();
    flashfusion_api::cli::run(flashfusion_api::config::Cli::parse()).await
}
