//! The `reads` run (issue 7): what an authenticated dashboard read costs.
//!
//! On a database seeded with 50 users × 40 projects (plain SQL as the owner; seeding is
//! not measured), with one token per user minted from a throwaway root key:
//!
//! 1. **Statements per request**, counted from the wire: a gateway whose database URL
//!    points at `bench::wire::proxy` serves the read query and the nested 100-project query after a
//!    few warm-up requests; the proxy records every statement (SQL and parameters) and
//!    round trip of the next request whose statements were all prepared already.
//! 2. **HTTP load** ([`load`]) on a gateway connected directly: at each connection count
//!    the read query, rotating over the tokens; requests per second, p50, p99, and the
//!    gateway's CPU time per request from `/proc`.
//! 3. **pgbench** ([`pgbench`]), when installed, at the same client counts: (a) the
//!    statements captured in 1, parameters inlined, one per line, those the gateway sent
//!    in one simple query joined by `\;` into one round trip as it sent them; (b) the
//!    one-round-trip
//!    floor, `BEGIN; set_config(...); <the page with count(*) over ()>; COMMIT` as one
//!    compound statement. Their transactions per second and the gateway's ratio to each.
//! 4. **Start to ready on SQLite**: a gateway on a fresh SQLite file, timed until
//!    `/readyz` answers.
//!
//! With `--requests N` the run does only this instead: N reads one after the other on
//! one connection, after a warm-up that has every token verified and the statements
//! prepared, and the gateway's user and system CPU time per request. A fixed amount of
//! work, for instruction counts: under `BENCH_GATEWAY_WRAPPER` (see [`gateway`]) two runs
//! with different N, subtracted, count the instructions of N requests without the
//! start-up and shutdown.
//!
//! Figures only; the run fails when it cannot run (including a request answered with an
//! error).

mod figures;
mod load;
mod pgbench;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use bench::wire::{
    proxy::{Capture, Proxy},
    sql::Statement,
};
use flashfusion_api::auth::Role;
use sea_orm::ConnectionTrait as _;
use serde_json::{Value, json};
use uuid::Uuid;

use self::{
    figures::{Figures, Replay, StartUp},
    load::Load,
};
use crate::{
    database::BenchDb,
    gateway::{self, Gateway, RootKey},
    graphql::Api,
    report,
};

/// `bench reads ...`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Concurrent keep-alive connections; one measurement (and one pgbench replay at as
    /// many clients) for each.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    connections: Vec<usize>,
    /// Seconds of load before each measurement starts.
    #[arg(long, default_value_t = 3)]
    warm_up: u64,
    /// Seconds each measurement (and each pgbench replay) lasts.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// A tiny run that only proves the benchmark works (CI): 0.5 s warm-up, 1 s per
    /// connection count, 20 pgbench transactions per client, one SQLite start.
    #[arg(long)]
    quick: bool,
    /// Only send this many reads one after the other on one connection (after a
    /// warm-up) and report the gateway's user and system CPU per request: for profiling.
    #[arg(long, conflicts_with_all = ["connections", "quick"])]
    requests: Option<usize>,
    /// Where to write the figures; `target/bench/reads-<UTC time>.md` when omitted.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Accounts seeded, and projects each.
const USERS: usize = 50;
const PROJECTS_PER_USER: usize = 40;
/// Every wait on a gateway or a request is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Requests sent before a capture counts: they prepare the statements on the pooled
/// connections (sqlx caches prepared statements per connection).
const WARM_UP_REQUESTS: usize = 8;
/// Captures tried until one request prepares nothing.
const CAPTURE_TRIES: usize = 20;

/// The dashboard read: a page of one's projects with their count and 8 scalar fields.
const READ: &str = "query { myProjects(first: 20) { totalCount edges { node { id name \
                    description visibility framework status createdAt updatedAt } } } }";
/// A page of 100 projects with the first tasks and deployments of each.
const NESTED: &str = "query { myProjects(first: 100) { edges { node { id name \
                      tasks(first: 5) { edges { node { id } } } \
                      deployments(first: 5) { edges { node { id } } } } } } }";

