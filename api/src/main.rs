//! `flashfusion`: parse the command line (with `.env` loaded first) and run it.

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // A missing .env is the normal case outside development.
    let _ = dotenvy::dotenv();
    match flashfusion_api::cli::run(flashfusion_api::config::Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
