//! Typed configuration and the command line, read once at start-up.
//!
//! Only this module reads the environment (through clap's `env` and `.env` via dotenvy in
//! `main`). Secrets are wrapped in [`Secret`] so they never reach a log line.

use std::{fmt, net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

/// `flashfusion`: the FlashFusion GraphQL gateway.
#[derive(Debug, Parser)]
#[command(name = "flashfusion", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands of the binary.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve GraphQL (the default), after migrating the database
    /// (`FLASHFUSION_MIGRATE_ON_START`) or checking that its schema is current.
    Serve,
    /// Apply, revert or list migrations, as `DATABASE_MIGRATION_URL` (else
    /// `DATABASE_URL`).
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Print the GraphQL schema (SDL) to standard output.
    Schema,
    /// Mint tokens from the command line.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Run a demo agent worker and deployer against a gateway, through its GraphQL API.
    Worker(WorkerArgs),
}

/// `flashfusion migrate ...`
#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Revert every applied migration, dropping every table and its data.
    Down {
        /// Confirms that every table and its data should go.
        #[arg(long)]
        yes: bool,
    },
    /// List migrations and whether each is applied.
    Status,
}

/// `flashfusion token ...`
#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Issue a token for an existing account.
    Issue {
        /// The account's email.
        #[arg(long)]
        email: String,
        /// The role the token carries; `admin` also promotes the account.
        #[arg(long, value_enum, default_value_t = TokenRole::User)]
        role: TokenRole,
        /// Lifetime, e.g. `1h`, `30m`; defaults to `FLASHFUSION_TOKEN_TTL`.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
    },
}

/// `flashfusion worker ...`: the demo worker's settings.
#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Simulate the work (progress steps, outputs, deployment logs); the only mode
    /// there is, so it must be asked for.
    #[arg(long)]
    pub simulate: bool,
    /// The gateway's GraphQL endpoint.
    #[arg(
        long,
        env = "FLASHFUSION_WORKER_ENDPOINT",
        default_value = "http://127.0.0.1:8000/graphql"
    )]
    pub endpoint: String,
    /// A service token (`flashfusion token issue --role service ...`).
    #[arg(long, env = "FLASHFUSION_WORKER_TOKEN", hide_env_values = true)]
    pub token: Option<Secret>,
    /// Pause between two progress steps, and between two polls of an empty queue.
    #[arg(long, env = "FLASHFUSION_WORKER_STEP_DELAY", default_value = "700ms", value_parser = humantime::parse_duration)]
    pub step_delay: Duration,
}

/// Roles the CLI can mint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TokenRole {
    User,
    Admin,
    Service,
}

