//! The application, the top of the stack: the router over the shared state, serving it
//! with graceful shutdown, and the hourly housekeeping.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use tokio::net::TcpListener;

pub use crate::state::AppState;
use crate::{http, pipeline::Gateway, schema::build_schema, session};

/// The gateway's router over `state`.
pub fn router(state: Arc<AppState>) -> axum::Router {
    router_with(state, axum::Router::new())
}

/// [`router`] with `extra` routes under the same middleware stack, for tests that need
/// a route the binary must not have (one that panics).
pub fn router_with(state: Arc<AppState>, extra: axum::Router) -> axum::Router {
    let schema = build_schema(Some(state.clone()));
    http::router_with(Gateway::new(schema, state), extra)
}

/// Migrates, binds and serves until SIGINT or SIGTERM, then drains in-flight requests.
pub async fn serve(state: Arc<AppState>) -> anyhow::Result<()> {
    state.db.migrate().await?;
    state.hub.start();
    let bind = state.config.bind;
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let address = listener.local_addr().context("no local address")?;
    tracing::info!(%address, "FlashFusion gateway listening; GraphiQL at http://{address}/");
    tokio::spawn(housekeeping(state.clone()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    // In-flight requests get DRAIN to finish after the signal; then the process exits
    // anyway, so a stuck request cannot keep a replica from stopping.
    let deadline = async move {
        let mut stop_rx = stop_rx;
        let _ = stop_rx.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(DRAIN).await;
    };
    tokio::select! {
        result = server => result.context("server error")?,
        () = deadline => tracing::warn!(drain = ?DRAIN, "requests still running at the drain deadline; exiting"),
    }
    tracing::info!("shut down");
    Ok(())
}

/// How long in-flight requests may run after a shutdown signal.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Keeps in-process and database bookkeeping from growing forever: every hour, drop the
/// revocations of tokens that have expired anyway, the sign-in limiter's idle keys and
/// the events older than `FLASHFUSION_EVENT_RETENTION`. A failure is logged and retried
/// next time.
async fn housekeeping(state: Arc<AppState>) {
    let mut every = tokio::time::interval(session::PURGE_EVERY);
    loop {
        every.tick().await;
        state.sign_in_limiter.retain_recent();
        match session::purge_expired_revocations(&state.db).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged expired revocations"),
            Err(err) => tracing::warn!(error = ?err, "purging expired revocations failed"),
        }
        match state.hub.prune(state.config.event_retention).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "pruned old events"),
            Err(err) => tracing::warn!(error = ?err, "pruning old events failed"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; draining");
}
