//! What an operation costs the database, counted in round trips (`Database::round_trips`:
//! every statement plus each transaction's `BEGIN` and `COMMIT`), and what the one
//! statement that opens a transaction must keep: the caller's role and settings end with
//! the transaction, and a token is checked against the database on every operation.

use flashfusion_api::auth::Role;
use flashfusion_tests::{Client, TestApp, create_visible_project};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use serde_json::{Value, json};

use crate::code;

on_both_backends!(
    an_authenticated_read_costs_four_round_trips,
    an_anonymous_read_costs_no_more,
    a_token_revoked_between_two_requests_is_refused_on_the_second,
    a_demoted_admin_token_is_refused_on_its_next_operation,
);

/// `BEGIN`, the statement that switches to the caller and checks the session, the page
/// with its count, `COMMIT`. (sea-orm sends `BEGIN` on its own: it cannot send a custom
/// one that would carry the switch.)
const READ_BUDGET: u64 = 4;

const MINE: &str =
    "{ myProjects(first: 20) { totalCount edges { cursor node { id name status visibility } } } }";
const PUBLIC: &str = "{ publicProjects(first: 20) { totalCount edges { node { id name } } } }";

/// The response to `query` sent by `client`, and the round trips it cost: the fewest of
/// five runs, since the counter is the pool's and the subscription hub may read events
/// at the same moment (an operation that costs too much does so every time).
async fn measured(app: &TestApp, client: &Client, query: &str) -> (Value, u64) {
    let mut fewest = u64::MAX;
    let mut response = Value::Null;
    for _ in 0..5 {
        let before = app.state.db.round_trips();
        response = client.graphql(query, json!({})).await;
        fewest = fewest.min(app.state.db.round_trips() - before);
    }
    (response, fewest)
}

fn total_count(response: &Value, field: &str) -> u64 {
    response["data"][field]["totalCount"]
        .as_u64()
        .unwrap_or_else(|| panic!("no totalCount: {response}"))
}

async fn an_authenticated_read_costs_four_round_trips(app: TestApp) {
    let (ada, _) = app.user("ada@example.com").await;
    for i in 0..3 {
        create_visible_project(&ada, &format!("p{i}"), "PRIVATE").await;
    }
    let (page, round_trips) = measured(&app, &ada, MINE).await;
    assert_eq!(total_count(&page, "myProjects"), 3, "{page}");
    assert!(
        round_trips <= READ_BUDGET,
        "an authenticated read took {round_trips} round trips: {page}"
    );
    let oldest = ada
        .graphql("{ myProjects(last: 2) { totalCount } }", json!({}))
        .await;
    assert_eq!(total_count(&oldest, "myProjects"), 3, "{oldest}");
    // Past the end of the list: the count comes from a second statement then.
    let first = page["data"]["myProjects"]["edges"][2]["cursor"]
        .as_str()
        .expect("the oldest project's cursor");
    let after = ada
        .graphql(
            "query($a: String) { myProjects(first: 5, after: $a) { totalCount edges { node { id } } } }",
            json!({ "a": first }),
        )
        .await;
    assert_eq!(total_count(&after, "myProjects"), 3, "{after}");
    assert_eq!(after["data"]["myProjects"]["edges"], json!([]), "{after}");
}

async fn an_anonymous_read_costs_no_more(app: TestApp) {
    let (ada, _) = app.user("ada@example.com").await;
    create_visible_project(&ada, "open", "PUBLIC").await;
    let (page, round_trips) = measured(&app, &app.anonymous(), PUBLIC).await;
    assert_eq!(total_count(&page, "publicProjects"), 1, "{page}");
    assert!(
        round_trips <= READ_BUDGET,
        "an anonymous read took {round_trips} round trips: {page}"
    );
    // Counted by the page's statement: a page of no rows still counts the list, and an
    // empty list counts 0.
    let (none, _) = measured(&app, &ada, "{ myProjects(first: 0) { totalCount } }").await;
    assert_eq!(total_count(&none, "myProjects"), 1, "{none}");
    let (bob, _) = app.user("bob@example.com").await;
    let (empty, _) = measured(&app, &bob, MINE).await;
    assert_eq!(total_count(&empty, "myProjects"), 0, "{empty}");
}

/// Postgres only: on SQLite each committed mutation wakes the subscription hub, whose
/// read of new events lands in the same counter.
#[tokio::test]
async fn a_mutation_stays_within_its_budget() {
    let app = TestApp::postgres().await;
    let (ada, _) = app.user("ada@example.com").await;
    let mut round_trips = u64::MAX;
    for i in 0..3 {
        let before = app.state.db.round_trips();
        create_visible_project(&ada, &format!("site{i}"), "PRIVATE").await;
        round_trips = round_trips.min(app.state.db.round_trips() - before);
    }
    // BEGIN, switch and check, the insert (returning the row), COMMIT; the fewest of
    // three, as in `measured`.
    assert!(
        round_trips <= 4,
        "createProject took {round_trips} round trips"
    );
}

