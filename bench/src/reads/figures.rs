//! The `reads` run's figures and their Markdown: the load per connection count set
//! against the pgbench replays, the statements of one request as the server received
//! them, and the start-up time on SQLite.

use std::time::Duration;

use bench::wire::proxy::Capture;

use super::load::Observed;
use crate::report::{Cell, Machine, Percentiles, ms, per_second, table, us};

/// Everything one run measured.
pub struct Figures {
    pub machine: Machine,
    pub users: usize,
    pub projects_per_user: usize,
    pub read_query: &'static str,
    pub nested_query: &'static str,
    pub read: Capture,
    pub nested: Capture,
    pub observed: Vec<Observed>,
    pub replay: Replay,
    pub start_up: StartUp,
}

/// The pgbench replays, one figure per connection count, or why there are none.
pub enum Replay {
    Ran {
        replay_tps: Vec<f64>,
        floor_tps: Vec<f64>,
        floor_script: String,
    },
    Skipped(String),
}

/// Start to ready on SQLite, one time per fresh file.
pub struct StartUp {
    pub times: Vec<Duration>,
}

/// One connection count's figures.
struct Column {
    connections: usize,
    requests: usize,
    per_second: f64,
    latency: Percentiles,
    gateway_cores: f64,
    gateway_cpu_per_request: Option<Duration>,
    own_cores: f64,
    other_cores: f64,
    replay_tps: Option<f64>,
    floor_tps: Option<f64>,
}

impl Column {
    fn of(mut observed: Observed, replay: &Replay, index: usize) -> Self {
        let requests = observed.latencies.len();
        let seconds = observed.elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
        let (replay_tps, floor_tps) = match replay {
            Replay::Ran {
                replay_tps,
                floor_tps,
                ..
            } => (
                replay_tps.get(index).copied(),
                floor_tps.get(index).copied(),
            ),
            Replay::Skipped(_) => (None, None),
        };
        Self {
            connections: observed.connections,
            requests,
            per_second: per_second(requests, observed.elapsed),
            latency: Percentiles::of(&mut observed.latencies),
            gateway_cores: observed.gateway_cpu.as_secs_f64() / seconds,
            gateway_cpu_per_request: u32::try_from(requests)
                .ok()
                .and_then(|requests| observed.gateway_cpu.checked_div(requests)),
            own_cores: observed.own_cpu.as_secs_f64() / seconds,
            other_cores: observed
                .machine_cpu
                .saturating_sub(observed.gateway_cpu + observed.own_cpu)
                .as_secs_f64()
                / seconds,
            replay_tps,
            floor_tps,
        }
    }
}

fn tps(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.0}"))
}

fn ratio(gateway: f64, other: Option<f64>) -> String {
    other
        .filter(|o| *o > 0.0)
        .map_or_else(|| "n/a".to_owned(), |o| format!("{:.2}", gateway / o))
}

