//! The real `flashfusion` binary: it starts with no configuration in an empty
//! directory on the embedded SQLite default, two of its processes on one Postgres
//! database deliver each other's changes to subscribers, and the checked-in schema
//! matches it.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_flashfusion");
const TIMEOUT: Duration = Duration::from_secs(30);

/// Kills the gateway when the test ends, however it ends.
struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> Value {
    let mut request = client
        .post(url)
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON body")
}

/// Signs up `email` (password "correct horse") through `url`; returns its token.
async fn sign_up(client: &reqwest::Client, url: &str, email: &str, name: &str) -> String {
    let up = post(
        client,
        url,
        None,
        "mutation($i: SignUpInput!) { signUp(input: $i) { token } }",
        json!({ "i": { "email": email, "password": "correct horse", "displayName": name } }),
    )
    .await;
    up["data"]["signUp"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("signUp failed: {up}"))
        .to_owned()
}

/// Runs `command` (a gateway expected to stop by itself) to its exit, bounded by
/// [`TIMEOUT`]: its status and what it wrote to stderr.
fn run_to_exit(command: &mut Command) -> (std::process::ExitStatus, String) {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the gateway");
    let mut stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        let _ = tx.send(text);
    });
    let text = rx.recv_timeout(TIMEOUT).expect("the gateway did not stop");
    (child.wait().expect("exit status"), text)
}

/// Starts the gateway in `dir` with only `env` set, on a port the kernel picks; returns
/// it and its base URL once it listens.
fn start(dir: &Path, env: &[(&str, &str)]) -> (Gateway, String) {
    let child = Command::new(BIN)
        .current_dir(dir)
        .env_clear()
        // Port 0: the kernel picks a free port, and the log line says which.
        .env("FLASHFUSION_BIND", "127.0.0.1:0")
        .env("FLASHFUSION_LOG_FORMAT", "json")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the gateway");
    let mut gateway = Gateway(child);
    // Wait for the "listening" log line, bounded by TIMEOUT, and read the address.
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = gateway.0.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let Ok(event) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if let Some(address) = event["fields"]["address"].as_str() {
                let _ = tx.send(address.to_owned());
            }
        }
    });
    let address = rx
        .recv_timeout(TIMEOUT)
        .expect("the gateway did not start listening");
    (gateway, format!("http://{address}"))
}

#[tokio::test]
async fn starts_on_sqlite_with_no_configuration() {
    let tempdir = tempfile::tempdir().expect("an empty directory");
    let dir = tempdir.path();
    let (mut gateway, base) = start(dir, &[]);
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .expect("client");

    assert!(
        dir.join("flashfusion.db").exists(),
        "the SQLite database is created"
    );
    assert!(
        dir.join("flashfusion.biscuit-key").exists(),
        "the development key is kept"
    );
    assert!(
        dir.join("flashfusion.secrets-key").exists(),
        "the development sealing key is kept"
    );

    let url = format!("{base}/graphql");
    let token = sign_up(&client, &url, "ada@example.com", "Ada").await;
    let created = post(
        &client,
        &url,
        Some(&token),
        "mutation { createProject(input: {name: \"first\"}) { project { id owner { displayName } } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        created["data"]["createProject"]["project"]["owner"]["displayName"], "Ada",
        "{created}"
    );
    let mine = post(
        &client,
        &url,
        Some(&token),
        "{ myProjects { totalCount edges { node { name } } } }",
        json!({}),
    )
    .await;
    assert_eq!(mine["data"]["myProjects"]["totalCount"], 1, "{mine}");
    assert_eq!(
        mine["data"]["myProjects"]["edges"][0]["node"]["name"],
        "first"
    );
    let bob = sign_up(&client, &url, "bob@example.com", "Bob").await;
    let id = created["data"]["createProject"]["project"]["id"].clone();
    let peek = post(
        &client,
        &url,
        Some(&bob),
        "query($id: ID!) { project(id: $id) { name } }",
        json!({ "id": id }),
    )
    .await;
    assert_eq!(
        peek["data"]["project"],
        Value::Null,
        "resolvers guard SQLite on their own"
    );

    // The CLI mints an admin token for the account, against the same database.
    let issued = Command::new(BIN)
        .current_dir(dir)
        .env_clear()
        .args([
            "token",
            "issue",
            "--email",
            "ADA@example.com",
            "--role",
            "admin",
            "--ttl",
            "10m",
        ])
        .output()
        .expect("run token issue");
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    let admin = String::from_utf8(issued.stdout).expect("utf-8 token");
    let me = post(
        &client,
        &url,
        Some(admin.trim()),
        "{ me { email role } }",
        json!({}),
    )
    .await;
    assert_eq!(
        me["data"]["me"],
        json!({ "email": "ada@example.com", "role": "ADMIN" }),
        "{me}"
    );
    let peek = post(
        &client,
        &url,
        Some(admin.trim()),
        "query($id: ID!) { project(id: $id) { name } }",
        json!({ "id": id }),
    )
    .await;
    assert_eq!(
        peek["data"]["project"]["name"], "first",
        "admins read everything"
    );

    // SIGTERM drains and exits cleanly.
    let pid = gateway.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let mut child = std::mem::replace(
        &mut gateway.0,
        Command::new("true").spawn().expect("placeholder"),
    );
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    let status = done_rx
        .recv_timeout(TIMEOUT)
        .expect("the gateway did not exit after SIGTERM");
    assert!(
        status.expect("exit status").success(),
        "graceful shutdown exits 0"
    );
}

