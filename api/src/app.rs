//! The application, the top of the stack: the router over the shared state, the schema
//! check or migration before serving, serving with graceful shutdown (requests drained,
//! WebSockets closed with 1001) and bounded request heads ([`serve_http`]), and the
//! hourly housekeeping.

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::{
    extract::ConnectInfo,
    serve::{Listener as _, ListenerExt as _, TapIo},
};
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt as _;

pub use crate::state::AppState;
use crate::{db::Database, http, pipeline::Gateway, schema::build_schema, session};

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

/// Prepares the schema ([`prepare_schema`]), binds and serves until SIGINT or SIGTERM
/// (see [`serve_until`]).
pub async fn serve(state: Arc<AppState>) -> anyhow::Result<()> {
    prepare_schema(&state).await?;
    let bind = state.config.bind;
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    serve_until(state, listener, shutdown_signal()).await
}

/// Before serving: with `FLASHFUSION_MIGRATE_ON_START` (the default in development and
/// on SQLite), applies pending migrations as `DATABASE_MIGRATION_URL`'s role (else
/// `DATABASE_URL`'s); otherwise (production on Postgres) only checks that every
/// migration of this binary is applied and none unknown, and refuses to start if not,
/// since the login role may not migrate (README, "Production").
pub async fn prepare_schema(state: &AppState) -> anyhow::Result<()> {
    let config = &state.config;
    if config.migrates_on_start() {
        return match &config.database_migration_url {
            Some(url) => {
                let owner = Database::connect(url.expose(), 2).await?;
                let migrated = owner.migrate().await;
                let _ = owner.connection().clone().close().await;
                migrated
            }
            None => state.db.migrate().await,
        };
    }
    let status = state.db.schema_status().await?;
    if status.is_current() {
        return Ok(());
    }
    let mut problems = Vec::new();
    if !status.pending.is_empty() {
        problems.push(format!(
            "{} migration(s) not applied ({})",
            status.pending.len(),
            status.pending.join(", ")
        ));
    }
    if !status.unknown.is_empty() {
        problems.push(format!(
            "migration(s) applied that this binary does not know ({}): the database is newer than this binary",
            status.unknown.join(", ")
        ));
    }
    anyhow::bail!(
        "the database schema is not current: {}. Run `flashfusion migrate up` as the \
         schema's owner (DATABASE_MIGRATION_URL, or DATABASE_URL of that one command) \
         before `serve`, or set FLASHFUSION_MIGRATE_ON_START=true where the gateway's \
         own role may migrate",
        problems.join("; ")
    )
}

/// `listener` as the gateway accepts on it: every connection with Nagle's algorithm off.
/// With it on, a frame written while the previous one is not yet acknowledged waits for
/// that ACK, which the client delays (40 ms or more on Linux): a WebSocket query's
/// `complete` trailed its `next` by that much.
pub fn accepting(listener: TcpListener) -> TapIo<TcpListener, fn(&mut TcpStream)> {
    listener.tap_io(no_delay as fn(&mut TcpStream))
}

