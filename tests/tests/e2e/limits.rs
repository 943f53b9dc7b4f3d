//! The limits on hostile input (`api::limits`): for each, one request just under (it
//! runs) and one just over (refused with `BAD_USER_INPUT` naming the limit's setting,
//! 400 under `application/graphql-response+json`, at no database cost); a subscription
//! refused by validation, at no database cost either; the rate limits per client address and per token, over HTTP
//! (429 with `Retry-After`) and WebSocket; and the `statement_timeout` every request
//! transaction carries on Postgres.

use flashfusion_api::auth::Identity;
use std::time::Duration;

use flashfusion_tests::{TIMEOUT, TestApp, TestDb};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use serde_json::{Value, json};

use crate::code;

/// Sends `query` anonymously, accepting `application/graphql-response+json` (under which
/// a refused request is a 400, where `application/json` would answer 200); the status,
/// the body and the round trips it cost.
async fn measured(app: &TestApp, query: &str, variables: Value) -> (u16, Value, u64) {
    let before = app.state.db.round_trips();
    let client = app.anonymous();
    let (status, body) = client
        .send(
            client
                .request(reqwest::Method::POST, "/graphql")
                .header("accept", "application/graphql-response+json")
                .json(&json!({ "query": query, "variables": variables })),
        )
        .await;
    (status, body, app.state.db.round_trips() - before)
}

/// `query` runs without errors.
async fn runs(app: &TestApp, query: &str, variables: Value) {
    let (status, body, _) = measured(app, query, variables).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["errors"].is_null(), "refused: {body}");
}

/// `query` is refused with `BAD_USER_INPUT` naming `setting`, with `status`, and no
/// database work.
async fn refused(app: &TestApp, query: &str, variables: Value, setting: &str, status: u16) {
    let (got, body, round_trips) = measured(app, query, variables).await;
    assert_eq!(got, status, "{body}");
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains(setting), "{message}");
    assert_eq!(round_trips, 0, "a refused operation reached the database");
}

/// A valid query of exactly `n` lexical tokens (8 of them around the padding).
fn tokens(n: usize) -> String {
    format!(
        "{{ __schema {{ queryType {{ {} }} }} }}",
        "name ".repeat(n - 8)
    )
}

#[tokio::test]
async fn tokens_are_counted_before_parsing() {
    let app = TestApp::postgres().await;
    runs(&app, &tokens(1_000), json!({})).await;
    let parses = app.state.documents.parses();
    refused(
        &app,
        &tokens(1_001),
        json!({}),
        "FLASHFUSION_MAX_TOKENS",
        400,
    )
    .await;
    assert_eq!(
        app.state.documents.parses(),
        parses,
        "the refused query was parsed"
    );
    // Numbers need no separator between them: `[1-1-…]` is a list of one number per
    // `-`, however few bytes its text takes.
    let numbers = format!("{{ __typename @include(if: [{}1]) }}", "1-".repeat(1_000));
    refused(&app, &numbers, json!({}), "FLASHFUSION_MAX_TOKENS", 400).await;
    assert_eq!(
        app.state.documents.parses(),
        parses,
        "the list of numbers was parsed"
    );
    // Comments and commas are not tokens.
    let padded = format!("{} # {}\n,,,,", tokens(1_000), "x ".repeat(5_000));
    runs(&app, &padded, json!({})).await;
}

/// `n` aliased selections below the root.
fn aliases(n: usize) -> String {
    let fields: String = (0..n)
        .map(|i| format!("a{i}: queryType {{ name }} "))
        .collect();
    format!("{{ __schema {{ {fields} }} }}")
}

#[tokio::test]
async fn aliases_per_operation() {
    let app = TestApp::postgres().await;
    runs(&app, &aliases(15), json!({})).await;
    refused(
        &app,
        &aliases(16),
        json!({}),
        "FLASHFUSION_MAX_ALIASES",
        400,
    )
    .await;
    // Counted where a fragment is spread, each time.
    let spread = format!(
        "{{ __schema {{ ...A ...A }} }} fragment A on __Schema {{ {} }}",
        (0..8)
            .map(|i| format!("a{i}: queryType {{ name }} "))
            .collect::<String>()
    );
    refused(&app, &spread, json!({}), "FLASHFUSION_MAX_ALIASES", 400).await;
}

/// `n` directives, one per selection.
fn directives(n: usize) -> String {
    format!(
        "{{ __schema {{ queryType {{ {} }} }} }}",
        "name @include(if: true) ".repeat(n)
    )
}

