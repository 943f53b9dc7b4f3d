//! The WebSocket transport: the `graphql-transport-ws` protocol exactly as the graphql-ws
//! project's PROTOCOL.md specifies it, and the legacy `graphql-ws` protocol of
//! subscriptions-transport-ws, as one small state machine per socket over axum's
//! `WebSocket`.
//!
//! It owns a socket's life: `connection_init` (the only place a socket's caller comes
//! from), the initialisation timeout, the protocol's close codes, the per-socket limits on
//! operations and subscriptions, the end of the socket when its session ends, and its
//! drain when the replica shuts down (`Served::drain`). It
//! executes nothing itself: every operation goes through [`Gateway::execute_ws`]. It never
//! queues an operation beyond its limits, and each socket is served by its own task,
//! which is that socket's only writer, so a slow client holds up nobody else.
//!
//! [`Connection`] is the pure part (what a message means, what to answer, which ids are
//! active); [`serve`] does the I/O around it.

use std::{
    collections::HashMap,
    future::Future,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::Poll,
    time::Duration,
};

use async_graphql::{Request, ServerError, parser::types::OperationType};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{
    FutureExt as _, StreamExt as _,
    future::{self, BoxFuture},
    stream::{self, BoxStream},
};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use tokio_stream::{StreamMap, wrappers::ReceiverStream};

use crate::{
    auth::{INVALID_TOKEN, Session},
    config::Config,
    documents::{DocumentCache, Prepared},
    error::{ApiError, ApiResult},
    fanout::Delivery,
    pipeline::{Caller, Gateway, operation_type},
};

/// The subprotocols a client may ask for, preferred first.
pub const SUBPROTOCOLS: [&str; 2] = ["graphql-transport-ws", "graphql-ws"];

/// How often the legacy protocol's keep-alive (`ka`) is sent once acknowledged.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Close codes: the protocol's (PROTOCOL.md), and the graphql-ws project's
/// `CloseCode.InternalServerError` for a server that cannot check a token at all.
mod code {
    pub const NORMAL: u16 = 1000;
    /// RFC 6455's "going away": the server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    pub const BAD_REQUEST: u16 = 4400;
    pub const UNAUTHORIZED: u16 = 4401;
    pub const FORBIDDEN: u16 = 4403;
    pub const INIT_TIMEOUT: u16 = 4408;
    pub const SUBSCRIBER_EXISTS: u16 = 4409;
    pub const TOO_MANY_INITS: u16 = 4429;
    pub const INTERNAL: u16 = 4500;
}

/// Which protocol a socket speaks, chosen from `Sec-WebSocket-Protocol` at the upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `graphql-transport-ws`: the graphql-ws project's protocol.
    TransportWs,
    /// `graphql-ws`: the legacy subscriptions-transport-ws protocol.
    Legacy,
}

impl Protocol {
    /// The protocol a subprotocol name stands for.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "graphql-transport-ws" => Some(Self::TransportWs),
            "graphql-ws" => Some(Self::Legacy),
            _ => None,
        }
    }
}

/// How much one socket may run at once. Beyond a limit the new operation is refused
/// with an `error` message (`RATE_LIMITED`), never queued.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Queries and mutations in flight.
    pub operations: usize,
    /// Active subscriptions.
    pub subscriptions: usize,
}

impl Limits {
    /// The limits configured by `FLASHFUSION_WS_MAX_OPERATIONS` and
    /// `FLASHFUSION_WS_MAX_SUBSCRIPTIONS`.
    pub fn from_config(config: &Config) -> Self {
        Self {
            operations: config.ws_max_operations,
            subscriptions: config.ws_max_subscriptions,
        }
    }
}

/// What the I/O loop must do after a client message.
enum Action {
    /// Nothing (a `pong`).
    Nothing,
    /// Send this message.
    Send(Value),
    /// Close the socket with this code and reason.
    Close(u16, String),
    /// Verify this `connection_init` payload, then acknowledge or close.
    Init(Value),
    /// Execute `request` as operation `id` (boxed: a `Request` is large), its document
    /// prepared already when the socket has the gateway's cache (`prepared`).
    Start {
        id: String,
        request: Box<Request>,
        prepared: Option<ApiResult<Prepared>>,
        subscription: bool,
    },
    /// Drop operation `id`'s stream: the client does not want it any more.
    Stop(String),
}

/// An operation the socket has accepted and not yet finished.
#[derive(Debug, Clone, Copy)]
struct Operation {
    subscription: bool,
    /// Whether a response of it has been sent: only the first may turn into `error`.
    answered: bool,
}

