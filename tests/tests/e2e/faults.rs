//! Faults: the gateway survives a Postgres restart (requests fail fast while the server
//! is down, `/readyz` says so, and everything recovers without restarting the gateway,
//! the event listener included), and a graceful shutdown drains a request in flight and
//! closes WebSockets with 1001.
//!
//! The restart test runs on a private cluster of its own ([`Cluster`]), so the shared
//! server the other tests use is never disturbed.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use biscuit_auth::KeyPair;
use flashfusion_api::{
    app::{AppState, serve_until},
    auth::TokenService,
    config::Config,
};
use flashfusion_tests::{
    Client, Cluster, TIMEOUT, TestApp, WsClient, WsEnd, bearer, create_project, eventually,
    statements_waiting_on_locks, waiting_on_locks,
};
use futures_util::{SinkExt, StreamExt};
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

use crate::code;

const CREATE_TASK: &str =
    "mutation($i: CreateAgentTaskInput!) { createAgentTask(input: $i) { task { id } } }";

/// Creates a task titled `title` on `project`, through the gateway.
async fn create_task(owner: &Client, project: &str, title: &str) -> Value {
    owner
        .post_json(json!({ "query": CREATE_TASK, "variables": { "i": {
            "projectId": project, "agentSlug": "code-reviewer", "title": title } } }))
        .await
        .1
}

/// The title of the next task event on `ws` (subscription id "1").
async fn next_title(ws: &mut WsClient) -> String {
    let message = ws.next().await.expect("an event, not a close");
    assert_eq!(message["type"], "next", "{message}");
    message["payload"]["data"]["agentTaskUpdated"]["task"]["title"]
        .as_str()
        .unwrap_or_else(|| panic!("a task event: {message}"))
        .to_owned()
}

async fn readyz(app: &TestApp) -> u16 {
    let response = app
        .anonymous()
        .request(reqwest::Method::GET, "/readyz")
        .send()
        .await
        .expect("/readyz answers");
    response.status().as_u16()
}

#[tokio::test]
async fn a_postgres_restart_fails_fast_then_recovers_listener_included() {
    let mut cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("a private cluster");
    let admin = Database::connect(cluster.url()).await.expect("admin");
    admin
        .execute_unprepared("create database gateway")
        .await
        .expect("create the database");
    admin.close().await.expect("close");
    let owner = Database::connect(cluster.url_of("gateway"))
        .await
        .expect("connect");
    Migrator::up(&owner, None).await.expect("migrate");
    owner.close().await.expect("close");

    // A request timeout the test's own client outlasts: a request that hung until it
    // would be answered 408, so a 503 proves the failure came before it.
    let app = TestApp::start_with(cluster.url_of("gateway"), None, |config| {
        config.request_timeout = TIMEOUT / 2;
    })
    .await;
    let (ada, _) = app.user("ada@example.com").await;
    let project = create_project(&ada, "resilient").await;
    let mut ws = app.socket_as(ada.token()).await;
    let live = app.state.fanout.live();
    ws.send(json!({ "id": "1", "type": "subscribe", "payload": {
        "query": "subscription($p: ID) { agentTaskUpdated(projectId: $p) { task { title } } }",
        "variables": { "p": project } } }))
        .await;
    // The protocol does not say when a subscription is live, and one without `after`
    // receives only what is written once it is: wait for the hub to count it.
    app.until_live("the subscription never started", |now| now > live)
        .await;
    let created = create_task(&ada, &project, "before").await;
    assert!(created["errors"].is_null(), "{created}");
    assert_eq!(next_title(&mut ws).await, "before");

    let cluster = tokio::task::spawn_blocking(move || {
        cluster.stop();
        cluster
    })
    .await
    .expect("stop the cluster");

    let (status, body) = ada.post_json(json!({ "query": "{ me { email } }" })).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(code(&body), "INTERNAL", "{body}");
    let (status, body) = app
        .anonymous()
        .post_json(json!({ "query": "{ aiServices { slug } }" }))
        .await;
    assert_eq!((status, code(&body)), (503, "INTERNAL"), "{body}");
    assert_eq!(readyz(&app).await, 503);

    let mut cluster = cluster;
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.start_again();
        cluster
    })
    .await
    .expect("start the cluster again");

    // The same gateway, not restarted: requests and readiness come back.
    let (ada, app) = (&ada, &app);
    eventually("queries succeed again", || async move {
        let (status, body) = ada.post_json(json!({ "query": "{ me { email } }" })).await;
        status == 200 && body["data"]["me"]["email"] == "ada@example.com"
    })
    .await;
    eventually("/readyz answers 200 again", || async move {
        readyz(app).await == 200
    })
    .await;
    // `/readyz` may answer 200 before the listener has read the end of its old
    // connection (it still counts as listening until then), so wait for the count.
    eventually("the listener counted its reconnection", || async move {
        app.state.hub.reconnects() >= 1
    })
    .await;

    // The subscription opened before the outage receives an event written after it.
    let created = create_task(ada, &project, "after").await;
    assert!(created["errors"].is_null(), "{created}");
    assert_eq!(next_title(&mut ws).await, "after");
    drop(cluster);
}