#[tokio::test]
async fn directives_per_operation() {
    let app = TestApp::postgres().await;
    runs(&app, &directives(50), json!({})).await;
    refused(
        &app,
        &directives(51),
        json!({}),
        "FLASHFUSION_MAX_DIRECTIVES",
        400,
    )
    .await;
}

/// A valid query `6 + parents + 1` fields deep: projects, their tasks, the tasks'
/// parents.
fn nested(parents: usize) -> String {
    format!(
        "{{ publicProjects(first: 1) {{ edges {{ node {{ tasks(first: 1) {{ edges {{ node {{ {} id {} }} }} }} }} }} }} }}",
        "parentTask { ".repeat(parents),
        "} ".repeat(parents)
    )
}

#[tokio::test]
async fn depth() {
    let app = TestApp::postgres().await;
    runs(&app, &nested(5), json!({})).await;
    refused(&app, &nested(6), json!({}), "FLASHFUSION_MAX_DEPTH", 400).await;
}

/// `n` aliased root fields.
fn root_fields(n: usize) -> String {
    let fields: String = (0..n).map(|i| format!("r{i}: __typename ")).collect();
    format!("{{ {fields} }}")
}

#[tokio::test]
async fn root_fields_per_operation() {
    let app = TestApp::postgres().await;
    runs(&app, &root_fields(10), json!({})).await;
    refused(
        &app,
        &root_fields(11),
        json!({}),
        "FLASHFUSION_MAX_ROOT_FIELDS",
        400,
    )
    .await;
    // A mutation's too: ten sign-ins would be ten password hashes.
    let sign_ins: String = (0..11)
        .map(|i| {
            format!(
                "s{i}: signIn(input: {{email: \"a@example.com\", password: \"x\"}}) {{ token }} "
            )
        })
        .collect();
    refused(
        &app,
        &format!("mutation {{ {sign_ins} }}"),
        json!({}),
        "FLASHFUSION_MAX_ROOT_FIELDS",
        400,
    )
    .await;
}

/// Costs `first × (tasks + 3) + 1`: 100 projects × (`tasks` pages of `$tasks` + edges,
/// node and the connection) under the default limit of 5,000.
const COSTLY: &str = "query($tasks: Int) { publicProjects(first: 100) { edges { node { tasks(first: $tasks) { totalCount } } } } }";

#[tokio::test]
async fn cost_multiplies_by_page_size() {
    let app = TestApp::postgres().await;
    // 100 × 49 + 1 = 4,901.
    runs(&app, COSTLY, json!({ "tasks": 46 })).await;
    // 100 × 50 + 1 = 5,001: found by validation, before the transaction opens (a
    // request error, as every other validation error).
    refused(
        &app,
        COSTLY,
        json!({ "tasks": 47 }),
        "FLASHFUSION_MAX_COST",
        400,
    )
    .await;
}

/// A subscription within every limit but its cost: each of a task's project's 100
/// tasks' project's 100 tasks.
const COSTLY_SUBSCRIPTION: &str = "subscription { agentTaskUpdated { task { project { tasks(first: 100) { edges { node { project { tasks(first: 100) { totalCount } } } } } } } } }";