/// The protocol state of one socket, without I/O. The loop in [`serve`] handles each
/// [`Action`] before reading the next message, so `connection_init` has been verified
/// (and acknowledged, or the socket closed) by the time a later message arrives here.
struct Connection {
    protocol: Protocol,
    limits: Limits,
    initialised: bool,
    operations: HashMap<String, Operation>,
    /// Where an operation's document comes from (parsed here otherwise).
    documents: Option<Arc<DocumentCache>>,
    /// The replica is shutting down: no operation starts any more.
    draining: bool,
}

impl Connection {
    fn new(protocol: Protocol, limits: Limits) -> Self {
        Self {
            protocol,
            limits,
            initialised: false,
            operations: HashMap::new(),
            documents: None,
            draining: false,
        }
    }

    /// Starts no operation from now on and forgets the active subscriptions, whose ids
    /// it returns: their streams are the caller's to drop. Queries and mutations in
    /// flight stay, to be answered.
    fn drain(&mut self) -> Vec<String> {
        self.draining = true;
        self.operations
            .extract_if(|_, op| op.subscription)
            .map(|(id, _)| id)
            .collect()
    }

    /// Takes each operation's parsed document from `documents`.
    fn with_documents(mut self, documents: Arc<DocumentCache>) -> Self {
        self.documents = Some(documents);
        self
    }

    /// Reads one text message from the client.
    fn on_text(&mut self, text: &str) -> Action {
        match self.interpret(text) {
            Ok(action) => action,
            Err(reason) => Action::Close(code::BAD_REQUEST, format!("Invalid message: {reason}")),
        }
    }

    /// What a text message asks for; `Err` with a reason when it is malformed.
    fn interpret(&mut self, text: &str) -> Result<Action, String> {
        let message: Value = serde_json::from_str(text).map_err(|_| "not JSON".to_owned())?;
        let Value::Object(message) = message else {
            return Err("not a JSON object".to_owned());
        };
        let kind = message
            .get("type")
            .and_then(Value::as_str)
            .ok_or("missing the string 'type' property")?;
        match (self.protocol, kind) {
            (_, "connection_init") => {
                let payload = optional_object(&message, "payload")?;
                if self.initialised {
                    return Ok(Action::Close(
                        code::TOO_MANY_INITS,
                        "Too many initialisation requests".to_owned(),
                    ));
                }
                self.initialised = true;
                Ok(Action::Init(payload.unwrap_or(Value::Null)))
            }
            (Protocol::TransportWs, "ping") => {
                let payload = optional_object(&message, "payload")?;
                Ok(Action::Send(server_message("pong", None, payload)))
            }
            (Protocol::TransportWs, "pong") => {
                optional_object(&message, "payload")?;
                Ok(Action::Nothing)
            }
            (Protocol::TransportWs, "subscribe") | (Protocol::Legacy, "start") => {
                let id = required_id(&message, kind)?;
                let request = parse_request(message.get("payload"), kind)?;
                if !self.initialised {
                    return Ok(Action::Close(code::UNAUTHORIZED, "Unauthorized".to_owned()));
                }
                Ok(self.start(id, request))
            }
            (Protocol::TransportWs, "complete") | (Protocol::Legacy, "stop") => {
                let id = required_id(&message, kind)?;
                self.operations.remove(&id);
                Ok(Action::Stop(id))
            }
            (Protocol::Legacy, "connection_terminate") => {
                Ok(Action::Close(code::NORMAL, "Normal Closure".to_owned()))
            }
            (_, other) => Err(format!("unexpected message type '{other}'")),
        }
    }

    /// Accepts operation `id` unless the id is taken (4409) or a limit is reached.
    /// While draining, an operation is neither started nor answered: the socket's
    /// close (1001) follows, and a graphql-ws client sends it again on its next socket.
    fn start(&mut self, id: String, mut request: Request) -> Action {
        if self.draining {
            return Action::Nothing;
        }
        if self.operations.contains_key(&id) {
            return Action::Close(
                code::SUBSCRIBER_EXISTS,
                format!("Subscriber for {id} already exists"),
            );
        }
        // A document that does not parse or is over a limit runs as an operation,
        // which the pipeline refuses with the reason; what preparing it gave goes along,
        // so the pipeline does not prepare it again.
        let prepared = self
            .documents
            .as_ref()
            .map(|documents| documents.prepare(&mut request));
        let subscription = prepared.as_ref().is_none_or(Result::is_ok)
            && matches!(
                operation_type(&mut request),
                Ok(OperationType::Subscription)
            );
        let active = self
            .operations
            .values()
            .filter(|op| op.subscription == subscription)
            .count();
        let (limit, what, setting) = if subscription {
            (
                self.limits.subscriptions,
                "active subscriptions",
                "FLASHFUSION_WS_MAX_SUBSCRIPTIONS",
            )
        } else {
            (
                self.limits.operations,
                "queries and mutations in flight",
                "FLASHFUSION_WS_MAX_OPERATIONS",
            )
        };
        if active >= limit {
            let error = ServerError::from(ApiError::RateLimited(format!(
                "this socket already has {active} {what}, the most it may have \
                 ({setting}); wait for one to finish or complete one first"
            )));
            return Action::Send(self.error_message(&id, &[error]));
        }
        self.operations.insert(
            id.clone(),
            Operation {
                subscription,
                answered: false,
            },
        );
        Action::Start {
            id,
            request: Box::new(request),
            prepared,
            subscription,
        }
    }

