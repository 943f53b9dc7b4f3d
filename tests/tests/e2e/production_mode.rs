//! Production mode (`FLASHFUSION_ENV=production`, issue 8 items 3 and 6): introspection
//! and field suggestions for admins only, GraphiQL off unless enabled and then served
//! with its Content-Security-Policy, Apollo automatic persisted queries, and the
//! trusted-documents allow-list. Every check goes over HTTP to the real router.

use flashfusion_api::{config::Environment, documents::document_hash};
use flashfusion_tests::{Client, TestApp, TestDb};
use serde_json::{Value, json};

use crate::code;

/// A gateway in production mode over a fresh Postgres database, adjusted by `configure`.
async fn production(configure: impl FnOnce(&mut flashfusion_api::config::Config)) -> TestApp {
    let db = TestDb::new().await;
    let url = db.url().to_owned();
    TestApp::start_with(url, Some(db), |config| {
        config.environment = Environment::Production;
        configure(config);
    })
    .await
}

const SCHEMA: &str = "{ __schema { queryType { name } } }";
const TYPE: &str = r#"{ t: __type(name: "Project") { name } }"#;
/// Introspection hidden in a fragment spread on the root type.
const IN_FRAGMENT: &str =
    "query { ...Root } fragment Root on Query { __schema { queryType { name } } }";
/// `agents` misspelled: validation suggests it where suggestions are on.
const MISSPELLED: &str = "{ agentz { slug } }";

fn message(response: &Value) -> &str {
    response["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
}

/// Asserts that `client` may introspect and gets suggestions.
async fn assert_open(client: &Client, who: &str) {
    let response = client.graphql(SCHEMA, json!({})).await;
    assert_eq!(
        response["data"]["__schema"]["queryType"]["name"], "Query",
        "{who}: {response}"
    );
    let response = client.graphql(TYPE, json!({})).await;
    assert_eq!(
        response["data"]["t"]["name"], "Project",
        "{who}: {response}"
    );
    let response = client.graphql(MISSPELLED, json!({})).await;
    assert_eq!(code(&response), "BAD_USER_INPUT", "{who}: {response}");
    assert!(
        message(&response).contains("Did you mean \"agents\""),
        "{who}: {response}"
    );
}

#[tokio::test]
async fn introspection_and_suggestions_are_for_admins_only_in_production() {
    let app = production(|_| {}).await;
    let (user, _) = app.user("ada@example.com").await;
    let (admin, _) = app.admin("root@example.com").await;
    // The admin first, so the documents are in the cache when the others send them.
    assert_open(&admin, "admin").await;
    let response = admin.graphql(IN_FRAGMENT, json!({})).await;
    assert_eq!(
        response["data"]["__schema"]["queryType"]["name"], "Query",
        "{response}"
    );

    let anonymous = app.anonymous();
    for (client, who) in [(&anonymous, "anonymous"), (&user, "user")] {
        let before = app.state.db.round_trips();
        for query in [SCHEMA, TYPE, IN_FRAGMENT] {
            let response = client.graphql(query, json!({})).await;
            assert_eq!(code(&response), "FORBIDDEN", "{who}, {query}: {response}");
            assert!(message(&response).contains("introspection"), "{response}");
            assert!(response["data"].is_null(), "{who}: {response}");
        }
        assert_eq!(
            app.state.db.round_trips(),
            before,
            "{who}: refused before the database"
        );
        let response = client.graphql(MISSPELLED, json!({})).await;
        assert_eq!(code(&response), "BAD_USER_INPUT", "{who}: {response}");
        assert!(
            message(&response).contains("Unknown field \"agentz\""),
            "{who}: {response}"
        );
        assert!(
            !message(&response).contains("Did you mean"),
            "{who}: {response}"
        );
        // `__typename` is not introspection.
        let response = client.graphql("{ __typename }", json!({})).await;
        assert_eq!(response["data"]["__typename"], "Query", "{who}: {response}");
    }
    // Over GET the same (with the preflight header production asks of a GET).
    let (_, response) = anonymous
        .send(
            anonymous
                .request(reqwest::Method::GET, "/graphql")
                .header("x-graphql-preflight", "1")
                .query(&[("query", SCHEMA)]),
        )
        .await;
    assert_eq!(code(&response), "FORBIDDEN", "{response}");
}

/// What an admin's token gets beyond a user's (introspection, suggestions) depends on
/// the session, not the token's claim: once the admin signs out, the same token's
/// introspection and misspelled queries get only `UNAUTHENTICATED`.
#[tokio::test]
async fn a_signed_out_admin_token_gets_nothing_of_the_admin_schema() {
    let app = production(|_| {}).await;
    let (admin, _) = app.admin("root@example.com").await;
    assert_open(&admin, "admin").await;
    let out = admin.graphql("mutation { signOut }", json!({})).await;
    assert_eq!(out["data"]["signOut"], true, "{out}");
    for query in [SCHEMA, MISSPELLED] {
        let response = admin.graphql(query, json!({})).await;
        assert_eq!(code(&response), "UNAUTHENTICATED", "{query}: {response}");
        assert!(!message(&response).contains("Did you mean"), "{response}");
        assert!(response["data"].is_null(), "{query}: {response}");
    }
}

#[tokio::test]
async fn development_keeps_introspection_and_suggestions_for_everyone() {
    let app = TestApp::sqlite().await;
    let (user, _) = app.user("ada@example.com").await;
    assert_open(&app.anonymous(), "anonymous").await;
    assert_open(&user, "user").await;
}

#[tokio::test]
async fn graphiql_is_off_in_production_unless_enabled() {
    let app = production(|_| {}).await;
    let client = app.anonymous();
    for path in ["/", "/graphiql/page.js", "/graphiql/graphiql.min.js"] {
        let response = client
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 404, "{path}");
    }
    // The API itself is there.
    let response = client.graphql("{ __typename }", json!({})).await;
    assert_eq!(response["data"]["__typename"], "Query", "{response}");
}

