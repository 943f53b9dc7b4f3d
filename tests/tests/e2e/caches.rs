//! The per-replica caches behind the pipeline (Postgres): a verified token is served from
//! the cache but still refused the moment it is revoked, wherever that happened.

use flashfusion_tests::TestApp;
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
