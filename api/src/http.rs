//! The HTTP surface: routes, the GraphQL-over-HTTP handlers, the WebSocket upgrade and
//! the middleware stack, in that order.
//!
//! The handlers read the body and query string themselves instead of using
//! async-graphql-axum's ready-made service, which would accept batches, mutations over
//! GET, any content type, and subscriptions over multipart HTTP without auth. Every
//! operation then goes through [`Gateway::run`]; an upgraded WebSocket is served by
//! [`crate::ws`].
//!
//! What follows the GraphQL-over-HTTP specification
//! (<https://graphql.github.io/graphql-over-http/draft/>) is decided here, and only here:
//! - `Accept` picks the response's media type ([`negotiate`]):
//!   `application/graphql-response+json` when the client names it, `application/json`
//!   for legacy clients (no `Accept`, `*/*`, or `application/json` preferred), 406 when
//!   neither is acceptable.
//! - The status: with `application/graphql-response+json`, a request error (the response
//!   has no `data`: unparseable, invalid, no such operation) is 400 and a response with
//!   `data` is 200; with `application/json`, every well-formed request is answered 200,
//!   and only a body that is not a GraphQL request (bad JSON, a batch) is 400. A mutation
//!   over GET is 405 with `Allow: POST`, any other method 405 with `Allow: GET, POST`, a
//!   POST without `Content-Type: application/json` 415, a bad token 401, a database that
//!   cannot be reached 503. A request error is sent without a `data` entry.
//! - In production a GET query must carry a header a cross-site form cannot send
//!   ([`is_preflighted`]), so a page elsewhere cannot make a browser run it without a
//!   CORS preflight, which only origins in `FLASHFUSION_CORS_ORIGINS` pass there
//!   ([`allowed_origins`]).
//!
//! The middleware stack also turns a panic into a 500 GraphQL error (logged) so the
//! process and the client's connection live on, lets the body limit
//! (`FLASHFUSION_MAX_BODY_BYTES`) replace axum's own 2 MiB default, and counts every
//! request refused before it reaches the pipeline ([`count_refusals`]; the pipeline
//! counts the operations it sees).

use std::{any::Any, net::IpAddr, sync::Arc};

use async_graphql::{Request, Response};
use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, State, WebSocketUpgrade},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header, request::Parts},
    middleware::{self, Next},
    response::IntoResponse,
    routing::get,
};
use tower_http::{
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, CorsLayer},
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::TraceLayer,
};
use tracing::{Instrument as _, Span};

use crate::{
    auth::INVALID_TOKEN,
    client,
    config::Config,
    error::ApiError,
    graphiql,
    metrics::{self, NO_CODE},
    pipeline::{Caller, Gateway, Refusal, Transport},
    state::AppState,
    ws::{self, verify_bearer},
};

/// The GraphQL endpoint, for HTTP and WebSocket alike.
pub const GRAPHQL_PATH: &str = "/graphql";
/// A WebSocket's initial read buffer, in bytes. tungstenite zeroes the buffer's whole
/// capacity before every read (`FrameCodec::read_in`), and a socket's loop polls its
/// read side each time it wakes, once per delivery: a small buffer keeps that cheap
/// (BENCHMARKS.md, "Where a delivery's CPU goes") and an idle socket small. Client
/// messages are a few hundred bytes; a larger one takes a few more reads.
const SOCKET_BUFFER: usize = 1024;
/// Prometheus metrics, when `FLASHFUSION_METRICS` is on.
pub const METRICS_PATH: &str = "/metrics";
/// The media type of GraphQL-over-HTTP responses.
const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
/// The legacy media type of GraphQL responses.
const JSON: &str = "application/json";
/// The methods `/graphql` answers (WebSocket upgrades are GETs).
const GRAPHQL_METHODS: &str = "GET, POST";
/// The body of an answer that must not say more than "internal error".
const INTERNAL_BODY: &[u8] =
    br#"{"errors":[{"message":"internal error","extensions":{"code":"INTERNAL"}}]}"#;

