//! GraphiQL in a real browser: Debian's headless chromium, driven by playwright-core
//! (`tests/browser/graphiql.mjs`), loads `/` with every request to another host blocked,
//! runs the example query, authenticates through the Headers tab, and sees a
//! subscription's event, caused by another client (an admin's `createNotification`),
//! appear in the result pane.
//!
//! Needs Node.js and `/usr/bin/chromium` (`.ci/run` installs chromium when absent); the
//! test installs `tests/browser/node_modules` from its lock file (`npm ci`) when missing.
//! It fails, never skips, without them.

use std::{path::PathBuf, process::Stdio, time::Duration};

use flashfusion_tests::TestApp;
use tokio::process::Command;

/// The whole browser run: chromium's start-up, four steps, and the change, on a busy
/// 2-core machine. The script bounds itself too (120 s).
const BROWSER_RUN: Duration = Duration::from_secs(180);
/// `npm ci` of one package.
const NPM_CI: Duration = Duration::from_secs(300);

/// `tests/browser`, where the script, its package.json and lock file live.
fn browser_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// Runs `npm ci` in `tests/browser` unless playwright-core is already installed there.
async fn ensure_node_modules() {
    let dir = browser_dir();
    if dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return;
    }
    let output = tokio::time::timeout(
        NPM_CI,
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("`npm ci` in tests/browser timed out")
    .expect("run `npm` (the browser test needs Node.js and npm)");
    assert!(
        output.status.success(),
        "`npm ci` in tests/browser failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn graphiql_runs_a_query_and_a_subscription_offline_in_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's chromium (`.ci/run` does)"
    );
    ensure_node_modules().await;

    let app = TestApp::postgres().await;
    let (ada, ada_id) = app.user("ada@example.com").await;
    let (admin, _) = app.admin("root@example.com").await;

    let run = Command::new("node")
        .arg("graphiql.mjs")
        .current_dir(browser_dir())
        .env("BASE_URL", &app.base)
        .env("USER_TOKEN", ada.token())
        .env("USER_EMAIL", "ada@example.com")
        .env("USER_ID", &ada_id)
        .env("ADMIN_TOKEN", admin.token())
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(BROWSER_RUN, run)
        .await
        .expect("the browser run timed out")
        .expect("run `node` (the browser test needs Node.js)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success() && stdout.lines().any(|line| line == "PASS"),
        "the browser run failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    for step in [
        "ok: GraphiQL rendered",
        "ok: the example query listed",
        "ok: the request blocker stopped a request to another host",
        "ok: the Headers tab authenticated an HTTP query",
        "ok: the subscription opened a WebSocket with the token in connection_init",
        "ok: the subscription event appeared",
        "ok: no request left the gateway, no page errors",
    ] {
        assert!(stdout.contains(step), "missing step {step:?}:\n{stdout}");
    }
}
