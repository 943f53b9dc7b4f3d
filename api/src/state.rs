//! [`AppState`]: the services every request shares, built once at start-up. It knows
//! nothing of the schema or the router (those sit above it), so any layer may hold it.

use std::{sync::Arc, time::Duration};

use crate::{
    auth::{AccountThrottles, Quota, TokenService},
    config::Config,
    db::Database,
    documents::DocumentCache,
    fanout::Cohorts,
    limits::RateLimits,
    metrics::Metrics,
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
    /// again, and the persisted documents requests name by hash.
    pub documents: Arc<DocumentCache>,
    /// The Prometheus metrics of this replica, served at `GET /metrics`.
    pub metrics: Metrics,
    /// Failed sign-ins per address, per address and email and per email, and sign-ups
    /// per address.
    pub account_throttles: AccountThrottles,
    /// Operations per token and per client address (`crate::limits`).
    pub rate_limits: RateLimits,
    /// The configuration the process started with.
    pub config: Config,
    /// Tells this replica's WebSockets that it is shutting down, and tells the server
    /// when they have all closed.
    pub shutdown: Shutdown,
}

/// The shutdown of a replica as its WebSockets see it: each open socket holds a
/// [`Shutdown::watch`] receiver and, once [`Shutdown::begin`] is called, ends its
/// subscriptions, answers its queries and mutations in flight and closes with 1001
/// (going away); [`Shutdown::sockets_closed`] resolves when every
/// receiver is gone, i.e. every socket has closed.
pub struct Shutdown(tokio::sync::watch::Sender<bool>);

impl Shutdown {
    /// What a socket holds while it is open; it changes to `true` at shutdown.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<bool> {
        self.0.subscribe()
    }

    /// Asks every open socket to close.
    pub fn begin(&self) {
        self.0.send_replace(true);
    }

    /// Resolves once no socket is open.
    pub async fn sockets_closed(&self) {
        self.0.closed().await;
    }
}

impl AppState {
    /// Connects to the database and loads the root key.
    pub async fn init(config: Config) -> anyhow::Result<Arc<Self>> {
        // Development keys live in files next to the process: each replica would make
        // its own, and a new container would lose them (every token and sealed secret
        // with them). Production names its keys.
        if config.is_production() {
            let missing: Vec<&str> = [
                (
                    "FLASHFUSION_BISCUIT_PRIVATE_KEY",
                    config.biscuit_private_key.is_none(),
                ),
                ("FLASHFUSION_SECRETS_KEY", config.secrets_key.is_none()),
            ]
            .into_iter()
            .filter_map(|(name, missing)| missing.then_some(name))
            .collect();
            anyhow::ensure!(
                missing.is_empty(),
                "production needs {} set: development key files would differ between \
                 replicas and be lost with the machine",
                missing.join(" and ")
            );
        }
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
        config.ensure_usable()?;
        let tokens = tokens.with_cache_capacity(config.token_cache);
        let sealer = Sealer::load(
            config.secrets_key.as_ref().map(|k| k.expose()),
            &config.secrets_key_file,
        )?;
        let db = Database::connect(config.database_url.expose(), config.db_max_connections)
            .await?
            .with_statement_timeout(config.request_timeout);
        let account_throttles = AccountThrottles::new(
            quota(
                "FLASHFUSION_SIGNIN_ADDRESS",
                config.signin_address_burst,
                config.signin_address_refill,
            )?,
            quota(
                "FLASHFUSION_SIGNIN",
                config.signin_burst,
                config.signin_refill,
            )?,
            quota(
                "FLASHFUSION_SIGNIN_ACCOUNT",
                config.signin_account_burst,
                config.signin_account_refill,
            )?,
            quota(
                "FLASHFUSION_SIGNUP",
                config.signup_burst,
                config.signup_refill,
            )?,
        );
        Ok(Arc::new(Self {
            hub: Hub::new(db.clone(), config.subscription_buffer as usize),
            fanout: Cohorts::new(config.subscription_buffer as usize),
            db,
            tokens,
            documents: Arc::new(DocumentCache::from_config(&config)?),
            metrics: Metrics::new(),
            sealer,
            account_throttles,
            rate_limits: RateLimits::new(&config)?,
            config,
            shutdown: Shutdown(tokio::sync::watch::Sender::new(false)),
        }))
    }
}

/// A throttle's quota from `<name>_BURST` and `<name>_REFILL`, both positive and small
/// enough that a bucket's span stays within a year.
fn quota(name: &str, burst: u32, refill: Duration) -> anyhow::Result<Quota> {
    let span = refill.checked_mul(burst).unwrap_or(Duration::MAX);
    if burst == 0 || refill.is_zero() || span > Duration::from_secs(365 * 24 * 3600) {
        anyhow::bail!(
            "{name}_BURST and {name}_REFILL must be positive, and their product at most a year"
        );
    }
    Ok(Quota { burst, refill })
}