/// The router with every route and the middleware stack.
pub fn router(gateway: Gateway) -> Router {
    router_with(gateway, Router::new())
}

/// [`router`] with `extra` routes merged in, under the same middleware stack (tests use
/// it for routes the binary must not have, such as one that panics). Layers, outermost
/// first: a client's `x-request-id` dropped unless sane, a request id set (the client's
/// or a new UUID) and copied onto the response, tracing (one span per HTTP request,
/// carrying the id), CORS, counting refusals, catching panics, the request timeout, the
/// body size limit.
pub fn router_with(gateway: Gateway, extra: Router) -> Router {
    let state = gateway.state().clone();
    let max_body = state.config.max_body_bytes;
    let timeout = state.config.request_timeout;
    let origins = allowed_origins(&state.config);
    let graphql = get(graphql_get)
        .post(graphql_post)
        // HEAD would run the query and throw the answer away.
        .head(method_not_allowed)
        .fallback(method_not_allowed);
    // Off (so `/` and `/graphiql/*` are 404) in production unless FLASHFUSION_GRAPHIQL.
    let graphiql = if gateway.state().config.graphiql_enabled() {
        graphiql::routes(GRAPHQL_PATH)
    } else {
        Router::new()
    };
    let mut router = Router::new()
        .merge(graphiql)
        .route(GRAPHQL_PATH, graphql)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz));
    if gateway.state().config.metrics {
        router = router.route(METRICS_PATH, get(metrics));
    }
    router
        .with_state(gateway)
        .merge(extra)
        // The limit below is the one that holds, above or below axum's 2 MiB default.
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(max_body))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(state, count_refusals))
        .layer(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([Method::GET, Method::POST])
                // What a page on another origin may read of a response.
                .expose_headers([header::RETRY_AFTER, REQUEST_ID])
                .allow_headers([
                    header::CONTENT_TYPE,
                    header::AUTHORIZATION,
                    header::ACCEPT,
                    HeaderName::from_static(PREFLIGHT_HEADERS[0]),
                    HeaderName::from_static(PREFLIGHT_HEADERS[1]),
                ]),
        )
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(http_span)
                .on_response(record_status),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(middleware::map_request(drop_insane_request_id))
}

/// Which check refused a request before the pipeline: the `reason` label of
/// `flashfusion_http_refusals_total` (ARCHITECTURE.md, "Metrics").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// 406: `Accept` offers neither media type.
    NotAcceptable,
    /// 415: a POST without `Content-Type: application/json`.
    ContentType,
    /// 405: a method `/graphql` does not answer.
    Method,
    /// 400: a body or query string that is not a GraphQL request.
    Malformed,
    /// 400: a batch (a JSON array).
    Batch,
    /// 400: a production GET without a header a cross-site form cannot send.
    Preflight,
    /// 401 or 503: the `Authorization` header's token refused or not judged.
    Token,
    /// A WebSocket upgrade refused (no subprotocol this gateway speaks, a bad handshake).
    WebSocket,
    /// 413: a body over `FLASHFUSION_MAX_BODY_BYTES`.
    BodyLimit,
    /// 408: over `FLASHFUSION_REQUEST_TIMEOUT`.
    Timeout,
    /// 500: a handler panicked.
    Panic,
}

impl Reason {
    fn name(self) -> &'static str {
        match self {
            Self::NotAcceptable => "not_acceptable",
            Self::ContentType => "content_type",
            Self::Method => "method",
            Self::Malformed => "malformed",
            Self::Batch => "batch",
            Self::Preflight => "preflight",
            Self::Token => "token",
            Self::WebSocket => "websocket_upgrade",
            Self::BodyLimit => "body_limit",
            Self::Timeout => "timeout",
            Self::Panic => "panic",
        }
    }
}

/// The mark a refusal built here carries on its response, for [`count_refusals`]:
/// its error's `extensions.code` and the check that refused it.
#[derive(Debug, Clone, Copy)]
struct Refused {
    code: &'static str,
    reason: Reason,
}