/// Two gateway processes on one Postgres database (sharing the keys the first one
/// wrote): a change made through one reaches a subscriber of the other, through the
/// events table, NOTIFY and the second one's own listener.
#[tokio::test]
async fn a_change_through_one_process_reaches_a_subscriber_of_another() {
    use futures_util::{SinkExt, StreamExt};
    use sea_orm::ConnectionTrait;
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

    let server = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let name = format!("ff_bin_{}", std::process::id());
    let admin = sea_orm::Database::connect(&server).await.expect("Postgres");
    let create =
        |sql: String| sea_orm::Statement::from_string(sea_orm::DatabaseBackend::Postgres, sql);
    admin
        .execute_raw(create(format!(
            "drop database if exists {name} with (force)"
        )))
        .await
        .expect("drop");
    admin
        .execute_raw(create(format!("create database {name}")))
        .await
        .expect("create");
    let (base, _) = server.rsplit_once('/').expect("a database URL");
    let url = format!("{base}/{name}");

    let tempdir = tempfile::tempdir().expect("an empty directory");
    let env = [("DATABASE_URL", url.as_str())];
    // One after the other: the first migrates and writes the keys the second reads.
    let (_first, writer) = start(tempdir.path(), &env);
    let (_second, reader) = start(tempdir.path(), &env);
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .expect("client");
    let graphql = format!("{writer}/graphql");
    let token = sign_up(&client, &graphql, "ada@example.com", "Ada").await;
    let project = post(
        &client,
        &graphql,
        Some(&token),
        "mutation { createProject(input: {name: \"live\"}) { project { id } } }",
        json!({}),
    )
    .await["data"]["createProject"]["project"]["id"]
        .clone();

    let mut request = format!("{}/graphql", reader.replacen("http", "ws", 1))
        .into_client_request()
        .expect("ws request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    let (mut ws, _) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(request))
        .await
        .expect("ws connect timed out")
        .expect("ws connect");
    let mut send = async |message: Value| {
        ws.send(Message::Text(message.to_string().into()))
            .await
            .expect("ws send");
    };
    send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } })).await;
    send(json!({ "id": "1", "type": "subscribe", "payload": {
        "query": "subscription($p: ID) { agentTaskUpdated(projectId: $p) { task { title } } }",
        "variables": { "p": project } } }))
    .await;
    // The protocol does not say when a subscription is live: create tasks through the
    // other process until one arrives (the first normally does), each wait bounded.
    let mut created = Vec::new();
    let arrived = 'outer: loop {
        assert!(created.len() < 10, "no event reached the other process");
        let title = format!("task {}", created.len());
        let out = post(
            &client,
            &graphql,
            Some(&token),
            "mutation($i: CreateAgentTaskInput!) { createAgentTask(input: $i) { task { id } } }",
            json!({ "i": { "projectId": project, "agentSlug": "code-reviewer", "title": title } }),
        )
        .await;
        assert!(out["errors"].is_null(), "{out}");
        created.push(title);
        let wait = tokio::time::sleep(Duration::from_secs(2));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                () = &mut wait => continue 'outer,
                message = ws.next() => {
                    let Some(Ok(Message::Text(text))) = message else {
                        panic!("the socket ended: {message:?}");
                    };
                    let message: Value = serde_json::from_str(&text).expect("JSON");
                    if message["type"] == "next" {
                        break 'outer message;
                    }
                }
            }
        }
    };
    let title = arrived["payload"]["data"]["agentTaskUpdated"]["task"]["title"]
        .as_str()
        .expect("a task event")
        .to_owned();
    assert!(created.contains(&title), "{arrived}");
    drop((_first, _second));
    let _ = admin
        .execute_raw(create(format!(
            "drop database if exists {name} with (force)"
        )))
        .await;
}

