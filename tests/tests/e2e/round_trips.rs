//! What an operation costs the database, counted in round trips (`Database::round_trips`:
//! every statement plus a `BEGIN` sent alone and each transaction end; for a read also on
//! the wire, through `bench::wire::proxy`), and what the query that opens a transaction
//! must keep: the caller's role and settings end with the
//! transaction, a transaction that does not finish leaves nothing behind, and a token is
//! checked against the database on every operation.

use bench::wire::proxy::{Capture, Proxy};
use flashfusion_api::auth::{Identity, Role};
use flashfusion_tests::{
    Client, TestApp, TestDb, create_visible_project, eventually, waiting_on_locks,
};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, TransactionTrait};
use serde_json::{Value, json};

use crate::code;

on_both_backends!(
    an_authenticated_read_costs_three_round_trips_on_postgres,
    an_anonymous_read_costs_three,
    a_token_revoked_between_two_requests_is_refused_on_the_second,
    a_demoted_admin_token_is_refused_on_its_next_operation,
    nested_lists_with_nothing_in_them_cost_no_more,
);

/// The round trips of an authenticated read. Postgres: `BEGIN` with the statement that
/// switches to the caller and checks the session (one simple query), the page with its
/// count, the end (a `ROLLBACK` sent with sqlx's release `Sync`). SQLite: sea-orm's
/// `BEGIN` alone, the session check, the page, `COMMIT`.
fn read_budget(app: &TestApp) -> u64 {
    match app.state.db.backend() {
        DatabaseBackend::Postgres => 3,
        _ => 4,
    }
}

/// An anonymous read on either backend: the opening (no session to check), the page,
/// the end.
const ANONYMOUS_READ_BUDGET: u64 = 3;

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

