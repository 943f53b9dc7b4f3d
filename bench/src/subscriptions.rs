//! The `subscriptions` run: for each subscriber count N, a fresh gateway, N WebSocket
//! clients speaking graphql-transport-ws, all subscribed to `notificationAdded` as one
//! account (so every event fans out to all N), confirmed live by a probe event, then a
//! writer creating M notifications per second through the API as an admin, each titled
//! with its sequence number.
//!
//! Measured: delivery latency (from the writer sending its `createNotification` to each
//! client receiving the event, so it includes the write's own round trip, which is
//! reported apart), deliveries per second, the gateway's resident memory per idle
//! subscription (its `VmRSS` before the sockets opened and after all were live, over
//! N; also after the sockets were acknowledged but before they subscribed, which splits
//! the socket's share from the subscription's), and the CPU time the gateway and the
//! load generator used during the load.
//!
//! One subscription is opened and fed an event before the baseline: the gateway's hub
//! starts with the first subscription, needing a pooled connection to do so.

mod figures;

use std::{
    borrow::Cow,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use flashfusion_api::auth::Role;
use futures_util::{SinkExt as _, StreamExt as _, stream};
use sea_orm::{ConnectionTrait as _, Statement};
use serde::{Deserialize, de::IgnoredAny};
use serde_json::{Value, json};
use tokio::{
    net::TcpStream,
    sync::{mpsc, watch},
    task::JoinSet,
};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{
        Message, client::IntoClientRequest as _, http::HeaderValue, protocol::WebSocketConfig,
    },
};
use uuid::Uuid;

use self::figures::Figures;
use crate::{
    database::BenchDb,
    gateway::{self, Gateway, RootKey},
    graphql::Api,
    report,
};

/// `bench subscriptions ...`
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Subscriber counts; one run, with a fresh gateway, for each.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    subscribers: Vec<usize>,
    /// Events the writer creates per second. Each reaches every subscriber, so the
    /// gateway delivers `rate` × N messages per second: the default keeps 10k
    /// subscribers within what a 2-core machine delivers (BENCHMARKS.md).
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    /// Events per run.
    #[arg(long, default_value_t = 60)]
    events: usize,
    /// Each subscriber signs in with a token of its own (as each device of a user does).
    /// By default all share the reader's one token. The gateway executes identical
    /// subscriptions of one token once, and of one account once when the deliveries
    /// depend on the account alone, as this one's do (ARCHITECTURE.md, "Cohorts").
    #[arg(long)]
    own_tokens: bool,
    /// Each subscriber names its operation differently (`subscription S<n>`), so no two
    /// share an execution: what each subscriber costs when none may share, as with
    /// subscribers of different accounts.
    #[arg(long)]
    apart: bool,
    /// A tiny run that only proves the benchmark works (CI): 20 subscribers, 50 events
    /// at 50 per second.
    #[arg(long)]
    quick: bool,
    /// Where to write the figures; `target/bench/subscriptions-<UTC time>.md` when
    /// omitted.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Every wait on the gateway or the clients is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(120);
/// Sockets opened at once while connecting the subscribers.
const CONNECTING_AT_ONCE: usize = 200;
/// Subscriptions started at once, confirmed live before the next ones start.
const SUBSCRIBING_AT_ONCE: usize = 500;
/// How long to wait for a probe to reach every subscriber before sending another (a
/// socket whose subscription was not registered yet missed the previous one).
const PROBE_EVERY: Duration = Duration::from_millis(500);
/// How long deliveries may still arrive after the last write was answered.
const DRAIN: Duration = Duration::from_secs(30);
/// Each client socket's read buffer. tungstenite zeroes the buffer's free room before
/// every read (`read_buffer_size`, 128 KiB by default, in tungstenite's
/// `WebSocketConfig`): at the default that `memset` was 70% of the load generator's CPU,
/// which shares the gateway's cores. An event's message is a few hundred bytes.
const READ_BUFFER: usize = 4096;

