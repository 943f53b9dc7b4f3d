//! The Prometheus metrics this replica exposes at `GET /metrics` (ARCHITECTURE.md lists
//! each one): what the request path counts as it goes (operations by name, type,
//! transport and outcome; errors by `extensions.code`; latency; HTTP requests refused
//! before they reach the pipeline; open sockets; subscription deliveries), and what is
//! read only when scraped (the database pool, live
//! subscriptions and running shared executions, events broadcast, listener reconnects,
//! SQL statements).
//!
//! It owns the registry and keeps every label bounded: operation names are chosen by
//! clients, so only the first [`MAX_NAMES`] sane names (at most 64 characters of
//! `[A-Za-z0-9_]`) get a series of their own and every other name counts as `other`;
//! error codes are bounded the same way. The request path pays one label lookup (a
//! read lock and a hash) per counter, and allocates only the first time a name is seen.
//! It never reads the database: the scrape-time values are the pool's and the hub's own
//! counts.

use std::{
    collections::HashMap,
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use async_graphql::ServerError;
use prometheus_client::{
    encoding::{EncodeLabelSet, text},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::Histogram,
    },
    registry::{Registry, Unit},
};
use sea_orm::DatabaseBackend;

use crate::{db::Database, fanout::Cohorts, realtime::Hub};

/// Every metric's name starts with this (`flashfusion_...`).
const PREFIX: &str = "flashfusion";
/// How many distinct operation names (and, separately, error codes) get a series of
/// their own; later ones count as `other`.
pub const MAX_NAMES: usize = 200;
/// The longest operation name (or error code) that gets a series of its own.
const MAX_NAME_LEN: usize = 64;
/// Latency buckets, in seconds: from half a millisecond (a cached query on a warm
/// pool) to the ten seconds beyond which a request is a failure anyway.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// The `code` label of an error without an `extensions.code`, or of a refused request
/// whose answer is not a GraphQL response.
pub const NO_CODE: &str = "none";
/// The media type of [`Metrics::render`]'s output: prometheus-client writes the
/// OpenMetrics text format, which Prometheus scrapes natively.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// An operation's series: who named it what, how it arrived and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OperationLabels {
    operation: Label,
    operation_type: &'static str,
    transport: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LatencyLabels {
    operation_type: &'static str,
    transport: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    code: Label,
}

/// An HTTP refusal's series: a fixed set, since `http` names every reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefusalLabels {
    status: u16,
    code: &'static str,
    reason: &'static str,
}

/// A bounded label value: shared, so a lookup clones a pointer, not the text.
pub type Label = Arc<String>;

/// One finished operation, as the pipeline reports it.
pub struct Operation<'a> {
    /// From [`Metrics::operation_name`].
    pub name: Label,
    /// `query`, `mutation`, `subscription`, or `unknown` when the document was refused
    /// before its operation was found.
    pub operation_type: &'static str,
    /// `http_get`, `http_post` or `websocket`.
    pub transport: &'static str,
    /// `ok`, `errors`, or the refusal's name.
    pub outcome: &'static str,
    /// The response's errors, counted by `extensions.code`.
    pub errors: &'a [ServerError],
    pub elapsed: Duration,
}

