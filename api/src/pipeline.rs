//! The request pipeline every GraphQL operation goes through, over HTTP and WebSocket
//! alike: count it against the caller's rate limit, find the operation (its document
//! within the limits of [`crate::limits`]), refuse what the transport may not run,
//! validate it, and only then open the operation's transaction as the caller while
//! checking the token against revocations (one statement), execute, then commit on
//! success or roll back on error. Built once, so every resolver gets RLS and the
//! token's checks without doing anything, and no refused operation reaches the
//! database.
//!
//! Production mode (`FLASHFUSION_ENV=production`) is decided here, per request: only an
//! admin's session runs introspection and gets field suggestions; everyone else runs on
//! the restricted schema ([`crate::schema::build_schema_with`]). With a
//! trusted-documents allow-list, only admins may send a document that is not on it (in
//! either environment). In production, errors that did not come from [`ApiError`] and
//! are not the client's input reach clients only as `INTERNAL`.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use async_graphql::{
    Name, Request, Response, ServerError, Value, Variables,
    parser::types::{DocumentOperations, OperationType},
};
use futures_util::stream::{self, BoxStream, StreamExt};
use tracing::Instrument as _;

use sea_orm::DatabaseBackend;
use tokio::sync::{broadcast, oneshot};

use crate::{
    auth::{INVALID_TOKEN, Identity, Session},
    db::{Opening, PendingTx, RequestTx},
    documents::Prepared,
    domains,
    error::{ApiError, ApiResult},
    fanout::{Delivery, Key},
    kit::{RequestContext, feed::SubscriptionTx},
    limits, metrics,
    schema::{AppSchema, Validation, build_schema_with},
    state::AppState,
};

/// How an operation arrived; decides which operation types may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `GET /graphql`: queries only.
    HttpGet,
    /// `POST /graphql`: queries and mutations.
    HttpPost,
    /// WebSocket: anything, subscriptions included.
    WebSocket,
}

/// Why the pipeline refused an operation before executing it; the HTTP layer picks
/// the status code from this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A mutation over GET.
    MethodNotAllowed,
    /// The token is invalid, expired or revoked.
    Unauthenticated,
    /// Unparseable or otherwise unrunnable.
    BadRequest,
    /// The database could not be reached.
    Unavailable,
    /// Over the caller's rate limit; it may try again after this many seconds.
    RateLimited {
        /// Seconds until the next operation is allowed (`Retry-After`).
        retry_after: u64,
    },
}

impl Transport {
    /// Its name in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::HttpGet => "http_get",
            Self::HttpPost => "http_post",
            Self::WebSocket => "websocket",
        }
    }
}

impl Refusal {
    /// Its name in logs and metrics (the `outcome` of the operation).
    pub fn name(self) -> &'static str {
        match self {
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Unauthenticated => "unauthenticated",
            Self::BadRequest => "bad_request",
            Self::Unavailable => "unavailable",
            Self::RateLimited { .. } => "rate_limited",
        }
    }
}

/// An operation type as GraphQL spells it (`graphql.operation.type`).
fn type_name(operation_type: OperationType) -> &'static str {
    match operation_type {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}

/// How an operation ended, in logs and metrics: `ok`, `errors`, or the refusal's name.
fn outcome_of(response: &Response, refusal: Option<Refusal>) -> &'static str {
    match refusal {
        Some(refusal) => refusal.name(),
        None if response.is_ok() => "ok",
        None => "errors",
    }
}

/// An operation whose type is known, observed: its span, and what counting it in the
/// metrics takes once it ends (a subscription ends its set-up, and is counted, when its
/// feed starts).
struct Observed {
    span: tracing::Span,
    started: Instant,
    name: metrics::Label,
    operation_type: &'static str,
    transport: Transport,
}

impl Observed {
    /// The span of an operation of `operation_type` named `operation_name` (none when
    /// anonymous) that arrived at `started` over `transport`, for `caller`. Named as
    /// OpenTelemetry's GraphQL semantic conventions name it (`otel.name` is
    /// `{type} {name}`) with their attributes. Fields are recorded, not formatted here:
    /// a disabled span costs nothing and an enabled one formats each value once, into
    /// the subscriber's own buffer.
    fn new(
        metrics: &metrics::Metrics,
        started: Instant,
        operation_type: OperationType,
        operation_name: Option<&str>,
        caller: Option<&Session>,
        transport: Transport,
    ) -> Self {
        let operation_name = operation_name.unwrap_or("");
        let type_name = type_name(operation_type);
        let span = tracing::info_span!(
            "graphql",
            otel.name = %format_args!(
                "{type_name}{}{operation_name}",
                if operation_name.is_empty() { "" } else { " " }
            ),
            graphql.operation.type = type_name,
            graphql.operation.name = operation_name,
            user.id = tracing::field::Empty,
            transport = transport.name(),
        );
        if let Some(id) = caller.and_then(|s| s.identity().user_id()) {
            span.record("user.id", tracing::field::display(id));
        }
        Self {
            span,
            started,
            name: metrics.operation_name(Some(operation_name)),
            operation_type: type_name,
            transport,
        }
    }