const SUBSCRIPTION: &str = "subscription { notificationAdded { cursor notification { title } } }";
const CREATE: &str =
    "mutation($i: CreateNotificationInput!) { createNotification(input: $i) { notificationId } }";

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Runs the benchmark for every requested subscriber count, prints the figures and
/// writes them to a file; fails if it could not run or events were lost.
pub async fn run(mut args: Args) -> anyhow::Result<()> {
    if args.quick {
        args.subscribers = vec![20];
        args.events = 50;
        args.rate = 50.0;
    }
    if args.rate <= 0.0 || args.events == 0 || args.subscribers.contains(&0) {
        bail!("--rate, --events and every --subscribers count must be positive");
    }
    let largest = args.subscribers.iter().copied().max().unwrap_or(0);
    gateway::allow_open_files(largest as u64 + 1024)?;

    let (machine, figures) = BenchDb::scoped(async |db| runs(&args, db).await).await?;
    let text = figures::render(&machine, &args_line(&args), &figures);
    report::publish(&text, args.out.as_deref(), "subscriptions")?;

    let failures: Vec<String> = figures.iter().filter_map(Figures::failure).collect();
    if !failures.is_empty() {
        bail!("the run lost events: {}", failures.join("; "));
    }
    Ok(())
}

fn args_line(args: &Args) -> String {
    format!(
        "`bench subscriptions --subscribers {} --rate {} --events {}{}{}`{}",
        args.subscribers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        args.rate,
        args.events,
        if args.own_tokens { " --own-tokens" } else { "" },
        if args.apart { " --apart" } else { "" },
        report::build_kind()
    )
}

async fn runs(args: &Args, db: &BenchDb) -> anyhow::Result<(report::Machine, Vec<Figures>)> {
    let machine = report::Machine::describe(db.server_version().await?);
    let mut figures = Vec::new();
    for (index, &subscribers) in args.subscribers.iter().enumerate() {
        eprintln!(
            "subscriptions: {subscribers} subscribers, {} events at {}/s",
            args.events, args.rate
        );
        let load = Load {
            subscribers,
            events: args.events,
            rate: args.rate,
            own_tokens: args.own_tokens,
            apart: args.apart,
        };
        figures.push(one_run(db, index, load).await?);
    }
    Ok((machine, figures))
}

/// What one run asks of the gateway.
struct Load {
    subscribers: usize,
    events: usize,
    rate: f64,
    /// A token per subscriber rather than one for all.
    own_tokens: bool,
    /// A differently named operation per subscriber.
    apart: bool,
}

/// One subscriber count, on a gateway of its own (so its memory baseline is clean).
async fn one_run(db: &BenchDb, index: usize, load: Load) -> anyhow::Result<Figures> {
    let root = RootKey::new();
    let gateway = Gateway::start(&db.url, &root).await?;
    let outcome = measure(db, &gateway, &root, index, load).await;
    let stopped = gateway.stop().await;
    let figures = outcome?;
    stopped?;
    Ok(figures)
}