/// Runs every measurement, prints the figures and writes them to a file.
pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.connections.is_empty() || args.connections.contains(&0) {
        bail!("every --connections count must be positive");
    }
    if !args.quick && args.seconds == 0 {
        bail!("--seconds must be positive");
    }
    if let Some(requests) = args.requests {
        let text = BenchDb::scoped(async |db| cost(db, requests).await).await?;
        return report::publish(&text, args.out.as_deref(), "reads-cost");
    }
    let largest = args.connections.iter().copied().max().unwrap_or(0);
    gateway::allow_open_files(largest as u64 * 4 + 1024)?;
    let figures = BenchDb::scoped(async |db| measure(&args, db).await).await?;
    let text = figures.render(&args_line(&args));
    report::publish(&text, args.out.as_deref(), "reads")
}

fn args_line(args: &Args) -> String {
    let size = if args.quick {
        "--quick".to_owned()
    } else {
        format!("--warm-up {} --seconds {}", args.warm_up, args.seconds)
    };
    format!(
        "`bench reads --connections {} {size}`{}",
        args.connections
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        report::build_kind()
    )
}

/// The seeded accounts and a token for each, minted with a fresh root key.
async fn seed_with_tokens(db: &BenchDb) -> anyhow::Result<(Vec<Uuid>, RootKey, Vec<String>)> {
    let users = seed(db).await?;
    let root = RootKey::new();
    let tokens = users
        .iter()
        .map(|&user| root.mint(user, Role::User))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((users, root, tokens))
}

/// The read's load on `gateway`: the read query with every token in turn.
fn read_load(gateway: &Gateway, tokens: &[String], warm_up: Duration, duration: Duration) -> Load {
    Load {
        url: format!("{}/graphql", gateway.base),
        body: json!({ "query": READ }).to_string(),
        authorizations: tokens.iter().map(|t| format!("Bearer {t}")).collect(),
        warm_up,
        duration,
    }
}

/// `--requests`: `requests` reads back to back on one connection, after two per token
/// (every token verified and cached, every statement prepared); the report.
async fn cost(db: &BenchDb, requests: usize) -> anyhow::Result<String> {
    let machine = report::Machine::describe(db.server_version().await?);
    let (_, root, tokens) = seed_with_tokens(db).await?;
    let gateway = Gateway::start(&db.url, &root).await?;
    let load = read_load(&gateway, &tokens, Duration::ZERO, Duration::ZERO);
    let warm_up = 2 * tokens.len();
    let cost = load::sequence(&gateway, &load, warm_up, requests).await;
    let stopped = gateway.stop().await;
    let cost = cost?;
    stopped?;
    let per_request = |d: Duration| {
        u32::try_from(cost.requests)
            .ok()
            .and_then(|n| d.checked_div(n))
            .map_or_else(|| "n/a".to_owned(), report::us)
    };
    Ok(format!(
        "## Reads: gateway CPU per request\n\n{}Command: `bench reads --requests {requests}`{}\n\n\
         {warm_up} warm-up reads, then {requests} reads one after the other on one connection \
         (`{READ}`, the {} users' tokens in turn). Gateway CPU per request: user {}, \
         system {}.\n",
        machine.paragraph(),
        report::build_kind(),
        tokens.len(),
        per_request(cost.user),
        per_request(cost.system),
    ))
}

async fn measure(args: &Args, db: &BenchDb) -> anyhow::Result<Figures> {
    let machine = report::Machine::describe(db.server_version().await?);
    let (users, root, tokens) = seed_with_tokens(db).await?;
    let (first_user, first_token) = users
        .first()
        .zip(tokens.first())
        .context("no users were seeded")?;

    eprintln!("reads: counting statements through the proxy");
    let (read, nested) = capture(db, &root, first_token).await?;

    let (warm_up, duration) = if args.quick {
        (Duration::from_millis(500), Duration::from_secs(1))
    } else {
        (
            Duration::from_secs(args.warm_up),
            Duration::from_secs(args.seconds),
        )
    };
    let gateway = Gateway::start(&db.url, &root).await?;
    let load = Arc::new(read_load(&gateway, &tokens, warm_up, duration));
    let mut observed = Vec::new();
    let loading = async {
        for &connections in &args.connections {
            eprintln!("reads: {connections} connections");
            observed.push(load::drive(&gateway, &load, connections).await?);
        }
        anyhow::Ok(())
    }
    .await;
    let stopped = gateway.stop().await;
    loading?;
    stopped?;

    let length = if args.quick {
        pgbench::Length::Transactions(20)
    } else {
        pgbench::Length::Seconds(args.seconds)
    };
    let replay = replay(db, &read, *first_user, &args.connections, length).await?;

    eprintln!("reads: start to ready on SQLite");
    let start_up = sqlite_start_up(&root, if args.quick { 1 } else { 3 }).await?;

    Ok(Figures {
        machine,
        users: USERS,
        projects_per_user: PROJECTS_PER_USER,
        read_query: READ,
        nested_query: NESTED,
        read,
        nested,
        observed,
        replay,
        start_up,
    })
}