    /// Logs that the operation ended with `outcome` (from within its span) and counts
    /// it, with `errors`, its response's.
    fn finish(self, metrics: &metrics::Metrics, outcome: &'static str, errors: &[ServerError]) {
        let elapsed = self.started.elapsed();
        let elapsed_ms = elapsed.as_millis() as u64;
        tracing::info!(elapsed_ms, outcome, "operation finished");
        metrics.record(metrics::Operation {
            name: self.name,
            operation_type: self.operation_type,
            transport: self.transport.name(),
            outcome,
            errors,
            elapsed,
        });
    }
}

/// What [`Gateway::check`] found out about an operation it let through.
struct Found {
    operation_type: OperationType,
    /// Its name; none for an anonymous operation.
    name: Option<Name>,
    /// What the document cache knows of its text.
    prepared: Prepared,
}

/// How a subscription's set-up ended.
enum SetUp {
    /// The field started its feed: the response that came with it (a replayed event),
    /// if any, then the rest.
    Started(Option<Response>, BoxStream<'static, Response>),
    /// It ended before any feed started: the response saying why, with codes (none when
    /// the stream ended silently, e.g. its only field skipped), and the refusal, if any.
    Ended(Option<Response>, Option<Refusal>),
}

/// The gateway: schemas plus shared state, executing operations through the pipeline.
#[derive(Clone)]
pub struct Gateway {
    schemas: Arc<Schemas>,
    state: Arc<AppState>,
}

/// The schemas an operation may run on, by who runs it and whether its document still
/// needs all of async-graphql's validation ([`crate::schema::Validation`]).
struct Schemas {
    /// Admins' ([`Validation::Strict`], [`Validation::Proven`]).
    admin: [AppSchema; 2],
    /// Everyone else's: in production without suggestions and introspection; otherwise
    /// the same as admins'.
    restricted: [AppSchema; 2],
}

impl Schemas {
    /// The schema an operation of an admin or not runs on, `proven` when its document
    /// passed every validation rule before ([`Prepared::is_proven`]).
    fn run_by(&self, admin: bool, proven: bool) -> &AppSchema {
        let pair = if admin { &self.admin } else { &self.restricted };
        &pair[usize::from(proven)]
    }
}

/// What identity an operation runs with, once its token has been verified.
pub type Caller = Option<Session>;

impl Gateway {
    /// A gateway over `schema` (which must carry `state` in its data).
    pub fn new(schema: AppSchema, state: Arc<AppState>) -> Self {
        let admin = [
            schema,
            build_schema_with(state.clone(), false, Validation::Proven),
        ];
        let restricted = if state.config.is_production() {
            [
                build_schema_with(state.clone(), true, Validation::Strict),
                build_schema_with(state.clone(), true, Validation::Proven),
            ]
        } else {
            admin.clone()
        };
        Self {
            schemas: Arc::new(Schemas { admin, restricted }),
            state,
        }
    }

    /// The shared state.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Runs one operation for `caller` at `client` arriving over `transport`.
    pub async fn run(
        &self,
        mut request: Request,
        caller: Caller,
        client: IpAddr,
        transport: Transport,
    ) -> (Response, Option<Refusal>) {
        let started = Instant::now();
        match self.check(&mut request, None, &caller, client, transport, started) {
            Ok(found) => {
                self.run_found(request, found, caller, client, transport, started)
                    .await
            }
            Err(refused) => *refused,
        }
    }

    /// What every operation passes before its type is acted on, counted when refused:
    /// the rate limit of `caller` at `client`, then [`Gateway::admit`] (given what
    /// preparing the document gave, when the transport prepared it), then finding the
    /// operation the request names; its type and name.
    fn check(
        &self,
        request: &mut Request,
        prepared: Option<ApiResult<Prepared>>,
        caller: &Caller,
        client: IpAddr,
        transport: Transport,
        started: Instant,
    ) -> Result<Found, Box<(Response, Option<Refusal>)>> {
        if let Some(refused) = self.rate_limit(request, caller.as_ref(), client, transport, started)
        {
            return Err(Box::new(refused));
        }
        self.admit(request, prepared, caller)
            .and_then(|prepared| {
                let (operation_type, name) = operation(request)?;
                Ok(Found {
                    operation_type,
                    name,
                    prepared,
                })
            })
            .map_err(|err| Box::new(self.refuse_unfound(request, transport, started, err)))
    }