async fn measure(
    db: &BenchDb,
    gateway: &Gateway,
    root: &RootKey,
    index: usize,
    load: Load,
) -> anyhow::Result<Figures> {
    let Load {
        subscribers,
        events,
        rate,
        own_tokens,
        apart,
    } = load;
    let api = Api::new(&gateway.base, TIMEOUT)?;
    let tag = format!("{}-{index}", std::process::id());
    let reader = api.sign_up(&format!("reader-{tag}@bench.example")).await?;
    let writer = api.sign_up(&format!("writer-{tag}@bench.example")).await?;
    promote_to_admin(db, writer).await?;
    let reader_token = root.mint(reader, Role::User)?;
    let writer_token = root.mint(writer, Role::Admin)?;
    let writer = Writer {
        api,
        token: writer_token,
        recipient: reader,
    };
    // Before the baseline the gateway has served requests, and one subscription is
    // live: the hub starts with the first subscription, and it needs a pooled
    // connection to do so, which subscriptions setting up all at once would hold.
    writer.create("warm-up").await?;
    let ws_url = format!("{}/graphql", gateway.base.replacen("http", "ws", 1));
    let mut sentinel = open_socket(&ws_url, &reader_token).await?;
    subscribe(&mut sentinel, None).await?;
    let warming = async {
        for probe in 0.. {
            writer.create(&format!("warm-up-{probe}")).await?;
            if let Ok(event) = tokio::time::timeout(PROBE_EVERY, next_event(&mut sentinel)).await {
                return event;
            }
        }
        Ok(())
    };
    tokio::time::timeout(TIMEOUT, warming)
        .await
        .context("the first subscription never received an event")??;
    let sentinel = tokio::spawn(async move { while next_event(&mut sentinel).await.is_ok() {} });

    let socket_tokens = (0..subscribers)
        .map(|_| match own_tokens {
            true => root.mint(reader, Role::User),
            false => Ok(reader_token.clone()),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let rss_before = gateway.rss_bytes()?;
    let connecting = Instant::now();
    let sockets: Vec<Socket> = stream::iter(&socket_tokens)
        .map(|token| open_socket(&ws_url, token))
        .buffer_unordered(CONNECTING_AT_ONCE)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let connect_time = connecting.elapsed();
    let rss_sockets = gateway.rss_bytes()?;

    let (live_tx, mut live_rx) = mpsc::unbounded_channel::<Result<(), String>>();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut clients = JoinSet::new();

    // Subscribe in waves, each confirmed live (every subscriber of it has received a
    // probe, so its feed is registered) before the next: every subscription's set-up
    // takes a pooled connection, and the gateway refuses one that waits too long for it.
    let confirming = Instant::now();
    let mut live = 0;
    let mut probe = 0;
    let mut sockets = sockets.into_iter();
    let mut subscribed = 0;
    while subscribed < subscribers {
        for mut socket in sockets.by_ref().take(SUBSCRIBING_AT_ONCE) {
            subscribe(&mut socket, apart.then_some(subscribed)).await?;
            clients.spawn(receive(socket, events, live_tx.clone(), stop_rx.clone()));
            subscribed += 1;
        }
        while live < subscribed {
            if confirming.elapsed() > TIMEOUT {
                bail!("only {live} of {subscribers} subscriptions went live within {TIMEOUT:?}");
            }
            writer.create(&format!("probe-{probe}")).await?;
            probe += 1;
            let deadline = tokio::time::Instant::now() + PROBE_EVERY;
            while live < subscribed {
                match tokio::time::timeout_at(deadline, live_rx.recv()).await {
                    Ok(Some(Ok(()))) => live += 1,
                    Ok(Some(Err(why))) => {
                        bail!("a subscription ended before it went live ({live} were): {why}")
                    }
                    Ok(None) => bail!("every subscriber ended before going live"),
                    Err(_) => break,
                }
            }
        }
    }
    drop(live_tx);
    let live_time = confirming.elapsed();
    let rss_idle = gateway.rss_bytes()?;

    // The load.
    let gateway_cpu = gateway.cpu_time()?;
    let own_cpu = gateway::own_cpu_time()?;
    let machine_cpu = gateway::machine_cpu_time()?;
    let started = Instant::now();
    let writes = writer.produce(events, rate).await?;
    let writes_done = started.elapsed();
    let mut received = Vec::with_capacity(subscribers);
    let drained = tokio::time::Instant::now() + DRAIN;
    loop {
        match tokio::time::timeout_at(drained, clients.join_next()).await {
            Ok(Some(client)) => received.push(client?),
            Ok(None) => break,
            Err(_) => {
                // Some clients still miss events: stop them all and count what arrived.
                let _ = stop_tx.send(true);
                while let Some(client) = clients.join_next().await {
                    received.push(client?);
                }
                break;
            }
        }
    }
    let elapsed = started.elapsed();
    let gateway_cpu = gateway.cpu_time()?.saturating_sub(gateway_cpu);
    let own_cpu = gateway::own_cpu_time()?.saturating_sub(own_cpu);
    let machine_cpu = gateway::machine_cpu_time()?.saturating_sub(machine_cpu);
    let rss_loaded = gateway.rss_bytes()?;
    sentinel.abort();

    Ok(Figures::compute(figures::Inputs {
        subscribers,
        events,
        rate,
        connect_time,
        live_time,
        rss_before,
        rss_sockets,
        rss_idle,
        rss_loaded,
        writes,
        writes_done,
        received,
        elapsed,
        gateway_cpu,
        own_cpu,
        machine_cpu,
        started,
    }))
}

/// Makes `user` an administrator in the database, as `flashfusion token issue --role
/// admin` does: the first admin cannot come from the API.
async fn promote_to_admin(db: &BenchDb, user: Uuid) -> anyhow::Result<()> {
    db.conn
        .execute_raw(Statement::from_sql_and_values(
            db.conn.get_database_backend(),
            "update users set role = 'admin' where id = $1",
            [user.into()],
        ))
        .await
        .context("cannot make the writer an admin")?;
    Ok(())
}

/// The admin client that creates the notifications.
#[derive(Clone)]
struct Writer {
    api: Api,
    token: String,
    recipient: Uuid,
}

/// One write of the load: its sequence number, when it was sent, how long until the
/// gateway answered.
pub struct Write {
    pub seq: usize,
    pub sent: Instant,
    pub round_trip: Duration,
}

impl Writer {
    /// Creates a notification for the subscribers' account titled `title`.
    async fn create(&self, title: &str) -> anyhow::Result<()> {
        self.api
            .post(
                Some(&self.token),
                CREATE,
                json!({ "i": { "userId": self.recipient, "kind": "bench", "title": title } }),
            )
            .await?;
        Ok(())
    }

    /// Creates `events` notifications titled `seq-<n>`, started `rate` per second
    /// whatever the previous ones' round trips (each write runs on its own task).
    async fn produce(&self, events: usize, rate: f64) -> anyhow::Result<Vec<Write>> {
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let this = Arc::new(self.clone());
        let mut writes = JoinSet::new();
        for seq in 0..events {
            ticker.tick().await;
            let writer = this.clone();
            writes.spawn(async move {
                let sent = Instant::now();
                writer.create(&format!("seq-{seq}")).await?;
                anyhow::Ok(Write {
                    seq,
                    sent,
                    round_trip: sent.elapsed(),
                })
            });
        }
        let mut done = Vec::with_capacity(events);
        while let Some(write) = writes.join_next().await {
            done.push(write??);
        }
        done.sort_by_key(|write| write.seq);
        Ok(done)
    }
}

/// Opens a socket and has its `connection_init` acknowledged.
async fn open_socket(url: &str, token: &str) -> anyhow::Result<Socket> {
    let opening = async {
        let mut request = url.into_client_request()?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
        let (mut socket, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(config), false).await?;
        send(
            &mut socket,
            json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }),
        )
        .await?;
        loop {
            match next_json(&mut socket).await? {
                Some(message) if message["type"] == "connection_ack" => break,
                Some(message) if message["type"] == "ping" => {
                    send(&mut socket, json!({ "type": "pong" })).await?;
                }
                Some(message) => bail!("expected connection_ack, got {message}"),
                None => bail!("the socket closed before connection_ack"),
            }
        }
        anyhow::Ok(socket)
    };
    tokio::time::timeout(TIMEOUT, opening)
        .await
        .context("opening a subscription timed out")?
}