/// Marks `response` as refused before the pipeline.
fn refused(
    mut response: axum::response::Response,
    code: &'static str,
    reason: Reason,
) -> axum::response::Response {
    response.extensions_mut().insert(Refused { code, reason });
    response
}

/// Counts each response refused before the pipeline once, in
/// `flashfusion_http_refusals_total`: the refusals built here carry their [`Refused`]
/// mark; a 413 or 408 comes only from the body limit (its layer, or axum reading a body
/// through it) or the timeout layer, which know nothing of marks. An operation that
/// reached [`Gateway::run`] is counted there and its answer carries no mark; one cut
/// short by the timeout or a panic was not counted there, since `run` counts an
/// operation when it finishes.
async fn count_refusals(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: Next,
) -> axum::response::Response {
    let response = next.run(request).await;
    let status = response.status();
    let mark = response
        .extensions()
        .get::<Refused>()
        .copied()
        .or(match status {
            StatusCode::PAYLOAD_TOO_LARGE => Some(Refused {
                code: NO_CODE,
                reason: Reason::BodyLimit,
            }),
            StatusCode::REQUEST_TIMEOUT => Some(Refused {
                code: NO_CODE,
                reason: Reason::Timeout,
            }),
            _ => None,
        });
    if let Some(Refused { code, reason }) = mark {
        state.metrics.refused(status.as_u16(), code, reason.name());
    }
    response
}

/// The header that carries a request's id, both ways.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The longest request id kept from a client.
const MAX_REQUEST_ID: usize = 64;

/// Removes the client's `x-request-id` unless it is one header of at most
/// [`MAX_REQUEST_ID`] characters of `[A-Za-z0-9._-]`, so a new id replaces it: ids
/// reach every log line, which must not carry a client's arbitrary text.
async fn drop_insane_request_id(mut request: axum::extract::Request) -> axum::extract::Request {
    let mut ids = request.headers().get_all(&REQUEST_ID).iter();
    let sane = match (ids.next(), ids.next()) {
        (Some(id), None) => {
            let id = id.as_bytes();
            !id.is_empty()
                && id.len() <= MAX_REQUEST_ID
                && id
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        }
        (None, _) => true,
        (Some(_), Some(_)) => false,
    };
    if !sane {
        request.headers_mut().remove(&REQUEST_ID);
    }
    request
}

/// The HTTP request's span, with OpenTelemetry's HTTP semantic conventions: named
/// `{method} {route}` (`otel.name`; the method alone when no route matched), with
/// `http.request.method`, `http.route`, `url.path`, the request id and, once
/// answered, `http.response.status_code`. Every log line of the request carries it; a
/// WebSocket's operations log inside it too.
fn http_span<B>(request: &axum::http::Request<B>) -> Span {
    let method = request.method().as_str();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("", MatchedPath::as_str);
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|id| id.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "http",
        otel.name = %SpanName { method, route },
        http.request.method = method,
        http.route = route,
        url.path = request.uri().path(),
        request_id,
        http.response.status_code = tracing::field::Empty,
    )
}

/// `{method} {route}`, written only when a subscriber formats it.
struct SpanName<'a> {
    method: &'a str,
    route: &'a str,
}

impl std::fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.method)?;
        if !self.route.is_empty() {
            write!(f, " {}", self.route)?;
        }
        Ok(())
    }
}

/// Records the response's status on the request's span, and logs it at debug level as
/// tower-http's default does.
fn record_status<B>(response: &axum::http::Response<B>, latency: std::time::Duration, span: &Span) {
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    tracing::debug!(status, latency_ms = latency.as_millis() as u64, "answered");
}

