//! The per-replica caches behind the pipeline (Postgres): a verified token is served from
//! the cache but still refused the moment it is revoked, wherever that happened, and a
//! repeated document is not parsed again, whichever of its operations and variables a
//! request picks.

use flashfusion_tests::{TestApp, create_project};
use serde_json::json;

use crate::code;

const ME: &str = "{ me { id } }";

#[tokio::test]
async fn a_token_revoked_between_two_requests_is_refused_despite_the_cache() {
    let app = TestApp::postgres().await;
    let (client, id) = app.user("ada@example.com").await;
    let first = client.graphql(ME, json!({})).await;
    assert_eq!(first["data"]["me"]["id"], id.as_str(), "{first}");
    assert!(app.state.tokens.is_cached(client.token()));
    // Signed out through another replica: this one's cache still holds the token.
    let replica = app.replica().await;
    let out = replica
        .with_token(client.token())
        .graphql("mutation { signOut }", json!({}))
        .await;
    assert_eq!(out["data"]["signOut"], true, "{out}");
    assert!(app.state.tokens.is_cached(client.token()));
    let second = client.graphql(ME, json!({})).await;
    assert_eq!(code(&second), "UNAUTHENTICATED", "{second}");
    assert!(!app.state.tokens.is_cached(client.token()));
}

#[tokio::test]
async fn a_signed_out_token_leaves_the_cache() {
    let app = TestApp::postgres().await;
    let (client, _) = app.user("ada@example.com").await;
    let _ = client.graphql(ME, json!({})).await;
    assert!(app.state.tokens.is_cached(client.token()));
    let out = client.graphql("mutation { signOut }", json!({})).await;
    assert_eq!(out["data"]["signOut"], true, "{out}");
    assert!(!app.state.tokens.is_cached(client.token()));
    let after = client.graphql(ME, json!({})).await;
    assert_eq!(code(&after), "UNAUTHENTICATED", "{after}");
    assert!(!app.state.tokens.is_cached(client.token()));
}

#[tokio::test]
async fn a_repeated_document_is_parsed_once_whatever_operation_and_variables() {
    let app = TestApp::postgres().await;
    let (client, id) = app.user("ada@example.com").await;
    for name in ["one", "two", "three"] {
        create_project(&client, name).await;
    }
    let document = "query Me { me { id } } \
                    query Page($first: Int) { myProjects(first: $first) { totalCount edges { node { name } } } }";
    let request = |operation: &str, first: i64| json!({ "query": document, "operationName": operation, "variables": { "first": first } });
    let (status, me) = client.post_json(request("Me", 0)).await;
    assert_eq!((status, &me["data"]["me"]["id"]), (200, &json!(id)), "{me}");
    let parses = app.state.documents.parses();
    for first in [1, 2] {
        let (status, page) = client.post_json(request("Page", first)).await;
        assert_eq!(status, 200, "{page}");
        let edges = page["data"]["myProjects"]["edges"].as_array();
        assert_eq!(edges.map(Vec::len), Some(first as usize), "{page}");
        assert_eq!(page["data"]["myProjects"]["totalCount"], 3, "{page}");
    }
    let (_, unknown) = client.post_json(request("Nope", 1)).await;
    assert_eq!(code(&unknown), "BAD_USER_INPUT", "{unknown}");
    assert_eq!(app.state.documents.parses(), parses, "parsed again");
}

/// A document that ran once is validated again only in what may change from one
/// request to the next (`schema::Validation::Proven`), and only when it declares no
/// variables: with variables every rule still runs, so a variable of the wrong type is
/// refused by validation (no path, no data), however often the document ran before.
#[tokio::test]
async fn a_document_with_variables_is_validated_in_full_every_time() {
    let app = TestApp::postgres().await;
    let (client, _) = app.user("ada@example.com").await;
    create_project(&client, "one").await;
    let paged = "query($first: Int) { myProjects(first: $first) { totalCount } }";
    for _ in 0..2 {
        let page = client.graphql(paged, json!({ "first": 1 })).await;
        assert_eq!(page["data"]["myProjects"]["totalCount"], 1, "{page}");
    }
    let refused = client.graphql(paged, json!({ "first": "many" })).await;
    assert_eq!(code(&refused), "BAD_USER_INPUT", "{refused}");
    assert!(refused["errors"][0]["path"].is_null(), "{refused}");
    assert!(refused["data"].is_null(), "{refused}");
    let message = refused["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("Invalid value for argument"), "{refused}");
    // A variable-free document keeps answering the same once it is proven.
    for _ in 0..3 {
        let me = client.graphql(ME, json!({})).await;
        assert!(me["data"]["me"]["id"].is_string(), "{me}");
    }
}