impl Figures {
    /// The report.
    pub fn render(self, command: &str) -> String {
        let Self {
            machine,
            users,
            projects_per_user,
            read_query,
            nested_query,
            read,
            nested,
            observed,
            replay,
            start_up,
        } = self;
        let columns: Vec<Column> = observed
            .into_iter()
            .enumerate()
            .map(|(index, o)| Column::of(o, &replay, index))
            .collect();
        let rows: Vec<(&str, Cell<Column>)> = vec![
            ("requests measured", Box::new(|c| c.requests.to_string())),
            (
                "**requests per second**",
                Box::new(|c| format!("{:.0}", c.per_second)),
            ),
            ("**latency p50**", Box::new(|c| ms(c.latency.p50))),
            ("**latency p99**", Box::new(|c| ms(c.latency.p99))),
            ("latency max", Box::new(|c| ms(c.latency.max))),
            (
                "gateway CPU during load (cores)",
                Box::new(|c| format!("{:.2}", c.gateway_cores)),
            ),
            (
                "**gateway CPU per request**",
                Box::new(|c| {
                    c.gateway_cpu_per_request
                        .map_or_else(|| "n/a".to_owned(), us)
                }),
            ),
            (
                "load generator CPU during load (cores)",
                Box::new(|c| format!("{:.2}", c.own_cores)),
            ),
            (
                "everything else on the machine (Postgres, other programs; cores)",
                Box::new(|c| format!("{:.2}", c.other_cores)),
            ),
            (
                "pgbench: replay of the request's statements (tps)",
                Box::new(|c| tps(c.replay_tps)),
            ),
            (
                "pgbench: one-round-trip floor (tps)",
                Box::new(|c| tps(c.floor_tps)),
            ),
            (
                "**gateway / replay**",
                Box::new(|c| ratio(c.per_second, c.replay_tps)),
            ),
            (
                "**gateway / floor**",
                Box::new(|c| ratio(c.per_second, c.floor_tps)),
            ),
        ];

        let mut out = String::from("## Reads\n\n");
        out.push_str(&machine.paragraph());
        out.push_str(&format!("Command: {command}\n\n"));
        out.push_str(&format!(
            "Seeded: {users} users × {projects_per_user} projects. Each request: \
             `{read_query}` with one of the {users} users' tokens in turn.\n\n"
        ));
        out.push_str("### HTTP load\n\n");
        out.push_str(&table(
            |c| format!("{} connections", c.connections),
            &rows,
            &columns,
        ));
        if let Replay::Skipped(why) = &replay {
            out.push_str(&format!("\nNo pgbench replay: {why}.\n"));
        }

        out.push_str("\n### Statements per request (counted on the wire)\n\n");
        let captures = [("read", &read), ("nested 100-project query", &nested)];
        let capture_rows: Vec<(&str, Cell<(&str, &Capture)>)> = vec![
            (
                "statements",
                Box::new(|(_, c)| c.statements.len().to_string()),
            ),
            ("round trips", Box::new(|(_, c)| c.round_trips.to_string())),
            (
                "of which ran no statement (pings, preparing)",
                Box::new(|(_, c)| c.empty_round_trips.len().to_string()),
            ),
            (
                "statements prepared (`Parse`) in this request",
                Box::new(|(_, c)| c.parses.to_string()),
            ),
            (
                "database connections it used",
                Box::new(|(_, c)| c.connections.len().to_string()),
            ),
        ];
        out.push_str(&table(
            |(name, _)| (*name).to_owned(),
            &capture_rows,
            &captures,
        ));
        out.push_str(&format!(
            "\nThe nested query: `{nested_query}`.\n\nThe read request's statements, \
             parameters inlined (the replay script):\n\n"
        ));
        out.push_str(&statements_block(&read));
        out.push_str("\nThe nested request's statements:\n\n");
        out.push_str(&statements_block(&nested));
        if let Replay::Ran { floor_script, .. } = &replay {
            out.push_str(&format!(
                "\nThe floor script (one simple-query round trip; `\\;` keeps pgbench \
                 from splitting it):\n\n```sql\n{floor_script}```\n"
            ));
        }

        out.push_str("\n### Start to ready on SQLite\n\n");
        out.push_str(&format!(
            "From spawning the gateway on a fresh SQLite file (it migrates first) to \
             `/readyz` answering 200, polled every 5 ms: {}.\n",
            start_up
                .times
                .iter()
                .map(|t| ms(*t))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        out
    }
}

/// The statements, numbered, parameters inlined (or listed when they cannot be), with
/// the round trips that ran none where they happened.
fn statements_block(capture: &Capture) -> String {
    let empty = |at: usize| {
        "-- (a round trip with no statement)\n".repeat(
            capture
                .empty_round_trips
                .iter()
                .filter(|&&before| before == at)
                .count(),
        )
    };
    let mut out = String::from("```sql\n");
    for (n, statement) in capture.statements.iter().enumerate() {
        out.push_str(&empty(n));
        let line = statement
            .inlined()
            .unwrap_or_else(|err| format!("{} -- parameters not shown: {err:#}", statement.sql));
        let joined = if statement.same_query_as_previous {
            format!(" (in the same query as {n})")
        } else {
            String::new()
        };
        out.push_str(&format!("-- {}{joined}\n{line};\n", n + 1));
    }
    out.push_str(&empty(capture.statements.len()));
    out.push_str("```\n");
    out
}
