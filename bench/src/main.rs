//! `bench`: benchmarks of the FlashFusion gateway, one subcommand per run.
//!
//! Every run measures the real gateway, not an in-process router: it creates its own
//! Postgres database ([`database`]), migrates it, and starts the gateway in a separate
//! process ([`gateway`]) by re-executing this very executable with the hidden `gateway`
//! subcommand, which runs `flashfusion_api::cli::run` exactly as the `flashfusion`
//! binary's `serve` does (`AppState::init` + `app::serve`), configured through its
//! environment variables. Re-executing ourselves rather than spawning `flashfusion`
//! means `cargo run -p bench` never measures a stale or missing gateway binary, while the
//! gateway still has its own process: its memory and CPU time are read from `/proc`
//! apart from the load generator's.
//!
//! Runs print their figures and write them to a file; nothing here is a pass/fail
//! timing. A run fails only when it cannot run or loses events.
//!
//! - `subscriptions` ([`subscriptions`]): N WebSocket subscribers, a writer producing M
//!   events per second; delivery latency, deliveries per second, memory per idle
//!   subscription.
//! - `reads` ([`reads`]): an authenticated page of projects over HTTP at 1, 8 and 64
//!   connections, set against pgbench replaying the same SQL; statements per request
//!   counted on the wire; start-up time on SQLite.

mod database;
mod gateway;
mod graphql;
mod reads;
mod report;
mod subscriptions;

use clap::{Parser, Subcommand};

/// The allocator of the `flashfusion` binary (`api/src/main.rs`), since the gateway this
/// executable re-executes as must measure like the real one.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Benchmarks of the FlashFusion gateway against the real binary and a throwaway
/// Postgres database (`TEST_DATABASE_URL`, or the local server).
#[derive(Debug, Parser)]
#[command(name = "bench")]
struct Cli {
    #[command(subcommand)]
    run: Run,
}

#[derive(Debug, Subcommand)]
enum Run {
    /// Many WebSocket subscribers, a steady writer: delivery latency, deliveries per
    /// second, memory per idle subscription.
    Subscriptions(subscriptions::Args),
    /// An authenticated page of projects at 1, 8 and 64 connections: requests per
    /// second, latency, gateway CPU per request, statements per request, pgbench replays.
    Reads(reads::Args),
    /// The gateway process a run starts: `flashfusion serve`, configured by the
    /// environment the run sets.
    #[command(hide = true)]
    Gateway,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let outcome = match Cli::parse().run {
        Run::Subscriptions(args) => subscriptions::run(args).await,
        Run::Reads(args) => reads::run(args).await,
        Run::Gateway => gateway::serve().await,
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