/// Seeds the accounts and their projects as the database owner; the accounts' ids.
async fn seed(db: &BenchDb) -> anyhow::Result<Vec<Uuid>> {
    let tag = std::process::id();
    let users: Vec<Uuid> = (0..USERS).map(|_| Uuid::now_v7()).collect();
    let user_rows = users
        .iter()
        .enumerate()
        .map(|(n, id)| {
            format!("('{id}', 'reader-{tag}-{n}@bench.example', 'Reader {n}', 'not a hash')")
        })
        .collect::<Vec<_>>()
        .join(",\n");
    let mut project_rows = Vec::with_capacity(USERS * PROJECTS_PER_USER);
    for (u, user) in users.iter().enumerate() {
        for p in 0..PROJECTS_PER_USER {
            let visibility = if p % 4 == 0 { "public" } else { "private" };
            project_rows.push(format!(
                "('{}', '{user}', 'Project {p} of reader {u}', 'What project {p} does', \
                 '{visibility}', 'nextjs', 'active')",
                Uuid::now_v7()
            ));
        }
    }
    db.conn
        .execute_unprepared(&format!(
            "insert into users (id, email, display_name, password_hash) values {user_rows};\n\
             insert into projects (id, owner_id, name, description, visibility, framework, status) \
             values {};\n\
             analyze users; analyze projects;",
            project_rows.join(",\n")
        ))
        .await
        .context("cannot seed the benchmark database")?;
    Ok(users)
}

/// The statements of one read request and of one nested request, from the wire.
async fn capture(db: &BenchDb, root: &RootKey, token: &str) -> anyhow::Result<(Capture, Capture)> {
    let proxy = Proxy::start(db.server_address()?).await?;
    let gateway = Gateway::start(&db.url_via(&proxy.address)?, root).await?;
    let outcome = async {
        let api = Api::new(&gateway.base, TIMEOUT)?;
        let read = capture_one(&api, &proxy, token, READ).await?;
        let page = &read.1["myProjects"];
        if page["totalCount"] != json!(PROJECTS_PER_USER)
            || page["edges"].as_array().map(Vec::len) != Some(20)
        {
            bail!("the read query answered an unexpected page: {page}");
        }
        let nested = capture_one(&api, &proxy, token, NESTED).await?;
        let edges = nested.1["myProjects"]["edges"].as_array().map(Vec::len);
        if edges != Some(PROJECTS_PER_USER) {
            bail!("the nested query answered {edges:?} projects, not {PROJECTS_PER_USER}");
        }
        anyhow::Ok((read.0, nested.0))
    }
    .await;
    let stopped = gateway.stop().await;
    drop(proxy);
    let captures = outcome?;
    stopped?;
    Ok(captures)
}

/// How long the capture waits for a request's transaction end and the connection's release.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// Sends `query` until the pool's connections have prepared its statements, then
/// captures the first request that prepares none, from sending it to the connection's
/// release after its transaction ended; its capture and answer.
async fn capture_one(
    api: &Api,
    proxy: &Proxy,
    token: &str,
    query: &str,
) -> anyhow::Result<(Capture, Value)> {
    for _ in 0..WARM_UP_REQUESTS {
        api.post(Some(token), query, json!({})).await?;
    }
    let mut last = None;
    for _ in 0..CAPTURE_TRIES {
        // The previous request's transaction end and release come after its answer.
        proxy.settle(SETTLE_LIMIT).await?;
        proxy.take();
        let answer = api.post(Some(token), query, json!({})).await?;
        proxy.settle(SETTLE_LIMIT).await?;
        let capture = proxy.take();
        if capture.parses == 0 {
            return Ok((capture, answer));
        }
        last = Some((capture, answer));
    }
    // Every try prepared something: report the last one, which says so.
    last.context("no capture was tried")
}