/// Starts the subscription on an acknowledged socket; with `name`, as an operation of
/// its own (`subscription S<name> ...`).
async fn subscribe(socket: &mut Socket, name: Option<usize>) -> anyhow::Result<()> {
    let query = match name {
        Some(n) => SUBSCRIPTION.replacen("subscription", &format!("subscription S{n}"), 1),
        None => SUBSCRIPTION.to_owned(),
    };
    send(
        socket,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": query } }),
    )
    .await
}

async fn send(socket: &mut Socket, message: Value) -> anyhow::Result<()> {
    socket
        .send(Message::Text(message.to_string().into()))
        .await?;
    Ok(())
}

/// The next JSON text message; `None` when the socket closed.
async fn next_json(socket: &mut Socket) -> anyhow::Result<Option<Value>> {
    while let Some(message) = socket.next().await {
        match message? {
            Message::Text(text) => return Ok(Some(serde_json::from_str(&text)?)),
            Message::Close(_) => return Ok(None),
            _ => {}
        }
    }
    Ok(None)
}

/// Waits for the next `next` message; an error if the socket or subscription ends.
async fn next_event(socket: &mut Socket) -> anyhow::Result<()> {
    loop {
        match next_json(socket).await? {
            Some(message) if message["type"] == "next" => return Ok(()),
            Some(message) if message["type"] == "ping" => {
                send(socket, json!({ "type": "pong" })).await?;
            }
            Some(message) if message["type"] == "pong" => {}
            Some(message) => bail!("expected an event, got {message}"),
            None => bail!("the socket closed"),
        }
    }
}

