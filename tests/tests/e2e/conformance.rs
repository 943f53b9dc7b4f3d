//! GraphQL over HTTP as the specification (graphql-over-http draft) and `api/src/http.rs`
//! say: `Accept` negotiation, status codes per media type, methods and `Allow`, content
//! types, GET rules (CSRF prevention in production), `operationName`, batches; and the
//! edges: a panic, the body limit above axum's default, a token too costly to verify.

use biscuit_auth::{Biscuit, builder::BlockBuilder};
use flashfusion_api::config::Environment;
use flashfusion_tests::{PANIC_ROUTE, TIMEOUT, TestApp, TestDb};
use reqwest::{Method, Response};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::code;

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

/// Status, `Content-Type`, `Allow` and JSON body of a response.
struct Answer {
    status: u16,
    content_type: String,
    allow: String,
    body: Value,
}

async fn answer(response: Response) -> Answer {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (status, content_type, allow) = (
        response.status().as_u16(),
        header("content-type"),
        header("allow"),
    );
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        content_type,
        allow,
        body,
    }
}

/// POSTs `body` (raw) with `Accept: accept`.
async fn post(app: &TestApp, accept: &str, body: &str) -> Answer {
    let request = app
        .anonymous()
        .request(Method::POST, "/graphql")
        .header("content-type", JSON)
        .header("accept", accept)
        .body(body.to_owned());
    answer(request.send().await.expect("request")).await
}

/// POSTs a GraphQL request object with `Accept: accept`.
async fn post_query(app: &TestApp, accept: &str, request: Value) -> Answer {
    post(app, accept, &request.to_string()).await
}

#[tokio::test]
async fn accept_picks_the_media_type_and_406_when_neither_is_acceptable() {
    let app = TestApp::postgres().await;
    let query = json!({ "query": "{ __typename }" });
    for (accept, expected) in [
        ("*/*", JSON),
        ("application/*", JSON),
        (JSON, JSON),
        (GRAPHQL_RESPONSE, GRAPHQL_RESPONSE),
        (
            "application/json, application/graphql-response+json",
            GRAPHQL_RESPONSE,
        ),
        // The better quality wins, even from a wildcard.
        ("application/graphql-response+json;q=0.9, */*", JSON),
        ("application/graphql-response+json, */*", GRAPHQL_RESPONSE),
        ("application/graphql-response+json;q=0, */*", JSON),
        (
            "application/graphql-response+json;q=0.5, application/json",
            JSON,
        ),
        ("text/html, application/json;charset=utf-8", JSON),
    ] {
        let answer = post_query(&app, accept, query.clone()).await;
        assert_eq!(answer.status, 200, "{accept}: {}", answer.body);
        assert_eq!(answer.content_type, expected, "{accept}");
        assert_eq!(answer.body["data"]["__typename"], "Query", "{accept}");
    }
    for accept in [
        "text/html",
        "application/json;q=0",
        "application/xml, image/*",
    ] {
        let answer = post_query(&app, accept, query.clone()).await;
        assert_eq!(answer.status, 406, "{accept}: {}", answer.body);
        assert_eq!(code(&answer.body), "BAD_USER_INPUT", "{accept}");
    }
    // No Accept at all: a legacy client, answered application/json.
    let (head, body) = raw(
        &app,
        &[format!(
            "POST /graphql HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
            query.to_string().len(),
            query
        )],
    )
    .await
    .remove(0);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json\r\n"),
        "{head}"
    );
    assert!(body.contains("\"__typename\":\"Query\""), "{body}");
}

