//! The `subscriptions` run's figures: what one subscriber count observed, turned into
//! latency, throughput, memory and CPU figures, and the Markdown table of the report.

use std::time::{Duration, Instant};

use super::{Received, Write};
use crate::report::{Cell, Machine, Percentiles, mib, ms, per_second, table, us};

/// What one run observed.
pub struct Inputs {
    pub subscribers: usize,
    pub events: usize,
    pub rate: f64,
    pub connect_time: Duration,
    pub live_time: Duration,
    pub rss_before: u64,
    pub rss_sockets: u64,
    pub rss_idle: u64,
    pub rss_loaded: u64,
    pub writes: Vec<Write>,
    pub writes_done: Duration,
    pub received: Vec<Received>,
    pub elapsed: Duration,
    pub gateway_cpu: Duration,
    pub own_cpu: Duration,
    pub machine_cpu: Duration,
    pub started: Instant,
}

/// One run's figures.
pub struct Figures {
    subscribers: usize,
    events: usize,
    rate: f64,
    connect_time: Duration,
    live_time: Duration,
    idle_bytes_per_subscription: f64,
    bytes_per_socket: f64,
    rss_idle: u64,
    rss_loaded: u64,
    expected: usize,
    delivered: usize,
    ended_early: usize,
    first_ending: Option<String>,
    latency: Percentiles,
    round_trip: Percentiles,
    write_rate: f64,
    deliveries_per_second: f64,
    gateway_cores: f64,
    gateway_cpu_per_delivery: Duration,
    own_cores: f64,
    other_cores: f64,
}

impl Figures {
    /// Computes the figures; latency is each arrival minus its write's send time.
    pub fn compute(inputs: Inputs) -> Self {
        let sent: Vec<Instant> = inputs.writes.iter().map(|w| w.sent).collect();
        let mut latencies = Vec::new();
        let mut last_arrival = inputs.started;
        let mut ended_early = 0;
        let mut first_ending = None;
        for client in &inputs.received {
            for &(seq, at) in &client.arrivals {
                if let Some(sent) = sent.get(seq) {
                    latencies.push(at.saturating_duration_since(*sent));
                }
                last_arrival = last_arrival.max(at);
            }
            if let Some(why) = &client.ended {
                ended_early += 1;
                first_ending.get_or_insert_with(|| why.clone());
            }
        }
        let delivered = latencies.len();
        let mut round_trips: Vec<Duration> = inputs.writes.iter().map(|w| w.round_trip).collect();
        let span = last_arrival.saturating_duration_since(inputs.started);
        Self {
            subscribers: inputs.subscribers,
            events: inputs.events,
            rate: inputs.rate,
            connect_time: inputs.connect_time,
            live_time: inputs.live_time,
            idle_bytes_per_subscription: inputs.rss_idle.saturating_sub(inputs.rss_before) as f64
                / inputs.subscribers.max(1) as f64,
            bytes_per_socket: inputs.rss_sockets.saturating_sub(inputs.rss_before) as f64
                / inputs.subscribers.max(1) as f64,
            rss_idle: inputs.rss_idle,
            rss_loaded: inputs.rss_loaded,
            expected: inputs.subscribers * inputs.events,
            delivered,
            ended_early,
            first_ending,
            latency: Percentiles::of(&mut latencies),
            round_trip: Percentiles::of(&mut round_trips),
            write_rate: per_second(inputs.writes.len(), inputs.writes_done),
            deliveries_per_second: per_second(delivered, span),
            gateway_cores: inputs.gateway_cpu.as_secs_f64() / inputs.elapsed.as_secs_f64(),
            gateway_cpu_per_delivery: inputs
                .gateway_cpu
                .checked_div(u32::try_from(delivered.max(1)).unwrap_or(u32::MAX))
                .unwrap_or_default(),
            own_cores: inputs.own_cpu.as_secs_f64() / inputs.elapsed.as_secs_f64(),
            other_cores: inputs
                .machine_cpu
                .saturating_sub(inputs.gateway_cpu + inputs.own_cpu)
                .as_secs_f64()
                / inputs.elapsed.as_secs_f64(),
        }
    }

    /// Why this run does not count, if events were lost.
    pub fn failure(&self) -> Option<String> {
        (self.delivered < self.expected || self.ended_early > 0).then(|| {
            format!(
                "{} subscribers: {} of {} deliveries arrived, {} subscriptions ended early{}",
                self.subscribers,
                self.delivered,
                self.expected,
                self.ended_early,
                self.first_ending
                    .as_ref()
                    .map(|why| format!(" (first: {why})"))
                    .unwrap_or_default()
            )
        })
    }
}