/// A gateway served by [`serve_until`] on a fresh database, stopped by `stop`.
struct Served {
    base: String,
    db: flashfusion_tests::TestDb,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn served() -> Served {
    let db = flashfusion_tests::TestDb::new().await;
    let mut config = Config::defaults();
    config.database_url = db.url().to_owned().into();
    config.db_max_connections = 5;
    config.secrets_key = Some(format!("{:064x}", 7).into());
    let tokens = TokenService::from_key_pair(KeyPair::new(), Duration::from_secs(3600));
    let state: Arc<AppState> = AppState::with_tokens(config, tokens)
        .await
        .expect("gateway state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free port");
    let address: SocketAddr = listener.local_addr().expect("local address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_until(state, listener, async {
        let _ = stopped.await;
    }));
    Served {
        base: format!("http://{address}"),
        db,
        stop,
        server,
    }
}

#[tokio::test]
async fn shutdown_drains_a_running_request_and_closes_sockets_with_1001() {
    let served = served().await;
    let http = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .expect("client");
    let graphql = format!("{}/graphql", served.base);
    let post = |body: Value| {
        let request = http.post(&graphql).json(&body);
        async move {
            let response = request.send().await.expect("a response");
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.expect("JSON"))
        }
    };
    let (_, up) = post(json!({ "query": "mutation { signUp(input: {email: \"ada@example.com\", password: \"correct horse\", displayName: \"Ada\"}) { token } }" })).await;
    let token = up["data"]["signUp"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{up}"))
        .to_owned();

    // A socket, acknowledged: anonymous, so that no check of a session of its own (which
    // reads `users` too) can join the wait on the lock below.
    let mut request = format!("{}/graphql", served.base.replacen("http", "ws", 1))
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
    let init = json!({ "type": "connection_init", "payload": {} });
    ws.send(Message::Text(init.to_string().into()))
        .await
        .expect("send init");
    let ack = tokio::time::timeout(TIMEOUT, ws.next())
        .await
        .expect("an ack in time");
    assert!(
        matches!(&ack, Some(Ok(Message::Text(text))) if text.contains("connection_ack")),
        "{ack:?}"
    );

    // A request held in flight by a lock on `users`, which its session check reads.
    let blocker = served.db.connect().await;
    let lock = sea_orm::TransactionTrait::begin(&blocker)
        .await
        .expect("begin");
    lock.execute_unprepared("lock table users in access exclusive mode")
        .await
        .expect("lock users");
    let in_flight = tokio::spawn(
        http.post(&graphql)
            .bearer_auth(&token)
            .json(&json!({ "query": "{ me { email } }" }))
            .send(),
    );
    let watcher = served.db.connect().await;
    let watcher = &watcher;
    eventually("the request waits on the lock", || {
        waiting_on_locks(watcher, 1)
    })
    .await;

    // The signal: the socket is told the server is going away.
    served.stop.send(()).expect("the server is running");
    let closed = tokio::time::timeout(TIMEOUT, ws.next())
        .await
        .expect("a close frame in time");
    let code = match closed {
        Some(Ok(Message::Close(Some(frame)))) => u16::from(frame.code),
        other => panic!("expected a close frame, got {other:?}"),
    };
    assert_eq!(code, 1001, "going away");
    drop(ws);

    // The request that was running completes once the lock goes.
    lock.commit().await.expect("release the lock");
    let response = tokio::time::timeout(TIMEOUT, in_flight)
        .await
        .expect("the request completes in time")
        .expect("the request task")
        .expect("a response, not a dropped connection");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["data"]["me"]["email"], "ada@example.com", "{body}");

    let outcome = tokio::time::timeout(TIMEOUT, served.server)
        .await
        .expect("the server stops once drained")
        .expect("the server task");
    assert!(outcome.is_ok(), "{outcome:?}");
    // Stopped: nothing listens any more.
    assert!(
        http.get(format!("{}/healthz", served.base))
            .send()
            .await
            .is_err(),
        "no new connection after shutdown"
    );
}