    /// A response of operation `id`: the message to send (none when the client has
    /// completed it meanwhile), and whether it ends the operation. The first response
    /// of an operation with errors and no data is a refusal before execution
    /// (validation, auth) and becomes graphql-transport-ws's `error` message, after
    /// which no `complete` follows. The payload is the delivery's own serialized text,
    /// shared with every other socket it goes to.
    fn on_response(&mut self, id: &str, delivery: &Delivery) -> Option<(String, bool)> {
        let operation = self.operations.get_mut(id)?;
        let first = !operation.answered;
        operation.answered = true;
        let (kind, payload, finished) =
            if self.protocol == Protocol::TransportWs && first && delivery.refused {
                self.operations.remove(id);
                ("error", &delivery.errors, true)
            } else {
                let kind = match self.protocol {
                    Protocol::TransportWs => "next",
                    Protocol::Legacy => "data",
                };
                (kind, &delivery.response, false)
            };
        let id = Value::from(id);
        Some((
            format!(r#"{{"type":"{kind}","id":{id},"payload":{payload}}}"#),
            finished,
        ))
    }

    /// Operation `id`'s stream has ended: `complete`, unless it already ended otherwise.
    fn on_end(&mut self, id: &str) -> Option<Value> {
        self.operations.remove(id)?;
        Some(server_message("complete", Some(id), None))
    }

    fn error_message(&self, id: &str, errors: &[ServerError]) -> Value {
        let payload = serde_json::to_value(errors).unwrap_or_else(|_| internal_payload());
        server_message("error", Some(id), Some(payload))
    }
}

/// One server message: `{ type, id?, payload? }`.
fn server_message(kind: &str, id: Option<&str>, payload: Option<Value>) -> Value {
    let mut message = Map::new();
    message.insert("type".to_owned(), Value::from(kind));
    if let Some(id) = id {
        message.insert("id".to_owned(), Value::from(id));
    }
    if let Some(payload) = payload {
        message.insert("payload".to_owned(), payload);
    }
    Value::Object(message)
}

/// An errors array saying only "internal error", for a response that would not
/// serialise (which `Response` always does; this keeps the path free of panics).
fn internal_payload() -> Value {
    let error = ServerError::from(ApiError::bug("a WebSocket message did not serialise"));
    Value::Array(vec![
        serde_json::to_value(&error).unwrap_or_else(|_| Value::from("internal error")),
    ])
}

/// The `payload` property when it is an object, absent or null (PROTOCOL.md allows
/// nothing else for `connection_init`, `ping` and `pong`).
fn optional_object(message: &Map<String, Value>, key: &str) -> Result<Option<Value>, String> {
    match message.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value @ Value::Object(_)) => Ok(Some(value.clone())),
        Some(_) => Err(format!("'{key}' must be an object")),
    }
}

fn required_id(message: &Map<String, Value>, kind: &str) -> Result<String, String> {
    match message.get("id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => Ok(id.to_owned()),
        _ => Err(format!("'{kind}' needs a non-empty string 'id'")),
    }
}

/// The GraphQL request of a `subscribe` (or legacy `start`) payload: `query` a string,
/// `operationName` a string or null, `variables` and `extensions` objects or null.
fn parse_request(payload: Option<&Value>, kind: &str) -> Result<Request, String> {
    let Some(Value::Object(payload)) = payload else {
        return Err(format!("'{kind}' needs an object 'payload'"));
    };
    if !payload.get("query").is_some_and(Value::is_string) {
        return Err(format!("'{kind}' payload needs a string 'query'"));
    }
    let mut request = Map::new();
    for (key, value) in payload {
        let fits = match (key.as_str(), value) {
            (_, Value::Null) => continue,
            ("query" | "operationName", value) => value.is_string(),
            ("variables" | "extensions", value) => value.is_object(),
            _ => continue,
        };
        if !fits {
            return Err(format!("'{kind}' payload has an invalid '{key}'"));
        }
        request.insert(key.clone(), value.clone());
    }
    serde_json::from_value(Value::Object(request))
        .map_err(|e| format!("'{kind}' payload is not a GraphQL request ({e})"))
}

