//! The production set-up of ARCHITECTURE.md (Production notes): the gateway logs in as an authenticator role that
//! is neither superuser nor table owner and may only switch to the three gateway roles.
//! Everything still works, and a statement that skipped the switch sees nothing. In
//! production mode `serve` only checks, as that role, that the schema is current.

use flashfusion_api::{
    app::{AppState, prepare_schema},
    auth::TokenService,
    config::{Config, Environment},
};
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

/// The gateway's state in production mode, logged in at `url`.
async fn production_state(url: String) -> std::sync::Arc<AppState> {
    let mut config = Config::defaults();
    config.environment = Environment::Production;
    config.database_url = url.into();
    config.db_max_connections = 2;
    config.secrets_key = Some(format!("{:064x}", 1).into());
    let tokens = TokenService::from_key_pair(
        biscuit_auth::KeyPair::new(),
        std::time::Duration::from_secs(60),
    );
    AppState::with_tokens(config, tokens)
        .await
        .expect("gateway state")
}

/// In production `serve` does not migrate: logged in as the authenticator, which may
/// not read `seaql_migrations`, it checks the schema through
/// `flashfusion_applied_migrations()` and refuses to start, saying why, when a
/// migration is missing or one it does not know was applied.
#[tokio::test]
async fn serve_as_the_authenticator_checks_the_schema_and_refuses_a_stale_one() {
    let db = TestDb::new().await;
    ensure_authenticator(&db).await;
    let state = production_state(db.url_as(AUTHENTICATOR)).await;
    assert!(!state.config.migrates_on_start());
    let bare = Database::connect(db.url_as(AUTHENTICATOR).as_str())
        .await
        .expect("connect as authenticator");
    assert!(
        bare.execute_unprepared("select version from seaql_migrations")
            .await
            .is_err(),
        "no grant on the migrations table"
    );
    bare.close().await.expect("close");
    prepare_schema(&state)
        .await
        .expect("a current schema: serve starts");

    let owner = db.connect().await;
    owner
        .execute_unprepared(
            "insert into seaql_migrations (version, applied_at) values ('m20991231_000001_from_the_future', 0)",
        )
        .await
        .expect("a migration from a newer binary");
    let refused = format!("{:#}", prepare_schema(&state).await.expect_err("refused"));
    assert!(
        refused.contains("m20991231_000001_from_the_future") && refused.contains("newer"),
        "{refused}"
    );

    owner
        .execute_unprepared(
            "delete from seaql_migrations where version = 'm20991231_000001_from_the_future';
             delete from seaql_migrations where version = 'm20261126_000010_act_as_in_one_statement'",
        )
        .await
        .expect("forget a migration");
    let refused = format!("{:#}", prepare_schema(&state).await.expect_err("refused"));
    assert!(
        refused.contains("m20261126_000010_act_as_in_one_statement")
            && refused.contains("flashfusion migrate up"),
        "{refused}"
    );
}
