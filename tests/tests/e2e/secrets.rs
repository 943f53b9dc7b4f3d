//! Secrets at rest, on Postgres: the database never holds a plaintext key or credential
//! (checked in a `pg_dump` of the whole test database), the owner's role cannot read
//! the sealed columns, and a sealed key moved to another owner no longer opens.
//!
//! The gateway runs in the test's process, so its log lines (every target, at TRACE)
//! are captured too and searched for the plaintexts.

use flashfusion_tests::{Actors, TestApp, WsClient, eventually};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, TransactionTrait};
use serde_json::json;

use crate::{
    api_keys::{CREATE, CREDENTIAL, key_input},
    code,
    fixtures::task,
    integrations::CONNECT,
};

const KEY: &str = "sk-ant-PLAINTEXT-KEY-7c1f9e";
const CREDENTIALS: &str = "ghp_PLAINTEXT-CREDENTIALS-4b2d";

#[tokio::test]
async fn the_database_holds_no_plaintext_secret() {
    let app = TestApp::postgres().await;
    let a = Actors::new(&app).await;
    let key = a.owner.graphql(CREATE, key_input("k", KEY)).await;
    assert_eq!(code(&key), "", "{key}");
    let integration = a
        .owner
        .graphql(
            CONNECT,
            json!({ "i": { "provider": "github", "credentials": CREDENTIALS } }),
        )
        .await;
    assert_eq!(code(&integration), "", "{integration}");
    for response in [&key, &integration] {
        assert!(!response.to_string().contains("PLAINTEXT"), "{response}");
    }

    let url = app.db.as_ref().expect("postgres").url().to_owned();
    let dump = std::process::Command::new("pg_dump")
        .args(["--data-only", "--dbname", &url])
        .output()
        .expect("run pg_dump (it must be on PATH)");
    assert!(
        dump.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains("user_api_keys"), "the dump has the table");
    assert!(dump.contains("\t1f9e\t"), "the hint (last four) is there");
    for secret in [KEY, CREDENTIALS, "PLAINTEXT"] {
        assert!(!dump.contains(secret), "{secret} is in the database dump");
    }
    // Nor in hex (bytea is dumped as hex).
    for secret in [KEY, CREDENTIALS] {
        assert!(
            !dump.contains(&hex(secret)),
            "{secret} is in the dump as hex"
        );
    }
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn the_owners_role_cannot_read_sealed_columns() {
    let app = TestApp::postgres().await;
    let a = Actors::new(&app).await;
    a.owner.graphql(CREATE, key_input("k", KEY)).await;
    a.owner
        .graphql(
            CONNECT,
            json!({ "i": { "provider": "github", "credentials": CREDENTIALS } }),
        )
        .await;
    let conn = app.state.db.connection();
    for sql in [
        "select ciphertext from user_api_keys",
        "select nonce from user_api_keys",
        "select credentials from integrations",
        "select * from integrations",
    ] {
        let tx = conn.begin().await.expect("begin");
        tx.execute_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "select set_config('role', 'flashfusion_authenticated', true), set_config('app.user_id', $1, true), set_config('app.role', 'user', true)",
            [a.owner_id.clone().into()],
        ))
        .await
        .expect("switch role");
        let result = tx
            .query_all_raw(Statement::from_string(DatabaseBackend::Postgres, sql))
            .await;
        let _ = tx.rollback().await;
        let error = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains("permission denied"), "{sql}: {error}");
    }
}

#[tokio::test]
async fn a_key_moved_to_another_owner_does_not_open() {
    let app = TestApp::postgres().await;
    let a = Actors::new(&app).await;
    a.owner.graphql(CREATE, key_input("k", KEY)).await;
    let conn = app.state.db.connection();
    conn.execute_raw(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "update user_api_keys set user_id = $1::uuid",
        [a.other_id.clone().into()],
    ))
    .await
    .expect("move the key to Bob");
    let bobs = flashfusion_tests::create_project(&a.other, "bob's").await;
    let running = task(&app, &a.other_id, &bobs, "running").await;
    let response = a
        .service
        .graphql(
            CREDENTIAL,
            json!({ "i": { "taskId": running, "provider": "anthropic" } }),
        )
        .await;
    assert_eq!(code(&response), "INTERNAL", "{response}");
    assert!(!response.to_string().contains("PLAINTEXT"), "{response}");
    assert_eq!(
        crate::fixtures::usage_count(&app, "api_key.used").await,
        0,
        "rolled back"
    );
}