/// A subscription refused by validation (over the cost limit, or naming an unknown
/// field) gets its error over the WebSocket and costs no database work: its set-up
/// transaction opens only once it passed validation, as an operation's does. A valid
/// one still reaches its set-up, and one with a token starts and delivers.
#[tokio::test]
async fn a_subscription_refused_by_validation_does_no_database_work() {
    let app = TestApp::postgres().await;
    // Anonymous: the socket itself does no database work (no session to watch).
    let mut ws = app.websocket("graphql-transport-ws", json!({})).await;
    assert_eq!(ws.next().await.expect("ack")["type"], "connection_ack");
    let mut ask = async |id: &str, query: &str| {
        let before = app.state.db.round_trips();
        ws.send(json!({ "id": id, "type": "subscribe", "payload": { "query": query } }))
            .await;
        let answer = ws.next().await.expect("an answer");
        assert_eq!(answer["id"], id, "{answer}");
        (answer, app.state.db.round_trips() - before)
    };
    for (id, query, says) in [
        ("1", COSTLY_SUBSCRIPTION, "FLASHFUSION_MAX_COST"),
        (
            "2",
            "subscription { notificationAdded { nope } }",
            "Unknown field \"nope\"",
        ),
    ] {
        let (answer, round_trips) = ask(id, query).await;
        // Refused before it ran: an `error` message, whose payload is the errors.
        assert_eq!(answer["type"], "error", "{answer}");
        let error = &answer["payload"][0];
        assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{answer}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{message}");
        assert_eq!(
            round_trips, 0,
            "a refused subscription reached the database"
        );
    }
    // Valid, it runs: its field refuses an anonymous caller (validation says nothing
    // of callers), before it needs the database.
    let (answer, round_trips) = ask("3", "subscription { notificationAdded { cursor } }").await;
    assert_eq!(
        answer["payload"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{answer}"
    );
    assert_eq!(
        answer["payload"][0]["path"],
        json!(["notificationAdded"]),
        "{answer}"
    );
    assert_eq!(round_trips, 0, "an anonymous refusal reached the database");
    // With a token, it starts and delivers.
    let (ada, ada_id) = app.user("ada@example.com").await;
    let (admin, _) = app.admin("root@example.com").await;
    let mut ws = app.socket_as(ada.token()).await;
    let live = app.state.fanout.live();
    ws.send(json!({ "id": "1", "type": "subscribe", "payload": {
        "query": "subscription { notificationAdded { notification { title } } }" } }))
        .await;
    app.until_live("the subscription never started", |now| now != live)
        .await;
    let created = admin
        .graphql(
            "mutation($i: CreateNotificationInput!) { createNotification(input: $i) { notificationId } }",
            json!({ "i": { "userId": ada_id, "kind": "test", "title": "hello" } }),
        )
        .await;
    assert!(created["errors"].is_null(), "{created}");
    let event = ws.next().await.expect("an event");
    assert_eq!(
        event["payload"]["data"]["notificationAdded"]["notification"]["title"], "hello",
        "{event}"
    );
}

/// An app on Postgres whose callers may run `burst` operations, then none for an
/// hour; it believes the loopback proxy's `X-Forwarded-For`.
async fn rate_limited_app(burst: u32) -> TestApp {
    let db = TestDb::new().await;
    TestApp::start_with(db.url().to_owned(), Some(db), |c| {
        c.rate_limit_burst = burst;
        c.rate_limit_refill = Duration::from_secs(3600);
        c.trusted_proxies = vec!["127.0.0.1/32".parse().expect("network")];
    })
    .await
}

/// `{ __typename }` from `address` with `token`: status, `Retry-After`, body.
async fn from(app: &TestApp, address: &str, token: Option<&str>) -> (u16, Option<u64>, Value) {
    let client = app.anonymous();
    let mut request = client
        .request(reqwest::Method::POST, "/graphql")
        .header("X-Forwarded-For", address)
        .json(&json!({ "query": "{ __typename }" }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request to the gateway");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = response.json().await.expect("JSON body");
    (status, retry_after, body)
}

#[tokio::test]
async fn anonymous_callers_are_limited_per_address() {
    let app = rate_limited_app(3).await;
    for _ in 0..3 {
        let (status, _, body) = from(&app, "198.51.100.1", None).await;
        assert_eq!(status, 200, "{body}");
    }
    let before = app.state.db.round_trips();
    let (status, retry_after, body) = from(&app, "198.51.100.1", None).await;
    assert_eq!(
        app.state.db.round_trips(),
        before,
        "a refused operation reached the database"
    );
    assert_eq!(status, 429, "{body}");
    assert_eq!(code(&body), "RATE_LIMITED", "{body}");
    let retry_after = retry_after.expect("a Retry-After header");
    assert!(retry_after >= 1, "Retry-After: {retry_after}");
    assert_eq!(
        body["errors"][0]["extensions"]["retryAfter"], retry_after,
        "{body}"
    );
    // Another address is not affected.
    let (status, _, body) = from(&app, "198.51.100.2", None).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn token_holders_are_limited_per_token() {
    let app = rate_limited_app(3).await;
    // Two sign-ups from the proxy's own address: two of its three operations.
    let (ada, _) = app.user("ada@example.com").await;
    let (bob, _) = app.user("bob@example.com").await;
    for _ in 0..3 {
        let (status, _, body) = from(&app, "198.51.100.1", Some(ada.token())).await;
        assert_eq!(status, 200, "{body}");
    }
    // From another address, the same token is still over its limit.
    let (status, retry_after, body) = from(&app, "198.51.100.2", Some(ada.token())).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(code(&body), "RATE_LIMITED", "{body}");
    assert!(retry_after.is_some());
    // Nor is a token its holder derives offline a fresh bucket.
    let derived = app.appended(
        ada.token(),
        biscuit_auth::BlockBuilder::new()
            .code(r#"check if operation("read");"#)
            .expect("block"),
    );
    let (status, _, body) = from(&app, "198.51.100.1", Some(&derived)).await;
    assert_eq!(status, 429, "{body}");
    // Another token from the same address is not affected.
    let (status, _, body) = from(&app, "198.51.100.1", Some(bob.token())).await;
    assert_eq!(status, 200, "{body}");
}

/// Each `signIn` returns a token with a rate limit of its own, so a token holder
/// signing in again and again with the token the last sign-in returned would hash
/// passwords without end: a password hash counts against the address too.
#[tokio::test]
async fn signing_in_with_each_new_token_counts_against_the_address() {
    let app = rate_limited_app(3).await;
    let (ada, _) = app.user("ada@example.com").await;
    let mut token = ada.token().to_owned();
    let mut refused = None;
    for attempt in 0..5 {
        let request = app
            .anonymous()
            .request(reqwest::Method::POST, "/graphql")
            .header("X-Forwarded-For", "198.51.100.1")
            .bearer_auth(&token)
            .json(&json!({ "query": "mutation { signIn(input: {email: \"ada@example.com\", password: \"correct horse\"}) { token } }" }));
        let body: Value = request
            .send()
            .await
            .expect("a response")
            .json()
            .await
            .expect("JSON");
        match body["data"]["signIn"]["token"].as_str() {
            Some(next) => token = next.to_owned(),
            None => {
                refused = Some((attempt, body));
                break;
            }
        }
    }
    let (attempt, body) = refused.expect("refused within five sign-ins");
    assert_eq!(
        attempt, 3,
        "the address's burst of three, then refused: {body}"
    );
    assert_eq!(code(&body), "RATE_LIMITED", "{body}");
    assert!(
        body["errors"][0]["extensions"]["retryAfter"].as_u64() >= Some(1),
        "{body}"
    );
}

#[tokio::test]
async fn websocket_operations_count_against_the_limit_too() {
    let app = rate_limited_app(2).await;
    let mut ws = app.websocket("graphql-transport-ws", json!({})).await;
    let ack = tokio::time::timeout(TIMEOUT, ws.next())
        .await
        .expect("ack in time")
        .expect("ack");
    assert_eq!(ack["type"], "connection_ack");
    let mut answers = Vec::new();
    for id in ["1", "2", "3"] {
        ws.send(json!({ "id": id, "type": "subscribe", "payload": { "query": "{ __typename }" } }))
            .await;
        loop {
            let message = tokio::time::timeout(TIMEOUT, ws.next())
                .await
                .expect("an answer in time")
                .expect("a message");
            if message["type"] == "next" || message["type"] == "error" {
                answers.push(message);
                break;
            }
        }
    }
    assert_eq!(
        answers[0]["payload"]["data"]["__typename"], "Query",
        "{}",
        answers[0]
    );
    assert_eq!(
        answers[1]["payload"]["data"]["__typename"], "Query",
        "{}",
        answers[1]
    );
    // Refused before it ran: an `error` message, whose payload is the errors.
    assert_eq!(answers[2]["type"], "error", "{}", answers[2]);
    let third = &answers[2]["payload"][0];
    assert_eq!(
        third["extensions"]["code"], "RATE_LIMITED",
        "{}",
        answers[2]
    );
    assert!(
        third["extensions"]["retryAfter"]
            .as_u64()
            .is_some_and(|s| s >= 1),
        "{third}"
    );
}

#[tokio::test]
async fn request_transactions_carry_the_request_timeout_as_statement_timeout() {
    let db = TestDb::new().await;
    let app = TestApp::start_with(db.url().to_owned(), Some(db), |c| {
        c.request_timeout = Duration::from_millis(1_500);
    })
    .await;
    let before = app.state.db.round_trips();
    let tx = app
        .state
        .db
        .begin(&Identity::ANONYMOUS, true)
        .await
        .expect("begin");
    // `BEGIN` and the statement that switches the role, in one query: the timeout adds
    // no round trip.
    assert_eq!(app.state.db.round_trips() - before, 1);
    let setting = tx
        .conn()
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "select current_setting('statement_timeout')",
        ))
        .await
        .expect("query")
        .expect("a row");
    assert_eq!(
        setting.try_get_by_index::<String>(0).expect("text"),
        "1500ms"
    );
    // A statement that runs longer is cancelled by the server.
    let slow = tx
        .conn()
        .execute_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "select pg_sleep(5)",
        ))
        .await
        .expect_err("cancelled");
    assert!(slow.to_string().contains("statement timeout"), "{slow}");
    tx.finish(false).await.expect("rollback");
    // It ends with the transaction: the pooled connection is back to the server's.
    let outside = app
        .state
        .db
        .connection()
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "select current_setting('statement_timeout')",
        ))
        .await
        .expect("query")
        .expect("a row");
    assert_eq!(outside.try_get_by_index::<String>(0).expect("text"), "0");
}