/// Verifies `Authorization: Bearer <token>` (or a bare token).
pub(crate) fn verify_bearer(gateway: &Gateway, value: &str) -> Result<Session, ApiError> {
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .unwrap_or(value);
    gateway.state().tokens.verify(token)
}

/// The caller a `connection_init` payload names (`Authorization`, `authorization` or
/// `authToken`; anonymous when none): the token verified, then checked against
/// revocations in a short read-only transaction.
async fn authenticate(gateway: &Gateway, payload: &Value) -> Result<Caller, ApiError> {
    let token = ["Authorization", "authorization", "authToken"]
        .iter()
        .find_map(|key| payload.get(key).and_then(Value::as_str));
    let Some(token) = token else {
        return Ok(None);
    };
    let session = verify_bearer(gateway, token)?;
    if !gateway.session_is_current(&session).await? {
        return Err(INVALID_TOKEN);
    }
    Ok(Some(session))
}

/// Why the loop stopped writing: the socket is gone or was closed.
struct Stop;

/// Runs a query or mutation in a task of its own, handing its response over: while
/// this socket's task waits on a slow client, the operation still finishes and ends
/// its transaction. Dropping the returned stream (the client's `complete`, or the
/// socket's end) aborts the task, which drops the operation and rolls its transaction
/// back.
fn run_apart(
    mut responses: BoxStream<'static, Arc<Delivery>>,
) -> BoxStream<'static, Option<Arc<Delivery>>> {
    let (sender, receiver) = mpsc::channel(1);
    let task = AbortOnDrop(tokio::spawn(async move {
        while let Some(response) = responses.next().await {
            if sender.send(response).await.is_err() {
                return;
            }
        }
    }));
    ReceiverStream::new(receiver)
        .map(Some)
        .chain(stream::once(future::ready(None)))
        .map(move |output| {
            let _running = &task;
            output
        })
        .boxed()
}

/// `responses`, each poll inside `span` (a stream has no `Instrument` of its own), so
/// what the operation logs while polled carries the span; a subscription's later
/// deliveries execute in their cohort's task, outside it.
fn in_span(
    mut responses: BoxStream<'static, Arc<Delivery>>,
    span: tracing::Span,
) -> BoxStream<'static, Arc<Delivery>> {
    stream::poll_fn(move |cx| {
        let _entered = span.enter();
        responses.poll_next_unpin(cx)
    })
    .boxed()
}

/// Resolves when the replica shuts down (never, if its state is gone first).
async fn shutting_down(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stopping| *stopping).await.is_err() {
        future::pending::<()>().await;
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What one step of the loop leads to: go on, or stop (the socket is closed or gone).
type Step = Result<(), Stop>;

/// Serves one upgraded socket speaking `protocol` until either side closes it.
/// `client` is the address its operations are attributed to.
pub async fn serve(gateway: Gateway, socket: WebSocket, protocol: Protocol, client: IpAddr) {
    let _open = gateway.state().metrics.socket_opened();
    let config = &gateway.state().config;
    let init_timeout = config.ws_init_timeout;
    let mut served = Served {
        connection: Connection::new(protocol, Limits::from_config(config))
            .with_documents(gateway.state().documents.clone()),
        // A client that stops reading must not hold this task for ever.
        write_timeout: config.request_timeout,
        caller: None,
        client,
        acknowledged: false,
        session_ended: future::pending().boxed(),
        looking: Arc::new(AtomicBool::new(false)),
        operations: StreamMap::new(),
        socket,
        gateway,
    };
    // Turns `true` when the replica shuts down; held while the socket is open, so the
    // server knows when every socket has closed.
    let shutdown = served.gateway.state().shutdown.watch();
    served.run(init_timeout, shutdown).await;
}

/// The next item of `operations`, but none while `looking` holds. The session's
/// watcher clears it, and the socket's loop polls this right after the watcher; while
/// it holds, the watcher awaits the database or its retry, which wake the socket.
fn unless<'a>(
    looking: &'a AtomicBool,
    operations: &'a mut StreamMap<String, BoxStream<'static, Option<Arc<Delivery>>>>,
) -> impl Future<Output = Option<(String, Option<Arc<Delivery>>)>> + 'a {
    future::poll_fn(move |cx| {
        if looking.load(Ordering::Acquire) {
            Poll::Pending
        } else {
            operations.poll_next_unpin(cx)
        }
    })
}

