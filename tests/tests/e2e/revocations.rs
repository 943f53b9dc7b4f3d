//! Revocations in SQL (Postgres): every caller's revocation check reads the ids, but
//! nobody but the service reads who signed out.

use flashfusion_tests::{Actor, Actors, TestApp};
use serde_json::json;

#[tokio::test]
async fn only_the_service_reads_who_signed_out() {
    let app = TestApp::postgres().await;
    let cast = Actors::new(&app).await;
    let out = cast.other.graphql("mutation { signOut }", json!({})).await;
    assert_eq!(out["data"]["signOut"], true, "{out}");
    for actor in [Actor::Anonymous, Actor::Owner, Actor::Admin] {
        let ids = cast
            .sql_as(&app, actor, "select revocation_id from revoked_tokens")
            .await
            .expect("the revocation check reads the ids");
        assert_eq!(ids.len(), 1, "{actor:?}");
        let who = cast
            .sql_as(&app, actor, "select user_id::text from revoked_tokens")
            .await;
        let message = who.expect_err("who signed out is hidden").to_string();
        assert!(
            message.contains("permission denied"),
            "{actor:?}: {message}"
        );
    }
    let who = cast
        .sql_as(
            &app,
            Actor::Service,
            "select user_id::text from revoked_tokens",
        )
        .await
        .expect("the service reads the whole row");
    assert_eq!(who, std::slice::from_ref(&cast.other_id));
    // Signing out still works for every kind of caller, and a signed-out token is dead.
    let after = cast.other.graphql("{ me { id } }", json!({})).await;
    assert_eq!(
        after["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{after}"
    );
}