/// `GET /metrics`: every metric in Prometheus's (OpenMetrics) text format, the
/// scrape-time ones read now.
async fn metrics(State(gateway): State<Gateway>) -> axum::response::Response {
    let state = gateway.state();
    match state.metrics.render(&state.db, &state.hub, &state.fanout) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            )],
            body,
        )
            .into_response(),
        Err(err) => {
            tracing::error!(error = %err, "encoding metrics failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// A handler panicked: log it, answer 500 `INTERNAL`; the connection stays usable.
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> axum::response::Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %message, "a request handler panicked");
    refused(
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, HeaderValue::from_static(JSON))],
            INTERNAL_BODY,
        )
            .into_response(),
        "INTERNAL",
        Reason::Panic,
    )
}

/// Any method `/graphql` does not serve.
async fn method_not_allowed(headers: HeaderMap) -> axum::response::Response {
    let media = negotiate(&headers).unwrap_or(Media::Json);
    let response = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        ApiError::bad_input("/graphql answers GET (queries) and POST"),
        Reason::Method,
        media,
    );
    allowing(response, GRAPHQL_METHODS)
}

/// `response` with an `Allow` header naming `methods`, as a 405 must (RFC 9110 §15.5.6).
fn allowing(
    mut response: axum::response::Response,
    methods: &'static str,
) -> axum::response::Response {
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(methods));
    response
}

/// Ready when the database answers and the event listener holds its connection.
async fn readyz(State(gateway): State<Gateway>) -> impl IntoResponse {
    if gateway.state().db.ping().await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable");
    }
    if !gateway.state().hub.is_listening() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "event listener reconnecting",
        );
    }
    (StatusCode::OK, "ready")
}

/// `POST /graphql`: one JSON request object, `Content-Type: application/json` only.
async fn graphql_post(
    State(gateway): State<Gateway>,
    parts: Parts,
    body: Bytes,
) -> axum::response::Response {
    let client = client_address(&gateway, &parts);
    let headers = parts.headers;
    let Some(media) = negotiate(&headers) else {
        return not_acceptable();
    };
    if !content_type_is(&headers, JSON) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::bad_input("Content-Type must be application/json"),
            Reason::ContentType,
            media,
        );
    }
    let request = match parse_post_body(&body) {
        Ok(request) => request,
        Err((err, reason)) => return error_response(StatusCode::BAD_REQUEST, err, reason, media),
    };
    execute(
        &gateway,
        &headers,
        request,
        client,
        Transport::HttpPost,
        media,
    )
    .await
}

/// `GET /graphql`: a query in the query string, or a WebSocket upgrade.
async fn graphql_get(
    State(gateway): State<Gateway>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let (mut parts, _) = request.into_parts();
    let client = client_address(&gateway, &parts);
    if is_websocket_upgrade(&parts.headers) {
        return websocket(gateway, &mut parts, client).await;
    }
    let Some(media) = negotiate(&parts.headers) else {
        return not_acceptable();
    };
    if gateway.state().config.is_production() && !is_preflighted(&parts.headers) {
        return error_response(
            StatusCode::BAD_REQUEST,
            ApiError::bad_input(
                "a GET request must carry an x-graphql-preflight header (any value), an \
                 apollo-require-preflight header, or a Content-Type other than a form's: \
                 this keeps other sites from running queries in a visitor's browser",
            ),
            Reason::Preflight,
            media,
        );
    }
    let request = match parse_query_string(&parts.uri) {
        Ok(request) => request,
        Err(err) => {
            return error_response(StatusCode::BAD_REQUEST, err, Reason::Malformed, media);
        }
    };
    execute(
        &gateway,
        &parts.headers,
        request,
        client,
        Transport::HttpGet,
        media,
    )
    .await
}

/// The GraphQL request in a POST body; a refusal says why not.
fn parse_post_body(body: &[u8]) -> Result<Request, (ApiError, Reason)> {
    let malformed = |e: String| (ApiError::bad_input(format!("body: {e}")), Reason::Malformed);
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| malformed(format!("not valid JSON ({e})")))?;
    if value.is_array() {
        return Err((
            ApiError::bad_input(
                "batched requests are not supported: send one operation per request",
            ),
            Reason::Batch,
        ));
    }
    graphql_request(value).map_err(malformed)
}