/// Every log line of this test binary from the first [`captured_logs`] call on. It is a
/// global subscriber: a thread-local one (`set_default`) missed events whose callsite
/// another test thread hit at the same time.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut lines) = self.0.lock() {
            lines.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        self.0
            .lock()
            .map(|lines| String::from_utf8_lossy(&lines).into_owned())
            .unwrap_or_default()
    }
}

/// Installs the capturing subscriber once (the gateway's own targets, the HTTP trace
/// layer and SQL, down to TRACE) and returns its buffer.
fn captured_logs() -> Captured {
    static CAPTURED: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(
                    "off,flashfusion_api=trace,tower_http=trace,sea_orm=trace,sqlx=trace",
                ))
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other test installs a global subscriber");
            captured
        })
        .clone()
}

/// The gateway runs in this process, so its log lines are captured and searched.
/// A socket's operations log inside its upgrade request's span, so their lines carry
/// that request's id, as every HTTP request's do.
#[tokio::test]
async fn a_socket_s_log_lines_carry_its_upgrade_request_s_id() {
    let captured = captured_logs();
    let app = TestApp::sqlite().await;
    let id = "ws-span-4d1c";
    let mut ws =
        WsClient::connect_with(&app.base, "graphql-transport-ws", &[("x-request-id", id)]).await;
    ws.send(json!({ "type": "connection_init" })).await;
    assert_eq!(ws.next().await.expect("ack")["type"], "connection_ack");
    ws.send(json!({ "id": "1", "type": "subscribe", "payload": { "query": "{ __typename }" } }))
        .await;
    assert_eq!(ws.next().await.expect("its answer")["type"], "next");
    assert_eq!(ws.next().await.expect("its end")["type"], "complete");
    let captured = &captured;
    eventually(
        "the operation's line carries the socket's request id",
        || {
            std::future::ready(
                captured
                    .text()
                    .lines()
                    .any(|line| line.contains("operation finished") && line.contains(id)),
            )
        },
    )
    .await;
}

#[tokio::test]
async fn no_log_line_holds_a_secret() {
    let captured = captured_logs();

    let app = TestApp::postgres().await;
    let a = Actors::new(&app).await;
    a.owner.graphql(CREATE, key_input("k", KEY)).await;
    a.owner
        .graphql(
            CONNECT,
            json!({ "i": { "provider": "github", "credentials": CREDENTIALS } }),
        )
        .await;
    let running = task(&app, &a.owner_id, &a.project_id, "running").await;
    let given = a
        .service
        .graphql(
            CREDENTIAL,
            json!({ "i": { "taskId": running, "provider": "anthropic" } }),
        )
        .await;
    assert_eq!(
        given["data"]["agentTaskCredential"]["secret"], KEY,
        "{given}"
    );
    // A failing open is logged in full as an internal error: still without the secret.
    app.state
        .db
        .connection()
        .execute_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "update user_api_keys set user_id = $1::uuid",
            [a.other_id.clone().into()],
        ))
        .await
        .expect("move the key");
    let bobs = flashfusion_tests::create_project(&a.other, "bob's").await;
    let bobs_task = task(&app, &a.other_id, &bobs, "running").await;
    let refused = a
        .service
        .graphql(
            CREDENTIAL,
            json!({ "i": { "taskId": bobs_task, "provider": "anthropic" } }),
        )
        .await;
    assert_eq!(code(&refused), "INTERNAL", "{refused}");

    let logs = captured.text();
    assert!(
        logs.contains("operation finished"),
        "the gateway's logs were captured"
    );
    assert!(
        logs.contains("does not open"),
        "the failed open was logged: {logs}"
    );
    for secret in [KEY, CREDENTIALS, "PLAINTEXT"] {
        assert!(!logs.contains(secret), "{secret} was logged");
    }
}