#[tokio::test]
async fn graphiql_when_enabled_in_production_is_served_with_its_csp() {
    let app = production(|config| config.graphiql = Some(true)).await;
    let client = app.anonymous();
    for path in ["/", "/graphiql/page.js", "/graphiql/graphiql.min.js"] {
        let response = client
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{path}");
        let policy = response
            .headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(
                policy.contains(directive),
                "{path}: {directive} in {policy:?}"
            );
        }
        assert!(
            !policy.contains("unsafe-eval") && !policy.contains("http"),
            "{policy}"
        );
    }
}

/// The body of a request naming `query` by hash, with or without its text.
fn persisted(hash: &str, query: Option<&str>) -> Value {
    let mut body = json!({
        "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash } }
    });
    if let Some(query) = query {
        body["query"] = json!(query);
    }
    body
}

/// Apollo's automatic persisted queries, as its clients use them.
async fn automatic_persisted_queries(app: TestApp) {
    let client = app.anonymous();
    let query = "query Agents { agents { slug } }";
    let hash = document_hash(query);

    let (_, response) = client.post_json(persisted(&hash, None)).await;
    assert_eq!(code(&response), "PERSISTED_QUERY_NOT_FOUND", "{response}");
    assert_eq!(message(&response), "PersistedQueryNotFound", "{response}");

    let (_, response) = client.post_json(persisted(&hash, Some(query))).await;
    assert!(response["data"]["agents"].is_array(), "{response}");

    let (_, response) = client.post_json(persisted(&hash, None)).await;
    assert!(
        response["data"]["agents"].is_array(),
        "by hash alone: {response}"
    );

    // Over GET, `extensions` in the query string.
    let extensions = persisted(&hash, None)["extensions"].to_string();
    let request = client
        .request(reqwest::Method::GET, "/graphql")
        .header("x-graphql-preflight", "1")
        .query(&[("extensions", extensions.as_str())]);
    let (_, response) = client.send(request).await;
    assert!(
        response["data"]["agents"].is_array(),
        "over GET: {response}"
    );

    // A hash that is not the query's is refused, and registers nothing.
    let other = "{ agents { name } }";
    let (_, response) = client.post_json(persisted(&hash, Some(other))).await;
    assert_eq!(code(&response), "BAD_USER_INPUT", "{response}");
    let wrong = document_hash("{ something { else } }");
    let (_, response) = client.post_json(persisted(&wrong, Some(other))).await;
    assert_eq!(code(&response), "BAD_USER_INPUT", "{response}");
    let (_, response) = client.post_json(persisted(&wrong, None)).await;
    assert_eq!(code(&response), "PERSISTED_QUERY_NOT_FOUND", "{response}");

    // The GraphQL-over-HTTP spelling, `documentId`, names the same documents.
    let document_id = format!("sha256:{hash}");
    let (_, response) = client.post_json(json!({ "documentId": document_id })).await;
    assert!(
        response["data"]["agents"].is_array(),
        "documentId: {response}"
    );
    let request = client
        .request(reqwest::Method::GET, "/graphql")
        .header("x-graphql-preflight", "1")
        .query(&[("documentId", document_id.as_str())]);
    let (_, response) = client.send(request).await;
    assert!(
        response["data"]["agents"].is_array(),
        "documentId over GET: {response}"
    );
    let (_, response) = client
        .post_json(json!({ "documentId": format!("sha256:{wrong}") }))
        .await;
    assert_eq!(code(&response), "PERSISTED_QUERY_NOT_FOUND", "{response}");
    for malformed in [
        json!({ "documentId": hash }),
        json!({ "documentId": "md5:0123" }),
        json!({ "documentId": 7 }),
        json!({ "documentId": document_id, "extensions": persisted(&hash, None)["extensions"] }),
    ] {
        let (status, response) = client.post_json(malformed.clone()).await;
        assert_eq!(status, 400, "{malformed}: {response}");
        assert_eq!(code(&response), "BAD_USER_INPUT", "{malformed}: {response}");
    }
}