/// A server message as [`receive`] reads it: its type and, for `next`, the title of the
/// notification it carries.
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    payload: Option<Payload<'a>>,
}

#[derive(Deserialize)]
struct Payload<'a> {
    #[serde(default, borrow)]
    data: Option<Data<'a>>,
    #[serde(default)]
    errors: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data<'a> {
    #[serde(borrow)]
    notification_added: Added<'a>,
}

#[derive(Deserialize)]
struct Added<'a> {
    #[serde(borrow)]
    notification: Titled<'a>,
}

#[derive(Deserialize)]
struct Titled<'a> {
    #[serde(borrow)]
    title: Cow<'a, str>,
}

/// What one subscriber received during the load.
pub struct Received {
    /// `(sequence number, when it arrived)` for every `seq-<n>` event.
    pub arrivals: Vec<(usize, Instant)>,
    /// Why its subscription ended early, if it did.
    pub ended: Option<String>,
}

/// Reads one subscriber's socket: reports on `live` once its first event (a probe)
/// arrives (or why it ended before), then records every load event until it has all `events` of them, its
/// subscription ends, or `stop` is set.
async fn receive(
    mut socket: Socket,
    events: usize,
    live: mpsc::UnboundedSender<Result<(), String>>,
    mut stop: watch::Receiver<bool>,
) -> Received {
    let mut live = Some(live);
    let mut received = Received {
        arrivals: Vec::with_capacity(events),
        ended: None,
    };
    // Waited on once, not once per message: each new wait joins the list of waiters
    // that all subscribers' tasks share.
    let stopped = stop.wait_for(|stop| *stop);
    tokio::pin!(stopped);
    while received.arrivals.len() < events {
        let message = tokio::select! {
            message = socket.next() => message,
            _ = &mut stopped => break,
        };
        let at = Instant::now();
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | None => {
                received.ended = Some("socket closed".to_owned());
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(err)) => {
                received.ended = Some(format!("socket failed: {err}"));
                break;
            }
        };
        // Read as far as the benchmark needs, borrowing from the text; anything else
        // (an `error` message's list of errors, say) is reported as it came.
        let Ok(message) = serde_json::from_str::<Incoming<'_>>(&text) else {
            received.ended = Some(format!("subscription ended: {}", text.as_str()));
            break;
        };
        match &*message.kind {
            "next" => {}
            "ping" => {
                if send(&mut socket, json!({ "type": "pong" })).await.is_err() {
                    received.ended = Some("socket failed".to_owned());
                    break;
                }
                continue;
            }
            "pong" => continue,
            _ => {
                received.ended = Some(format!("subscription ended: {}", text.as_str()));
                break;
            }
        }
        let Some(Payload {
            data: Some(data),
            errors: None,
        }) = message.payload
        else {
            received.ended = Some(format!("subscription failed: {}", text.as_str()));
            break;
        };
        if let Some(live) = live.take() {
            let _ = live.send(Ok(()));
        }
        let title = data.notification_added.notification.title;
        if let Some(seq) = title.strip_prefix("seq-").and_then(|n| n.parse().ok()) {
            received.arrivals.push((seq, at));
        }
    }
    if let (Some(live), Some(why)) = (live, &received.ended) {
        let _ = live.send(Err(why.clone()));
    }
    let _ = socket.close(None).await;
    received
}