async fn a_token_revoked_between_two_requests_is_refused_on_the_second(app: TestApp) {
    let (ada, _) = app.user("ada@example.com").await;
    let me = ada.graphql("{ me { id } }", json!({})).await;
    assert!(me["data"]["me"]["id"].is_string(), "{me}");
    // Revoked behind the gateway's back, as an operator would.
    let session = app.state.tokens.verify(ada.token()).expect("a valid token");
    let backend = app.state.db.backend();
    for id in session.revocation_ids() {
        let sql = match backend {
            DatabaseBackend::Postgres => "insert into revoked_tokens (revocation_id) values ($1)",
            _ => "insert into revoked_tokens (revocation_id) values (?)",
        };
        app.state
            .db
            .connection()
            .execute_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [id.clone().into()],
            ))
            .await
            .expect("revoke");
    }
    let refused = ada.graphql("{ me { id } }", json!({})).await;
    assert_eq!(code(&refused), "UNAUTHENTICATED", "{refused}");
    assert_eq!(refused["data"], Value::Null, "{refused}");
}

async fn a_demoted_admin_token_is_refused_on_its_next_operation(app: TestApp) {
    let (admin, admin_id) = app.admin("root@example.com").await;
    let users = admin.graphql("{ users { totalCount } }", json!({})).await;
    assert_eq!(total_count(&users, "users"), 1, "{users}");
    let backend = app.state.db.backend();
    let sql = match backend {
        DatabaseBackend::Postgres => "update users set role = 'user' where id = $1",
        _ => "update users set role = 'user' where id = ?",
    };
    let id: uuid::Uuid = admin_id.parse().expect("uuid");
    app.state
        .db
        .connection()
        .execute_raw(Statement::from_sql_and_values(backend, sql, [id.into()]))
        .await
        .expect("demote");
    let refused = admin.graphql("{ me { id } }", json!({})).await;
    assert_eq!(code(&refused), "UNAUTHENTICATED", "{refused}");
    // The same account with a user token still acts.
    let user = app.with_token(&app.mint(&admin_id, Role::User));
    let me = user.graphql("{ me { id } }", json!({})).await;
    assert_eq!(me["data"]["me"]["id"], admin_id, "{me}");
}

/// One pooled connection serves an authenticated request, then an anonymous one: the
/// second sees nothing private, and between them the connection is back to its login
/// role with no `app.*` setting and in read-write mode.
#[tokio::test]
async fn nothing_of_a_request_leaks_into_the_next_on_the_same_connection() {
    let db = flashfusion_tests::TestDb::new().await;
    let url = db.url().to_owned();
    let app = TestApp::start_with(url, Some(db), |config| config.db_max_connections = 1).await;
    let (ada, ada_id) = app.user("ada@example.com").await;
    create_visible_project(&ada, "secret", "PRIVATE").await;
    let mine = ada.graphql(MINE, json!({})).await;
    assert_eq!(total_count(&mine, "myProjects"), 1, "{mine}");
    let public = app.anonymous().graphql(PUBLIC, json!({})).await;
    assert_eq!(total_count(&public, "publicProjects"), 0, "{public}");
    let row = app
        .state
        .db
        .connection()
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "select current_user::text, session_user::text, \
             coalesce(current_setting('app.user_id', true), ''), \
             coalesce(current_setting('app.role', true), ''), \
             current_setting('transaction_read_only')",
        ))
        .await
        .expect("query")
        .expect("row");
    let got: (String, String, String, String, String) = (
        row.try_get_by_index(0).expect("current_user"),
        row.try_get_by_index(1).expect("session_user"),
        row.try_get_by_index(2).expect("app.user_id"),
        row.try_get_by_index(3).expect("app.role"),
        row.try_get_by_index(4).expect("transaction_read_only"),
    );
    assert_eq!(got.0, got.1, "the role outlived its transaction");
    assert_eq!(got.2, "", "app.user_id outlived its transaction ({ada_id})");
    assert_eq!(got.3, "", "app.role outlived its transaction");
    assert_eq!(got.4, "off", "read-only outlived its transaction");
    // And the anonymous request really ran on that same connection after ada's.
    let again = app.anonymous().graphql(PUBLIC, json!({})).await;
    assert_eq!(total_count(&again, "publicProjects"), 0, "{again}");
}