#[tokio::test]
async fn automatic_persisted_queries_in_development() {
    automatic_persisted_queries(TestApp::sqlite().await).await;
}

#[tokio::test]
async fn automatic_persisted_queries_in_production_without_an_allow_list() {
    automatic_persisted_queries(production(|_| {}).await).await;
}

#[tokio::test]
async fn an_allow_list_runs_only_its_documents_except_for_admins() {
    let trusted = "query Agents { agents { slug } }";
    let hash = document_hash(trusted);
    // The harness signs its users up with this text: it is on the list too.
    let sign_up = "mutation($input: SignUpInput!) { signUp(input: $input) { token user { id } } }";
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("trusted-documents.json");
    let list = json!({ hash.clone(): trusted, document_hash(sign_up): sign_up });
    std::fs::write(&path, list.to_string()).expect("write");
    let app = production(|config| config.trusted_documents = Some(path)).await;
    let (user, _) = app.user("ada@example.com").await;
    let (admin, _) = app.admin("root@example.com").await;
    let anonymous = app.anonymous();

    let free_text = "{ agents { name } }";
    // An admin's free text runs, and being cached does not let anyone else run it.
    let response = admin.graphql(free_text, json!({})).await;
    assert!(response["data"]["agents"].is_array(), "{response}");

    for (client, who) in [(&anonymous, "anonymous"), (&user, "user")] {
        let (_, response) = client.post_json(persisted(&hash, None)).await;
        assert!(
            response["data"]["agents"].is_array(),
            "{who}, known hash: {response}"
        );
        // The trusted text itself is the same document.
        let response = client.graphql(trusted, json!({})).await;
        assert!(
            response["data"]["agents"].is_array(),
            "{who}, its text: {response}"
        );

        let before = app.state.db.round_trips();
        let response = client.graphql(free_text, json!({})).await;
        assert_eq!(code(&response), "FORBIDDEN", "{who}, free text: {response}");
        let unknown = document_hash(free_text);
        for body in [
            persisted(&unknown, None),
            persisted(&unknown, Some(free_text)),
        ] {
            let (_, response) = client.post_json(body).await;
            assert_eq!(
                code(&response),
                "FORBIDDEN",
                "{who}, unknown hash: {response}"
            );
        }
        assert_eq!(
            app.state.db.round_trips(),
            before,
            "{who}: refused before the database"
        );
    }
    // Any other text, a mutation too, is off the list.
    let response = anonymous
        .graphql(
            "mutation { signUp(input: {email: \"x@example.com\", password: \"correct horse\", displayName: \"x\"}) { token } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&response), "FORBIDDEN", "{response}");
}

#[tokio::test]
async fn over_websocket_introspection_is_for_admins_only_too() {
    let app = production(|_| {}).await;
    let (admin, _) = app.admin("root@example.com").await;
    let mut ws = app.websocket("graphql-transport-ws", json!({})).await;
    assert_eq!(ws.next().await.expect("ack")["type"], "connection_ack");
    ws.send(json!({ "id": "1", "type": "subscribe", "payload": { "query": SCHEMA } }))
        .await;
    // Refused before it runs: graphql-transport-ws's `error` message.
    let refused = ws.next().await.expect("error");
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );

    let mut ws = app.socket_as(admin.token()).await;
    ws.send(json!({ "id": "1", "type": "subscribe", "payload": { "query": SCHEMA } }))
        .await;
    let next = ws.next().await.expect("next");
    assert_eq!(next["type"], "next", "{next}");
    let name = &next["payload"]["data"]["__schema"]["queryType"]["name"];
    assert_eq!(name, "Query", "{next}");
}