    /// Runs a query or mutation that passed [`Gateway::check`], in its span, and counts
    /// it once it ends.
    async fn run_found(
        &self,
        request: Request,
        Found {
            operation_type,
            name: operation_name,
            prepared,
        }: Found,
        caller: Caller,
        client: IpAddr,
        transport: Transport,
        started: Instant,
    ) -> (Response, Option<Refusal>) {
        let observed = Observed::new(
            &self.state.metrics,
            started,
            operation_type,
            operation_name.as_deref(),
            caller.as_ref(),
            transport,
        );
        let span = observed.span.clone();
        async move {
            let checked = self.run_checked(
                request,
                &prepared,
                caller,
                client,
                transport,
                operation_type,
            );
            let result = if transport == Transport::WebSocket {
                // The HTTP timeout layer does not reach WebSocket operations; the same
                // bound applies here, and dropping the operation rolls its transaction
                // back.
                let limit = self.state.config.request_timeout;
                tokio::time::timeout(limit, checked)
                    .await
                    .unwrap_or_else(|_| (timed_out(limit), None))
            } else {
                checked.await
            };
            observed.finish(
                &self.state.metrics,
                outcome_of(&result.0, result.1),
                &result.0.errors,
            );
            result
        }
        .instrument(span)
        .await
    }

    async fn run_checked(
        &self,
        request: Request,
        prepared: &Prepared,
        caller: Caller,
        client: IpAddr,
        transport: Transport,
        operation_type: OperationType,
    ) -> (Response, Option<Refusal>) {
        match (transport, operation_type) {
            (Transport::HttpGet, OperationType::Mutation) => {
                return refuse(
                    ApiError::bad_input("mutations must be sent with POST"),
                    Refusal::MethodNotAllowed,
                );
            }
            (Transport::HttpGet | Transport::HttpPost, OperationType::Subscription) => {
                return refuse(
                    ApiError::bad_input("subscriptions run over WebSocket at /graphql"),
                    Refusal::BadRequest,
                );
            }
            _ => {}
        }
        // Opened by the operation's first use of it, which comes after validation.
        let pending = PendingTx::new(
            self.opening(caller.clone(), transport, operation_type),
            &self.state.db,
        );
        let authenticated = caller.is_some();
        let identity = caller.as_ref().map(Session::identity).unwrap_or_default();
        let schema = self
            .schemas
            .run_by(identity.is_admin(), prepared.is_proven());
        let handle = pending.handle();
        let request = domains::register_loaders(
            request.data(RequestContext::new(caller, handle.clone(), client)),
            handle,
            identity,
        );
        let mut response = schema.execute(request).await;
        let ran = ran(&response);
        if ran {
            prepared.prove();
        }
        if authenticated && (ran || identity.is_admin()) {
            // Opened already, or, for an operation that needed no database, now: a
            // session proves it may still act on every operation it runs. An admin's
            // refused one too, since validation answered it on the admin's schema (with
            // suggestions in production): a signed-out or demoted admin gets only the
            // refusal of its session.
            let _ = pending.open().await;
        }
        let success = response.is_ok();
        if operation_type != OperationType::Query && !success {
            // Rolled back as a whole (if it opened a transaction at all): no field may
            // claim a write that did not happen, or an outcome the operation did not have.
            response.data = Value::Null;
        }
        let tx = match pending.take() {
            Some(Ok(tx)) => tx,
            Some(Err(err)) => return refuse_opening(&err),
            // Refused by validation, or anonymous and needing no database: nothing
            // was opened.
            None => return (self.with_codes(response), None),
        };
        if operation_type == OperationType::Query {
            tx.finish_read_only(success, self.state.config.request_timeout);
            return (self.with_codes(response), None);
        }
        if let Err(err) = tx.finish(success).await {
            response = Response::from_errors(vec![err.into()]);
        } else if success && self.state.db.backend() != DatabaseBackend::Postgres {
            // SQLite has no NOTIFY: the hub learns of this process's writes from here.
            self.state.hub.wake();
        }
        (self.with_codes(response), None)
    }