/// Where the gateway runs, which decides its defaults for exposure to the internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    /// A developer's machine: GraphiQL, introspection and field suggestions for
    /// everyone, detailed errors.
    Development,
    /// Exposed to the internet: GraphiQL off unless enabled, introspection and
    /// suggestions for admins only, internal errors opaque, JSON logs.
    Production,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Settings shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// `development` or `production` (see [`Environment`]).
    #[arg(
        long = "env",
        env = "FLASHFUSION_ENV",
        value_enum,
        default_value_t = Environment::Development,
        global = true
    )]
    pub environment: Environment,
    /// Proxies whose `X-Forwarded-For` is believed, as addresses or CIDR blocks,
    /// comma-separated (e.g. `10.0.0.0/8,127.0.0.1`). The client's address is the last
    /// hop of that header not in this list; with none, it is the peer's address.
    #[arg(
        long,
        env = "FLASHFUSION_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_parser = parse_proxy,
        global = true
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Origins whose pages may call the API from a browser (CORS), comma-separated
    /// (e.g. `https://app.example.com`), or `*` for any. Unset: any in development, none
    /// but the gateway's own (GraphiQL) in production.
    #[arg(
        long,
        env = "FLASHFUSION_CORS_ORIGINS",
        value_delimiter = ',',
        value_parser = parse_origin,
        global = true
    )]
    pub cors_origins: Vec<String>,
    /// Database URL: `postgres://...` or `sqlite://file?mode=rwc`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://flashfusion.db?mode=rwc",
        hide_env_values = true,
        global = true
    )]
    pub database_url: Secret,
    /// Address to listen on.
    #[arg(
        long,
        env = "FLASHFUSION_BIND",
        default_value = "127.0.0.1:8000",
        global = true
    )]
    pub bind: SocketAddr,
    /// The biscuit root private key (hex Ed25519). When unset, one is generated once
    /// and kept in `--biscuit-key-file`.
    #[arg(
        long,
        env = "FLASHFUSION_BISCUIT_PRIVATE_KEY",
        hide_env_values = true,
        global = true
    )]
    pub biscuit_private_key: Option<Secret>,
    /// Where the development key is kept when no private key is configured.
    #[arg(
        long,
        env = "FLASHFUSION_BISCUIT_KEY_FILE",
        default_value = "flashfusion.biscuit-key",
        global = true
    )]
    pub biscuit_key_file: PathBuf,
    /// The key that seals provider API keys and integration credentials (hex, 32
    /// bytes). When unset, one is generated once and kept in `--secrets-key-file`.
    #[arg(
        long,
        env = "FLASHFUSION_SECRETS_KEY",
        hide_env_values = true,
        global = true
    )]
    pub secrets_key: Option<Secret>,
    /// Where the development sealing key is kept when no key is configured.
    #[arg(
        long,
        env = "FLASHFUSION_SECRETS_KEY_FILE",
        default_value = "flashfusion.secrets-key",
        global = true
    )]
    pub secrets_key_file: PathBuf,
    /// Default token lifetime, e.g. `24h`.
    #[arg(long, env = "FLASHFUSION_TOKEN_TTL", default_value = "24h", value_parser = humantime::parse_duration, global = true)]
    pub token_ttl: Duration,
    /// Log format; when unset, JSON in production and human-readable lines otherwise
    /// (see [`Config::effective_log_format`]).
    #[arg(long, env = "FLASHFUSION_LOG_FORMAT", value_enum, global = true)]
    pub log_format: Option<LogFormat>,
    /// Log filter, in `tracing_subscriber::EnvFilter` syntax.
    #[arg(
        long,
        env = "FLASHFUSION_LOG",
        default_value = "info,sqlx=warn,sea_orm=warn",
        global = true
    )]
    pub log: String,
    /// Largest accepted request body, in bytes.
    #[arg(
        long,
        env = "FLASHFUSION_MAX_BODY_BYTES",
        default_value_t = 1024 * 1024,
        global = true
    )]
    pub max_body_bytes: usize,
    /// Longest an HTTP request may take before it is answered 408 (its transaction is
    /// rolled back), e.g. `30s`.
    #[arg(long, env = "FLASHFUSION_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration, global = true)]
    pub request_timeout: Duration,
    /// How long a new WebSocket may take to send `connection_init` before it is closed.
    #[arg(long, env = "FLASHFUSION_WS_INIT_TIMEOUT", default_value = "3s", value_parser = humantime::parse_duration, global = true)]
    pub ws_init_timeout: Duration,
    /// Queries and mutations one WebSocket may have in flight at once; beyond, a new
    /// one is refused (`RATE_LIMITED`), not queued.
    #[arg(
        long,
        env = "FLASHFUSION_WS_MAX_OPERATIONS",
        default_value_t = 16,
        global = true
    )]
    pub ws_max_operations: usize,
    /// Subscriptions one WebSocket may have active at once; beyond, a new one is
    /// refused (`RATE_LIMITED`), not queued.
    #[arg(
        long,
        env = "FLASHFUSION_WS_MAX_SUBSCRIPTIONS",
        default_value_t = 100,
        global = true
    )]
    pub ws_max_subscriptions: usize,
    /// Failed sign-ins one client address may make on one email in a burst before
    /// `RATE_LIMITED` (successful ones do not count).
    #[arg(
        long,
        env = "FLASHFUSION_SIGNIN_BURST",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..),
        global = true
    )]
    pub signin_burst: u32,
    /// How often one more failed sign-in per address and email is allowed after a
    /// burst, e.g. `30s`.
    #[arg(long, env = "FLASHFUSION_SIGNIN_REFILL", default_value = "30s", value_parser = humantime::parse_duration, global = true)]
    pub signin_refill: Duration,
    /// How many events each replica buffers for its subscribers; one that falls this
    /// far behind is ended with an error (it can resume with `after`).
    #[arg(
        long,
        env = "FLASHFUSION_SUBSCRIPTION_BUFFER",
        default_value_t = 1024,
        value_parser = clap::value_parser!(u32).range(1..),
        global = true
    )]
    pub subscription_buffer: u32,
    /// How long events are kept for subscribers resuming with `after`, e.g. `7d`.
    #[arg(long, env = "FLASHFUSION_EVENT_RETENTION", default_value = "7d", value_parser = humantime::parse_duration, global = true)]
    pub event_retention: Duration,
    /// How many verified tokens each replica remembers, so a token presented again skips
    /// its signature checks (expiry, revocation and role are still checked every time);
    /// `0` turns the cache off.
    #[arg(
        long,
        env = "FLASHFUSION_TOKEN_CACHE",
        default_value_t = crate::auth::DEFAULT_TOKEN_CACHE,
        global = true
    )]
    pub token_cache: usize,
    /// How many parsed GraphQL documents each replica remembers by query text, so a
    /// repeated operation is not parsed again; `0` turns the cache off.
    #[arg(
        long,
        env = "FLASHFUSION_DOCUMENT_CACHE",
        default_value_t = 1_000,
        global = true
    )]
    pub document_cache: usize,
    /// Maximum database connections in the pool.
    #[arg(
        long,
        env = "FLASHFUSION_DB_MAX_CONNECTIONS",
        default_value_t = 20,
        global = true
    )]
    pub db_max_connections: u32,
    // --- metrics (issue 8) ---
    /// Whether `GET /metrics` serves Prometheus metrics. They name operations and show
    /// load: a production deployment should keep the path off its public proxy (scrape
    /// the replica directly) or turn it off.
    #[arg(
        long,
        env = "FLASHFUSION_METRICS",
        default_value_t = true,
        action = clap::ArgAction::Set,
        global = true
    )]
    pub metrics: bool,
    // --- faults (issue 8) ---
    /// The URL `migrate` (and `serve`, when it migrates on start) connects with: the
    /// role that owns the schema. Unset: `DATABASE_URL`.
    #[arg(
        long,
        env = "DATABASE_MIGRATION_URL",
        hide_env_values = true,
        global = true
    )]
    pub database_migration_url: Option<Secret>,
    /// Whether `serve` applies pending migrations before serving (`true`) or only
    /// checks that the schema is current and refuses to start otherwise (`false`).
    /// Unset: on in development and on SQLite, off in production on Postgres.
    #[arg(
        long,
        env = "FLASHFUSION_MIGRATE_ON_START",
        value_parser = clap::builder::BoolishValueParser::new(),
        global = true
    )]
    pub migrate_on_start: Option<bool>,
    // --- prod (issue 8) ---
    /// Serve GraphiQL at `/` (and its assets under `/graphiql/`); when unset, on in
    /// development and off in production (see [`Config::graphiql_enabled`]).
    #[arg(long, env = "FLASHFUSION_GRAPHIQL", global = true)]
    pub graphiql: Option<bool>,
    /// A JSON file `{"<sha256 hex of the text>": "<query text>", ...}`: the only
    /// documents clients other than admins may run (they send the hash in
    /// `extensions.persistedQuery.sha256Hash`, or the exact text). Unset: any document,
    /// with Apollo automatic persisted queries.
    #[arg(long, env = "FLASHFUSION_TRUSTED_DOCUMENTS", global = true)]
    pub trusted_documents: Option<PathBuf>,
    // --- accounts (issue 8) ---
    /// Failed sign-ins one client address may make, whatever the emails, in a burst
    /// before `RATE_LIMITED` (against one password tried on many accounts).
    #[arg(
        long,
        env = "FLASHFUSION_SIGNIN_ADDRESS_BURST",
        default_value_t = 30,
        value_parser = clap::value_parser!(u32).range(1..),
        global = true
    )]
    pub signin_address_burst: u32,
    /// How often one more failed sign-in per address is allowed after a burst.
    #[arg(long, env = "FLASHFUSION_SIGNIN_ADDRESS_REFILL", default_value = "10s", value_parser = humantime::parse_duration, global = true)]
    pub signin_address_refill: Duration,
    /// Failed sign-ins one email may take from all addresses together in a burst;
    /// beyond, it signs in only from addresses it signed in from before.
    #[arg(
        long,
        env = "FLASHFUSION_SIGNIN_ACCOUNT_BURST",
        default_value_t = 100,
        value_parser = clap::value_parser!(u32).range(1..),
        global = true
    )]
    pub signin_account_burst: u32,
    /// How often one more failed sign-in per email is allowed after a burst.
    #[arg(long, env = "FLASHFUSION_SIGNIN_ACCOUNT_REFILL", default_value = "1m", value_parser = humantime::parse_duration, global = true)]
    pub signin_account_refill: Duration,
    /// Sign-ups one client address may make in a burst before `RATE_LIMITED`, whether
    /// the email was free or not.
    #[arg(
        long,
        env = "FLASHFUSION_SIGNUP_BURST",
        default_value_t = 50,
        value_parser = clap::value_parser!(u32).range(1..),
        global = true
    )]
    pub signup_burst: u32,
    /// How often one more sign-up per address is allowed after a burst.
    #[arg(long, env = "FLASHFUSION_SIGNUP_REFILL", default_value = "1m", value_parser = humantime::parse_duration, global = true)]
    pub signup_refill: Duration,
    // --- limits (issue 8) ---
    /// Most GraphQL lexical tokens a query may hold, counted before it is parsed.
    #[arg(
        long,
        env = "FLASHFUSION_MAX_TOKENS",
        default_value_t = 1_000,
        global = true
    )]
    pub max_tokens: usize,
    /// Most aliases one operation may use (fragments counted where they are spread).
    #[arg(
        long,
        env = "FLASHFUSION_MAX_ALIASES",
        default_value_t = 15,
        global = true
    )]
    pub max_aliases: usize,
    /// Most directives one operation may use (fragments counted where they are spread).
    #[arg(
        long,
        env = "FLASHFUSION_MAX_DIRECTIVES",
        default_value_t = 50,
        global = true
    )]
    pub max_directives: usize,
    /// Deepest field nesting accepted; Relay's `edges { node }` takes two levels.
    #[arg(
        long,
        env = "FLASHFUSION_MAX_DEPTH",
        default_value_t = 12,
        global = true
    )]
    pub max_depth: usize,
    /// Most root fields one operation may select (aliases included).
    #[arg(
        long,
        env = "FLASHFUSION_MAX_ROOT_FIELDS",
        default_value_t = 10,
        global = true
    )]
    pub max_root_fields: usize,
    /// Largest cost accepted: each field 1, a connection's children once per item its
    /// `first`/`last` may return (20 when neither is given, at most 100).
    #[arg(
        long,
        env = "FLASHFUSION_MAX_COST",
        default_value_t = 5_000,
        global = true
    )]
    pub max_cost: usize,
    /// Operations one token (or, for anonymous callers, one client address) may run in
    /// a burst before `RATE_LIMITED`; `0` turns the rate limit off.
    #[arg(
        long,
        env = "FLASHFUSION_RATE_LIMIT_BURST",
        default_value_t = 300,
        global = true
    )]
    pub rate_limit_burst: u32,
    /// How often one more operation is allowed after a burst, e.g. `10ms`.
    #[arg(long, env = "FLASHFUSION_RATE_LIMIT_REFILL", default_value = "10ms", value_parser = humantime::parse_duration, global = true)]
    pub rate_limit_refill: Duration,
}

