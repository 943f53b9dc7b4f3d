//! The HTTP surface: routes, the GraphQL-over-HTTP handlers, the WebSocket upgrade and
//! the middleware stack, in that order.
//!
//! The handlers read the body and query string themselves instead of using
//! async-graphql-axum's ready-made service, which would accept batches, mutations over
//! GET, any content type, and subscriptions over multipart HTTP without auth. Every operation then goes through [`Gateway::run`]; an upgraded
//! WebSocket is served by [`crate::ws`].

use std::net::IpAddr;

use async_graphql::{Request, Response};
use axum::{
    Router,
    body::Bytes,
    extract::{FromRequestParts, MatchedPath, State, WebSocketUpgrade},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header, request::Parts},
    middleware,
    response::IntoResponse,
    routing::get,
};
use tower_http::{
    cors::CorsLayer,
    limit::RequestBodyLimitLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::TraceLayer,
};
use tracing::{Instrument as _, Span};

use crate::{
    auth::INVALID_TOKEN,
    client,
    error::ApiError,
    graphiql, metrics,
    pipeline::{Caller, Gateway, Refusal, Transport},
    ws::{self, verify_bearer},
};

/// The GraphQL endpoint, for HTTP and WebSocket alike.
pub const GRAPHQL_PATH: &str = "/graphql";
/// A WebSocket's initial read buffer, in bytes.
const SOCKET_BUFFER: usize = 4 * 1024;
/// Prometheus metrics, when `FLASHFUSION_METRICS` is on.
pub const METRICS_PATH: &str = "/metrics";
/// The media type of GraphQL-over-HTTP responses.
const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
/// The router with every route and the middleware stack. Layers, outermost first: a
/// client's `x-request-id` dropped unless sane, a request id set (the client's or a new
/// UUID) and copied onto the response, tracing (one span per HTTP request, carrying the
/// id), CORS, the request timeout, the body size limit.
pub fn router(gateway: Gateway) -> Router {
    let max_body = gateway.state().config.max_body_bytes;
    let timeout = gateway.state().config.request_timeout;
    // Off (so `/` and `/graphiql/*` are 404) in production unless FLASHFUSION_GRAPHIQL.
    let graphiql = if gateway.state().config.graphiql_enabled() {
        graphiql::routes(GRAPHQL_PATH)
    } else {
        Router::new()
    };
    let mut router = Router::new()
        .merge(graphiql)
        .route(GRAPHQL_PATH, get(graphql_get).post(graphql_post))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz));
    if gateway.state().config.metrics {
        router = router.route(METRICS_PATH, get(metrics));
    }
    router
        .with_state(gateway)
        .layer(RequestBodyLimitLayer::new(max_body))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(
            CorsLayer::new()
                .allow_origin(tower_http::cors::Any)
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, header::ACCEPT]),
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
    let wants = accepts_graphql_response(&headers);
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::bad_input("Content-Type must be application/json"),
            wants,
        );
    }
    let request = match parse_post_body(&body) {
        Ok(request) => request,
        Err(err) => return error_response(StatusCode::BAD_REQUEST, err, wants),
    };
    execute(
        &gateway,
        &headers,
        request,
        client,
        Transport::HttpPost,
        wants,
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
    let wants = accepts_graphql_response(&parts.headers);
    let request = match async_graphql::http::parse_query_string(parts.uri.query().unwrap_or("")) {
        Ok(request) => request,
        Err(err) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                ApiError::bad_input(format!("query string: {err}")),
                wants,
            );
        }
    };
    execute(
        &gateway,
        &parts.headers,
        request,
        client,
        Transport::HttpGet,
        wants,
    )
    .await
}

fn parse_post_body(body: &[u8]) -> Result<Request, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_input(format!("body: not valid JSON ({e})")))?;
    if value.is_array() {
        return Err(ApiError::bad_input(
            "batched requests are not supported: send one operation per request",
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| ApiError::bad_input(format!("body: not a GraphQL request ({e})")))
}

async fn execute(
    gateway: &Gateway,
    headers: &HeaderMap,
    request: Request,
    client: IpAddr,
    transport: Transport,
    wants: bool,
) -> axum::response::Response {
    let caller = match caller_from_header(gateway, headers) {
        Ok(caller) => caller,
        Err(err) => return error_response(StatusCode::UNAUTHORIZED, err, wants),
    };
    let (response, refusal) = gateway.run(request, caller, client, transport).await;
    let status = match refusal {
        None => StatusCode::OK,
        Some(Refusal::MethodNotAllowed) => StatusCode::METHOD_NOT_ALLOWED,
        Some(Refusal::Unauthenticated) => StatusCode::UNAUTHORIZED,
        Some(Refusal::BadRequest) => StatusCode::BAD_REQUEST,
        Some(Refusal::Unavailable) => StatusCode::SERVICE_UNAVAILABLE,
        Some(Refusal::RateLimited { .. }) => StatusCode::TOO_MANY_REQUESTS,
    };
    let mut answer = json_response(status, &response, wants);
    if let Some(Refusal::RateLimited { retry_after }) = refusal {
        answer
            .headers_mut()
            .insert(header::RETRY_AFTER, retry_after.into());
    }
    answer
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

fn accepts_graphql_response(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(GRAPHQL_RESPONSE))
}

fn error_response(status: StatusCode, err: ApiError, wants: bool) -> axum::response::Response {
    json_response(status, &Response::from_errors(vec![err.into()]), wants)
}

fn json_response(status: StatusCode, response: &Response, wants: bool) -> axum::response::Response {
    let body = serde_json::to_vec(response).unwrap_or_else(|_| {
        br#"{"errors":[{"message":"internal error","extensions":{"code":"INTERNAL"}}]}"#.to_vec()
    });
    let content_type = if wants {
        GRAPHQL_RESPONSE
    } else {
        "application/json"
    };
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
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
    let upgrade = match WebSocketUpgrade::from_request_parts(parts, &()).await {
        Ok(upgrade) => upgrade.protocols(ws::SUBPROTOCOLS),
        Err(rejection) => return rejection.into_response(),
    };
    let Some(protocol) = upgrade
        .selected_protocol()
        .and_then(|name| name.to_str().ok())
        .and_then(ws::Protocol::from_name)
    else {
        return (
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Protocol: offer graphql-transport-ws or graphql-ws",
        )
            .into_response();
    };
    let max_message = gateway.state().config.max_body_bytes;
    upgrade
        .max_message_size(max_message)
        .max_frame_size(max_message)
        // Small buffers that grow with the message: an idle socket (most of a
        // dashboard's life) costs a few KiB instead of the default 128 KiB each way.
        .read_buffer_size(SOCKET_BUFFER)
        .write_buffer_size(0)
        // In the upgrade request's span, so the socket's operations log under its id.
        .on_upgrade(move |socket| {
            ws::serve(gateway, socket, protocol, client).instrument(Span::current())
        })
}
