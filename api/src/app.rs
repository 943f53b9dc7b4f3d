//! The application: shared state built once, and serving it with graceful shutdown.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::{
    auth::TokenService, config::Config, db::Database, graphql::build_schema, http,
    pipeline::Gateway,
};

/// Everything requests share, built once at start-up.
pub struct AppState {
    /// The connection pool; request code reaches it only through `Database::begin`.
    pub db: Database,
    /// Mints and verifies biscuit tokens with the root key.
    pub tokens: TokenService,
    /// The configuration the process started with.
    pub config: Config,
}

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
        Ok(Arc::new(Self { db, tokens, config }))
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
    tracing::info!(address = %bind, "FlashFusion gateway listening; GraphiQL at http://{bind}/");
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("server error")?;
    tracing::info!("shut down");
    Ok(())
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