/// The replica's metrics: the registry of what the request path updates.
pub struct Metrics {
    registry: Registry,
    operations: Family<OperationLabels, Counter>,
    latency: Family<LatencyLabels, Histogram>,
    errors: Family<ErrorLabels, Counter>,
    refusals: Family<RefusalLabels, Counter>,
    sockets: Gauge,
    deliveries: Counter,
    failed_looks: Counter,
    names: Bounded,
    codes: Bounded,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let operations = Family::<OperationLabels, Counter>::default();
        registry.register(
            "graphql_operations",
            "GraphQL operations finished, by operation name, type, transport and outcome",
            operations.clone(),
        );
        let latency = Family::<LatencyLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(BUCKETS)) as fn() -> Histogram,
        );
        registry.register_with_unit(
            "graphql_operation_duration",
            "Time from receiving a GraphQL operation to its response (a subscription's: to the end of its set-up)",
            Unit::Seconds,
            latency.clone(),
        );
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "graphql_errors",
            "GraphQL errors in responses to operations (a subscription's set-up included), by extensions.code",
            errors.clone(),
        );
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "http_refusals",
            "HTTP requests answered before any operation reached the pipeline, by status, \
             extensions.code (none when the answer is not a GraphQL response) and reason",
            refusals.clone(),
        );
        let sockets = Gauge::default();
        registry.register(
            "websocket_connections",
            "WebSocket connections open on this replica",
            sockets.clone(),
        );
        let deliveries = Counter::default();
        registry.register(
            "subscription_deliveries",
            "Subscription responses handed to sockets (one per subscriber and event)",
            deliveries.clone(),
        );
        let failed_looks = Counter::default();
        registry.register(
            "session_looks_failed",
            "Looks at a socket's session (when it opens, after a session event of its account \
             such as a revocation or a role change) the database could not answer; each is \
             tried again, the socket's deliveries held",
            failed_looks.clone(),
        );
        Self {
            registry,
            operations,
            latency,
            errors,
            refusals,
            sockets,
            deliveries,
            failed_looks,
            names: Bounded::new("anonymous"),
            codes: Bounded::new(NO_CODE),
        }
    }

    /// The label of an operation named `name` (`anonymous` without one, `other` when
    /// it is not sane or too many names have been seen).
    pub fn operation_name(&self, name: Option<&str>) -> Label {
        self.names.label(name)
    }

    /// Counts one finished query, mutation or subscription set-up (or a refused operation).
    pub fn record(&self, operation: Operation<'_>) {
        let Operation {
            name,
            operation_type,
            transport,
            outcome,
            errors,
            elapsed,
        } = operation;
        self.operations
            .get_or_create(&OperationLabels {
                operation: name,
                operation_type,
                transport,
                outcome,
            })
            .inc();
        self.latency
            .get_or_create(&LatencyLabels {
                operation_type,
                transport,
            })
            .observe(elapsed.as_secs_f64());
        for error in errors {
            let code = error
                .extensions
                .as_ref()
                .and_then(|extensions| extensions.get("code"))
                .and_then(|code| match code {
                    async_graphql::Value::String(code) => Some(code.as_str()),
                    _ => None,
                });
            let code = self.codes.label(code);
            self.errors.get_or_create(&ErrorLabels { code }).inc();
        }
    }

    /// Counts an operation refused before its document was read (its type `unknown`),
    /// named by the request's `operationName` if it has one.
    pub fn record_unread(
        &self,
        operation_name: Option<&str>,
        transport: &'static str,
        outcome: &'static str,
        errors: &[ServerError],
        elapsed: Duration,
    ) {
        self.record(Operation {
            name: self.operation_name(operation_name),
            operation_type: "unknown",
            transport,
            outcome,
            errors,
            elapsed,
        });
    }

    /// Counts one HTTP request answered with `status` before it reached the pipeline:
    /// `code` is its error's `extensions.code` ([`NO_CODE`] when the answer is not a
    /// GraphQL response), `reason` names the check that refused it.
    pub fn refused(&self, status: u16, code: &'static str, reason: &'static str) {
        self.refusals
            .get_or_create(&RefusalLabels {
                status,
                code,
                reason,
            })
            .inc();
    }

    /// Counts an open WebSocket until the returned guard is dropped.
    pub fn socket_opened(&self) -> OpenSocket {
        self.sockets.inc();
        OpenSocket(self.sockets.clone())
    }

    /// Counts a look at a socket's session that the database could not answer.
    pub fn session_look_failed(&self) {
        self.failed_looks.inc();
    }

    /// The counter of subscription responses handed to sockets.
    pub fn deliveries(&self) -> Counter {
        self.deliveries.clone()
    }

    /// The exposition of every metric, the scrape-time ones read now from `db`, `hub`
    /// and `fanout`.
    pub fn render(
        &self,
        db: &Database,
        hub: &Hub,
        fanout: &Cohorts,
    ) -> Result<String, std::fmt::Error> {
        let mut sampled = Registry::with_prefix(PREFIX);
        if let Some(pool) = PoolUsage::of(db) {
            sampled.register(
                "db_pool_connections",
                "Open connections in the database pool",
                ConstGauge::new(i64::from(pool.open)),
            );
            sampled.register(
                "db_pool_connections_idle",
                "Open connections in the database pool waiting for a request",
                ConstGauge::new(i64::from(pool.idle)),
            );
            sampled.register(
                "db_pool_connections_in_use",
                "Open connections in the database pool held by a request or task",
                ConstGauge::new(i64::from(pool.open.saturating_sub(pool.idle))),
            );
            sampled.register(
                "db_pool_connections_max",
                "The most connections the database pool opens (FLASHFUSION_DB_MAX_CONNECTIONS)",
                ConstGauge::new(i64::from(pool.max)),
            );
        }
        sampled.register(
            "db_statements",
            "SQL statements run through the pool (BEGIN and COMMIT excluded)",
            ConstCounter::new(db.statements_executed()),
        );
        sampled.register(
            "subscriptions_active",
            "Subscriptions on this replica whose feed receives events",
            ConstGauge::new(count(fanout.live())),
        );
        sampled.register(
            "subscription_executions",
            "Running subscription executions, each shared by the identical subscriptions \
             of one cohort",
            ConstGauge::new(count(fanout.running())),
        );
        sampled.register(
            "events_broadcast",
            "Events the hub read from the events table and broadcast to this replica's \
             subscriptions",
            ConstCounter::new(hub.events_broadcast()),
        );
        sampled.register(
            "listener_reconnects",
            "Times the Postgres LISTEN connection was lost and re-established",
            ConstCounter::new(hub.reconnects()),
        );
        let mut out = String::with_capacity(8 * 1024);
        text::encode_registry(&mut out, &self.registry)
            .and_then(|()| text::encode_registry(&mut out, &sampled))
            .and_then(|()| text::encode_eof(&mut out))?;
        Ok(out)
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Decrements the open-sockets gauge when the socket's task ends, however it ends.
pub struct OpenSocket(Gauge);

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The pool's connections right now.
struct PoolUsage {
    open: u32,
    idle: u32,
    max: u32,
}

impl PoolUsage {
    fn of(db: &Database) -> Option<Self> {
        let connection = db.connection();
        let (open, idle, max) = match db.backend() {
            DatabaseBackend::Postgres => {
                let pool = connection.get_postgres_connection_pool();
                (
                    pool.size(),
                    pool.num_idle(),
                    pool.options().get_max_connections(),
                )
            }
            DatabaseBackend::Sqlite => {
                let pool = connection.get_sqlite_connection_pool();
                (
                    pool.size(),
                    pool.num_idle(),
                    pool.options().get_max_connections(),
                )
            }
            _ => return None,
        };
        Some(Self {
            open,
            idle: u32::try_from(idle).unwrap_or(u32::MAX),
            max,
        })
    }
}

/// A label whose values a client may choose, kept to [`MAX_NAMES`] distinct values.
struct Bounded {
    known: RwLock<HashMap<Box<str>, Label>>,
    absent: Label,
    other: Label,
}

impl Bounded {
    /// `absent` is the label of no value at all.
    fn new(absent: &str) -> Self {
        Self {
            known: RwLock::default(),
            absent: Arc::new(absent.to_owned()),
            other: Arc::new("other".to_owned()),
        }
    }

    fn label(&self, value: Option<&str>) -> Label {
        let value = match value {
            None | Some("") => return self.absent.clone(),
            Some(value) if !is_sane(value) => return self.other.clone(),
            Some(value) => value,
        };
        if let Some(label) = self
            .known
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(value)
        {
            return label.clone();
        }
        let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(label) = known.get(value) {
            return label.clone();
        }
        if known.len() >= MAX_NAMES {
            return self.other.clone();
        }
        let label = Arc::new(value.to_owned());
        known.insert(value.into(), label.clone());
        label
    }
}

/// At most [`MAX_NAME_LEN`] characters of `[A-Za-z0-9_]`.
fn is_sane(value: &str) -> bool {
    value.len() <= MAX_NAME_LEN
        && value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_names_are_bounded() {
        let metrics = Metrics::new();
        assert_eq!(*metrics.operation_name(None), "anonymous");
        assert_eq!(*metrics.operation_name(Some("Projects_2")), "Projects_2");
        assert_eq!(*metrics.operation_name(Some("not-sane")), "other");
        assert_eq!(*metrics.operation_name(Some(&"a".repeat(65))), "other");
        for n in 1..MAX_NAMES {
            assert_eq!(
                *metrics.operation_name(Some(&format!("op{n}"))),
                format!("op{n}")
            );
        }
        assert_eq!(*metrics.operation_name(Some("oneTooMany")), "other");
        // Names seen before the cap keep their series.
        assert_eq!(*metrics.operation_name(Some("Projects_2")), "Projects_2");
    }
}