/// The parameters of a GET request, named as the specification names them
/// (async-graphql's own parser expects `operation_name`).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetParameters {
    query: Option<String>,
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
    document_id: Option<String>,
}

fn parse_query_string(uri: &axum::http::Uri) -> Result<Request, ApiError> {
    let bad = |e: String| ApiError::bad_input(format!("query string: {e}"));
    let params = axum::extract::Query::<GetParameters>::try_from_uri(uri)
        .map_err(|e| bad(e.body_text()))?
        .0;
    let json = |name: &str, text: Option<String>| {
        text.map(|text| {
            serde_json::from_str::<serde_json::Value>(&text)
                .map_err(|e| bad(format!("{name} is not JSON ({e})")))
        })
        .transpose()
    };
    let value = serde_json::json!({
        "query": params.query,
        "operationName": params.operation_name,
        "variables": json("variables", params.variables)?,
        "extensions": json("extensions", params.extensions)?,
        "documentId": params.document_id,
    });
    graphql_request(value).map_err(bad)
}

/// A GraphQL request from its JSON form: an object with a `query` string (or, for a
/// persisted query, only `extensions` or `documentId`), optional `operationName`,
/// `variables` and `extensions`; a `null` counts as absent.
fn graphql_request(mut value: serde_json::Value) -> Result<Request, String> {
    let Some(object) = value.as_object_mut() else {
        return Err("not a GraphQL request (expected an object)".to_owned());
    };
    object.retain(|_, v| !v.is_null());
    document_id_as_persisted(object)?;
    if !object.contains_key("query") && !object.contains_key("extensions") {
        return Err("not a GraphQL request (no query)".to_owned());
    }
    serde_json::from_value(value).map_err(|e| format!("not a GraphQL request ({e})"))
}