/// An argument that passes validation but fails to parse while its field runs (a
/// `Decimal` is checked only then) is the client's mistake: in production its message
/// still reaches the client, with `BAD_USER_INPUT`, and is not made an opaque
/// `INTERNAL`. The gateway tells such errors by async-graphql's wording
/// (`pipeline::is_input_coercion`), which this catches changing.
#[tokio::test]
async fn an_argument_that_fails_to_parse_keeps_its_message_in_production() {
    let app = production(|_| {}).await;
    let (admin, _) = app.admin("root@example.com").await;
    let create =
        "mutation($i: CreateAiServiceInput!) { createAiService(input: $i) { aiService { id } } }";
    let input = json!({ "i": {
        "slug": "priced", "name": "Priced", "provider": "openai", "model": "gpt",
        "inputPricePer1k": "a lot", "outputPricePer1k": "0.01",
    } });
    let refused = admin.graphql(create, input).await;
    assert_eq!(code(&refused), "BAD_USER_INPUT", "{refused}");
    assert!(message(&refused).contains("Decimal"), "{refused}");
    assert_eq!(
        refused["errors"][0]["path"][0], "createAiService",
        "{refused}"
    );
}

/// The `Access-Control-Allow-Origin` of a CORS preflight from `origin`, if any.
async fn allowed(app: &TestApp, origin: &str) -> Option<String> {
    let response = app
        .anonymous()
        .request(reqwest::Method::OPTIONS, "/graphql")
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "content-type, authorization",
        )
        .send()
        .await
        .expect("a preflight answer");
    response
        .headers()
        .get("access-control-allow-origin")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// Pages on other origins: any in development; in production only those listed in
/// `FLASHFUSION_CORS_ORIGINS`, which then read `Retry-After` and the request id too.
#[tokio::test]
async fn only_listed_origins_may_call_from_a_browser_in_production() {
    let development = TestApp::sqlite().await;
    assert_eq!(
        allowed(&development, "https://anywhere.example")
            .await
            .as_deref(),
        Some("*")
    );
    let unlisted = production(|_| {}).await;
    assert_eq!(allowed(&unlisted, "https://anywhere.example").await, None);
    let listed = production(|config| {
        config.cors_origins = vec!["https://app.example".to_owned()];
    })
    .await;
    assert_eq!(
        allowed(&listed, "https://app.example").await.as_deref(),
        Some("https://app.example")
    );
    assert_eq!(allowed(&listed, "https://evil.example").await, None);
    let response = listed
        .anonymous()
        .request(reqwest::Method::POST, "/graphql")
        .header("Origin", "https://app.example")
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .expect("an answer");
    let exposed = response
        .headers()
        .get("access-control-expose-headers")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("retry-after") && exposed.contains("x-request-id"),
        "{exposed}"
    );
}

/// The status of a WebSocket upgrade on `app` from a page at `origin` (none: not a
/// browser): 101 when it opened.
async fn upgrade_from(app: &TestApp, origin: Option<&str>) -> u16 {
    use tokio_tungstenite::tungstenite::{Error, client::IntoClientRequest as _};
    let url = format!("{}/graphql", app.base.replacen("http", "ws", 1));
    let mut request = url.into_client_request().expect("ws request");
    let headers = request.headers_mut();
    headers.insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    if let Some(origin) = origin {
        headers.insert("Origin", origin.parse().expect("header"));
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("no answer to the upgrade: {other}"),
    }
}

/// Browsers apply no CORS to a WebSocket upgrade and leave its `Origin` to the server:
/// in production a page elsewhere may not open one (it could run mutations as its
/// visitor's browser and address), the gateway's own page (GraphiQL), listed origins
/// and clients that are not browsers may.
#[tokio::test]
async fn only_listed_origins_may_open_a_websocket_in_production() {
    let app = production(|config| {
        config.cors_origins = vec!["https://app.example".to_owned()];
    })
    .await;
    let own = app.base.clone();
    for (origin, status) in [
        (Some("https://evil.example"), 403),
        (Some("https://app.example"), 101),
        (Some(own.as_str()), 101),
        (None, 101),
    ] {
        assert_eq!(upgrade_from(&app, origin).await, status, "{origin:?}");
    }
    let development = TestApp::sqlite().await;
    assert_eq!(
        upgrade_from(&development, Some("https://evil.example")).await,
        101
    );
}