    /// Gives `request` its document ([`crate::documents::DocumentCache::prepare`]) and
    /// refuses, before any database work, what `caller` may not run: a document off the
    /// trusted-documents allow-list, or introspection in production, unless the caller is
    /// an admin (whose session the transaction then checks as usual). Judged per request
    /// from what the cache says of the text, never remembered per caller.
    fn admit(
        &self,
        request: &mut Request,
        prepared: Option<ApiResult<Prepared>>,
        caller: &Caller,
    ) -> ApiResult<Prepared> {
        let prepared = match prepared {
            Some(prepared) => prepared?,
            None => self.state.documents.prepare(request)?,
        };
        if caller.as_ref().is_some_and(|s| s.identity().is_admin()) {
            return Ok(prepared);
        }
        if !prepared.trusted {
            return Err(ApiError::Forbidden(
                "only trusted documents run here: send extensions.persistedQuery.sha256Hash \
                 of an operation on the allow-list",
            ));
        }
        if prepared.introspection && self.state.config.is_production() {
            return Err(ApiError::Forbidden(
                "introspection (__schema, __type) is for administrators only in production",
            ));
        }
        Ok(prepared)
    }

    /// Gives every error a stable code ([`with_codes`]); in production, also makes the
    /// texts of errors that are not the client's input opaque.
    fn with_codes(&self, mut response: Response) -> Response {
        for error in &mut response.errors {
            limits::too_costly(error, self.state.config.max_cost);
        }
        with_codes(response, self.state.config.is_production())
    }

    /// Refuses, with `err`, an operation that arrived at `started` over `transport` and
    /// whose document `admit` refused or whose operation was not found, and counts it
    /// (its type `unknown`).
    fn refuse_unfound(
        &self,
        request: &Request,
        transport: Transport,
        started: Instant,
        err: ApiError,
    ) -> (Response, Option<Refusal>) {
        let refused = refuse(err, Refusal::BadRequest);
        self.state.metrics.record_unread(
            request.operation_name.as_deref(),
            transport.name(),
            Refusal::BadRequest.name(),
            &refused.0.errors,
            started.elapsed(),
        );
        refused
    }

    /// Counts an operation of `caller` at `client` against its rate limit; when it is
    /// over, the refusal, counted in the metrics as an operation of unknown type (its
    /// document is not read) that arrived at `started` over `transport`.
    fn rate_limit(
        &self,
        request: &Request,
        caller: Option<&Session>,
        client: IpAddr,
        transport: Transport,
        started: Instant,
    ) -> Option<(Response, Option<Refusal>)> {
        let wait = self.state.rate_limits.check(caller, client).err()?;
        let (err, retry_after) = limits::rate_limited(wait);
        let refusal = Refusal::RateLimited { retry_after };
        let response = Response::from_errors(vec![err.into()]);
        self.state.metrics.record_unread(
            request.operation_name.as_deref(),
            transport.name(),
            refusal.name(),
            &response.errors,
            started.elapsed(),
        );
        Some((response, Some(refusal)))
    }

    /// [`Gateway::open`] for later, when the operation has passed validation.
    fn opening(
        &self,
        caller: Caller,
        transport: Transport,
        operation_type: OperationType,
    ) -> Opening {
        let gateway = self.clone();
        Box::pin(async move { gateway.open(&caller, transport, operation_type).await })
    }

    /// Opens the operation's transaction as `caller` once the token may still act:
    /// not expired (a WebSocket's token was verified at `connection_init` and may have
    /// expired since) and not revoked, its account still there with its role; the
    /// database checks that in the statement that opens the transaction. How a failure
    /// is answered is [`refuse_opening`]'s to say.
    async fn open(
        &self,
        caller: &Caller,
        transport: Transport,
        operation_type: OperationType,
    ) -> ApiResult<RequestTx> {
        if transport == Transport::WebSocket
            && let Some(Err(err)) = caller.as_ref().map(Session::ensure_live)
        {
            return Err(err);
        }
        let read_only = operation_type != OperationType::Mutation;
        let db = &self.state.db;
        let tx = match caller {
            Some(session) => db.begin_session(session, read_only).await,
            None => db.begin(&Identity::ANONYMOUS, read_only).await.map(Some),
        };
        match tx {
            Ok(Some(tx)) => Ok(tx),
            Ok(None) => {
                // A session refused here stays refused: verify its token afresh next time.
                if let Some(session) = caller {
                    self.state.tokens.forget(session);
                }
                Err(INVALID_TOKEN)
            }
            Err(err) => Err(err),
        }
    }