/// How long a connection may wait for a request's head once it has begun one, or sit
/// idle between requests: longer than the idle timeouts of the proxies in front
/// (60 s is common), so that they, not the gateway, close pooled connections (nginx's
/// own `keepalive_timeout` is 75 s).
pub const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(75);

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and waits
/// for the requests in flight (an upgraded WebSocket is handed off, not waited for
/// here). As `axum::serve` does, each request with the peer's [`ConnectInfo`], but with
/// every connection bounded in time, which `axum::serve` leaves to the client:
/// - its first request must begin within `head` of it opening;
/// - a request's head, once begun, and the wait for the next one must each take at
///   most `idle` (hyper's `header_read_timeout`, which needs the timer `axum::serve`
///   does not set);
/// - a connection told to close (by those bounds, `idle + head` after its last request
///   began, or by the shutdown) that has not closed `head` later, because its peer reads
///   nothing of what it is sent, is dropped.
///
/// Unbounded, a client could hold connections (each a task and a descriptor) for as
/// long as it liked without sending a request that any limit counts.
pub async fn serve_http(
    listener: TcpListener,
    app: axum::Router,
    (head, idle): (Duration, Duration),
    shutdown: impl Future<Output = ()>,
) {
    let mut listener = accepting(listener);
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(idle);
    // `true` once the server stops; every connection task holds a receiver, so the
    // sender's `closed` tells when the last one has ended.
    let (stopping, stop) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        // Bumped as each request begins.
        let (began, mut requests) = tokio::sync::watch::channel(());
        let service = app.clone().map_request(
            move |mut request: axum::extract::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                began.send_replace(());
                request
            },
        );
        let connection = builder
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
            .with_upgrades();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let deadline = tokio::time::sleep(head);
            let mut deadline = std::pin::pin!(deadline);
            let (mut closing, mut counting) = (false, true);
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(err) = result {
                            tracing::trace!(error = %err, "connection ended with an error");
                        }
                        break;
                    }
                    // Answers what is in flight, then closes.
                    _ = stop.wait_for(|stopping| *stopping), if !closing => {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                        deadline.as_mut().reset(tokio::time::Instant::now() + head);
                    }
                    () = &mut deadline => {
                        if closing {
                            // Told to close and still writing to a peer that reads
                            // nothing: dropped.
                            break;
                        }
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                        deadline.as_mut().reset(tokio::time::Instant::now() + head);
                    }
                    changed = requests.changed(), if !closing && counting => match changed {
                        Ok(()) => deadline
                            .as_mut()
                            .reset(tokio::time::Instant::now() + idle + head),
                        // The service is gone with the connection, which ends next.
                        Err(_) => counting = false,
                    },
                }
            }
            drop(stop);
        });
    }
    drop(listener);
    stopping.send_replace(true);
    drop(stop);
    stopping.closed().await;
}

fn no_delay(stream: &mut TcpStream) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(error = %err, "cannot set TCP_NODELAY on an accepted connection");
    }
}

/// Serves on `listener` until `shutdown` resolves, then stops accepting connections,
/// lets in-flight requests finish (a WebSocket's queries and mutations too), and closes
/// every WebSocket with 1001 (going away),
/// waiting at most [`DRAIN`] for all of that. Starts the event hub and the hourly
/// housekeeping, which stops when this returns.
pub async fn serve_until(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    state.hub.start();
    let address = listener.local_addr().context("no local address")?;
    tracing::info!(%address, "FlashFusion gateway listening; GraphiQL at http://{address}/");
    let housekeeping = tokio::spawn(housekeeping(state.clone()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let closing = state.clone();
    let server = serve_http(
        listener,
        router(state.clone()),
        (state.config.request_timeout, KEEP_ALIVE_IDLE),
        async move {
            shutdown.await;
            tracing::info!("shutting down: draining requests, closing WebSockets (1001)");
            // Upgraded connections are not the server's to drain: the sockets close
            // themselves, and are awaited below.
            closing.shutdown.begin();
            let _ = stop_tx.send(true);
        },
    );
    let drained = async {
        server.await;
        state.shutdown.sockets_closed().await;
        Ok::<_, anyhow::Error>(())
    };
    // In-flight requests get DRAIN to finish after the signal; then the process exits
    // anyway, so a stuck request cannot keep a replica from stopping.
    let deadline = async move {
        let mut stop_rx = stop_rx;
        let _ = stop_rx.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(DRAIN).await;
    };
    let outcome = tokio::select! {
        result = drained => result,
        () = deadline => {
            tracing::warn!(drain = ?DRAIN, "requests still running at the drain deadline; exiting");
            Ok(())
        }
    };
    housekeeping.abort();
    tracing::info!("shut down");
    outcome
}

/// How long in-flight requests may run after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(30);

/// Keeps in-process and database bookkeeping from growing forever: every hour, drop the
/// revocations of tokens that have expired anyway, the account throttles' and rate
/// limiters' idle keys and
/// the events older than `FLASHFUSION_EVENT_RETENTION`. A failure is logged and retried
/// next time.
async fn housekeeping(state: Arc<AppState>) {
    let mut every = tokio::time::interval(session::PURGE_EVERY);
    loop {
        every.tick().await;
        state.account_throttles.retain_recent();
        state.rate_limits.retain_recent();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// [`accepting`], which `serve_until` and the e2e harness serve through, hands out
    /// connections with Nagle's algorithm off.
    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("an address");
        let mut listener = accepting(listener);
        let _client = TcpStream::connect(address).await.expect("connect");
        let (accepted, _) = listener.accept().await;
        assert!(accepted.nodelay().expect("TCP_NODELAY readable"));
    }
}
