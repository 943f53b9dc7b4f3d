//! Observability: `GET /metrics` counts what happened (operations by name and outcome,
//! error codes, latency, sockets, subscriptions and their deliveries, the pool, HTTP
//! requests refused before the pipeline, each once), keeps client-chosen names bounded,
//! and can be turned off; every response carries an `x-request-id`, the client's when it
//! is sane.

use std::time::Duration;

use flashfusion_api::config::Environment;
use flashfusion_tests::{Client, PANIC_ROUTE, Scrape, TIMEOUT, TestApp, TestDb};
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NOTIFICATIONS: &str = "subscription { notificationAdded { kind notification { title } } }";
const NOTIFY: &str =
    "mutation($i: CreateNotificationInput!) { createNotification(input: $i) { notificationId } }";

const OPERATIONS: &str = "flashfusion_graphql_operations_total";
const ERRORS: &str = "flashfusion_graphql_errors_total";
const LATENCY_COUNT: &str = "flashfusion_graphql_operation_duration_seconds_count";
const REFUSALS: &str = "flashfusion_http_refusals_total";

on_both_backends!(operations_errors_and_subscriptions_are_counted);

async fn operations_errors_and_subscriptions_are_counted(app: TestApp) {
    let anonymous = app.anonymous();
    let (ada, user) = app.user("ada@example.com").await;
    let (admin, _) = app.admin("root@example.com").await;
    let before = Scrape::of(&anonymous).await;

    let ok = anonymous
        .graphql("query Probe { __typename }", json!({}))
        .await;
    assert_eq!(ok["data"]["__typename"], "Query", "{ok}");
    let failed = anonymous
        .graphql("query Broken { noSuchField }", json!({}))
        .await;
    assert_eq!(super::code(&failed), "BAD_USER_INPUT", "{failed}");
    let (status, _) = anonymous
        .get_query("mutation Sneaky { createProject(input: {name: \"x\"}) { project { id } } }")
        .await;
    assert_eq!(status, 405);
    let long = "A".repeat(65);
    anonymous
        .graphql(&format!("query {long} {{ __typename }}"), json!({}))
        .await;

    // A subscription that receives one event.
    let live = app.state.fanout.live();
    let mut ws = app.socket_as(ada.token()).await;
    ws.send(json!({ "id": "1", "type": "subscribe", "payload": { "query": NOTIFICATIONS } }))
        .await;
    app.until_live("the subscription never started", |now| now > live)
        .await;
    let created = admin
        .graphql(
            NOTIFY,
            json!({ "i": { "userId": user, "kind": "test", "title": "hello" } }),
        )
        .await;
    assert!(created["errors"].is_null(), "{created}");
    let event = ws.next().await.expect("an event");
    assert_eq!(
        event["payload"]["data"]["notificationAdded"]["notification"]["title"], "hello",
        "{event}"
    );

    let after = Scrape::of(&anonymous).await;
    let grew =
        |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);
    let post = ("transport", "http_post");
    assert_eq!(
        grew(
            OPERATIONS,
            &[
                ("operation", "Probe"),
                ("operation_type", "query"),
                post,
                ("outcome", "ok")
            ]
        ),
        1.0
    );
    assert_eq!(
        grew(
            OPERATIONS,
            &[
                ("operation", "Broken"),
                ("operation_type", "query"),
                post,
                ("outcome", "errors")
            ]
        ),
        1.0
    );
    assert_eq!(
        grew(
            OPERATIONS,
            &[
                ("operation", "Sneaky"),
                ("transport", "http_get"),
                ("outcome", "method_not_allowed")
            ]
        ),
        1.0
    );
    // A name longer than 64 characters gets no series of its own.
    assert_eq!(grew(OPERATIONS, &[("operation", "other"), post]), 1.0);
    assert_eq!(after.sum(OPERATIONS, &[("operation", long.as_str())]), 0.0);
    assert_eq!(
        grew(
            OPERATIONS,
            &[("operation_type", "mutation"), post, ("outcome", "ok")]
        ),
        1.0,
        "the admin's createNotification"
    );
    // Broken's validation error and Sneaky's refusal.
    assert_eq!(grew(ERRORS, &[("code", "BAD_USER_INPUT")]), 2.0);
    assert_eq!(
        grew(LATENCY_COUNT, &[("operation_type", "query"), post]),
        3.0
    );

    assert_eq!(after.sum("flashfusion_websocket_connections", &[]), 1.0);
    assert_eq!(after.sum("flashfusion_subscriptions_active", &[]), 1.0);
    assert_eq!(after.sum("flashfusion_subscription_executions", &[]), 1.0);
    assert_eq!(grew("flashfusion_subscription_deliveries_total", &[]), 1.0);
    assert!(grew("flashfusion_events_broadcast_total", &[]) >= 1.0);
    assert!(
        after.sum("flashfusion_db_statements_total", &[])
            > before.sum("flashfusion_db_statements_total", &[])
    );
    if app.state.db.backend() == sea_orm::DatabaseBackend::Postgres {
        // Only the Postgres listener reconnects; it has had no reason to.
        assert_eq!(after.sum("flashfusion_listener_reconnects_total", &[]), 0.0);
    }
    // The pool: what is open is idle or in use, and never more than the maximum
    // (the harness configures 5).
    let open = after.sum("flashfusion_db_pool_connections", &[]);
    assert_eq!(after.sum("flashfusion_db_pool_connections_max", &[]), 5.0);
    assert!((1.0..=5.0).contains(&open), "{open} open connections");
    assert_eq!(
        after.sum("flashfusion_db_pool_connections_idle", &[])
            + after.sum("flashfusion_db_pool_connections_in_use", &[]),
        open
    );

    drop(ws);
    app.until_live("the subscription never ended", |now| now == live)
        .await;
    let closed = tokio::time::timeout(TIMEOUT, async {
        loop {
            let scrape = Scrape::of(&anonymous).await;
            if scrape.sum("flashfusion_websocket_connections", &[]) == 0.0 {
                return scrape;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the closed socket is never uncounted");
    assert_eq!(closed.sum("flashfusion_subscriptions_active", &[]), 0.0);
}

#[tokio::test]
async fn metrics_can_be_turned_off() {
    let db = TestDb::new().await;
    let url = db.url().to_owned();
    let app = TestApp::start_with(url, Some(db), |config| config.metrics = false).await;
    let response = app
        .anonymous()
        .request(Method::GET, "/metrics")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn every_response_carries_a_sane_request_id() {
    let app = TestApp::postgres().await;
    let client = app.anonymous();
    let id_of = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.expect("request");
        response.headers()["x-request-id"]
            .to_str()
            .expect("an ASCII id")
            .to_owned()
    };
    let graphql = || {
        client
            .request(Method::POST, "/graphql")
            .json(&json!({ "query": "{ __typename }" }))
    };

    // None sent: a fresh UUID, a different one each time.
    let first = id_of(graphql()).await;
    let second = id_of(client.request(Method::GET, "/healthz")).await;
    for id in [&first, &second] {
        assert!(uuid::Uuid::parse_str(id).is_ok(), "not a UUID: {id}");
    }
    assert_ne!(first, second);

    // A sane one is kept.
    let sane = "trace-4bf92f3577b34da6.a_3";
    assert_eq!(id_of(graphql().header("x-request-id", sane)).await, sane);
    let longest = "a".repeat(64);
    assert_eq!(
        id_of(graphql().header("x-request-id", longest.as_str())).await,
        longest
    );

    // Anything else is replaced.
    for insane in ["two words", "<script>", &"a".repeat(65), ""] {
        let id = id_of(graphql().header("x-request-id", insane)).await;
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{insane:?} became {id}");
    }
    let both = graphql()
        .header("x-request-id", "one")
        .header("x-request-id", "two");
    let id = id_of(both).await;
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "two ids became {id}");

    // Also where no route matches, and on a refusal before the handler runs.
    let unrouted = id_of(
        client
            .request(Method::GET, "/nowhere")
            .header("x-request-id", sane),
    )
    .await;
    assert_eq!(unrouted, sane);
    let refused = client
        .request(Method::POST, "/graphql")
        .header("content-type", "application/json")
        .header("x-request-id", sane)
        .body(vec![b' '; app.state.config.max_body_bytes + 1])
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), 413);
    assert_eq!(refused.headers()["x-request-id"], sane);
}

