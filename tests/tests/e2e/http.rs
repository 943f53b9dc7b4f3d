//! The HTTP surface: GraphQL over GET and POST per the spec, what is refused and how,
//! health endpoints, and GraphiQL.

use flashfusion_tests::TestApp;
use reqwest::Method;
use serde_json::json;

use crate::code;

#[tokio::test]
async fn queries_run_over_get_but_mutations_do_not() {
    let app = TestApp::postgres().await;
    let (ada, _) = app.user("ada@example.com").await;
    let (status, body) = ada.get_query("{ me { email } }").await;
    assert_eq!(
        (status, &body["data"]["me"]["email"]),
        (200, &json!("ada@example.com"))
    );
    let (status, body) = ada
        .get_query("mutation { createProject(input: {name: \"x\"}) { project { id } } }")
        .await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(code(&body), "BAD_USER_INPUT");
    let mine = ada
        .graphql("{ myProjects { totalCount } }", json!({}))
        .await;
    assert_eq!(
        mine["data"]["myProjects"]["totalCount"], 0,
        "nothing was created"
    );
}

#[tokio::test]
async fn batches_and_wrong_content_types_are_refused() {
    let app = TestApp::postgres().await;
    let client = app.anonymous();
    let (status, body) = client
        .post_json(json!([{ "query": "{ me { id } }" }, { "query": "{ me { id } }" }]))
        .await;
    assert_eq!(status, 400);
    assert_eq!(code(&body), "BAD_USER_INPUT");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("batch"),
        "{body}"
    );

    let (status, body) = client
        .send(
            client
                .request(Method::POST, "/graphql")
                .header("content-type", "text/plain")
                .body(r#"{"query":"{ me { id } }"}"#),
        )
        .await;
    assert_eq!(status, 415, "a CSRF-able content type is refused: {body}");

    let (status, body) = client
        .send(
            client
                .request(Method::POST, "/graphql")
                .header("content-type", "application/json")
                .body(vec![b' '; 2 * 1024 * 1024]),
        )
        .await;
    assert_eq!(status, 413, "{body}");

    // A syntax error is a request error: 200 with application/json (which `*/*`, what
    // this client accepts, gets), 400 with application/graphql-response+json
    // (conformance.rs).
    let (status, body) = client.post_json(json!({ "query": "{ me { " })).await;
    assert_eq!(status, 200);
    assert_eq!(code(&body), "BAD_USER_INPUT");
    let (_, body) = client.post_json(json!({ "query": "{ nope }" })).await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
}

#[tokio::test]
async fn health_readiness_and_graphiql() {
    let app = TestApp::postgres().await;
    let client = app.anonymous();
    let text = |path: &'static str| {
        let client = client.clone();
        async move {
            let response = client
                .request(Method::GET, path)
                .send()
                .await
                .expect("request");
            (
                response.status().as_u16(),
                response.text().await.expect("body"),
            )
        }
    };
    assert_eq!(text("/healthz").await.0, 200);
    assert_eq!(text("/readyz").await.0, 200);
    let (status, page) = text("/").await;
    assert_eq!(status, 200);
    assert!(page.contains("graphiql"), "GraphiQL page");
    assert!(
        !page.contains("https://") && !page.contains("http://") && !page.contains("//cdn"),
        "nothing from another host: {page}"
    );
}

#[tokio::test]
async fn graphiql_assets_are_served_from_the_binary() {
    let app = TestApp::postgres().await;
    let client = app.anonymous();
    let get = |path: &'static str| {
        let client = client.clone();
        async move {
            client
                .request(Method::GET, path)
                .send()
                .await
                .expect("request")
        }
    };
    let page = get("/").await;
    let policy = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    for directive in [
        "script-src 'self'",
        "connect-src 'self'",
        "default-src 'none'",
    ] {
        assert!(policy.contains(directive), "{directive} in {policy:?}");
    }
    let page = page.text().await.expect("page");
    // The page's own script: the fetcher for HTTP and WebSocket on /graphql.
    let script = page
        .split('"')
        .find(|part| part.starts_with("/graphiql/page.js?v="))
        .expect("the page links its script")
        .to_owned();
    let script = client
        .request(Method::GET, &script)
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("script");
    assert!(script.contains(r#"var endpoint = "/graphql";"#), "{script}");
    assert!(script.contains("graphqlWs.createClient"), "{script}");
    for (name, content_type) in [
        ("graphiql.min.js", "text/javascript; charset=utf-8"),
        ("graphiql.min.css", "text/css; charset=utf-8"),
        ("graphql-ws.min.js", "text/javascript; charset=utf-8"),
        ("react.production.min.js", "text/javascript; charset=utf-8"),
        (
            "react-dom.production.min.js",
            "text/javascript; charset=utf-8",
        ),
    ] {
        let link = format!("/graphiql/{name}?v=");
        assert!(page.contains(&link), "the page links {link}");
        let response = client
            .request(Method::GET, &format!("/graphiql/{name}"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 200, "{name}");
        let header = |h: &str| {
            response
                .headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(header("content-type"), content_type, "{name}");
        assert!(header("cache-control").contains("immutable"), "{name}");
        assert!(!response.bytes().await.expect("body").is_empty(), "{name}");
    }
    assert_eq!(get("/graphiql/react.LICENSE").await.status().as_u16(), 200);
    assert_eq!(get("/graphiql/nothing.js").await.status().as_u16(), 404);
    assert_eq!(
        get("/graphiql/..%2FCargo.toml").await.status().as_u16(),
        404
    );
}

#[tokio::test]
async fn a_lost_database_is_503_and_readyz_says_so() {
    let app = TestApp::postgres().await;
    let client = app.anonymous();
    assert_eq!(client.get_query("{ me { id } }").await.0, 200);
    app.db.as_ref().expect("postgres").destroy().await;
    let (status, body) = client
        .post_json(json!({ "query": "{ publicProjects { totalCount } }" }))
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(code(&body), "INTERNAL");
    let ready = client
        .request(Method::GET, "/readyz")
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 503);
}

#[tokio::test]
async fn a_request_over_the_time_limit_is_408() {
    let db = flashfusion_tests::TestDb::new().await;
    let url = db.url().to_owned();
    let app = TestApp::start_with(url, Some(db), |config| {
        config.request_timeout = std::time::Duration::from_millis(1);
    })
    .await;
    let (status, _) = app
        .anonymous()
        .post_json(json!({
            "query": "mutation { signUp(input: {email: \"ada@example.com\", password: \"correct horse\", displayName: \"Ada\"}) { token } }"
        }))
        .await;
    assert_eq!(status, 408);
}

#[tokio::test]
async fn a_websocket_that_never_initialises_is_closed() {
    let db = flashfusion_tests::TestDb::new().await;
    let url = db.url().to_owned();
    let app = TestApp::start_with(url, Some(db), |config| {
        config.ws_init_timeout = std::time::Duration::from_secs(1);
    })
    .await;
    let mut silent = app.silent_websocket("graphql-transport-ws").await;
    assert!(silent.next().await.is_err(), "closed without a message");
    // One that does initialise in time stays open and answers.
    let mut ws = app.websocket("graphql-transport-ws", json!({})).await;
    assert_eq!(ws.next().await.expect("ack")["type"], "connection_ack");
}
