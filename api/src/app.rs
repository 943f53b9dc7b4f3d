//! The application: shared state built once, and serving it with graceful shutdown.

use std::{num::NonZeroU32, sync::Arc};

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::{
    accounts, auth::TokenService, config::Config, db::Database, graphql::build_schema, http,
    pipeline::Gateway,
};

/// Everything requests share, built once at start-up.
pub struct AppState {
    /// The connection pool; request code reaches it only through `Database::begin`.
    pub db: Database,
    /// Mints and verifies biscuit tokens with the root key.
    pub tokens: TokenService,
    /// Sign-in attempts per email, against password guessing.
    pub sign_in_limiter: SignInLimiter,
    /// The configuration the process started with.
    pub config: Config,
}

/// A rate limiter keyed by normalised email.
pub type SignInLimiter = governor::DefaultKeyedRateLimiter<String>;

impl AppState {
    /// Connects to the database and loads the root key.
    pub async fn init(config: Config) -> anyhow::Result<Arc<Self>> {
        let tokens = TokenService::load(
            config.biscuit_private_key.as_ref().map(|k| k.expose()),
            &config.biscuit_key_file,
            config.token_ttl,
        )?;
        Self::with_tokens(config, tokens).await
    }

    /// Like [`AppState::init`] with a given token service (tests, embedding).
    pub async fn with_tokens(config: Config, tokens: TokenService) -> anyhow::Result<Arc<Self>> {
        let db = Database::connect(config.database_url.expose(), config.db_max_connections).await?;
        let burst = NonZeroU32::new(config.signin_burst)
            .context("FLASHFUSION_SIGNIN_BURST must be positive")?;
        let quota = governor::Quota::with_period(config.signin_refill)
            .context("FLASHFUSION_SIGNIN_REFILL must be positive")?
            .allow_burst(burst);
        Ok(Arc::new(Self {
            db,
            tokens,
            sign_in_limiter: governor::RateLimiter::keyed(quota),
            config,
        }))
    }
}

/// The gateway's router over `state`.
pub fn router(state: Arc<AppState>) -> axum::Router {
    let schema = build_schema(Some(state.clone()));
    http::router(Gateway::new(schema, state))
}

/// Migrates, binds and serves until SIGINT or SIGTERM, then drains in-flight requests.
pub async fn serve(state: Arc<AppState>) -> anyhow::Result<()> {
    state.db.migrate().await?;
    let bind = state.config.bind;
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let address = listener.local_addr().context("no local address")?;
    tracing::info!(%address, "FlashFusion gateway listening; GraphiQL at http://{address}/");
    tokio::spawn(housekeeping(state.clone()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, router(state)).with_graceful_shutdown(async move {
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
/// revocations of tokens that have expired anyway and the sign-in limiter's idle keys.
/// A failure is logged and retried next time.
async fn housekeeping(state: Arc<AppState>) {
    let mut every = tokio::time::interval(accounts::PURGE_EVERY);
    loop {
        every.tick().await;
        state.sign_in_limiter.retain_recent();
        match accounts::purge_expired_revocations(&state.db).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged expired revocations"),
            Err(err) => tracing::warn!(error = ?err, "purging expired revocations failed"),
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