/// Two scrapes, before and after something happened.
struct Growth {
    before: Scrape,
    after: Scrape,
}

impl Growth {
    /// How much the samples [`Scrape::sum`] picks grew.
    fn of(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.after.sum(name, labels) - self.before.sum(name, labels)
    }
}

/// Sends `request` to `client`'s gateway: its status, and what it did to the metrics.
async fn counted(client: &Client, request: reqwest::RequestBuilder) -> (u16, Growth) {
    let before = Scrape::of(client).await;
    let status = request.send().await.expect("request").status().as_u16();
    let after = Scrape::of(client).await;
    (status, Growth { before, after })
}

#[tokio::test]
async fn each_refusal_before_the_pipeline_is_counted_once_and_operations_are_not() {
    let app = TestApp::postgres_with_panic_route().await;
    let client = app.anonymous();
    // reqwest adds a header rather than replacing it: each request names its type once.
    let post_as = |content_type: &str| {
        client
            .request(Method::POST, "/graphql")
            .header("content-type", content_type)
    };
    let post = || post_as("application/json");
    let query = r#"{"query":"{ __typename }"}"#;
    let too_large = vec![b' '; app.state.config.max_body_bytes + 1];
    let cases: Vec<(reqwest::RequestBuilder, u16, &str, &str)> = vec![
        (
            post().header("accept", "text/html").body(query),
            406,
            "BAD_USER_INPUT",
            "not_acceptable",
        ),
        (
            post_as("text/plain").body(query),
            415,
            "BAD_USER_INPUT",
            "content_type",
        ),
        (post().body(too_large), 413, "none", "body_limit"),
        (
            client.request(Method::PUT, "/graphql").body(query),
            405,
            "BAD_USER_INPUT",
            "method",
        ),
        (
            post().body(r#"{"query":"#),
            400,
            "BAD_USER_INPUT",
            "malformed",
        ),
        (
            client
                .request(Method::GET, "/graphql")
                .query(&[("query", "{ __typename }"), ("variables", "{not json")]),
            400,
            "BAD_USER_INPUT",
            "malformed",
        ),
        (
            post().body(format!("[{query}]")),
            400,
            "BAD_USER_INPUT",
            "batch",
        ),
        (
            post().bearer_auth("not-a-token").body(query),
            401,
            "UNAUTHENTICATED",
            "token",
        ),
        (
            client
                .request(Method::GET, "/graphql")
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
                .header("sec-websocket-protocol", "not-graphql"),
            400,
            "none",
            "websocket_upgrade",
        ),
        (
            client.request(Method::GET, PANIC_ROUTE),
            500,
            "INTERNAL",
            "panic",
        ),
    ];
    for (request, status, code, reason) in cases {
        let (answered, growth) = counted(&client, request).await;
        assert_eq!(answered, status, "{reason}");
        let status = status.to_string();
        assert_eq!(
            growth.of(
                REFUSALS,
                &[
                    ("status", status.as_str()),
                    ("code", code),
                    ("reason", reason)
                ]
            ),
            1.0,
            "{reason}"
        );
        assert_eq!(growth.of(REFUSALS, &[]), 1.0, "{reason}: counted once");
        assert_eq!(
            growth.of(OPERATIONS, &[]),
            0.0,
            "{reason}: not an operation"
        );
        assert_eq!(
            growth.of(ERRORS, &[]),
            0.0,
            "{reason}: not an operation's error"
        );
    }

    // What reaches the pipeline is counted there, refused or not, and only there.
    for (request, outcome) in [
        (post().body(query), "ok"),
        (post().body(r#"{"query":"{ nope "}"#), "bad_request"),
        (
            client.request(Method::GET, "/graphql").query(&[(
                "query",
                "mutation { createProject(input: {name: \"x\"}) { project { id } } }",
            )]),
            "method_not_allowed",
        ),
    ] {
        let (_, growth) = counted(&client, request).await;
        assert_eq!(
            growth.of(OPERATIONS, &[("outcome", outcome)]),
            1.0,
            "{outcome}"
        );
        assert_eq!(growth.of(OPERATIONS, &[]), 1.0, "{outcome}");
        assert_eq!(growth.of(REFUSALS, &[]), 0.0, "{outcome}: not a refusal");
    }
}

#[tokio::test]
async fn a_timeout_is_a_refusal_not_an_operation() {
    let db = TestDb::new().await;
    let url = db.url().to_owned();
    let app = TestApp::start_with(url, Some(db), |config| {
        config.request_timeout = Duration::from_millis(1);
    })
    .await;
    let before = Scrape::of_state(&app);
    // An argon2 hash outlasts a millisecond.
    let (status, _) = app
        .anonymous()
        .post_json(json!({
            "query": "mutation { signUp(input: {email: \"ada@example.com\", password: \"correct horse\", displayName: \"Ada\"}) { token } }"
        }))
        .await;
    assert_eq!(status, 408);
    let growth = Growth {
        before,
        after: Scrape::of_state(&app),
    };
    assert_eq!(
        growth.of(
            REFUSALS,
            &[("status", "408"), ("code", "none"), ("reason", "timeout")]
        ),
        1.0
    );
    assert_eq!(growth.of(REFUSALS, &[]), 1.0);
    // The operation was cut short before the pipeline counted it.
    assert_eq!(growth.of(OPERATIONS, &[]), 0.0);
}

#[tokio::test]
async fn a_websocket_operation_cut_short_by_the_timeout_is_counted() {
    let db = TestDb::new().await;
    let url = db.url().to_owned();
    let app = TestApp::start_with(url, Some(db), |config| {
        config.request_timeout = Duration::from_millis(1);
    })
    .await;
    let mut ws = app.websocket("graphql-transport-ws", json!({})).await;
    assert_eq!(ws.next().await.expect("ack")["type"], "connection_ack");
    let before = Scrape::of_state(&app);
    // An argon2 hash outlasts a millisecond.
    ws.send(json!({ "id": "1", "type": "subscribe", "payload": {
        "query": "mutation Join { signUp(input: {email: \"ada@example.com\", password: \"correct horse\", displayName: \"Ada\"}) { token } }"
    } }))
    .await;
    let answer = ws.next().await.expect("an answer");
    assert_eq!(
        answer["payload"][0]["extensions"]["code"], "INTERNAL",
        "{answer}"
    );
    let growth = Growth {
        before,
        after: Scrape::of_state(&app),
    };
    assert_eq!(
        growth.of(
            OPERATIONS,
            &[
                ("operation", "Join"),
                ("operation_type", "mutation"),
                ("transport", "websocket"),
                ("outcome", "errors")
            ]
        ),
        1.0
    );
    assert_eq!(growth.of(ERRORS, &[("code", "INTERNAL")]), 1.0);
}

#[tokio::test]
async fn an_operation_over_the_rate_limit_is_counted_as_one() {
    let db = TestDb::new().await;
    let url = db.url().to_owned();
    let app = TestApp::start_with(url, Some(db), |config| {
        config.rate_limit_burst = 1;
        config.rate_limit_refill = Duration::from_secs(3600);
    })
    .await;
    let client = app.anonymous();
    let first = client.graphql("{ __typename }", json!({})).await;
    assert_eq!(first["data"]["__typename"], "Query", "{first}");

    let before = Scrape::of(&client).await;
    let (status, body) = client
        .post_json(json!({ "query": "query Again { __typename }", "operationName": "Again" }))
        .await;
    assert_eq!(status, 429, "{body}");
    let mut ws = app.websocket("graphql-transport-ws", json!({})).await;
    assert_eq!(ws.next().await.expect("ack")["type"], "connection_ack");
    ws.send(json!({ "id": "1", "type": "subscribe", "payload": { "query": "{ __typename }" } }))
        .await;
    let refused = ws.next().await.expect("an answer");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"], "RATE_LIMITED",
        "{refused}"
    );
    ws.send(json!({ "id": "2", "type": "subscribe", "payload": {
        "query": "subscription Watch { notificationAdded { cursor } }",
        "operationName": "Watch",
    } }))
    .await;
    let refused = ws.next().await.expect("an answer");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"], "RATE_LIMITED",
        "{refused}"
    );
    let growth = Growth {
        before,
        after: Scrape::of(&client).await,
    };
    let limited = ("outcome", "rate_limited");
    assert_eq!(
        growth.of(
            OPERATIONS,
            &[
                ("operation", "Again"),
                ("operation_type", "unknown"),
                ("transport", "http_post"),
                limited
            ]
        ),
        1.0
    );
    assert_eq!(
        growth.of(OPERATIONS, &[("transport", "websocket"), limited]),
        2.0
    );
    assert_eq!(
        growth.of(
            OPERATIONS,
            &[("operation", "Watch"), ("transport", "websocket"), limited]
        ),
        1.0,
        "a subscription over the limit is counted too"
    );
    assert_eq!(growth.of(OPERATIONS, &[]), 3.0);
    assert_eq!(growth.of(ERRORS, &[("code", "RATE_LIMITED")]), 3.0);
    assert_eq!(
        growth.of(REFUSALS, &[]),
        0.0,
        "counted as operations, not twice"
    );
}

#[tokio::test]
async fn a_production_get_without_a_preflight_header_is_counted() {
    let db = TestDb::new().await;
    let url = db.url().to_owned();
    let app = TestApp::start_with(url, Some(db), |config| {
        config.environment = Environment::Production;
    })
    .await;
    let client = app.anonymous();
    let get = client
        .request(Method::GET, "/graphql")
        .query(&[("query", "{ __typename }")]);
    let (status, growth) = counted(&client, get).await;
    assert_eq!(status, 400);
    assert_eq!(
        growth.of(
            REFUSALS,
            &[
                ("status", "400"),
                ("code", "BAD_USER_INPUT"),
                ("reason", "preflight")
            ]
        ),
        1.0
    );
    assert_eq!(growth.of(REFUSALS, &[]), 1.0);
    assert_eq!(growth.of(OPERATIONS, &[]), 0.0);
}

#[tokio::test]
async fn a_body_over_the_limit_without_a_length_is_counted_once() {
    let db = TestDb::new().await;
    let url = db.url().to_owned();
    let app = TestApp::start_with(url, Some(db), |config| config.max_body_bytes = 256).await;
    let client = app.anonymous();
    let before = Scrape::of(&client).await;
    // Chunked, so the limit is met while the handler reads the body, not by its layer.
    let status = post_chunked(&app, &[b' '; 1024]).await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    let growth = Growth {
        before,
        after: Scrape::of(&client).await,
    };
    assert_eq!(
        growth.of(
            REFUSALS,
            &[
                ("status", "413"),
                ("code", "none"),
                ("reason", "body_limit")
            ]
        ),
        1.0
    );
    assert_eq!(growth.of(REFUSALS, &[]), 1.0);
    assert_eq!(growth.of(OPERATIONS, &[]), 0.0);
}

/// POSTs `body` to `/graphql` as one chunk of `Transfer-Encoding: chunked` (no length
/// known before it is read), which reqwest cannot send: the answer's status line.
async fn post_chunked(app: &TestApp, body: &[u8]) -> String {
    let address = app.base.trim_start_matches("http://");
    let mut stream = tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(address))
        .await
        .expect("connect timed out")
        .expect("connect");
    let mut request = format!(
        "POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         transfer-encoding: chunked\r\n\r\n{:x}\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request.extend_from_slice(b"\r\n0\r\n\r\n");
    stream.write_all(&request).await.expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        while !answer.windows(2).any(|w| w == b"\r\n") {
            let read = stream.read(&mut chunk).await.expect("read");
            assert!(read > 0, "closed before answering");
            answer.extend_from_slice(&chunk[..read]);
        }
    })
    .await
    .expect("no answer within the timeout");
    let answer = String::from_utf8_lossy(&answer);
    answer.lines().next().unwrap_or_default().to_owned()
}