    /// Sets a subscription up: async-graphql validates it, then the field runs its
    /// checks (the token, the project or row it names) in a set-up transaction opened
    /// as `caller` when it first needs one (read-only; a subscription refused by
    /// validation does no database work), until it starts its feed (`done` resolves)
    /// or fails. The transaction ends then, committed or rolled back; a session's
    /// subscription whose set-up needed no database opens one then, to prove the
    /// session may still act. All of it within the request timeout.
    async fn set_up(
        &self,
        request: Request,
        caller: Caller,
        client: IpAddr,
        subscription: &Arc<SubscriptionTx>,
        mut done: oneshot::Receiver<()>,
    ) -> SetUp {
        let pending = PendingTx::new(
            self.opening(
                caller.clone(),
                Transport::WebSocket,
                OperationType::Subscription,
            ),
            &self.state.db,
        );
        let authenticated = caller.is_some();
        let identity = caller.as_ref().map(Session::identity).unwrap_or_default();
        let schema = self.schemas.run_by(identity.is_admin(), false);
        let handle = pending.handle();
        let request = domains::register_loaders(
            request
                .data(RequestContext::new(caller, handle.clone(), client))
                .data(subscription.clone()),
            handle,
            identity,
        );
        let mut responses = schema.execute_stream(request);
        let limit = self.state.config.request_timeout;
        let setup = async {
            tokio::select! {
                first = responses.next() => Some(first),
                _ = &mut done => None,
            }
        };
        let first = match tokio::time::timeout(limit, setup).await {
            Ok(None) => Ok(None),
            // A first response may come with the set-up (a replayed event) or instead
            // of it (the field failed, or validation or opening refused it): the signal
            // tells which.
            Ok(Some(first)) if done.try_recv().is_ok() => Ok(first),
            Ok(Some(failed)) => Err(failed),
            Err(_) => Err(Some(timed_out(limit))),
        };
        if authenticated && first.is_ok() {
            // Opened by the set-up already, or, when it needed no database, now: a
            // session proves it may still act before its feed starts.
            let _ = pending.open().await;
        }
        let (failed, refusal) = match (first, pending.take()) {
            (_, Some(Err(err))) => {
                let (refused, refusal) = refuse_opening(&err);
                (Some(refused), refusal)
            }
            (Ok(first), opened) => {
                let finished = match opened {
                    Some(Ok(tx)) => tx.finish(true).await,
                    _ => Ok(()),
                };
                match finished {
                    Ok(()) => return SetUp::Started(first, responses),
                    Err(err) => (Some(Response::from_errors(vec![err.into()])), None),
                }
            }
            (Err(failed), opened) => {
                // Dropped first, so no resolver still holds the transaction.
                drop(responses);
                if let Some(Ok(tx)) = opened {
                    let _ = tx.finish(false).await;
                }
                (failed.map(|failed| self.with_codes(failed)), None)
            }
        };
        SetUp::Ended(failed, refusal)
    }

    /// Runs a subscription named `operation_name` that arrived at `started`: its set-up
    /// ([`Gateway::set_up`], observed and counted like any operation), then one response
    /// per event, each delivery's own transaction (if it opened one) ended as soon as its
    /// response is built. Nothing is held while it waits. Once set up, it joins the
    /// cohort of identical subscriptions ([`crate::fanout`]), whose responses are
    /// executed and serialized once for all of them.
    async fn subscribe(
        &self,
        request: Request,
        operation_name: Option<Name>,
        caller: Caller,
        client: IpAddr,
        started: Instant,
    ) -> BoxStream<'static, Arc<Delivery>> {
        let opaque = self.state.config.is_production();
        let observed = Observed::new(
            &self.state.metrics,
            started,
            OperationType::Subscription,
            operation_name.as_deref(),
            caller.as_ref(),
            Transport::WebSocket,
        );
        let span = observed.span.clone();
        let key = Key::of(&request, caller.as_ref());
        let identity = caller
            .as_ref()
            .map_or(Identity::ANONYMOUS, Session::identity);
        let (subscription, done) = SubscriptionTx::new();
        let set_up = async {
            let set_up = self
                .set_up(request, caller, client, &subscription, done)
                .await;
            let (outcome, errors) = match &set_up {
                SetUp::Ended(Some(response), refusal) => {
                    (outcome_of(response, *refusal), &response.errors[..])
                }
                SetUp::Started(..) | SetUp::Ended(None, _) => ("ok", &[][..]),
            };
            observed.finish(&self.state.metrics, outcome, errors);
            set_up
        }
        .instrument(span)
        .await;
        let (first, responses) = match set_up {
            SetUp::Started(first, responses) => (first, responses),
            SetUp::Ended(response, _) => {
                return stream::iter(response.map(|response| Delivery::of(&response))).boxed();
            }
        };
        // Only a feed that starts from now, with nothing delivered yet, may be shared;
        // by every token of its identity when its deliveries depend on nothing else.
        let key = key
            .filter(|_| first.is_none() && subscription.starts_now())
            .map(|key| {
                if subscription.by_identity() {
                    key.by_identity(identity)
                } else {
                    key
                }
            });
        let live = subscription.live();
        let deliveries = stream::iter(first)
            .chain(responses)
            .then(move |response| {
                let subscription = subscription.clone();
                async move {
                    let response = match subscription.end_delivery().await {
                        Ok(()) => with_codes(response, opaque),
                        Err(err) => Response::from_errors(vec![err.into()]),
                    };
                    Delivery::of(&response)
                }
            })
            .boxed();
        self.state.fanout.join(key, deliveries, live)
    }
}

