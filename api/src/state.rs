//! [`AppState`]: the services every request shares, built once at start-up. It knows
//! nothing of the schema or the router (those sit above it), so any layer may hold it.

use std::{num::NonZeroU32, sync::Arc};

use anyhow::Context as _;

use crate::{
    auth::TokenService,
    config::Config,
    db::Database,
    documents::DocumentCache,
    fanout::Cohorts,
    limits::{DocumentLimits, RateLimits},
    realtime::Hub,
    secrets::Sealer,
};

/// Everything requests share, built once at start-up.
pub struct AppState {
    /// The connection pool; request code reaches it only through `Database::begin`.
    pub db: Database,
    /// Mints and verifies biscuit tokens with the root key, remembering verified ones.
    pub tokens: TokenService,
    /// Seals provider API keys and integration credentials; the only holder of the
    /// sealing key.
    pub sealer: Sealer,
    /// This replica's event hub, which feeds every subscription.
    pub hub: Hub,
    /// This replica's subscriptions, executed once per cohort of identical ones.
    pub fanout: Arc<Cohorts>,
    /// Parsed GraphQL documents by query text, so a repeated operation is not parsed
    /// again.
    pub documents: Arc<DocumentCache>,
    /// Sign-in attempts per email, against password guessing.
    pub sign_in_limiter: SignInLimiter,
    /// Operations per token and per client address (`crate::limits`).
    pub rate_limits: RateLimits,
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

    /// Like [`AppState::init`] with a given token service (tests, embedding), whose
    /// verification cache `config` sizes. The sealing key comes from `config` (a
    /// development key file when none is set).
    pub async fn with_tokens(config: Config, tokens: TokenService) -> anyhow::Result<Arc<Self>> {
        let tokens = tokens.with_cache_capacity(config.token_cache);
        let sealer = Sealer::load(
            config.secrets_key.as_ref().map(|k| k.expose()),
            &config.secrets_key_file,
        )?;
        let db = Database::connect(config.database_url.expose(), config.db_max_connections)
            .await?
            .with_statement_timeout(config.request_timeout);
        let burst = NonZeroU32::new(config.signin_burst)
            .context("FLASHFUSION_SIGNIN_BURST must be positive")?;
        let quota = governor::Quota::with_period(config.signin_refill)
            .context("FLASHFUSION_SIGNIN_REFILL must be positive")?
            .allow_burst(burst);
        Ok(Arc::new(Self {
            hub: Hub::new(db.clone(), config.subscription_buffer as usize),
            fanout: Cohorts::new(config.subscription_buffer as usize),
            db,
            tokens,
            documents: Arc::new(DocumentCache::new(
                config.document_cache,
                DocumentLimits::of(&config),
            )),
            sealer,
            sign_in_limiter: governor::RateLimiter::keyed(quota),
            rate_limits: RateLimits::new(&config)?,
            config,
        }))
    }
}