impl Config {
    /// Whether the gateway runs with production defaults.
    pub fn is_production(&self) -> bool {
        self.environment == Environment::Production
    }

    /// Refuses a zero where it would leave the gateway refusing nearly everything: a
    /// request timeout (every request 408), a WebSocket initialisation wait (every
    /// socket 4408), a body limit (every body 413). Zero per-socket limits are kept:
    /// they turn WebSocket operations or subscriptions off.
    pub fn ensure_usable(&self) -> anyhow::Result<()> {
        let zero: Vec<&str> = [
            (
                "FLASHFUSION_REQUEST_TIMEOUT",
                self.request_timeout.is_zero(),
            ),
            (
                "FLASHFUSION_WS_INIT_TIMEOUT",
                self.ws_init_timeout.is_zero(),
            ),
            ("FLASHFUSION_MAX_BODY_BYTES", self.max_body_bytes == 0),
        ]
        .into_iter()
        .filter_map(|(name, zero)| zero.then_some(name))
        .collect();
        anyhow::ensure!(
            zero.is_empty(),
            "{} must be more than zero",
            zero.join(", ")
        );
        Ok(())
    }

    /// Whether `serve` migrates before serving (see `migrate_on_start`).
    pub fn migrates_on_start(&self) -> bool {
        self.migrate_on_start.unwrap_or_else(|| {
            !self.is_production() || self.database_url.expose().starts_with("sqlite:")
        })
    }