/// A `DATABASE_URL` that does not parse (here a mistyped scheme) stops the gateway
/// with an error that names the setting, and never with its password.
#[test]
fn a_bad_database_url_is_refused_without_its_password() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (status, text) = run_to_exit(
        Command::new(BIN)
            .current_dir(dir.path())
            .env_clear()
            .env("DATABASE_URL", "postgress://app:hunter2@127.0.0.1:5432/ff"),
    );
    assert!(!status.success(), "{text}");
    assert!(text.contains("DATABASE_URL"), "{text}");
    assert!(
        !text.contains("hunter2"),
        "the password reached the log: {text}"
    );
}

/// A `.env` with a line that does not parse stops the start: dotenvy stops reading at
/// it, so every setting after it would be ignored without a word.
#[test]
fn a_dotenv_file_that_does_not_parse_stops_the_start() {
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(
        dir.path().join(".env"),
        "FLASHFUSION_LOG=info, sqlx=warn\nFLASHFUSION_ENV=production\n",
    )
    .expect("write .env");
    let (status, text) = run_to_exit(Command::new(BIN).current_dir(dir.path()).env_clear());
    assert!(!status.success(), "{text}");
    assert!(text.contains(".env"), "{text}");
}

/// `migrate down` drops every table, so it asks for `--yes` before it connects.
#[test]
fn migrate_down_wants_a_yes() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let migrate = |args: &[&str]| {
        run_to_exit(
            Command::new(BIN)
                .current_dir(dir.path())
                .env_clear()
                .args(["migrate", "down"])
                .args(args),
        )
    };
    let (status, text) = migrate(&[]);
    assert!(!status.success(), "{text}");
    assert!(text.contains("--yes"), "{text}");
    assert!(
        !dir.path().join("flashfusion.db").exists(),
        "it connected to the database"
    );
    let (status, text) = migrate(&["--yes"]);
    assert!(status.success(), "{text}");
}

/// Production does not make up its keys: without them it does not start.
#[test]
fn production_without_its_keys_does_not_start() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (status, text) = run_to_exit(
        Command::new(BIN)
            .current_dir(dir.path())
            .env_clear()
            .env("FLASHFUSION_ENV", "production")
            .env("FLASHFUSION_BIND", "127.0.0.1:0"),
    );
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("FLASHFUSION_BISCUIT_PRIVATE_KEY and FLASHFUSION_SECRETS_KEY"),
        "{text}"
    );
    assert!(
        !dir.path().join("flashfusion.secrets-key").exists(),
        "a development key was written"
    );
}

#[test]
fn schema_graphql_is_up_to_date() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schema.graphql");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    let live = flashfusion_api::schema::sdl();
    assert!(
        checked_in == live,
        "schema.graphql is out of date; regenerate it with:\n  cargo run -q -- schema > schema.graphql"
    );
}