/// The I/O side of one socket: the [`Connection`] plus what it needs to act.
struct Served {
    gateway: Gateway,
    socket: WebSocket,
    connection: Connection,
    write_timeout: Duration,
    caller: Caller,
    /// The client's address ([`crate::client::address`]).
    client: IpAddr,
    acknowledged: bool,
    /// Resolves when the acknowledged caller's session may no longer act.
    session_ended: BoxFuture<'static, ()>,
    /// True while `session_ended` looks at the session: deliveries wait meanwhile
    /// (`Gateway::session_ended`).
    looking: Arc<AtomicBool>,
    /// Each operation's responses, then `None` when its stream ends. Removing an entry
    /// drops the stream, which cancels the operation (and rolls back its transaction).
    operations: StreamMap<String, BoxStream<'static, Option<Arc<Delivery>>>>,
}

impl Served {
    async fn run(&mut self, init_timeout: Duration, mut shutdown: watch::Receiver<bool>) {
        let init_deadline = tokio::time::sleep(init_timeout);
        tokio::pin!(init_deadline);
        // Waited on once for the socket's life, not once per message: a new wait joins
        // the shutdown signal's list of waiters, which every socket shares.
        let stopping = shutting_down(&mut shutdown);
        tokio::pin!(stopping);
        let legacy = self.connection.protocol == Protocol::Legacy;
        let mut keep_alive =
            tokio::time::interval_at(tokio::time::Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
        loop {
            // In this order: the session is looked at before any delivery is taken, so a
            // delivery never overtakes the revocation the hub sent before its event.
            let step = tokio::select! {
                biased;
                () = &mut stopping, if !self.connection.draining => {
                    self.drain();
                    Ok(())
                }
                () = &mut self.session_ended => self.close(code::FORBIDDEN, "Forbidden").await,
                () = &mut init_deadline, if !self.connection.initialised => {
                    self.close(code::INIT_TIMEOUT, "Connection initialisation timeout").await
                }
                // Before the two streams, which a busy socket may never see empty.
                _ = keep_alive.tick(), if legacy && self.acknowledged => {
                    self.send(&server_message("ka", None, None)).await
                }
                message = self.socket.recv() => self.on_incoming(message).await,
                Some((id, output)) = unless(&self.looking, &mut self.operations) => {
                    self.on_output(id, output).await
                }
            };
            if step.is_err() {
                return;
            }
            if self.connection.draining && self.operations.is_empty() {
                let _ = self.close(code::GOING_AWAY, "Server shutting down").await;
                return;
            }
        }
    }

    /// The replica is shutting down: the subscriptions end without a `complete` (the
    /// client resubscribes on its next socket, resuming with `after`), queries and
    /// mutations in flight are answered, and then the socket closes with 1001, going
    /// away. The server waits for that at most its drain deadline (`app::serve_until`).
    fn drain(&mut self) {
        for id in self.connection.drain() {
            self.operations.remove(&id);
        }
    }

    async fn on_incoming(&mut self, message: Option<Result<Message, axum::Error>>) -> Step {
        match message {
            Some(Ok(Message::Text(text))) => match self.connection.on_text(text.as_str()) {
                Action::Nothing => Ok(()),
                Action::Send(message) => self.send(&message).await,
                Action::Close(code, reason) => self.close(code, &reason).await,
                Action::Stop(id) => {
                    self.operations.remove(&id);
                    Ok(())
                }
                Action::Start {
                    id,
                    request,
                    prepared,
                    subscription,
                } => {
                    // Its logs carry its id, inside the socket's (the upgrade
                    // request's) span.
                    let span = tracing::info_span!("graphql.ws.operation", operation.id = %id);
                    let responses = in_span(
                        self.gateway.execute_ws(
                            *request,
                            prepared,
                            self.caller.clone(),
                            self.client,
                        ),
                        span,
                    );
                    let responses = if subscription {
                        let deliveries = self.gateway.state().metrics.deliveries();
                        // Holds no transaction between events (see `kit::feed`), and its
                        // execution runs in its cohort's task (`fanout`): polled here.
                        responses
                            .inspect(move |_| {
                                deliveries.inc();
                            })
                            .map(Some)
                            .chain(stream::once(future::ready(None)))
                            .boxed()
                    } else {
                        run_apart(responses)
                    };
                    self.operations.insert(id, responses);
                    Ok(())
                }
                // Boxed: the check's database futures would otherwise size every
                // socket's task for the rest of its life.
                Action::Init(payload) => Box::pin(self.init(&payload)).await,
            },
            Some(Ok(Message::Binary(_))) => {
                let reason = "Invalid message: binary messages are not supported";
                self.close(code::BAD_REQUEST, reason).await
            }
            // Pings are answered by the WebSocket layer itself.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(()),
            Some(Ok(Message::Close(_)) | Err(_)) | None => Err(Stop),
        }
    }

    async fn on_output(&mut self, id: String, output: Option<Arc<Delivery>>) -> Step {
        let message = match output {
            Some(delivery) => match self.connection.on_response(&id, &delivery) {
                Some((message, finished)) => {
                    if finished {
                        self.operations.remove(&id);
                    }
                    Some(message)
                }
                None => None,
            },
            None => {
                self.operations.remove(&id);
                self.connection.on_end(&id).map(|end| end.to_string())
            }
        };
        match message {
            Some(message) => self.send_text(message).await,
            None => Ok(()),
        }
    }

    /// Verifies `connection_init`, then acknowledges (the legacy protocol's first `ka`
    /// right after) or closes: 4403 for a token that may not act, 4500 when it could not
    /// be checked. The legacy protocol says why first, in `connection_error`.
    async fn init(&mut self, payload: &Value) -> Step {
        let legacy = self.connection.protocol == Protocol::Legacy;
        match authenticate(&self.gateway, payload).await {
            Ok(caller) => {
                if let Some(session) = caller.clone() {
                    let (gateway, looking) = (self.gateway.clone(), self.looking.clone());
                    self.session_ended =
                        async move { gateway.session_ended(&session, &looking).await }.boxed();
                }
                self.caller = caller;
                self.acknowledged = true;
                self.send(&server_message("connection_ack", None, None))
                    .await?;
                if legacy {
                    self.send(&server_message("ka", None, None)).await?;
                }
                Ok(())
            }
            Err(err) => {
                let (code, reason) = match &err {
                    ApiError::Internal(cause) => {
                        tracing::error!(error = ?cause, "WebSocket connection_init could not be checked");
                        (code::INTERNAL, "Internal server error")
                    }
                    _ => (code::FORBIDDEN, "Forbidden"),
                };
                if legacy {
                    let mut payload = Map::new();
                    payload.insert("message".to_owned(), Value::from(err.message()));
                    let payload = Some(Value::Object(payload));
                    self.send(&server_message("connection_error", None, payload))
                        .await?;
                }
                self.close(code, reason).await
            }
        }
    }

    async fn send(&mut self, message: &Value) -> Step {
        self.send_text(message.to_string()).await
    }

    async fn send_text(&mut self, message: String) -> Step {
        let text = Message::Text(message.into());
        match tokio::time::timeout(self.write_timeout, self.socket.send(text)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Stop),
            Err(_) => {
                tracing::debug!("WebSocket dropped: the client did not read in time");
                Err(Stop)
            }
        }
    }