/// Turns a `documentId` of the form `sha256:<hex>` (the persisted documents of the
/// GraphQL-over-HTTP specification's proposal) into the
/// `extensions.persistedQuery.sha256Hash` that [`crate::documents`] resolves, so both
/// spellings name a document the same way (the allow-list, or automatic persisted
/// queries without one). Any other form of id is refused.
fn document_id_as_persisted(
    object: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<(), String> {
    let Some(id) = object.remove("documentId") else {
        return Ok(());
    };
    let hash = id
        .as_str()
        .and_then(|id| id.strip_prefix("sha256:"))
        .ok_or("documentId: must be \"sha256:\" followed by the document's SHA-256 in hex")?;
    let extensions = object
        .entry("extensions")
        .or_insert_with(|| serde_json::json!({}));
    let Some(extensions) = extensions.as_object_mut() else {
        return Err("extensions: must be an object".to_owned());
    };
    if extensions.contains_key("persistedQuery") {
        return Err("send documentId or extensions.persistedQuery, not both".to_owned());
    }
    extensions.insert(
        "persistedQuery".to_owned(),
        serde_json::json!({ "version": 1, "sha256Hash": hash }),
    );
    Ok(())
}

async fn execute(
    gateway: &Gateway,
    headers: &HeaderMap,
    request: Request,
    client: IpAddr,
    transport: Transport,
    media: Media,
) -> axum::response::Response {
    let caller = match caller_from_header(gateway, headers) {
        Ok(caller) => caller,
        Err(err) => {
            let refused = error_response(caller_refusal_status(&err), err, Reason::Token, media);
            return challenging(refused);
        }
    };
    let (response, refusal) = gateway.run(request, caller, client, transport).await;
    let request_error = refusal.is_some() || is_request_error(&response);
    let status = match refusal {
        Some(Refusal::MethodNotAllowed) => {
            // Nothing ran: a request error, without a `data` entry.
            let refused = request_error_response(StatusCode::METHOD_NOT_ALLOWED, &response, media);
            return allowing(refused, "POST");
        }
        Some(Refusal::Unauthenticated) => StatusCode::UNAUTHORIZED,
        Some(Refusal::Unavailable) => StatusCode::SERVICE_UNAVAILABLE,
        Some(Refusal::RateLimited { .. }) => StatusCode::TOO_MANY_REQUESTS,
        Some(Refusal::BadRequest) | None if request_error && media == Media::GraphqlResponse => {
            if has_code(&response, "INTERNAL") {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::BAD_REQUEST
            }
        }
        Some(Refusal::BadRequest) | None => StatusCode::OK,
    };
    let mut answer = if request_error {
        request_error_response(status, &response, media)
    } else {
        json_response(status, &response, media)
    };
    if let Some(Refusal::RateLimited { retry_after }) = refusal {
        answer
            .headers_mut()
            .insert(header::RETRY_AFTER, retry_after.into());
    }
    challenging(answer)
}

/// `response`, which names the scheme it takes when it is a 401: a bearer token in
/// `Authorization` (RFC 9110 §15.5.2 asks every 401 for `WWW-Authenticate`).
fn challenging(mut response: axum::response::Response) -> axum::response::Response {
    if response.status() == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// Whether `response` answers a request that did not execute: `data` is null and no
/// error belongs to a field (the engine's syntax and validation errors have no path).
fn is_request_error(response: &Response) -> bool {
    response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|error| error.path.is_empty())
}

fn has_code(response: &Response, code: &str) -> bool {
    response.errors.iter().any(|error| {
        error
            .extensions
            .as_ref()
            .and_then(|ext| ext.get("code"))
            .is_some_and(|value| *value == async_graphql::Value::from(code))
    })
}

/// The status of a token refused before the operation: 401 when the token is not
/// valid, 503 when it could not be judged (biscuit's limits hit on a busy machine,
/// `INTERNAL`: a verdict on the server, not on the token; try again).
fn caller_refusal_status(err: &ApiError) -> StatusCode {
    match err {
        ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The origins whose pages may call the API (`FLASHFUSION_CORS_ORIGINS`): those listed,
/// or any for `*`; unset, any in development and none but the gateway's own in
/// production, where a page elsewhere would otherwise act through its visitors'
/// browsers and addresses (which the sign-in throttles trust, ARCHITECTURE.md).
fn allowed_origins(config: &Config) -> AllowOrigin {
    if any_origin(config) {
        return AllowOrigin::any();
    }
    AllowOrigin::list(
        config
            .cors_origins
            .iter()
            .filter_map(|origin| HeaderValue::from_str(origin).ok()),
    )
}

/// Whether pages of every origin may call the API ([`allowed_origins`]).
fn any_origin(config: &Config) -> bool {
    let origins = &config.cors_origins;
    origins.iter().any(|origin| origin == "*") || (origins.is_empty() && !config.is_production())
}

/// Whether the page a WebSocket upgrade comes from may open one: browsers apply no CORS
/// to the upgrade and leave its `Origin` to the server, so the rule of
/// [`allowed_origins`] is applied here. Allowed: no `Origin` (not a browser), any where
/// every origin is, a listed one, and the gateway's own (GraphiQL), whose host and port
/// are the request's `Host`.
fn websocket_origin_allowed(config: &Config, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    if any_origin(config) {
        return true;
    }
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    config.cors_origins.iter().any(|listed| listed == origin)
        || origin.split_once("://").map(|(_, authority)| authority)
            == headers
                .get(header::HOST)
                .and_then(|host| host.to_str().ok())
}

/// The client's address, from the peer and, behind trusted proxies, `X-Forwarded-For`.
fn client_address(gateway: &Gateway, parts: &Parts) -> IpAddr {
    client::address(
        client::peer(&parts.extensions),
        &parts.headers,
        &gateway.state().config.trusted_proxies,
    )
}

/// The verified token of `Authorization: Bearer ...`, or anonymous when absent.
fn caller_from_header(gateway: &Gateway, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| INVALID_TOKEN)?;
    verify_bearer(gateway, value).map(Some)
}

/// The media type of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Media {
    /// `application/graphql-response+json`: request errors are 4xx.
    GraphqlResponse,
    /// `application/json`: every well-formed request is 200.
    Json,
}

impl Media {
    fn name(self) -> &'static str {
        match self {
            Self::GraphqlResponse => GRAPHQL_RESPONSE,
            Self::Json => JSON,
        }
    }
}

