//! The README's "Production" section, run with the real `flashfusion` binary: migrate
//! as the owner, create the login role with the README's SQL, serve as that role with
//! `FLASHFUSION_ENV=production`, and a query works; `serve` on a database nobody has
//! migrated refuses to start and says what to run.
//!
//! It lives beside `binary.rs` because only this package's tests are given the path of
//! the binary cargo built for them (`CARGO_BIN_EXE_flashfusion`).

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

use sea_orm::{ConnectionTrait, DatabaseConnection};
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

/// The binary with only `env` set (and the port left to the kernel).
fn flashfusion(env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .env("FLASHFUSION_BIND", "127.0.0.1:0")
        .env("FLASHFUSION_LOG_FORMAT", "json")
        .envs(env.iter().copied());
    command
}

/// Runs `command` to its end, bounded by [`TIMEOUT`] (a `serve` that does not refuse
/// would never end).
fn run_to_end(mut command: Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start flashfusion");
    let started = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!(
                "flashfusion did not exit: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// Starts `serve` and returns it with its base URL once it listens.
fn serve(env: &[(&str, &str)]) -> (Gateway, String) {
    let mut command = flashfusion(env);
    command
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut gateway = Gateway(command.spawn().expect("start the gateway"));
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = gateway.0.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let address = serde_json::from_str::<Value>(&line)
                .ok()
                .and_then(|event| event["fields"]["address"].as_str().map(str::to_owned));
            let _ = tx.send(address.ok_or(line));
        }
    });
    let mut log = Vec::new();
    loop {
        match rx.recv_timeout(TIMEOUT) {
            Ok(Ok(address)) => return (gateway, format!("http://{address}")),
            Ok(Err(line)) => log.push(line),
            Err(_) => panic!("the gateway did not start listening:\n{}", log.join("\n")),
        }
    }
}

async fn exec(conn: &DatabaseConnection, sql: &str) {
    conn.execute_unprepared(sql)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"));
}

/// `postgres://<user>@<host>/<database>` on the test server.
fn url(server: &str, user: &str, database: &str) -> String {
    let (scheme, rest) = server.split_once("://").expect("a URL");
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let host = host.split_once('/').map_or(host, |(host, _)| host);
    format!("{scheme}://{user}@{host}/{database}")
}

#[tokio::test]
async fn production_runs_as_the_readme_says() {
    let server = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let pid = std::process::id();
    let (database, unmigrated, login) = (
        format!("ff_deploy_{pid}"),
        format!("ff_deploy_{pid}_empty"),
        format!("ff_login_{pid}"),
    );
    let admin = sea_orm::Database::connect(&server).await.expect("Postgres");
    for name in [&database, &unmigrated] {
        exec(
            &admin,
            &format!("drop database if exists {name} with (force)"),
        )
        .await;
        exec(&admin, &format!("create database {name}")).await;
    }
    exec(&admin, &format!("drop role if exists {login}")).await;
    // The test server's superuser stands in for the owner.
    let owner_user = server
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map_or("postgres", |(user, _)| user);
    let owner_url = url(&server, owner_user, &database);

    // 1. Migrate, as the owner.
    let migrated = run_to_end({
        let mut command = flashfusion(&[("DATABASE_URL", owner_url.as_str())]);
        command.args(["migrate", "up"]);
        command
    });
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    assert!(
        String::from_utf8_lossy(&migrated.stdout).contains("Applied"),
        "migrate up lists what is applied"
    );

    // 2. The login role, with the README's SQL (its name made unique to this run).
    let owner = sea_orm::Database::connect(&owner_url)
        .await
        .expect("connect as the owner");
    exec(
        &owner,
        &format!(
            "create role {login} login noinherit password 'secret';
             grant flashfusion_anon, flashfusion_authenticated, flashfusion_service to {login};"
        ),
    )
    .await;
    owner.close().await.expect("close");

    // 3. Serve, as the login role, in production.
    let keys = (
        format!("{:064x}", u128::from(pid) + 1),
        format!("{:064x}", u128::from(pid) + 2),
    );
    let login_url = url(&server, &login, &database);
    let production = |database_url: &str| {
        vec![
            ("FLASHFUSION_ENV", "production".to_owned()),
            ("DATABASE_URL", database_url.to_owned()),
            ("FLASHFUSION_BISCUIT_PRIVATE_KEY", keys.0.clone()),
            ("FLASHFUSION_SECRETS_KEY", keys.1.clone()),
        ]
    };
    let env = production(&login_url);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (gateway, base) = serve(&env);
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .expect("client");
    let post = |query: &str, token: Option<&str>| {
        let mut request = client
            .post(format!("{base}/graphql"))
            .json(&json!({ "query": query }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            request
                .send()
                .await
                .expect("request")
                .json::<Value>()
                .await
                .expect("JSON")
        }
    };
    let up = post("mutation { signUp(input: {email: \"ada@example.com\", password: \"correct horse\", displayName: \"Ada\"}) { token } }", None).await;
    let token = up["data"]["signUp"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("signUp failed: {up}"))
        .to_owned();
    let me = post("{ me { email } aiServices { slug } }", Some(&token)).await;
    assert_eq!(me["data"]["me"]["email"], "ada@example.com", "{me}");
    assert!(
        me["data"]["aiServices"]
            .as_array()
            .is_some_and(|services| !services.is_empty()),
        "{me}"
    );
    drop(gateway);

    // `serve` before migrating refuses to start, and says what to do.
    let env = production(&url(&server, &login, &unmigrated));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let refused = run_to_end({
        let mut command = flashfusion(&env);
        command.arg("serve");
        command
    });
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "serve started: {stderr}");
    assert!(
        stderr.contains("schema is not current") && stderr.contains("flashfusion migrate up"),
        "{stderr}"
    );

    for name in [&database, &unmigrated] {
        exec(
            &admin,
            &format!("drop database if exists {name} with (force)"),
        )
        .await;
    }
    exec(&admin, &format!("drop role if exists {login}")).await;
}