    /// The URL migrations run with: `DATABASE_MIGRATION_URL`, else `DATABASE_URL`.
    pub fn migration_url(&self) -> &Secret {
        self.database_migration_url
            .as_ref()
            .unwrap_or(&self.database_url)
    }

    /// The log format: the one configured, or JSON in production and human-readable
    /// lines otherwise.
    pub fn effective_log_format(&self) -> LogFormat {
        self.log_format.unwrap_or(if self.is_production() {
            LogFormat::Json
        } else {
            LogFormat::Pretty
        })
    }

    /// Whether GraphiQL is served: as configured, or only in development.
    pub fn graphiql_enabled(&self) -> bool {
        self.graphiql.unwrap_or(!self.is_production())
    }

    /// A configuration with every default and nothing read from the environment, as
    /// tests and embedders start from.
    pub fn defaults() -> Self {
        let command = Cli::command().mut_args(|arg| arg.env(None));
        let matches = command.get_matches_from(["flashfusion"]);
        Cli::from_arg_matches(&matches)
            .expect("the built-in defaults parse")
            .config
    }
}

/// A trusted proxy: a CIDR block, or one address (a block of one).
fn parse_proxy(value: &str) -> Result<ipnet::IpNet, String> {
    let value = value.trim();
    value
        .parse::<ipnet::IpNet>()
        .or_else(|_| value.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("not an address or CIDR block: {value:?}"))
}