/// The response's media type by the request's `Accept` headers, `None` when neither is
/// acceptable (answered with [`not_acceptable`]). Each media type takes the quality of the most specific range
/// that matches it (`q=0` refuses it); the better quality wins, and on a tie the one the
/// client named, `application/graphql-response+json` first. So no `Accept`, `*/*` and
/// `application/*` get `application/json`, as the specification asks for legacy
/// clients, and a client naming both gets the GraphQL media type.
fn negotiate(headers: &HeaderMap) -> Option<Media> {
    let mut ranges = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter(|range| !range.trim().is_empty())
        .peekable();
    if ranges.peek().is_none() {
        return Some(Media::Json);
    }
    // Per media type: (specificity of the best-matching range, its quality).
    let mut best = [(0u8, 0u16); 2];
    for range in ranges {
        let mut params = range.split(';');
        let name = params
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let quality = params
            .filter_map(|param| param.split_once('='))
            .find(|(key, _)| key.trim().eq_ignore_ascii_case("q"))
            .map_or(1000, |(_, q)| parse_quality(q.trim()));
        for (slot, media) in [Media::GraphqlResponse, Media::Json]
            .into_iter()
            .enumerate()
        {
            let specificity = match name.as_str() {
                "*/*" => 1,
                "application/*" => 2,
                exact if exact == media.name() => NAMED,
                _ => continue,
            };
            if specificity > best[slot].0 {
                best[slot] = (specificity, quality);
            }
        }
    }
    let [(graphql_specificity, graphql), (_, json)] = best;
    match (graphql, json) {
        (0, 0) => None,
        (g, j) if g > j || g == j && graphql_specificity == NAMED => Some(Media::GraphqlResponse),
        _ => Some(Media::Json),
    }
}

/// 406: the client accepts neither media type (so it gets the legacy one).
fn not_acceptable() -> axum::response::Response {
    error_response(
        StatusCode::NOT_ACCEPTABLE,
        ApiError::bad_input("Accept: offer application/graphql-response+json or application/json"),
        Reason::NotAcceptable,
        Media::Json,
    )
}

/// The specificity of a media range that names the media type exactly.
const NAMED: u8 = 3;

/// A quality value (`0` to `1` with up to three decimals) in thousandths; a malformed
/// one counts as `0`.
fn parse_quality(value: &str) -> u16 {
    value
        .parse::<f32>()
        .ok()
        .filter(|q| (0.0..=1.0).contains(q))
        .map_or(0, |q| (q * 1000.0).round() as u16)
}

/// Headers whose presence proves a request was preflighted (Apollo's CSRF prevention).
const PREFLIGHT_HEADERS: [&str; 2] = ["x-graphql-preflight", "apollo-require-preflight"];

/// Whether a browser would have preflighted this request before sending it
/// cross-site: it carries one of [`PREFLIGHT_HEADERS`], or a `Content-Type` that is not
/// one a form may send (`application/x-www-form-urlencoded`, `multipart/form-data`,
/// `text/plain`). A request a cross-site page can send without a preflight could ride
/// on the visitor's cookies or network position.
fn is_preflighted(headers: &HeaderMap) -> bool {
    if PREFLIGHT_HEADERS
        .iter()
        .any(|name| headers.contains_key(*name))
    {
        return true;
    }
    media_type(headers).is_some_and(|media| {
        !media.is_empty()
            && ![
                "application/x-www-form-urlencoded",
                "multipart/form-data",
                "text/plain",
            ]
            .iter()
            .any(|simple| media.eq_ignore_ascii_case(simple))
    })
}