/// The pgbench replays, or why there are none.
async fn replay(
    db: &BenchDb,
    read: &Capture,
    user: Uuid,
    clients: &[usize],
    length: pgbench::Length,
) -> anyhow::Result<Replay> {
    let Some(pgbench) = pgbench::find() else {
        return Ok(Replay::Skipped("pgbench is not installed".to_owned()));
    };
    let replay_script = match replay_script(&read.statements) {
        Ok(script) => script,
        Err(err) => {
            return Ok(Replay::Skipped(format!(
                "a captured statement cannot be inlined: {err:#}"
            )));
        }
    };
    let floor_script = format!("{}\n", floor_statement(user));
    let dir = tempfile::tempdir()?;
    let replay_path = dir.path().join("replay.sql");
    let floor_path = dir.path().join("floor.sql");
    std::fs::write(&replay_path, &replay_script)?;
    std::fs::write(&floor_path, &floor_script)?;
    let mut replays = Vec::new();
    let mut floors = Vec::new();
    for &n in clients {
        eprintln!("reads: pgbench at {n} clients");
        replays.push(pgbench::tps(&pgbench, &db.url, &replay_path, n, length).await?);
        floors.push(pgbench::tps(&pgbench, &db.url, &floor_path, n, length).await?);
    }
    Ok(Replay::Ran {
        replay_tps: replays,
        floor_tps: floors,
        floor_script,
    })
}

/// `statements` as a pgbench script: one per line, except that those the gateway sent
/// in one simple query are joined by `\;` (which pgbench sends in one query, as the
/// gateway did).
fn replay_script(statements: &[Statement]) -> anyhow::Result<String> {
    let mut script = String::new();
    for statement in statements {
        if statement.same_query_as_previous {
            script.push_str(" \\; ");
        } else if !script.is_empty() {
            script.push_str(";\n");
        }
        script.push_str(&statement.inlined()?);
    }
    script.push_str(";\n");
    Ok(script)
}

/// The one-round-trip floor of the read for `user`: one compound statement (`\;` keeps
/// pgbench from splitting it) that opens the transaction, switches role and settings as
/// the gateway does, reads the page with its count, and commits.
fn floor_statement(user: Uuid) -> String {
    format!(
        "BEGIN \\; \
         select set_config('role', '{role}', true), set_config('app.user_id', '{user}', true), \
         set_config('app.role', 'user', true) \\; \
         select id, name, description, visibility, framework, status, created_at, updated_at, \
         count(*) over () as total_count from projects where owner_id = '{user}' \
         order by id desc limit 21 \\; \
         COMMIT;",
        role = migration::roles::AUTHENTICATED
    )
}

/// `runs` gateways, each on a fresh SQLite file, timed from spawning to `/readyz`.
async fn sqlite_start_up(root: &RootKey, runs: usize) -> anyhow::Result<StartUp> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let dir = tempfile::tempdir()?;
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("bench.db").display()
        );
        let started = Instant::now();
        let gateway = Gateway::start(&url, root).await?;
        times.push(started.elapsed());
        gateway.stop().await?;
    }
    Ok(StartUp { times })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_sent_in_one_query_are_replayed_in_one() {
        let statement = |sql: &str, same_query_as_previous| Statement {
            sql: sql.to_owned(),
            same_query_as_previous,
            ..Statement::default()
        };
        let script = replay_script(&[
            statement("BEGIN", false),
            statement("select 1", true),
            statement("select 2", false),
            statement("COMMIT", false),
        ])
        .expect("a script");
        assert_eq!(script, "BEGIN \\; select 1;\nselect 2;\nCOMMIT;\n");
    }
}