fn timed_out(limit: std::time::Duration) -> Response {
    Response::from_errors(vec![
        ApiError::internal(
            "operation timed out",
            anyhow::anyhow!("over FLASHFUSION_REQUEST_TIMEOUT ({limit:?})"),
        )
        .into(),
    ])
}

/// Finds the type of the operation the request will run, from its parsed document
/// (which [`crate::documents::DocumentCache::prepare`] gives it; parsed here otherwise).
pub(crate) fn operation_type(request: &mut Request) -> Result<OperationType, ApiError> {
    operation(request).map(|(ty, _)| ty)
}

/// The type and the name (none for an anonymous one) of the operation the request
/// will run: its document names it even when the request has no `operationName`.
fn operation(request: &mut Request) -> Result<(OperationType, Option<Name>), ApiError> {
    // Out of the request while its parsed document, which borrows it, is read.
    let variables = std::mem::take(&mut request.variables);
    let found = selected(request, &variables);
    request.variables = variables;
    found
}

/// [`operation`], with the request's variables apart.
fn selected(
    request: &mut Request,
    variables: &Variables,
) -> Result<(OperationType, Option<Name>), ApiError> {
    let name = request.operation_name.clone();
    let document = request
        .parsed_query()
        .map_err(|e| ApiError::bad_input(e.message))?;
    let operation = match (&document.operations, name) {
        (DocumentOperations::Single(op), _) => Some((op, None)),
        (DocumentOperations::Multiple(ops), Some(name)) => ops
            .get_key_value(name.as_str())
            .map(|(name, op)| (op, Some(name.clone()))),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.iter().next().map(|(name, op)| (op, Some(name.clone())))
        }
        (DocumentOperations::Multiple(_), None) => {
            return Err(ApiError::bad_input(
                "operationName: required when the document has several operations",
            ));
        }
    };
    let (operation, name) = operation
        .ok_or_else(|| ApiError::bad_input("operationName: no such operation in the document"))?;
    // async-graphql's validation skips an argument whose variable is missing, and the
    // field then fails as it runs, with an error that has no code (or, in `@include`
    // or `@skip`, the variable counts as false). GraphQL's CoerceVariableValues
    // (spec, "Coercing Variable Values") makes it a request error.
    for variable in &operation.node.variable_definitions {
        let variable = &variable.node;
        let given = variables.get(&variable.name.node);
        if !variable.var_type.node.nullable
            && variable.default_value.is_none()
            && given.is_none_or(|value| *value == Value::Null)
        {
            return Err(ApiError::bad_input(format!(
                "variables: ${} ({}) is required",
                variable.name.node, variable.var_type.node
            )));
        }
    }
    Ok((operation.node.ty, name))
}

/// Whether async-graphql ran `response`'s operation, i.e. it passed validation: it has
/// data, or an error raised while resolving a field (which has a path); a refusal by
/// validation has neither.
fn ran(response: &Response) -> bool {
    !matches!(response.data, Value::Null) || response.errors.iter().any(|e| !e.path.is_empty())
}

/// How a failure of [`Gateway::open`] is answered: with its error alone, whatever the
/// fields that were waiting for the transaction made of it; an unusable session is
/// `UNAUTHENTICATED`, anything else failed to reach the database.
fn refuse_opening(err: &ApiError) -> (Response, Option<Refusal>) {
    let refusal = match err {
        ApiError::Unauthenticated(_) => Refusal::Unauthenticated,
        _ => Refusal::Unavailable,
    };
    refuse(err.clone(), refusal)
}

fn refuse(err: ApiError, refusal: Refusal) -> (Response, Option<Refusal>) {
    let error: ServerError = err.into();
    (Response::from_errors(vec![error]), Some(refusal))
}