/// Whether the request's `Content-Type` is `media` (parameters such as `charset` aside).
fn content_type_is(headers: &HeaderMap, media: &str) -> bool {
    media_type(headers).is_some_and(|sent| sent.eq_ignore_ascii_case(media))
}

/// The media type the request's `Content-Type` names, parameters and spaces trimmed off
/// (compare it ignoring ASCII case); `None` without one, or when it is not text.
fn media_type(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    value.split(';').next().map(str::trim)
}

/// A refusal before the pipeline: `err` as a request error, marked for
/// [`count_refusals`] with its code and `reason`.
fn error_response(
    status: StatusCode,
    err: ApiError,
    reason: Reason,
    media: Media,
) -> axum::response::Response {
    let code = err.code();
    let response = request_error_response(status, &Response::from_errors(vec![err.into()]), media);
    refused(response, code, reason)
}

/// A request error: its errors without a `data` entry (nothing executed).
fn request_error_response(
    status: StatusCode,
    response: &Response,
    media: Media,
) -> axum::response::Response {
    #[derive(serde::Serialize)]
    struct Errors<'a> {
        errors: &'a [async_graphql::ServerError],
    }
    let body = serde_json::to_vec(&Errors {
        errors: &response.errors,
    });
    body_response(status, body, media)
}

fn json_response(
    status: StatusCode,
    response: &Response,
    media: Media,
) -> axum::response::Response {
    body_response(status, serde_json::to_vec(response), media)
}

fn body_response(
    status: StatusCode,
    body: serde_json::Result<Vec<u8>>,
    media: Media,
) -> axum::response::Response {
    let body = body.unwrap_or_else(|_| INTERNAL_BODY.to_vec());
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(media.name()))],
        body,
    )
        .into_response()
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Upgrades to graphql-transport-ws, or legacy graphql-ws when the client's
/// `Sec-WebSocket-Protocol` offers only that (400 when it offers neither), and hands the
/// socket to [`ws::serve`]; messages obey the body limit.
async fn websocket(
    gateway: Gateway,
    parts: &mut Parts,
    client: IpAddr,
) -> axum::response::Response {
    if !websocket_origin_allowed(&gateway.state().config, &parts.headers) {
        return refused(
            (
                StatusCode::FORBIDDEN,
                "Origin: pages of this origin may not open a WebSocket (FLASHFUSION_CORS_ORIGINS)",
            )
                .into_response(),
            NO_CODE,
            Reason::WebSocket,
        );
    }
    let upgrade = match WebSocketUpgrade::from_request_parts(parts, &()).await {
        Ok(upgrade) => upgrade.protocols(ws::SUBPROTOCOLS),
        Err(rejection) => {
            return refused(rejection.into_response(), NO_CODE, Reason::WebSocket);
        }
    };
    let Some(protocol) = upgrade
        .selected_protocol()
        .and_then(|name| name.to_str().ok())
        .and_then(ws::Protocol::from_name)
    else {
        return refused(
            (
                StatusCode::BAD_REQUEST,
                "Sec-WebSocket-Protocol: offer graphql-transport-ws or graphql-ws",
            )
                .into_response(),
            NO_CODE,
            Reason::WebSocket,
        );
    };
    let max_message = gateway.state().config.max_body_bytes;
    // The upgrade request's span, so the socket's operations log under its id. Taken
    // here: axum runs the callback in a task of its own, where no span is current.
    let span = Span::current();
    upgrade
        .max_message_size(max_message)
        .max_frame_size(max_message)
        // Small buffers that grow with the message: an idle socket (most of a
        // dashboard's life) costs a few KiB instead of the default 128 KiB each way.
        .read_buffer_size(SOCKET_BUFFER)
        .write_buffer_size(0)
        .on_upgrade(move |socket| ws::serve(gateway, socket, protocol, client).instrument(span))
}
