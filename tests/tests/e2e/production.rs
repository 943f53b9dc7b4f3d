//! The production set-up of ARCHITECTURE.md (Production notes): the gateway logs in as an authenticator role that
//! is neither superuser nor table owner and may only switch to the three gateway roles.
//! Everything still works, and a statement that skipped the switch sees nothing.

use flashfusion_tests::{TestApp, TestDb};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};

use crate::code;

/// A login role like PostgREST's authenticator: NOINHERIT, granted the gateway roles.
/// Roles are cluster-wide and tests run in parallel, so creation tolerates a race.
const AUTHENTICATOR: &str = "flashfusion_test_authenticator";

async fn ensure_authenticator(db: &TestDb) {
    let conn = db.connect().await;
    conn.execute_unprepared(&format!(
        "do $$ begin
             if not exists (select from pg_roles where rolname = '{AUTHENTICATOR}') then
                 create role {AUTHENTICATOR} login noinherit;
             end if;
         exception when duplicate_object or unique_violation then null;
         end $$;
         grant flashfusion_anon, flashfusion_authenticated, flashfusion_service to {AUTHENTICATOR};"
    ))
    .await
    .expect("create the authenticator role");
}

#[tokio::test]
async fn the_gateway_works_logged_in_as_a_powerless_authenticator() {
    let db = TestDb::new().await;
    ensure_authenticator(&db).await;
    let url = db.url_as(AUTHENTICATOR);

    // Without the per-transaction role switch, the login role reads nothing.
    let bare = Database::connect(url.as_str())
        .await
        .expect("connect as authenticator");
    let denied = bare
        .execute_unprepared("select count(*) from projects")
        .await;
    assert!(
        denied.is_err(),
        "the authenticator itself has no privileges"
    );
    bare.close().await.expect("close");

    let app = TestApp::start(url, Some(db)).await;
    let (ada, _) = app.user("ada@example.com").await;
    let (bob, _) = app.user("bob@example.com").await;
    let created = ada
        .graphql(
            "mutation { createProject(input: {name: \"p\", visibility: PUBLIC}) { project { id owner { displayName } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        created["data"]["createProject"]["project"]["owner"]["displayName"], "ada",
        "{created}"
    );
    let private = ada
        .graphql(
            "mutation { createProject(input: {name: \"q\"}) { project { id } } }",
            json!({}),
        )
        .await;
    let private_id = private["data"]["createProject"]["project"]["id"].clone();
    let peek = bob
        .graphql(
            "query($id: ID!) { project(id: $id) { name } }",
            json!({ "id": private_id }),
        )
        .await;
    assert_eq!(peek["data"]["project"], Value::Null);
    let anonymous = app
        .anonymous()
        .graphql(
            "{ publicProjects { totalCount edges { node { owner { displayName } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        anonymous["data"]["publicProjects"]["totalCount"], 1,
        "{anonymous}"
    );
    assert_eq!(
        anonymous["data"]["publicProjects"]["edges"][0]["node"]["owner"]["displayName"],
        "ada"
    );
    let signed_in = app
        .anonymous()
        .graphql(
            "mutation { signIn(input: {email: \"ada@example.com\", password: \"correct horse\"}) { user { email } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        signed_in["data"]["signIn"]["user"]["email"], "ada@example.com",
        "{signed_in}"
    );
    let out = ada.graphql("mutation { signOut }", json!({})).await;
    assert_eq!(out["data"]["signOut"], true);
    assert_eq!(
        code(&ada.graphql("{ me { id } }", json!({})).await),
        "UNAUTHENTICATED"
    );
}