#[tokio::test]
async fn request_errors_are_400_with_the_graphql_media_type_and_200_with_json() {
    let app = TestApp::postgres().await;
    let two = "query A { __typename } query B { publicProjects { totalCount } }";
    let request_errors = [
        ("syntax", json!({ "query": "{ me { " })),
        ("validation", json!({ "query": "{ nope }" })),
        (
            "unknown operation",
            json!({ "query": two, "operationName": "C" }),
        ),
        ("ambiguous operation", json!({ "query": two })),
        (
            "variable of the wrong type",
            json!({ "query": "query($n: Int) { publicProjects(first: $n) { totalCount } }", "variables": { "n": "ten" } }),
        ),
        (
            "required variable missing",
            json!({ "query": "query($id: ID!) { project(id: $id) { id } }", "variables": {} }),
        ),
        (
            "required variable null",
            json!({ "query": "query($id: ID!) { project(id: $id) { id } }", "variables": { "id": null } }),
        ),
        (
            "required variable of a directive missing",
            json!({ "query": "query($c: Boolean!) { __typename @include(if: $c) }" }),
        ),
    ];
    for (what, request) in request_errors {
        let strict = post_query(&app, GRAPHQL_RESPONSE, request.clone()).await;
        assert_eq!(strict.status, 400, "{what}: {}", strict.body);
        assert_eq!(strict.content_type, GRAPHQL_RESPONSE, "{what}");
        assert_eq!(code(&strict.body), "BAD_USER_INPUT", "{what}");
        assert!(strict.body.get("data").is_none(), "{what}: {}", strict.body);
        let legacy = post_query(&app, JSON, request).await;
        assert_eq!(legacy.status, 200, "{what}: {}", legacy.body);
        assert_eq!(legacy.content_type, JSON, "{what}");
        assert_eq!(code(&legacy.body), "BAD_USER_INPUT", "{what}");
    }
    // Not a GraphQL request at all: 400 whatever the media type.
    for body in [
        "{\"query\": ",
        "{\"querx\": \"{ __typename }\"}",
        "[1]",
        "\"q\"",
    ] {
        for accept in [GRAPHQL_RESPONSE, JSON] {
            let answer = post(&app, accept, body).await;
            assert_eq!(answer.status, 400, "{body} as {accept}: {}", answer.body);
            assert_eq!(answer.content_type, accept);
            assert_eq!(code(&answer.body), "BAD_USER_INPUT", "{body}");
        }
    }
    // A field error leaves `data`: 200 with either media type.
    for accept in [GRAPHQL_RESPONSE, JSON] {
        let answer = post_query(
            &app,
            accept,
            json!({ "query": "{ __typename myProjects { totalCount } }" }),
        )
        .await;
        assert_eq!(answer.status, 200, "{accept}: {}", answer.body);
        assert!(answer.body.get("data").is_some(), "{}", answer.body);
        assert_eq!(code(&answer.body), "UNAUTHENTICATED", "{}", answer.body);
    }
}

#[tokio::test]
async fn operation_name_selects_the_operation_to_run() {
    let app = TestApp::postgres().await;
    let document = "query A { __typename } query B { publicProjects { totalCount } }";
    for accept in [GRAPHQL_RESPONSE, JSON] {
        let a = post_query(
            &app,
            accept,
            json!({ "query": document, "operationName": "A" }),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.body["data"], json!({ "__typename": "Query" }));
        let b = post_query(
            &app,
            accept,
            json!({ "query": document, "operationName": "B" }),
        )
        .await;
        assert_eq!(
            b.body["data"],
            json!({ "publicProjects": { "totalCount": 0 } })
        );
    }
    // Over GET too, from the query string.
    let (status, body) = app
        .anonymous()
        .send(
            app.anonymous()
                .request(Method::GET, "/graphql")
                .query(&[("query", document), ("operationName", "A")]),
        )
        .await;
    assert_eq!(
        (status, &body["data"]["__typename"]),
        (200, &json!("Query"))
    );
}

#[tokio::test]
async fn a_batch_is_refused_clearly_with_either_media_type() {
    let app = TestApp::postgres().await;
    let batch = json!([{ "query": "{ __typename }" }, { "query": "{ __typename }" }]);
    for accept in [GRAPHQL_RESPONSE, JSON] {
        let answer = post_query(&app, accept, batch.clone()).await;
        assert_eq!(answer.status, 400, "{accept}");
        assert_eq!(answer.content_type, accept);
        assert_eq!(code(&answer.body), "BAD_USER_INPUT");
        let message = answer.body["errors"][0]["message"].as_str();
        assert!(
            message.is_some_and(|m| m.contains("batch")),
            "{}",
            answer.body
        );
    }
}