async fn an_authenticated_read_costs_three_round_trips_on_postgres(app: TestApp) {
    let (ada, _) = app.user("ada@example.com").await;
    for i in 0..3 {
        create_visible_project(&ada, &format!("p{i}"), "PRIVATE").await;
    }
    let (page, round_trips) = measured(&app, &ada, MINE).await;
    assert_eq!(total_count(&page, "myProjects"), 3, "{page}");
    assert!(
        round_trips <= read_budget(&app),
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

/// A page of projects with their first pages of tasks, when no project has a task: the
/// read's round trips plus the one statement of the tasks' first pages; nothing is
/// loaded for the tasks' agents, of which there are none.
async fn nested_lists_with_nothing_in_them_cost_no_more(app: TestApp) {
    let (ada, _) = app.user("ada@example.com").await;
    for i in 0..3 {
        create_visible_project(&ada, &format!("p{i}"), "PRIVATE").await;
    }
    let nested = "{ myProjects(first: 20) { edges { node { id tasks(first: 5) { totalCount edges { node { id agent { name } } } } } } } }";
    let (page, round_trips) = measured(&app, &ada, nested).await;
    let edges = page["data"]["myProjects"]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("edges: {page}"));
    assert_eq!(edges.len(), 3, "{page}");
    assert!(
        edges.iter().all(|e| e["node"]["tasks"]["totalCount"] == 0),
        "{page}"
    );
    assert!(
        round_trips <= read_budget(&app) + 1,
        "the nested read took {round_trips} round trips: {page}"
    );
}

async fn an_anonymous_read_costs_three(app: TestApp) {
    let (ada, _) = app.user("ada@example.com").await;
    create_visible_project(&ada, "open", "PUBLIC").await;
    let (page, round_trips) = measured(&app, &app.anonymous(), PUBLIC).await;
    assert_eq!(total_count(&page, "publicProjects"), 1, "{page}");
    assert!(
        round_trips <= ANONYMOUS_READ_BUDGET,
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
    // BEGIN with the switch and check, the insert (returning the row), COMMIT; the
    // fewest of three, as in `measured`.
    assert!(
        round_trips <= 3,
        "createProject took {round_trips} round trips"
    );
}

/// The same budget on the wire, as Postgres receives it (`bench::wire::proxy` between
/// the gateway and the server): an authenticated read is three round trips, and its
/// `ROLLBACK` is not one of its own but rides with the `Sync` sqlx sends as the
/// connection goes back to its pool (`PgTx::end_on_release`); awaited alone, it would
/// make four.
#[tokio::test]
async fn on_the_wire_a_read_ends_in_the_round_trip_of_its_connections_release() {
    let db = TestDb::new().await;
    let server = host_and_port(db.url()).to_owned();
    let proxy = Proxy::start(server.clone()).await.expect("proxy");
    // Without TLS, so that the proxy can read the protocol.
    let url = db.url().replacen(&server, &proxy.address, 1);
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}sslmode=disable");
    let app = TestApp::start(url, Some(db)).await;
    let (ada, _) = app.user("ada@example.com").await;
    create_visible_project(&ada, "p", "PRIVATE").await;
    let settle = std::time::Duration::from_secs(10);
    // The fewest of five, as in `measured`: the hub shares the proxy.
    let mut fewest: Option<Capture> = None;
    for _ in 0..5 {
        proxy.settle(settle).await.expect("settled before the read");
        proxy.take();
        let page = ada.graphql(MINE, json!({})).await;
        assert_eq!(total_count(&page, "myProjects"), 1, "{page}");
        proxy.settle(settle).await.expect("settled after the read");
        let capture = proxy.take();
        if fewest
            .as_ref()
            .is_none_or(|f| capture.round_trips < f.round_trips)
        {
            fewest = Some(capture);
        }
    }
    let read = fewest.expect("five reads");
    let sql: Vec<&str> = read.statements.iter().map(|s| s.sql.trim()).collect();
    assert_eq!(read.round_trips, 3, "{sql:#?}");
    assert_eq!(
        sql.len(),
        4,
        "BEGIN, the switch, the page, ROLLBACK: {sql:#?}"
    );
    assert!(sql[0].eq_ignore_ascii_case("BEGIN"), "{sql:#?}");
    assert!(sql[3].eq_ignore_ascii_case("ROLLBACK"), "{sql:#?}");
    // The release `Sync`, sent after the `ROLLBACK` (and counted in its round trip).
    assert_eq!(read.empty_round_trips, [4], "{sql:#?}");
    assert_eq!(read.connections.len(), 1, "{sql:#?}");
}

/// `host:port` of a Postgres URL (`postgres://user@host:port/db`).
fn host_and_port(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    rest.split(['/', '?']).next().unwrap_or(rest)
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
    // Whatever the operation needs: the database, none (the transaction opens on
    // first use, so such an operation opens one at its end to check the session), or
    // none because its field fails first.
    for query in [
        "{ me { id } }",
        "{ __typename }",
        r#"{ project(id: "not-an-id") { id } }"#,
    ] {
        let refused = ada.graphql(query, json!({})).await;
        assert_eq!(code(&refused), "UNAUTHENTICATED", "{query}: {refused}");
        assert_eq!(refused["data"], Value::Null, "{query}: {refused}");
        assert_eq!(
            refused["errors"].as_array().map(Vec::len),
            Some(1),
            "{refused}"
        );
    }
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

/// A gateway whose pool holds one connection, so each request reuses the previous
/// one's.
async fn one_connection_app() -> TestApp {
    let db = TestDb::new().await;
    let url = db.url().to_owned();
    TestApp::start_with(url, Some(db), |config| config.db_max_connections = 1).await
}

/// Asserts that the pool's connection, outside any request, is back to its login role
/// with no `app.*` setting, read-write and with the server's statement timeout (all of
/// which a request's transaction changes).
async fn assert_connection_is_clean(app: &TestApp) {
    let row = app
        .state
        .db
        .connection()
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "select current_user::text, session_user::text, \
             coalesce(current_setting('app.user_id', true), ''), \
             coalesce(current_setting('app.role', true), ''), \
             current_setting('transaction_read_only'), \
             current_setting('statement_timeout')",
        ))
        .await
        .expect("query")
        .expect("row");
    let got: (String, String, String, String, String, String) = (
        row.try_get_by_index(0).expect("current_user"),
        row.try_get_by_index(1).expect("session_user"),
        row.try_get_by_index(2).expect("app.user_id"),
        row.try_get_by_index(3).expect("app.role"),
        row.try_get_by_index(4).expect("transaction_read_only"),
        row.try_get_by_index(5).expect("statement_timeout"),
    );
    assert_eq!(got.0, got.1, "the role outlived its transaction");
    assert_eq!(got.2, "", "app.user_id outlived its transaction");
    assert_eq!(got.3, "", "app.role outlived its transaction");
    assert_eq!(got.4, "off", "read-only outlived its transaction");
    assert_eq!(got.5, "0", "statement_timeout outlived its transaction");
}