/// Gives every error a stable `extensions.code`. Errors raised by resolvers already
/// carry one; those raised by async-graphql itself (syntax, validation, argument
/// coercion) are the client's input and get `BAD_USER_INPUT`.
///
/// With `opaque` (production), an error without a code raised while resolving a field
/// (it has a `path`; validation errors have none) that is not an argument's coercion
/// (async-graphql's `InputValueError` messages) came from neither [`ApiError`] nor the
/// client: an engine or library text ("Data `..` does not exist.", a resolver's stray
/// `Display` error). It is logged and reaches the client as `INTERNAL`'s "internal
/// error", like any internal error.
fn with_codes(mut response: Response, opaque: bool) -> Response {
    for error in &mut response.errors {
        let has_code = error
            .extensions
            .as_ref()
            .is_some_and(|ext| ext.get("code").is_some());
        if has_code {
            continue;
        }
        if opaque && !error.path.is_empty() && !is_input_coercion(&error.message) {
            let internal = ApiError::internal(
                "uncoded error while resolving a field",
                anyhow::anyhow!("{} (path {:?})", error.message, error.path),
            );
            error.message = internal.message();
            error
                .extensions
                .get_or_insert_with(Default::default)
                .set("code", internal.code());
            tracing::error!(error = ?internal, "internal error");
            continue;
        }
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", ApiError::engine_error_code());
    }
    response
}

/// Whether an engine error's message is an argument's coercion, as async-graphql's
/// `InputValueError` words it (`custom`, `expected_type`) and its argument checks do.
fn is_input_coercion(message: &str) -> bool {
    [
        "Failed to parse \"",
        "Expected input type \"",
        "Invalid value for argument",
    ]
    .iter()
    .any(|prefix| message.starts_with(prefix))
}

impl Gateway {
    /// Runs one WebSocket operation for `caller` at `client`: a query or mutation
    /// yields one response, a subscription one per event until it ends. `prepared` is
    /// what the socket got preparing the document (`None`: not prepared yet).
    pub fn execute_ws(
        &self,
        mut request: Request,
        prepared: Option<ApiResult<Prepared>>,
        caller: Caller,
        client: IpAddr,
    ) -> BoxStream<'static, Arc<Delivery>> {
        let started = Instant::now();
        let gateway = self.clone();
        let transport = Transport::WebSocket;
        let found = match self.check(&mut request, prepared, &caller, client, transport, started) {
            Ok(found) => found,
            Err(refused) => return stream::iter([Delivery::of(&refused.0)]).boxed(),
        };
        if let Found {
            operation_type: OperationType::Subscription,
            name,
            ..
        } = found
        {
            // Boxed: the set-up's future is freed once it has run; inline, its size
            // would stay in the subscription's stream for as long as it lives.
            return stream::once(Box::pin(async move {
                gateway
                    .subscribe(request, name, caller, client, started)
                    .await
            }))
            .flatten()
            .boxed();
        }
        stream::once(async move {
            let (response, _) = gateway
                .run_found(request, found, caller, client, transport, started)
                .await;
            Delivery::of(&response)
        })
        .boxed()
    }

    /// Resolves when `session` may no longer act: its token expired, one of its
    /// revocation ids was revoked, or its account was demoted or deleted (the hub's
    /// `session` events of its account say when to look). A socket holding it closes
    /// then. A token whose time checks the clock cannot read
    /// ([`Session::ends_by_the_clock`]) is asked every [`LIVENESS_POLL`] besides.
    ///
    /// `looking` is true while the session is being looked at (when the socket opens,
    /// and from a `session` event of its account until the database has answered), and
    /// the socket holds its deliveries meanwhile: the hub sends a `session` event
    /// before any event written after it, so a delivery made after a revocation waits
    /// for the revocation's verdict. A look the database fails is tried again after
    /// [`LOOK_RETRY`], doubling up to [`LOOK_RETRY_MAX`], deliveries still held.
    pub async fn session_ended(&self, session: &Session, looking: &AtomicBool) {
        let left = (session.ends_at() - chrono::Utc::now())
            .to_std()
            .unwrap_or_default();
        let expiry = tokio::time::sleep(left);
        tokio::pin!(expiry);
        let mut polls = (!session.ends_by_the_clock()).then(|| {
            let mut polls = tokio::time::interval_at(
                tokio::time::Instant::now() + LIVENESS_POLL,
                LIVENESS_POLL,
            );
            polls.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            polls
        });
        let (mut retry, mut failures) = (None, 0);
        let account = session.identity().user_id();
        let mut events = self.state.hub.sessions().await;
        // A revocation committed before the receiver existed sends no event to it.
        let mut look = true;
        loop {
            if look {
                looking.store(true, Ordering::Release);
                match Box::pin(self.session_is_current(session)).await {
                    // The socket polls its deliveries right after this returns.
                    Ok(true) => {
                        (retry, failures) = (None, 0);
                        looking.store(false, Ordering::Release);
                    }
                    Ok(false) => return,
                    Err(_) => {
                        self.state.metrics.session_look_failed();
                        let wait = LOOK_RETRY.saturating_mul(1 << failures.min(2));
                        failures += 1;
                        retry = Some(Box::pin(tokio::time::sleep(wait.min(LOOK_RETRY_MAX))));
                    }
                }
            }
            look = tokio::select! {
                () = &mut expiry => return,
                () = next_poll(&mut polls) => {
                    if session.has_expired() {
                        return;
                    }
                    false
                }
                () = next_retry(&mut retry) => true,
                event = events.recv() => match event {
                    Ok(event) => event.owner_id.is_none() || event.owner_id == account,
                    // Missed events may have concerned this session.
                    Err(broadcast::error::RecvError::Lagged(_)) => true,
                    Err(broadcast::error::RecvError::Closed) => {
                        (&mut expiry).await;
                        return;
                    }
                },
            };
        }
    }

    /// Whether `session` may still act, in one short read-only transaction (the
    /// statement that opens it checks); one found not current leaves the token cache.
    pub(crate) async fn session_is_current(&self, session: &Session) -> ApiResult<bool> {
        match self.state.db.begin_session(session, true).await? {
            Some(tx) => tx.finish(true).await.map(|()| true),
            None => {
                self.state.tokens.forget(session);
                Ok(false)
            }
        }
    }
}