#[tokio::test]
async fn shutdown_answers_a_socket_s_operations_in_flight_then_closes_1001() {
    let served = served().await;
    let signed_up = reqwest::Client::new()
        .post(format!("{}/graphql", served.base))
        .json(&json!({ "query": "mutation { signUp(input: {email: \"ada@example.com\", password: \"correct horse\", displayName: \"Ada\"}) { token } }" }))
        .timeout(TIMEOUT)
        .send()
        .await
        .expect("sign up")
        .json::<Value>()
        .await
        .expect("JSON");
    let token = signed_up["data"]["signUp"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("{signed_up}"));
    let mut ws = WsClient::connect(&served.base, "graphql-transport-ws").await;
    ws.send(json!({ "type": "connection_init", "payload": bearer(token) }))
        .await;
    assert_eq!(ws.next().await.expect("ack")["type"], "connection_ack");
    let subscribe = |id: &str, query: &str| json!({ "id": id, "type": "subscribe", "payload": { "query": query } });
    ws.send(subscribe(
        "s",
        "subscription { notificationAdded { cursor } }",
    ))
    .await;

    // A query held in flight by a lock on `projects`, which it reads.
    let blocker = served.db.connect().await;
    let lock = sea_orm::TransactionTrait::begin(&blocker)
        .await
        .expect("begin");
    lock.execute_unprepared("lock table projects in access exclusive mode")
        .await
        .expect("lock projects");
    ws.send(subscribe(
        "q",
        "{ publicProjects(first: 1) { totalCount } }",
    ))
    .await;
    let watcher = served.db.connect().await;
    let watcher = &watcher;
    eventually("the query waits on the lock", || {
        statements_waiting_on_locks(watcher, 1, "%projects%")
    })
    .await;

    // The signal; once the server accepts no more connections, the socket has been told.
    served.stop.send(()).expect("the server is running");
    let address = served.base.trim_start_matches("http://").to_owned();
    let address = &address;
    eventually("the server stops accepting", || async move {
        tokio::net::TcpStream::connect(address).await.is_err()
    })
    .await;
    // Sent during the drain: neither started nor answered (the client sends it again
    // on its next socket). Started, it would be answered at once, before `q`.
    ws.send(subscribe("late", "{ __typename }")).await;

    // The query in flight is answered once the lock goes, then the socket closes; the
    // subscription ends without a `complete`, which would tell a client not to resume it.
    lock.commit().await.expect("release the lock");
    let answer = ws.next().await.expect("the query's answer");
    assert_eq!(
        (&answer["type"], &answer["id"]),
        (&json!("next"), &json!("q")),
        "{answer}"
    );
    assert_eq!(
        answer["payload"]["data"]["publicProjects"]["totalCount"], 0,
        "{answer}"
    );
    assert_eq!(
        ws.next().await.expect("the query's end"),
        json!({ "type": "complete", "id": "q" })
    );
    assert!(
        matches!(ws.next().await, Err(WsEnd::Closed(1001))),
        "going away, nothing else first"
    );
    let outcome = tokio::time::timeout(TIMEOUT, served.server)
        .await
        .expect("the server stops once drained")
        .expect("the server task");
    assert!(outcome.is_ok(), "{outcome:?}");
}

/// A connection must send a request's head whole within its bound of opening, and
/// closes once idle for its bound after its last request began: one that never sends a
/// whole head (half a head, nothing at all) or sits idle on keep-alive is closed rather
/// than held for as long as the client likes.
#[tokio::test]
async fn connections_that_send_no_whole_request_head_are_closed() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let app = TestApp::sqlite().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free port");
    let address = listener.local_addr().expect("an address");
    let bound = Duration::from_secs(1);
    let server = tokio::spawn(flashfusion_api::app::serve_http(
        listener,
        flashfusion_api::app::router(app.state.clone()),
        (bound, bound),
        std::future::pending(),
    ));
    /// Reads until the server closes the connection; what it sent.
    async fn until_closed(stream: &mut tokio::net::TcpStream) -> String {
        let mut received = Vec::new();
        tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut received))
            .await
            .expect("closed by the server before the test's timeout")
            .ok();
        String::from_utf8_lossy(&received).into_owned()
    }
    let connect = || async {
        tokio::net::TcpStream::connect(address)
            .await
            .expect("connect")
    };
    let mut unfinished = connect().await;
    unfinished
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("half a head");
    let mut silent = connect().await;
    let mut idle = connect().await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("a whole request");
    for stream in [&mut unfinished, &mut silent] {
        let sent = until_closed(stream).await;
        assert!(!sent.contains("200 OK"), "{sent}");
    }
    let answered = until_closed(&mut idle).await;
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");

    // A peer that sends requests and never reads an answer: once the server's
    // answers fill the buffers, the connection is told to close, cannot, and is
    // dropped, which fails the peer's blocked write.
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("a small receive buffer");
    let mut deaf = socket.connect(address).await.expect("connect");
    let requests = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n".repeat(2000);
    let writing = tokio::time::timeout(TIMEOUT, async move {
        loop {
            if deaf.write_all(&requests).await.is_err() {
                return;
            }
        }
    });
    writing
        .await
        .expect("the connection was dropped before the test's timeout");
    server.abort();
}