/// The report: machine, command, then one column per run.
pub fn render(machine: &Machine, command: &str, runs: &[Figures]) -> String {
    let rows: Vec<(&str, Cell<Figures>)> = vec![
        ("subscribers", Box::new(|f| f.subscribers.to_string())),
        (
            "events written (target rate)",
            Box::new(|f| format!("{} ({}/s)", f.events, f.rate)),
        ),
        (
            "writes per second achieved",
            Box::new(|f| format!("{:.1}", f.write_rate)),
        ),
        (
            "sockets opened and acknowledged in",
            Box::new(|f| ms(f.connect_time)),
        ),
        (
            "then subscribed (500 at a time) and confirmed live in",
            Box::new(|f| ms(f.live_time)),
        ),
        (
            "**idle memory per subscription**",
            Box::new(|f| format!("{:.1} KiB", f.idle_bytes_per_subscription / 1024.0)),
        ),
        (
            "of which the acknowledged socket alone",
            Box::new(|f| format!("{:.1} KiB", f.bytes_per_socket / 1024.0)),
        ),
        (
            "gateway RSS idle / after load",
            Box::new(|f| format!("{} / {}", mib(f.rss_idle), mib(f.rss_loaded))),
        ),
        (
            "deliveries (arrived / expected)",
            Box::new(|f| format!("{} / {}", f.delivered, f.expected)),
        ),
        (
            "subscriptions ended early",
            Box::new(|f| f.ended_early.to_string()),
        ),
        ("**delivery latency p50**", Box::new(|f| ms(f.latency.p50))),
        ("**delivery latency p99**", Box::new(|f| ms(f.latency.p99))),
        ("delivery latency max", Box::new(|f| ms(f.latency.max))),
        (
            "write round trip p50 / p99 (included above)",
            Box::new(|f| format!("{} / {}", ms(f.round_trip.p50), ms(f.round_trip.p99))),
        ),
        (
            "**deliveries per second**",
            Box::new(|f| format!("{:.0}", f.deliveries_per_second)),
        ),
        (
            "gateway CPU during load (cores)",
            Box::new(|f| format!("{:.2}", f.gateway_cores)),
        ),
        (
            "gateway CPU per delivery",
            Box::new(|f| us(f.gateway_cpu_per_delivery)),
        ),
        (
            "load generator CPU during load (cores)",
            Box::new(|f| format!("{:.2}", f.own_cores)),
        ),
        (
            "everything else on the machine (Postgres, other programs; cores)",
            Box::new(|f| format!("{:.2}", f.other_cores)),
        ),
    ];
    let mut out = String::new();
    out.push_str("## Subscriptions\n\n");
    out.push_str(&machine.paragraph());
    out.push_str(&format!("Command: {command}\n\n"));
    out.push_str(&table(
        |run| format!("{} subscribers", run.subscribers),
        &rows,
        runs,
    ));
    if let Some(failures) = runs
        .iter()
        .filter_map(Figures::failure)
        .reduce(|a, b| format!("{a}; {b}"))
    {
        out.push_str(&format!("\n**Events were lost:** {failures}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Two subscribers, two events sent at `started`; each subscriber received the
    /// sequence numbers given, 5 ms after.
    fn run(started: Instant, arrivals: [&[usize]; 2]) -> Figures {
        Figures::compute(Inputs {
            subscribers: 2,
            events: 2,
            rate: 1.0,
            connect_time: ms(1),
            live_time: ms(1),
            rss_before: 0,
            rss_sockets: 0,
            rss_idle: 0,
            rss_loaded: 0,
            writes: (0..2)
                .map(|seq| Write {
                    seq,
                    sent: started,
                    round_trip: ms(1),
                })
                .collect(),
            writes_done: ms(1),
            received: arrivals
                .iter()
                .map(|seqs| Received {
                    arrivals: seqs.iter().map(|&seq| (seq, started + ms(5))).collect(),
                    ended: None,
                })
                .collect(),
            elapsed: ms(10),
            gateway_cpu: ms(1),
            own_cpu: ms(1),
            machine_cpu: ms(2),
            started,
        })
    }

    #[test]
    fn latency_is_arrival_minus_send_and_a_lost_delivery_fails_the_run() {
        let started = Instant::now();
        let complete = run(started, [&[0, 1], &[1, 0]]);
        assert!(complete.failure().is_none());
        assert_eq!(complete.latency.p99, ms(5));
        let short = run(started, [&[0, 1], &[0]]);
        let failure = short.failure().expect("a lost delivery fails the run");
        assert!(failure.contains("3 of 4"), "{failure}");
    }
}
