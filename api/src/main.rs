//! `flashfusion`: parse the command line (with `.env` loaded first) and run it.

use clap::Parser as _;

/// mimalloc instead of the system allocator: a request allocates and frees many small
/// objects across threads, where glibc's malloc took a sixth of the gateway's CPU
/// (BENCHMARKS.md, "Reads").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // A missing .env is the normal case outside development; one that cannot be read
    // whole stops the start, since dotenvy stops at its first bad line and every
    // setting after it would be silently ignored.
    if let Err(err) = dotenvy::dotenv()
        && !err.not_found()
    {
        eprintln!("error: .env: {err}");
        return std::process::ExitCode::FAILURE;
    }
    match flashfusion_api::cli::run(flashfusion_api::config::Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