#[tokio::test]
async fn methods_content_types_and_allow() {
    let app = TestApp::postgres().await;
    let client = app.anonymous();
    for method in [Method::PUT, Method::DELETE, Method::PATCH, Method::HEAD] {
        let answer = answer(
            client
                .request(method.clone(), "/graphql")
                .header("content-type", JSON)
                .body(r#"{"query":"{ __typename }"}"#)
                .send()
                .await
                .expect("request"),
        )
        .await;
        assert_eq!(answer.status, 405, "{method}");
        assert_eq!(answer.allow, "GET, POST", "{method}");
    }
    // Another route's 405 carries Allow too (axum's own).
    let other = answer(
        client
            .request(Method::POST, "/healthz")
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(other.status, 405);
    assert!(other.allow.contains("GET"), "{:?}", other.allow);

    // A mutation over GET: 405, Allow: POST, with either media type, and nothing runs.
    let mutation = "mutation { signUp(input: {email: \"a@example.com\", password: \"correct horse\", displayName: \"A\"}) { token } }";
    for accept in [GRAPHQL_RESPONSE, JSON] {
        let answer = answer(
            client
                .request(Method::GET, "/graphql")
                .header("accept", accept)
                .query(&[("query", mutation)])
                .send()
                .await
                .expect("request"),
        )
        .await;
        assert_eq!(answer.status, 405, "{}", answer.body);
        assert_eq!(answer.allow, "POST");
        assert_eq!(answer.content_type, accept);
        assert_eq!(code(&answer.body), "BAD_USER_INPUT");
        // Nothing executed: a request error has no `data` entry at all.
        assert!(answer.body.get("data").is_none(), "{}", answer.body);
    }
    let signed_up = app
        .anonymous()
        .graphql(
            "mutation { signIn(input: {email: \"a@example.com\", password: \"correct horse\"}) { token } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&signed_up), "UNAUTHENTICATED", "{signed_up}");

    // POST only with application/json (a charset is fine); a browser's cross-site types
    // and a missing type are 415.
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/graphql"),
        None,
    ] {
        let mut request = client
            .request(Method::POST, "/graphql")
            .body(r#"{"query":"{ __typename }"}"#);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let answer = answer(request.send().await.expect("request")).await;
        assert_eq!(answer.status, 415, "{content_type:?}");
        assert_eq!(code(&answer.body), "BAD_USER_INPUT");
    }
    let charset = answer(
        client
            .request(Method::POST, "/graphql")
            .header("content-type", "application/json; charset=utf-8")
            .body(r#"{"query":"{ __typename }"}"#)
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(charset.status, 200, "{}", charset.body);
}

/// A gateway in `environment` over a fresh database.
async fn app_in(environment: Environment) -> TestApp {
    let db = TestDb::new().await;
    let url = db.url().to_owned();
    TestApp::start_with(url, Some(db), |config| config.environment = environment).await
}

#[tokio::test]
async fn in_production_a_get_query_needs_a_header_a_form_cannot_send() {
    let query = "{ __typename }";
    let get = |app: &TestApp, headers: &[(&str, &str)]| {
        let mut request = app
            .anonymous()
            .request(Method::GET, "/graphql")
            .query(&[("query", query)]);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request
    };
    let development = app_in(Environment::Development).await;
    let plain = answer(get(&development, &[]).send().await.expect("get")).await;
    assert_eq!(plain.status, 200, "{}", plain.body);

    let production = app_in(Environment::Production).await;
    for refused in [&[][..], &[("content-type", "text/plain")][..]] {
        let answer = answer(get(&production, refused).send().await.expect("get")).await;
        assert_eq!(answer.status, 400, "{refused:?}: {}", answer.body);
        assert_eq!(code(&answer.body), "BAD_USER_INPUT");
        let message = answer.body["errors"][0]["message"].as_str();
        assert!(
            message.is_some_and(|m| m.contains("x-graphql-preflight")),
            "{}",
            answer.body
        );
    }
    for allowed in [
        ("x-graphql-preflight", "1"),
        ("apollo-require-preflight", "true"),
        ("content-type", "application/json"),
    ] {
        let answer = answer(get(&production, &[allowed]).send().await.expect("get")).await;
        assert_eq!(answer.status, 200, "{allowed:?}: {}", answer.body);
        assert_eq!(answer.body["data"]["__typename"], "Query");
    }
    // POST and the WebSocket upgrade (a GET) are unaffected.
    let posted = production.anonymous().graphql(query, json!({})).await;
    assert_eq!(posted["data"]["__typename"], "Query", "{posted}");
    let mut ws = production
        .websocket("graphql-transport-ws", json!({}))
        .await;
    assert_eq!(ws.next().await.expect("ack")["type"], "connection_ack");
}

#[tokio::test]
async fn a_panic_is_a_500_internal_and_the_connection_and_process_live_on() {
    let app = TestApp::postgres_with_panic_route().await;
    let request = |path: &str| format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
    // Both requests on one connection: the second is answered after the panic.
    let answers = raw(&app, &[request(PANIC_ROUTE), request("/healthz")]).await;
    let (head, body) = &answers[0];
    assert!(head.starts_with("HTTP/1.1 500"), "{head}");
    let body: Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(code(&body), "INTERNAL", "{body}");
    assert_eq!(body["errors"][0]["message"], "internal error");
    let (head, body) = &answers[1];
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, "ok");
    let after = app.anonymous().graphql("{ __typename }", json!({})).await;
    assert_eq!(after["data"]["__typename"], "Query", "{after}");
}

#[tokio::test]
async fn the_body_limit_is_the_configured_one_even_above_two_mib() {
    let db = TestDb::new().await;
    let url = db.url().to_owned();
    let app = TestApp::start_with(url, Some(db), |config| {
        config.max_body_bytes = 3 * 1024 * 1024;
    })
    .await;
    let padded = |bytes: usize| {
        json!({ "query": "{ __typename }", "variables": { "pad": "x".repeat(bytes) } }).to_string()
    };
    let accepted = post(&app, JSON, &padded(5 * 1024 * 1024 / 2)).await;
    assert_eq!(accepted.status, 200, "2.5 MiB under a 3 MiB limit");
    assert_eq!(accepted.body["data"]["__typename"], "Query");
    let refused = post(&app, JSON, &padded(7 * 1024 * 1024 / 2)).await;
    assert_eq!(refused.status, 413, "3.5 MiB over a 3 MiB limit");
}

#[tokio::test]
async fn a_token_too_costly_to_verify_is_401_unauthenticated() {
    let app = TestApp::postgres().await;
    let (ada, _) = app.user("ada@example.com").await;
    let token = Biscuit::from_base64(ada.token(), app.root.public()).expect("parse");
    // The holder appends thousands of facts and checks: more than biscuit's limits (and
    // the gateway's own bounds on appended blocks) allow to authorize.
    let mut block = BlockBuilder::new();
    for i in 0..3_000 {
        block = block
            .code(format!("junk({i}); check if junk({i});"))
            .expect("block");
    }
    let huge = token
        .append(block)
        .and_then(|t| t.to_base64())
        .expect("append");
    // A smaller one that fits the size bound but not the statement bound.
    let mut block = BlockBuilder::new();
    for i in 0..20 {
        block = block.code(format!("junk({i});")).expect("block");
    }
    let many = Biscuit::from_base64(ada.token(), app.root.public())
        .and_then(|t| t.append(block))
        .and_then(|t| t.to_base64())
        .expect("append");
    for (what, token) in [("huge", huge), ("many statements", many)] {
        let (status, body) = app
            .with_token(&token)
            .post_json(json!({ "query": "{ me { id } }" }))
            .await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(code(&body), "UNAUTHENTICATED", "{what}: {body}");
    }
    // The token it was derived from still works.
    let me = ada.graphql("{ me { email } }", json!({})).await;
    assert_eq!(me["data"]["me"]["email"], "ada@example.com", "{me}");
}

/// Sends `requests` (raw HTTP/1.1, each without a body or with its own length) one
/// after the other on one connection; returns each answer's head and body. Used where
/// reqwest cannot: no `Accept` header at all, or the same connection after a panic.
async fn raw(app: &TestApp, requests: &[String]) -> Vec<(String, String)> {
    let address = app.base.trim_start_matches("http://");
    let mut stream = tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(address))
        .await
        .expect("connect timed out")
        .expect("connect");
    let mut answers = Vec::new();
    let mut buffer = Vec::new();
    for request in requests {
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send request");
        let answer = tokio::time::timeout(TIMEOUT, read_answer(&mut stream, &mut buffer))
            .await
            .expect("no answer within the timeout");
        answers.push(answer);
    }
    answers
}

/// Reads one response with a `content-length` from `stream`; bytes after it stay in
/// `buffer`.
async fn read_answer(stream: &mut tokio::net::TcpStream, buffer: &mut Vec<u8>) -> (String, String) {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
            let length = head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                .expect("a content-length");
            if buffer.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&buffer[end + 4..end + 4 + length]).into_owned();
                buffer.drain(..end + 4 + length);
                return (head, body);
            }
        }
        let read = stream.read(&mut chunk).await.expect("read");
        assert!(read > 0, "the connection was closed");
        buffer.extend_from_slice(&chunk[..read]);
    }
}