/// How often a socket asks the authorizer whether its token has expired, when the
/// token's time checks do not say when (`Gateway::session_ended`): a socket outlives
/// such a token by about this long (longer only while its session is being looked
/// at). Each ask runs the token's checks once and once more for each access to the
/// account's resources it was granted (at most 14, `auth::tokens`), under the
/// authorizer's run limits.
pub const LIVENESS_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a socket waits before looking at its session again when the database
/// could not answer (`Gateway::session_ended`), doubled after each failure up to
/// [`LOOK_RETRY_MAX`] so that sockets do not crowd a struggling database; its
/// deliveries wait as long.
pub const LOOK_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// The longest wait between two looks at a socket's session that fail: short, since
/// deliveries wait as long once the database is back.
pub const LOOK_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(4);

/// When `retry` fires; never, when there is none.
async fn next_retry(retry: &mut Option<std::pin::Pin<Box<tokio::time::Sleep>>>) {
    match retry {
        Some(retry) => retry.as_mut().await,
        None => std::future::pending().await,
    }
}

/// The next tick of `polls`; never, when there are none.
async fn next_poll(polls: &mut Option<tokio::time::Interval>) {
    match polls {
        Some(polls) => {
            polls.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::{PathSegment, Pos};

    use super::*;

    fn error(message: &str, path: bool) -> ServerError {
        let mut error = ServerError::new(message, Some(Pos { line: 1, column: 3 }));
        if path {
            error.path = vec![PathSegment::Field("me".to_owned())];
        }
        error
    }

    fn coded(errors: Vec<ServerError>, opaque: bool) -> Vec<(String, String)> {
        with_codes(Response::from_errors(errors), opaque)
            .errors
            .into_iter()
            .map(|e| {
                let code = e.extensions.as_ref().and_then(|x| x.get("code")).cloned();
                (e.message, code.map(|c| c.to_string()).unwrap_or_default())
            })
            .collect()
    }

    #[test]
    fn engine_texts_are_opaque_in_production_but_input_errors_are_not() {
        let errors = || {
            vec![
                error("Data `flashfusion_api::Secret` does not exist.", true),
                error(r#"Failed to parse "UUID": invalid length"#, true),
                error(r#"Unknown field "agentz" on type "Query"."#, false),
                ApiError::NotFound("project").into(),
            ]
        };
        let production = coded(errors(), true);
        assert_eq!(
            production[0],
            ("internal error".into(), "\"INTERNAL\"".into())
        );
        assert_eq!(production[1].1, "\"BAD_USER_INPUT\"");
        assert!(production[1].0.starts_with("Failed to parse"));
        assert_eq!(production[2].1, "\"BAD_USER_INPUT\"");
        assert_eq!(
            production[3],
            ("project not found".into(), "\"NOT_FOUND\"".into())
        );
        let development = coded(errors(), false);
        assert!(
            development[0].0.contains("does not exist"),
            "{development:?}"
        );
        assert_eq!(development[0].1, "\"BAD_USER_INPUT\"");
    }
}