    /// Sends a close frame; the loop stops after it either way.
    async fn close(&mut self, code: u16, reason: &str) -> Step {
        tracing::debug!(code, reason, "closing WebSocket");
        let frame = CloseFrame {
            code,
            reason: truncate(reason, 123).into(),
        };
        // Best effort: the client may be gone already.
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            self.socket.send(Message::Close(Some(frame))),
        )
        .await;
        Err(Stop)
    }
}

/// `text` cut to at most `max` bytes on a character boundary (a close reason may hold
/// 123 bytes, RFC 6455 §5.5).
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use async_graphql::Response;

    use super::*;

    fn ready(protocol: Protocol, operations: usize, subscriptions: usize) -> Connection {
        let mut connection = Connection::new(
            protocol,
            Limits {
                operations,
                subscriptions,
            },
        );
        assert!(matches!(
            connection.on_text(r#"{"type":"connection_init"}"#),
            Action::Init(_)
        ));
        connection
    }

    fn subscribe(connection: &mut Connection, id: &str, query: &str) -> Action {
        let message =
            serde_json::json!({ "id": id, "type": "subscribe", "payload": { "query": query } });
        connection.on_text(&message.to_string())
    }

    fn closed_with(action: Action) -> (u16, String) {
        match action {
            Action::Close(code, reason) => (code, reason),
            _ => panic!("expected a close"),
        }
    }

    /// The message a delivery turns into, parsed, and whether it ends the operation.
    fn responded(connection: &mut Connection, id: &str, delivery: &Delivery) -> (Value, bool) {
        let (message, finished) = connection.on_response(id, delivery).expect("a message");
        let message = serde_json::from_str(&message).expect("the message is JSON");
        (message, finished)
    }

    fn sent(action: Action) -> Value {
        match action {
            Action::Send(message) => message,
            _ => panic!("expected a message"),
        }
    }

    #[test]
    fn malformed_messages_close_4400_with_a_reason() {
        for text in [
            "not json",
            "[1]",
            r#"{"id":"1"}"#,
            r#"{"type":"nonsense"}"#,
            r#"{"type":"next","id":"1","payload":{}}"#,
            r#"{"type":"connection_init","payload":"token"}"#,
            r#"{"type":"subscribe","payload":{"query":"{ __typename }"}}"#,
            r#"{"type":"subscribe","id":"1"}"#,
            r#"{"type":"subscribe","id":"1","payload":{"variables":{}}}"#,
            r#"{"type":"subscribe","id":"1","payload":{"query":"{ a }","variables":[]}}"#,
            r#"{"type":"complete"}"#,
        ] {
            let mut connection = ready(Protocol::TransportWs, 1, 1);
            let (code, reason) = closed_with(connection.on_text(text));
            assert_eq!(code, 4400, "{text}");
            assert!(reason.starts_with("Invalid message: "), "{text}: {reason}");
        }
    }

    #[test]
    fn subscribe_before_init_is_4401_and_a_second_init_4429() {
        let mut connection = Connection::new(
            Protocol::TransportWs,
            Limits {
                operations: 1,
                subscriptions: 1,
            },
        );
        assert_eq!(
            closed_with(subscribe(&mut connection, "1", "{ __typename }")),
            (4401, "Unauthorized".to_owned())
        );
        let mut connection = ready(Protocol::TransportWs, 1, 1);
        assert_eq!(
            closed_with(connection.on_text(r#"{"type":"connection_init","payload":{}}"#)),
            (4429, "Too many initialisation requests".to_owned())
        );
    }

    #[test]
    fn an_active_id_is_4409_until_it_completes() {
        let mut connection = ready(Protocol::TransportWs, 2, 2);
        assert!(matches!(
            subscribe(&mut connection, "a", "{ __typename }"),
            Action::Start { .. }
        ));
        assert_eq!(
            closed_with(subscribe(&mut connection, "a", "{ __typename }")),
            (4409, "Subscriber for a already exists".to_owned())
        );
        let mut connection = ready(Protocol::TransportWs, 2, 2);
        assert!(matches!(
            subscribe(&mut connection, "a", "{ __typename }"),
            Action::Start { .. }
        ));
        assert!(matches!(
            connection.on_text(r#"{"type":"complete","id":"a"}"#),
            Action::Stop(id) if id == "a"
        ));
        assert!(matches!(
            subscribe(&mut connection, "a", "{ __typename }"),
            Action::Start { .. }
        ));
    }

    #[test]
    fn a_drain_forgets_subscriptions_keeps_queries_and_starts_nothing() {
        let mut connection = ready(Protocol::TransportWs, 2, 2);
        for (id, query) in [("q", "{ __typename }"), ("s", "subscription { x }")] {
            assert!(matches!(
                subscribe(&mut connection, id, query),
                Action::Start { .. }
            ));
        }
        assert_eq!(connection.drain(), vec!["s".to_owned()]);
        // Neither a new operation nor a taken id is answered now.
        for id in ["n", "q"] {
            assert!(matches!(
                subscribe(&mut connection, id, "{ __typename }"),
                Action::Nothing
            ));
        }
        // The query in flight is still answered and completed; the subscription is not.
        let delivery = Delivery::of(&Response::new(async_graphql::Value::Null));
        assert!(connection.on_response("s", &delivery).is_none());
        let (message, finished) = responded(&mut connection, "q", &delivery);
        assert_eq!((message["type"].as_str(), finished), (Some("next"), false));
        assert!(connection.on_end("q").is_some());
        assert!(connection.operations.is_empty());
    }

    #[test]
    fn limits_count_operations_and_subscriptions_apart() {
        let mut connection = ready(Protocol::TransportWs, 1, 2);
        assert!(matches!(
            subscribe(&mut connection, "q1", "{ __typename }"),
            Action::Start { .. }
        ));
        let refused = sent(subscribe(&mut connection, "q2", "query { __typename }"));
        assert_eq!(refused["type"], "error");
        assert_eq!(refused["id"], "q2");
        assert_eq!(refused["payload"][0]["extensions"]["code"], "RATE_LIMITED");
        assert!(
            refused["payload"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("FLASHFUSION_WS_MAX_OPERATIONS")),
            "{refused}"
        );
        // Subscriptions have their own budget.
        for id in ["s1", "s2"] {
            assert!(matches!(
                subscribe(&mut connection, id, "subscription { x }"),
                Action::Start { .. }
            ));
        }
        let refused = sent(subscribe(&mut connection, "s3", "subscription { x }"));
        assert_eq!(refused["payload"][0]["extensions"]["code"], "RATE_LIMITED");
        // A finished query frees its place; the refused ids were never active.
        assert_eq!(
            connection.on_end("q1"),
            Some(server_message("complete", Some("q1"), None))
        );
        assert!(matches!(
            subscribe(&mut connection, "q2", "{ __typename }"),
            Action::Start { .. }
        ));
    }

    #[test]
    fn a_first_response_without_data_is_an_error_message_without_complete() {
        let mut connection = ready(Protocol::TransportWs, 4, 4);
        for id in ["refused", "answered"] {
            assert!(matches!(
                subscribe(&mut connection, id, "{ __typename }"),
                Action::Start { .. }
            ));
        }
        let refusal = Delivery::error(ApiError::bad_input("no"));
        let (message, finished) = responded(&mut connection, "refused", &refusal);
        assert!(finished);
        assert_eq!(message["type"], "error");
        assert_eq!(message["payload"][0]["message"], "no");
        assert_eq!(
            connection.on_end("refused"),
            None,
            "no complete after error"
        );

        let data = Delivery::of(&Response::new(
            async_graphql::Value::from_json(serde_json::json!({"a": 1})).expect("value"),
        ));
        let (message, finished) = responded(&mut connection, "answered", &data);
        assert!(!finished);
        assert_eq!(message["type"], "next");
        assert_eq!(message["payload"]["data"]["a"], 1);
        // A later event with errors is still `next`: only a refusal becomes `error`.
        let (message, _) = responded(&mut connection, "answered", &refusal);
        assert_eq!(message["type"], "next");
        assert_eq!(
            connection.on_end("answered"),
            Some(server_message("complete", Some("answered"), None))
        );
    }

    #[test]
    fn a_completed_operation_sends_nothing_more() {
        let mut connection = ready(Protocol::TransportWs, 4, 4);
        assert!(matches!(
            subscribe(&mut connection, "a", "{ __typename }"),
            Action::Start { .. }
        ));
        assert!(matches!(
            connection.on_text(r#"{"type":"complete","id":"a"}"#),
            Action::Stop(_)
        ));
        let data = Delivery::of(&Response::new(async_graphql::Value::Null));
        assert!(connection.on_response("a", &data).is_none());
        assert!(connection.on_end("a").is_none());
    }

    #[test]
    fn ping_is_answered_with_its_payload() {
        let mut connection = Connection::new(
            Protocol::TransportWs,
            Limits {
                operations: 1,
                subscriptions: 1,
            },
        );
        let pong = sent(connection.on_text(r#"{"type":"ping","payload":{"n":1}}"#));
        assert_eq!(
            pong,
            serde_json::json!({"type": "pong", "payload": {"n": 1}})
        );
        assert!(matches!(
            connection.on_text(r#"{"type":"pong"}"#),
            Action::Nothing
        ));
    }

    /// A socket takes its operations' documents from the replica's cache: the same
    /// query sent again is not parsed again.
    #[test]
    fn operations_take_their_documents_from_the_cache() {
        let documents = Arc::new(DocumentCache::new(
            8,
            crate::limits::DocumentLimits::DEFAULTS,
        ));
        let mut connection = ready(Protocol::TransportWs, 4, 4).with_documents(documents.clone());
        for id in ["a", "b"] {
            assert!(matches!(
                subscribe(&mut connection, id, "{ __typename }"),
                Action::Start { .. }
            ));
        }
        assert_eq!(documents.parses(), 1, "not from the cache");
    }

    #[test]
    fn legacy_messages_use_their_own_names() {
        let mut connection = ready(Protocol::Legacy, 4, 4);
        let start = r#"{"type":"start","id":"1","payload":{"query":"{ __typename }"}}"#;
        assert!(matches!(connection.on_text(start), Action::Start { .. }));
        let refusal = Delivery::error(ApiError::bad_input("no"));
        let (message, finished) = responded(&mut connection, "1", &refusal);
        assert_eq!(message["type"], "data", "legacy has no refusal rule");
        assert!(!finished);
        assert!(matches!(
            connection.on_text(r#"{"type":"stop","id":"1"}"#),
            Action::Stop(_)
        ));
        assert_eq!(
            closed_with(connection.on_text(r#"{"type":"connection_terminate"}"#)).0,
            1000
        );
        assert_eq!(
            closed_with(
                connection.on_text(r#"{"type":"subscribe","id":"2","payload":{"query":"{ a }"}}"#)
            )
            .0,
            4400
        );
    }

    #[test]
    fn close_reasons_fit_a_close_frame() {
        assert_eq!(truncate("abc", 123), "abc");
        let long = "é".repeat(100);
        let cut = truncate(&long, 123);
        assert!(cut.len() <= 123 && cut.chars().all(|c| c == 'é'));
    }
}