/// `*`, or an origin as browsers send it: `scheme://host[:port]`, nothing after.
fn parse_origin(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value == "*" {
        return Ok(value.to_owned());
    }
    let uri = value
        .parse::<axum::http::Uri>()
        .map_err(|_| format!("not an origin: {value:?}"))?;
    let scheme = uri.scheme_str().map(str::to_ascii_lowercase);
    let default_port = match scheme.as_deref() {
        Some("http") => 80,
        Some("https") => 443,
        _ => 0,
    };
    match (scheme, uri.host()) {
        (Some(scheme), Some(host))
            if default_port != 0 && uri.path_and_query().is_none_or(|p| p == "/") =>
        {
            // As a browser writes it: lower case, no default port.
            let host = host.to_ascii_lowercase();
            Ok(match uri.port_u16().filter(|port| *port != default_port) {
                Some(port) => format!("{scheme}://{host}:{port}"),
                None => format!("{scheme}://{host}"),
            })
        }
        _ => Err(format!(
            "not an origin (scheme://host[:port], e.g. https://app.example.com): {value:?}"
        )),
    }
}

/// A string that never prints: database URLs carry passwords, keys are keys.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The secret value; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_that_would_refuse_everything_is_refused() {
        assert!(Config::defaults().ensure_usable().is_ok());
        let mut config = Config::defaults();
        config.request_timeout = Duration::ZERO;
        config.max_body_bytes = 0;
        let refused = config.ensure_usable().expect_err("refused").to_string();
        assert!(
            refused.contains("FLASHFUSION_REQUEST_TIMEOUT, FLASHFUSION_MAX_BODY_BYTES"),
            "{refused}"
        );
    }

    #[test]
    fn origins_are_scheme_host_and_port_or_any() {
        for (given, read) in [
            ("*", "*"),
            (" https://app.example.com ", "https://app.example.com"),
            ("http://localhost:5173/", "http://localhost:5173"),
            ("HTTPS://App.Example.com:443", "https://app.example.com"),
            ("http://x.example:80", "http://x.example"),
        ] {
            assert_eq!(parse_origin(given).as_deref(), Ok(read), "{given}");
        }
        for bad in [
            "app.example.com",
            "https://app.example.com/path",
            "ftp://x.y",
            "",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }
}