/// One pooled connection serves an authenticated request, then an anonymous one: the
/// second sees nothing private, and between them the connection is back to its login
/// role with no `app.*` setting and in read-write mode.
#[tokio::test]
async fn nothing_of_a_request_leaks_into_the_next_on_the_same_connection() {
    let app = one_connection_app().await;
    let (ada, _) = app.user("ada@example.com").await;
    create_visible_project(&ada, "secret", "PRIVATE").await;
    let mine = ada.graphql(MINE, json!({})).await;
    assert_eq!(total_count(&mine, "myProjects"), 1, "{mine}");
    let public = app.anonymous().graphql(PUBLIC, json!({})).await;
    assert_eq!(total_count(&public, "publicProjects"), 0, "{public}");
    assert_connection_is_clean(&app).await;
    // And the anonymous request really ran on that same connection after ada's.
    let again = app.anonymous().graphql(PUBLIC, json!({})).await;
    assert_eq!(total_count(&again, "publicProjects"), 0, "{again}");
}

/// A transaction dropped unfinished (a cancelled operation's) is rolled back before its
/// connection serves anyone else: its write is gone and nothing of its caller remains.
#[tokio::test]
async fn a_transaction_dropped_unfinished_is_rolled_back_before_the_next_request() {
    let app = one_connection_app().await;
    let (ada, ada_id) = app.user("ada@example.com").await;
    let identity = Identity::user(ada_id.parse().expect("uuid"), Role::User);
    let tx = app.state.db.begin(&identity, false).await.expect("begin");
    tx.conn()
        .execute_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "insert into projects (id, owner_id, name) values (gen_random_uuid(), $1, 'dropped')",
            [identity.user_id().expect("an account").into()],
        ))
        .await
        .expect("insert as ada");
    drop(tx);
    assert_connection_is_clean(&app).await;
    let rows = app
        .state
        .db
        .connection()
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "select count(*) from projects where name = 'dropped'",
        ))
        .await
        .expect("query")
        .expect("row");
    assert_eq!(rows.try_get_by_index::<i64>(0).expect("count"), 0);
    let mine = ada.graphql(MINE, json!({})).await;
    assert_eq!(total_count(&mine, "myProjects"), 0, "{mine}");
}

/// An opening cancelled while the server runs it (here held by a lock on `users`, which
/// the session check reads) does not hand its connection, maybe inside the transaction
/// it began, to the next request.
#[tokio::test]
async fn an_opening_cancelled_in_flight_leaves_nothing_behind() {
    let app = one_connection_app().await;
    let (ada, _) = app.user("ada@example.com").await;
    let session = app.state.tokens.verify(ada.token()).expect("a valid token");
    let test_db = app.db.as_ref().expect("postgres");
    let blocker = test_db.connect().await;
    let lock = blocker.begin().await.expect("begin");
    lock.execute_unprepared("lock table users in access exclusive mode")
        .await
        .expect("lock users");
    let watcher = test_db.connect().await;
    let opening = app.state.db.begin_session(&session, true);
    tokio::select! {
        opened = opening => panic!("opened through the lock: {}", opened.is_ok()),
        () = eventually("the opening waits on the lock", || waiting_on_locks(&watcher, 1)) => {}
    }
    lock.commit().await.expect("release the lock");
    assert_connection_is_clean(&app).await;
    let mine = ada.graphql(MINE, json!({})).await;
    assert_eq!(total_count(&mine, "myProjects"), 0, "{mine}");
}

/// A session refused by the opening query (which fails) costs that query and a
/// `ROLLBACK`, and leaves the connection clean for the next request.
#[tokio::test]
async fn a_refused_session_leaves_the_connection_clean() {
    let app = one_connection_app().await;
    let (ada, _) = app.user("ada@example.com").await;
    let session = app.state.tokens.verify(ada.token()).expect("a valid token");
    for id in session.revocation_ids() {
        app.state
            .db
            .connection()
            .execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "insert into revoked_tokens (revocation_id) values ($1)",
                [id.clone().into()],
            ))
            .await
            .expect("revoke");
    }
    let before = app.state.db.round_trips();
    let refused = ada.graphql(MINE, json!({})).await;
    let round_trips = app.state.db.round_trips() - before;
    assert_eq!(code(&refused), "UNAUTHENTICATED", "{refused}");
    assert!(round_trips <= 2, "a refusal took {round_trips} round trips");
    assert_connection_is_clean(&app).await;
    let public = app.anonymous().graphql(PUBLIC, json!({})).await;
    assert_eq!(total_count(&public, "publicProjects"), 0, "{public}");
}
