//! The HTTP load generator: N keep-alive connections, each sending one request after the
//! other for a warm-up and then a measured period, rotating over the users' tokens; or
//! ([`sequence`]) a fixed number of requests on one connection, for profiling.
//! Latency is from sending a request to having read its whole answer; a request counts
//! when it was sent after the warm-up and answered before the end. The gateway's, our own
//! and the whole machine's CPU time are read at the start and the end of the measured
//! period.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, bail};
use tokio::{task::JoinSet, time::Instant};

use crate::gateway::{self, Gateway};

/// A request may take at most this long; beyond it the run fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What the load sends.
pub struct Load {
    /// `http://host:port/graphql`.
    pub url: String,
    /// The JSON body, the same for every request.
    pub body: String,
    /// `Bearer <token>` for each user; request n uses `authorizations[n % len]`.
    pub authorizations: Vec<String>,
    pub warm_up: Duration,
    pub duration: Duration,
}

/// What one connection count observed.
pub struct Observed {
    pub connections: usize,
    /// Latencies of the requests that count.
    pub latencies: Vec<Duration>,
    /// The measured period.
    pub elapsed: Duration,
    pub gateway_cpu: Duration,
    pub own_cpu: Duration,
    pub machine_cpu: Duration,
}

/// Drives `gateway` with `connections` connections; fails on the first answer that is
/// not a 200 without errors.
pub async fn drive(
    gateway: &Gateway,
    load: &Arc<Load>,
    connections: usize,
) -> anyhow::Result<Observed> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let measured_from = started + load.warm_up;
    let end = measured_from + load.duration;
    let mut clients = JoinSet::new();
    for _ in 0..connections {
        let (load, next) = (load.clone(), next.clone());
        clients.spawn(async move { connection(&load, &next, measured_from, end).await });
    }

    // The clock, not an event, delimits the measured period.
    tokio::time::sleep_until(measured_from).await;
    let cpu_before = (
        gateway.cpu_time()?,
        gateway::own_cpu_time()?,
        gateway::machine_cpu_time()?,
    );
    tokio::time::sleep_until(end).await;
    let cpu_after = (
        gateway.cpu_time()?,
        gateway::own_cpu_time()?,
        gateway::machine_cpu_time()?,
    );

    let mut latencies = Vec::new();
    let joined = tokio::time::timeout(REQUEST_TIMEOUT, async {
        while let Some(client) = clients.join_next().await {
            latencies.extend(client??);
        }
        anyhow::Ok(())
    });
    joined
        .await
        .context("the last requests were not answered in time")??;
    Ok(Observed {
        connections,
        latencies,
        elapsed: load.duration,
        gateway_cpu: cpu_after.0.saturating_sub(cpu_before.0),
        own_cpu: cpu_after.1.saturating_sub(cpu_before.1),
        machine_cpu: cpu_after.2.saturating_sub(cpu_before.2),
    })
}

/// One keep-alive connection sending requests back to back until `end`; the latencies
/// of those sent from `measured_from` and answered by `end`.
async fn connection(
    load: &Load,
    next: &AtomicUsize,
    measured_from: Instant,
    end: Instant,
) -> anyhow::Result<Vec<Duration>> {
    let http = client()?;
    let mut latencies = Vec::new();
    loop {
        let sent = Instant::now();
        if sent >= end {
            return Ok(latencies);
        }
        send(&http, load, next.fetch_add(1, Ordering::Relaxed)).await?;
        let answered = Instant::now();
        if sent >= measured_from && answered <= end {
            latencies.push(answered - sent);
        }
    }
}

/// What [`sequence`] observed: the gateway's CPU time over the counted requests.
pub struct Cost {
    pub requests: usize,
    pub user: Duration,
    pub system: Duration,
}

/// Sends `warm_up` requests, then `requests` more, one after the other on one keep-alive
/// connection, rotating over the tokens; the gateway's user and system CPU time over the
/// latter (a fixed amount of work, for instruction counts under `BENCH_GATEWAY_WRAPPER`).
pub async fn sequence(
    gateway: &Gateway,
    load: &Load,
    warm_up: usize,
    requests: usize,
) -> anyhow::Result<Cost> {
    let http = client()?;
    for n in 0..warm_up {
        send(&http, load, n).await?;
    }
    let before = gateway.cpu_times()?;
    for n in warm_up..warm_up + requests {
        send(&http, load, n).await?;
    }
    let after = gateway.cpu_times()?;
    Ok(Cost {
        requests,
        user: after.0.saturating_sub(before.0),
        system: after.1.saturating_sub(before.1),
    })
}

/// A client with one idle connection: one connection per task, reused.
fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .timeout(REQUEST_TIMEOUT)
        .build()?)
}

/// Sends the `n`th request and reads its whole answer; fails unless it is a 200
/// without errors.
async fn send(http: &reqwest::Client, load: &Load, n: usize) -> anyhow::Result<()> {
    let user = n % load.authorizations.len().max(1);
    let authorization = load.authorizations.get(user).context("no tokens to send")?;
    let answer = http
        .post(&load.url)
        .header("content-type", "application/json")
        .header("authorization", authorization)
        .body(load.body.clone())
        .send()
        .await?;
    let status = answer.status();
    let body = answer.bytes().await?;
    if !status.is_success() || contains(&body, b"\"errors\"") {
        bail!(
            "the gateway answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
