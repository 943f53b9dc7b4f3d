//! The real `flashfusion` binary: it starts with no configuration in an empty
//! directory on the embedded SQLite default, and the checked-in schema matches it.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
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

#[tokio::test]
async fn starts_on_sqlite_with_no_configuration() {
    let tempdir = tempfile::tempdir().expect("an empty directory");
    let dir = tempdir.path();
    let child = Command::new(BIN)
        .current_dir(dir)
        .env_clear()
        // Port 0: the kernel picks a free port, and the log line says which.
        .env("FLASHFUSION_BIND", "127.0.0.1:0")
        .env("FLASHFUSION_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the gateway");
    let mut gateway = Gateway(child);
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .expect("client");

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
    let base = format!("http://{address}");
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
    let up = post(
        &client,
        &url,
        None,
        "mutation($i: SignUpInput!) { signUp(input: $i) { token } }",
        json!({ "i": { "email": "ada@example.com", "password": "correct horse", "displayName": "Ada" } }),
    )
    .await;
    let token = up["data"]["signUp"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
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
    let other = post(
        &client,
        &url,
        None,
        "mutation($i: SignUpInput!) { signUp(input: $i) { token } }",
        json!({ "i": { "email": "bob@example.com", "password": "correct horse", "displayName": "Bob" } }),
    )
    .await;
    let bob = other["data"]["signUp"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
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
