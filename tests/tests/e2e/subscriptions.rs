//! Subscriptions end to end, over real WebSockets speaking graphql-transport-ws: events
//! arrive in order, only to those who may read the row, resume with `after` with no
//! gap and no duplicate (also across transactions committing in reverse order and a
//! dropped LISTEN connection), cross replicas, a subscriber that never reads does not
//! hold the others back, each delivery reads nested lists afresh, and each set-up is
//! counted in `/metrics` as an operation.

use std::time::Duration;

use biscuit_auth::BlockBuilder;
use flashfusion_api::auth::Role;
use flashfusion_tests::{
    Scrape, TIMEOUT, TestApp, WsClient, WsEnd, bearer, scoped, until_the_clock_reaches,
    whole_seconds_from_now,
};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, TransactionTrait};
use serde_json::{Value, json};

use super::work_support::{Actor, PROGRESS, World, claim, create_task, ok};

const TASKS: &str = "subscription($task: ID, $project: ID) { agentTaskUpdated(taskId: $task, projectId: $project) { cursor kind task { id title progress status project { id } } } }";
const NOTIFICATIONS: &str = "subscription($after: String) { notificationAdded(after: $after) { cursor kind notification { title } } }";
const NOTIFY: &str =
    "mutation($i: CreateNotificationInput!) { createNotification(input: $i) { notificationId } }";

/// Opens an acknowledged socket as `token` (anonymous when empty) and sends a
/// subscription to `query`.
async fn ask(app: &TestApp, token: &str, query: &str, variables: Value) -> WsClient {
    let payload = if token.is_empty() {
        json!({})
    } else {
        bearer(token)
    };
    let mut ws = app.websocket("graphql-transport-ws", payload).await;
    assert_eq!(ws.next().await.expect("ack")["type"], "connection_ack");
    ws.send(json!({ "id": "1", "type": "subscribe", "payload": { "query": query, "variables": variables } }))
        .await;
    ws
}

/// [`ask`], returning once the gateway's hub counts the new feed, so no later change
/// can be missed.
async fn subscribe(app: &TestApp, token: &str, query: &str, variables: Value) -> WsClient {
    let live = app.state.fanout.live();
    let ws = ask(app, token, query, variables).await;
    app.until_live("the subscription never started", |now| now > live)
        .await;
    ws
}

/// The next event's `field`, failing on anything else.
async fn event(ws: &mut WsClient, field: &str) -> Value {
    let message = ws.next().await.expect("an event");
    assert_eq!(message["type"], "next", "not an event: {message}");
    let data = &message["payload"]["data"][field];
    assert!(!data.is_null(), "an event without data: {message}");
    data.clone()
}

/// The code of the error that ended (or refused) a subscription.
async fn refusal(ws: &mut WsClient) -> String {
    let message = ws.next().await.expect("a refusal");
    let errors = match message["type"].as_str() {
        Some("error") => message["payload"].clone(),
        _ => message["payload"]["errors"].clone(),
    };
    errors[0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error: {message}"))
        .to_owned()
}

async fn notify(world: &World, user: &str, title: &str) {
    ok(
        world.client(Actor::Admin),
        NOTIFY,
        json!({ "i": { "userId": user, "kind": "test", "title": title } }),
        "createNotification",
        "notificationId",
    )
    .await;
}

on_both_backends!(
    a_task_s_progress_arrives_in_order,
    a_resumed_subscriber_gets_exactly_what_it_missed,
    an_expired_or_malformed_cursor_is_refused,
    only_readers_of_a_row_receive_its_changes,
    identical_subscriptions_share_one_execution,
    tokens_of_one_account_share_what_depends_on_the_account_alone,
    a_token_limited_to_writes_gets_no_task_or_deployment_events,
    each_delivery_reads_nested_lists_afresh,
    a_project_s_events_stop_when_the_token_s_time_on_it_ends,
);

async fn a_task_s_progress_arrives_in_order(app: TestApp) {
    let world = World::new(&app).await;
    let task = create_task(&world, &world.project, "code-reviewer", 0).await;
    claim(&world, "code-reviewer").await.expect("claimed");
    let mut ws = subscribe(&app, world.owner().token(), TASKS, json!({ "task": task })).await;
    for progress in [10, 40, 70] {
        ok(
            world.service(),
            PROGRESS,
            json!({ "i": { "id": task, "progress": progress } }),
            "reportAgentTaskProgress",
            "task",
        )
        .await;
    }
    // A live feed begins where this replica's hub stands, which may be just before
    // the task's creation and claim: those come first, if at all.
    let mut next = event(&mut ws, "agentTaskUpdated").await;
    while next["task"]["progress"] == 0 {
        next = event(&mut ws, "agentTaskUpdated").await;
    }
    let mut cursors = Vec::new();
    for progress in [10, 40, 70] {
        let event = match cursors.is_empty() {
            true => next.clone(),
            false => event(&mut ws, "agentTaskUpdated").await,
        };
        assert_eq!(event["kind"], "UPDATED");
        assert_eq!(event["task"]["id"], task.as_str());
        assert_eq!(event["task"]["progress"], progress, "{event}");
        assert_eq!(event["task"]["status"], "RUNNING");
        // A nested field reads its row in the delivery's own transaction.
        assert_eq!(event["task"]["project"]["id"], world.project.as_str());
        cursors.push(event["cursor"].as_str().expect("cursor").to_owned());
    }
    // Cursors are opaque to clients; here they are known to be `<transaction>-<id>`,
    // and must strictly increase.
    let order: Vec<(u64, u64)> = cursors
        .iter()
        .map(|cursor| {
            let (tx, id) = cursor.split_once('-').expect("a cursor");
            (tx.parse().expect("tx"), id.parse().expect("id"))
        })
        .collect();
    assert!(
        order.windows(2).all(|pair| pair[0] < pair[1]),
        "cursors out of order: {cursors:?}"
    );
}

/// A subscription's operation outlives its deliveries, each in a transaction of its
/// own: a nested list (a task's project's tasks, loaded as first pages) is read again
/// for every delivery, never served from what an earlier one loaded.
async fn each_delivery_reads_nested_lists_afresh(app: TestApp) {
    const COUNTS: &str = "subscription($project: ID) { agentTaskUpdated(projectId: $project) { kind task { id project { tasks(first: 10) { totalCount } } } } }";
    let world = World::new(&app).await;
    let mut ws = subscribe(
        &app,
        world.owner().token(),
        COUNTS,
        json!({ "project": world.project }),
    )
    .await;
    let mut counted = Vec::new();
    for _ in 0..2 {
        let task = create_task(&world, &world.project, "code-reviewer", 0).await;
        let created = loop {
            let event = event(&mut ws, "agentTaskUpdated").await;
            if event["task"]["id"] == task.as_str() && event["kind"] == "CREATED" {
                break event;
            }
        };
        counted.push(
            created["task"]["project"]["tasks"]["totalCount"]
                .as_u64()
                .unwrap_or_else(|| panic!("a count: {created}")),
        );
    }
    assert_eq!(
        counted[1],
        counted[0] + 1,
        "the second delivery saw the first's list: {counted:?}"
    );
}

async fn a_resumed_subscriber_gets_exactly_what_it_missed(app: TestApp) {
    let world = World::new(&app).await;
    let mut ws = subscribe(&app, world.owner().token(), NOTIFICATIONS, json!({})).await;
    notify(&world, &world.owner_id, "n0").await;
    let first = event(&mut ws, "notificationAdded").await;
    assert_eq!(first["kind"], "CREATED");
    assert_eq!(first["notification"]["title"], "n0");
    drop(ws);
    for n in 1..=50 {
        notify(&world, &world.owner_id, &format!("n{n}")).await;
    }
    let mut ws = subscribe(
        &app,
        world.owner().token(),
        NOTIFICATIONS,
        json!({ "after": first["cursor"] }),
    )
    .await;
    for n in 1..=50 {
        let event = event(&mut ws, "notificationAdded").await;
        assert_eq!(event["notification"]["title"], format!("n{n}"));
    }
    // Then live, with nothing repeated at the seam.
    notify(&world, &world.owner_id, "n51").await;
    let live = event(&mut ws, "notificationAdded").await;
    assert_eq!(live["notification"]["title"], "n51");
}

async fn an_expired_or_malformed_cursor_is_refused(app: TestApp) {
    let world = World::new(&app).await;
    let mut ws = subscribe(&app, world.owner().token(), NOTIFICATIONS, json!({})).await;
    notify(&world, &world.owner_id, "old").await;
    let old = event(&mut ws, "notificationAdded").await;
    let mut ws = ask(
        &app,
        world.owner().token(),
        NOTIFICATIONS,
        json!({ "after": "not-a-cursor" }),
    )
    .await;
    assert_eq!(refusal(&mut ws).await, "BAD_USER_INPUT");
    app.state
        .hub
        .prune(Duration::ZERO)
        .await
        .expect("pruned the events");
    let mut ws = ask(
        &app,
        world.owner().token(),
        NOTIFICATIONS,
        json!({ "after": old["cursor"] }),
    )
    .await;
    let message = ws.next().await.expect("a refusal");
    assert!(
        message.to_string().contains("cursor expired"),
        "not an expiry: {message}"
    );
}

/// Only those who may read a row receive its changes: another user, a token scoped to
/// another project and an anonymous socket get nothing of a task (each gets its own
/// marker change first), while an admin gets it; nobody else gets a user's
/// notifications. On SQLite the in-memory rule is the only guard.
async fn only_readers_of_a_row_receive_its_changes(app: TestApp) {
    let world = World::new(&app).await;
    let mut others_notes = subscribe(
        &app,
        world.client(Actor::Other).token(),
        NOTIFICATIONS,
        json!({}),
    )
    .await;
    let other_project =
        flashfusion_tests::create_project(world.client(Actor::Other), "strangers").await;
    let mut other = subscribe(&app, world.client(Actor::Other).token(), TASKS, json!({})).await;
    let mut scoped = subscribe(
        &app,
        world.client(Actor::OtherProject).token(),
        TASKS,
        json!({}),
    )
    .await;
    let mut admin = subscribe(&app, world.client(Actor::Admin).token(), TASKS, json!({})).await;
    let hidden = create_task(&world, &world.project, "code-reviewer", 0).await;
    let scoped_marker = create_task(&world, &world.other_project, "code-reviewer", 0).await;
    let other_marker = ok(
        world.client(Actor::Other),
        super::work_support::CREATE_TASK,
        json!({ "i": { "projectId": other_project, "agentSlug": "code-reviewer", "title": "mine" } }),
        "createAgentTask",
        "task",
    )
    .await["id"]
        .clone();
    assert_eq!(
        event(&mut admin, "agentTaskUpdated").await["task"]["id"],
        hidden.as_str()
    );
    assert_eq!(
        event(&mut scoped, "agentTaskUpdated").await["task"]["id"],
        scoped_marker.as_str()
    );
    assert_eq!(
        event(&mut other, "agentTaskUpdated").await["task"]["id"],
        other_marker
    );
    let other_id = world
        .client(Actor::Other)
        .graphql("{ me { id } }", json!({}))
        .await["data"]["me"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    notify(&world, &world.owner_id, "not yours").await;
    notify(&world, &other_id, "yours").await;
    assert_eq!(
        event(&mut others_notes, "notificationAdded").await["notification"]["title"],
        "yours"
    );
    // Anonymous sockets may not subscribe to tasks at all.
    let mut anonymous = ask(&app, "", TASKS, json!({})).await;
    assert_eq!(refusal(&mut anonymous).await, "UNAUTHENTICATED");
    // Naming a task or project one may not read is NOT_FOUND, as a query would say.
    let other_token = world.client(Actor::Other).token();
    let mut named = ask(&app, other_token, TASKS, json!({ "task": hidden })).await;
    assert_eq!(refusal(&mut named).await, "NOT_FOUND");
    let mut named = ask(
        &app,
        other_token,
        TASKS,
        json!({ "project": world.project }),
    )
    .await;
    assert_eq!(refusal(&mut named).await, "NOT_FOUND");
}

/// Two transactions whose events are numbered in one order and commit in the other:
/// the later-numbered one is held back until the earlier commits, so a cursor handed
/// out never skips an event.
/// An event whose nested field fails is still an event: delivered as `next` with its
/// error, and the subscription goes on (only a refusal before execution, or by the root
/// field, is an `error` message: `fanout::Delivery::refused`). Deleting a project deletes
/// its tasks, whose `project` went with it. async-graphql 7.2 leaves a failed non-null
/// field out of its object rather than null the object (`do_resolve_container`), so the
/// event keeps its data here.
#[tokio::test]
async fn an_event_whose_nested_field_fails_does_not_end_the_subscription() {
    let app = TestApp::postgres().await;
    let world = World::new(&app).await;
    for _ in 0..2 {
        create_task(&world, &world.project, "code-reviewer", 0).await;
    }
    let mut ws = subscribe(
        &app,
        world.owner().token(),
        TASKS,
        json!({ "project": world.project }),
    )
    .await;
    ok(
        world.owner(),
        "mutation($id: ID!) { deleteProject(id: $id) { deletedId } }",
        json!({ "id": world.project }),
        "deleteProject",
        "deletedId",
    )
    .await;
    // The tasks' CREATED events may still be on their way (the hub reads behind the
    // commits); every message is an event, and both DELETED ones carry the error.
    let mut deleted = 0;
    while deleted < 2 {
        let message = ws.next().await.expect("an event");
        assert_eq!(message["type"], "next", "{message}");
        if message["payload"]["data"]["agentTaskUpdated"]["kind"] == "DELETED" {
            assert_eq!(
                message["payload"]["errors"][0]["path"],
                json!(["agentTaskUpdated", "task", "project"]),
                "{message}"
            );
            deleted += 1;
        }
    }
}

#[tokio::test]
async fn transactions_committing_in_reverse_order_lose_nothing() {
    let app = TestApp::postgres().await;
    let world = World::new(&app).await;
    let mut ws = subscribe(&app, world.owner().token(), NOTIFICATIONS, json!({})).await;
    let db = app.db.as_ref().expect("postgres").connect().await;
    let insert = |title: &str| {
        Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "insert into notifications (id, user_id, kind, title) \
             values (gen_random_uuid(), $1::uuid, 'sql', $2)",
            [world.owner_id.clone().into(), title.into()],
        )
    };
    let first = db.begin().await.expect("begin");
    first.execute_raw(insert("first")).await.expect("insert");
    let second = db.begin().await.expect("begin");
    second.execute_raw(insert("second")).await.expect("insert");
    second.commit().await.expect("commit");
    // The second is committed but held back behind the first, still running: nothing
    // may arrive yet (were it delivered now, a cursor after it would skip the first).
    assert!(
        tokio::time::timeout(Duration::from_millis(300), ws.next())
            .await
            .is_err(),
        "an event arrived while an older transaction was still running"
    );
    first.commit().await.expect("commit");
    let a = event(&mut ws, "notificationAdded").await;
    let b = event(&mut ws, "notificationAdded").await;
    assert_eq!(
        [&a["notification"]["title"], &b["notification"]["title"]],
        ["first", "second"]
    );
    // Resuming after the first hands out the second, and nothing else.
    let mut resumed = subscribe(
        &app,
        world.owner().token(),
        NOTIFICATIONS,
        json!({ "after": a["cursor"] }),
    )
    .await;
    assert_eq!(
        event(&mut resumed, "notificationAdded").await["cursor"],
        b["cursor"]
    );
}

/// The LISTEN connection is killed in the middle of a stream of changes: the listener
/// reconnects, the hub catches up from the `events` table, and the subscriber receives
/// every change in order, as does a subscriber resuming from before the kill.
#[tokio::test]
async fn a_killed_listen_connection_loses_nothing() {
    let app = TestApp::postgres().await;
    let world = World::new(&app).await;
    let mut ws = subscribe(&app, world.owner().token(), NOTIFICATIONS, json!({})).await;
    let db = app.db.as_ref().expect("postgres").connect().await;
    for n in 0..40 {
        notify(&world, &world.owner_id, &format!("n{n}")).await;
        if n == 15 {
            let killed = db
                .query_all_raw(Statement::from_string(
                    DatabaseBackend::Postgres,
                    "select pg_terminate_backend(pid) from pg_stat_activity \
                     where datname = current_database() and query like 'LISTEN%'",
                ))
                .await
                .expect("terminate");
            assert_eq!(killed.len(), 1, "no LISTEN connection to kill");
        }
    }
    let mut first = Value::Null;
    for n in 0..40 {
        let event = event(&mut ws, "notificationAdded").await;
        assert_eq!(event["notification"]["title"], format!("n{n}"));
        if n == 0 {
            first = event["cursor"].clone();
        }
    }
    assert!(
        app.state.hub.reconnects() >= 1,
        "the listener never noticed"
    );
    // A subscriber resuming from before the kill gets the rest, in order.
    let mut resumed = subscribe(
        &app,
        world.owner().token(),
        NOTIFICATIONS,
        json!({ "after": first }),
    )
    .await;
    for n in 1..40 {
        let event = event(&mut resumed, "notificationAdded").await;
        assert_eq!(event["notification"]["title"], format!("n{n}"));
    }
}

/// Only the triggers write events: no role of the gateway may insert one directly (a
/// made-up transaction id could move every replica's feed past real events).
#[tokio::test]
async fn no_gateway_role_writes_events_directly() {
    let app = TestApp::postgres().await;
    let cast = flashfusion_tests::Actors::new(&app).await;
    for actor in [Actor::Service, Actor::Admin, Actor::Owner, Actor::Anonymous] {
        let forged = cast
            .sql_as(
                &app,
                actor,
                "insert into events (topic, kind, entity_id, payload) \
                 values ('session', 'UPDATED', gen_random_uuid(), '{}') returning topic",
            )
            .await;
        let message = forged.expect_err("a forged event").to_string();
        assert!(
            message.contains("permission denied"),
            "{actor:?}: {message}"
        );
    }
}

/// Two gateways on one database: a change made through one reaches a subscriber of the
/// other.
#[tokio::test]
async fn a_change_through_one_replica_reaches_subscribers_of_another() {
    let first = TestApp::postgres().await;
    let second = first.replica().await;
    let world = World::new(&first).await;
    let mut ws = subscribe(&second, world.owner().token(), NOTIFICATIONS, json!({})).await;
    notify(&world, &world.owner_id, "across").await;
    assert_eq!(
        event(&mut ws, "notificationAdded").await["notification"]["title"],
        "across"
    );
}

/// A subscriber that never reads its socket does not hold back another one. Its events
/// are large and its receive buffer small, so they fill the kernel's buffers and its
/// socket's writer blocks: the other subscriber still receives every event, and once
/// the blocked write gives up (the request timeout) the gateway lets the stalled
/// subscription go.
#[tokio::test]
async fn a_subscriber_that_never_reads_does_not_delay_others() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

    let db = flashfusion_tests::TestDb::new().await;
    let url = db.url().to_owned();
    let app = TestApp::start_with(url, Some(db), |config| {
        config.request_timeout = Duration::from_secs(2);
    })
    .await;
    let world = World::new(&app).await;

    let address = app
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("address");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("a small receive buffer");
    let tcp = socket.connect(address).await.expect("connect");
    let mut request = format!("ws://{address}/graphql")
        .into_client_request()
        .expect("ws request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    let (mut stalled, _) =
        tokio::time::timeout(TIMEOUT, tokio_tungstenite::client_async(request, tcp))
            .await
            .expect("ws connect timed out")
            .expect("ws connect");
    let token = world.owner().token();
    for message in [
        json!({ "type": "connection_init", "payload": bearer(token) }),
        json!({ "id": "1", "type": "subscribe", "payload": {
            "query": "subscription { notificationAdded { notification { title data } } }" } }),
    ] {
        stalled
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("ws send");
    }
    let ack = tokio::time::timeout(TIMEOUT, stalled.next())
        .await
        .expect("an ack");
    assert!(format!("{ack:?}").contains("connection_ack"), "{ack:?}");
    app.until_live("the stalled subscription never started", |live| live == 1)
        .await;
    let mut reader = subscribe(&app, token, NOTIFICATIONS, json!({})).await;

    // 20 events of ~400 KiB for the stalled socket: far more than its buffers hold.
    let filler = "x".repeat(400 * 1024);
    for n in 0..20 {
        ok(
            world.client(Actor::Admin),
            NOTIFY,
            json!({ "i": { "userId": world.owner_id, "kind": "test", "title": format!("n{n}"),
                           "data": { "filler": filler } } }),
            "createNotification",
            "notificationId",
        )
        .await;
    }
    for n in 0..20 {
        let event = event(&mut reader, "notificationAdded").await;
        assert_eq!(event["notification"]["title"], format!("n{n}"));
    }
    app.until_live("the stalled subscription was never let go", |live| {
        live == 1
    })
    .await;
    drop(stalled);
}

/// Sockets that subscribe to the same document with the same token share one
/// execution (`fanout`), and each still gets every event it may read; another
/// account's token runs on its own and sees none of them. A member leaving does not end the others'.
async fn identical_subscriptions_share_one_execution(app: TestApp) {
    let world = World::new(&app).await;
    let owner = world.owner().token();
    let mut first = subscribe(&app, owner, NOTIFICATIONS, json!({})).await;
    let mut second = subscribe(&app, owner, NOTIFICATIONS, json!({})).await;
    assert_eq!(
        app.state.fanout.running(),
        1,
        "two executions of one subscription"
    );
    let other = world.client(Actor::Other);
    let mut stranger = subscribe(&app, other.token(), NOTIFICATIONS, json!({})).await;
    assert_eq!(
        app.state.fanout.running(),
        2,
        "another token joined the owner's"
    );

    notify(&world, &world.owner_id, "shared").await;
    let (a, b) = (
        first.next().await.expect("an event"),
        second.next().await.expect("an event"),
    );
    assert_eq!(
        a["payload"]["data"]["notificationAdded"]["notification"]["title"],
        "shared"
    );
    assert_eq!(a, b, "members of one execution got different events");
    // The stranger's first event is its own: the owner's was never sent to it.
    notify(&world, world.other_id(), "own").await;
    let own = event(&mut stranger, "notificationAdded").await;
    assert_eq!(own["notification"]["title"], "own");

    drop(first);
    app.until_live("the closed socket's subscription lived on", |live| {
        live == 2
    })
    .await;
    notify(&world, &world.owner_id, "after").await;
    let after = event(&mut second, "notificationAdded").await;
    assert_eq!(after["notification"]["title"], "after");
    assert_eq!(app.state.fanout.running(), 2);
}

/// Tokens of one account (each device signing in on its own) share one execution of a
/// subscription whose deliveries depend on the account alone: plain fields, read by the
/// domain's rule, for a token that restricts no projects. Signing one of them out closes
/// its socket and leaves the others' feed running. A selection that reaches other rows
/// (`task { project { id } }`), or a token scoped to a project, runs its own execution:
/// there the token is asked at each delivery.
async fn tokens_of_one_account_share_what_depends_on_the_account_alone(app: TestApp) {
    const FLAT_TASKS: &str = "subscription { agentTaskUpdated { cursor task { id title } } }";
    let world = World::new(&app).await;
    let laptop = world.owner();
    let phone = app.mint(&world.owner_id, Role::User);
    let mut on_laptop = subscribe(&app, laptop.token(), NOTIFICATIONS, json!({})).await;
    let mut on_phone = subscribe(&app, &phone, NOTIFICATIONS, json!({})).await;
    assert_eq!(
        app.state.fanout.running(),
        1,
        "two tokens of one account ran apart"
    );

    notify(&world, &world.owner_id, "both").await;
    let (a, b) = (
        event(&mut on_laptop, "notificationAdded").await,
        event(&mut on_phone, "notificationAdded").await,
    );
    assert_eq!(a["notification"]["title"], "both", "{a}");
    assert_eq!(a, b, "members of one execution got different events");

    let out = laptop.graphql("mutation { signOut }", json!({})).await;
    assert_eq!(out["data"]["signOut"], true, "{out}");
    match on_laptop.next().await {
        Err(WsEnd::Closed(code)) => assert_eq!(code, 4403),
        Ok(message) => panic!("the signed-out socket got {message}"),
    }
    notify(&world, &world.owner_id, "after").await;
    let after = event(&mut on_phone, "notificationAdded").await;
    assert_eq!(after["notification"]["title"], "after", "{after}");
    assert_eq!(app.state.fanout.running(), 1);

    // Plain task fields: shared by two unscoped tokens, not with a project-scoped one.
    let tablet = app.mint(&world.owner_id, Role::User);
    let scoped = scoped(
        &app.with_token(&tablet),
        json!({ "projectId": world.project }),
    )
    .await;
    let _flat = subscribe(&app, &phone, FLAT_TASKS, json!({})).await;
    let _flat_too = subscribe(&app, &tablet, FLAT_TASKS, json!({})).await;
    assert_eq!(app.state.fanout.running(), 2, "plain task fields ran apart");
    let _flat_scoped = subscribe(&app, &scoped, FLAT_TASKS, json!({})).await;
    assert_eq!(
        app.state.fanout.running(),
        3,
        "a scoped token joined an unscoped one"
    );
    // Reaching the task's project, each token runs its own execution.
    let _nested = subscribe(&app, &phone, TASKS, json!({})).await;
    let _nested_too = subscribe(&app, &tablet, TASKS, json!({})).await;
    assert_eq!(
        app.state.fanout.running(),
        5,
        "nested selections were shared"
    );
}

/// A token its holder limited to writes (an appended `check if operation("write")`)
/// may not read tasks or deployments through a subscription any more than through a
/// list: naming no project or task, the set-up asks the token to read the account's
/// rows, as the lists do.
async fn a_token_limited_to_writes_gets_no_task_or_deployment_events(app: TestApp) {
    let world = World::new(&app).await;
    let write_only = app.appended(
        world.owner().token(),
        BlockBuilder::new()
            .code(r#"check if operation("write");"#)
            .expect("block"),
    );
    let listed = app
        .with_token(&write_only)
        .graphql("{ agentTasks { totalCount } }", json!({}))
        .await;
    assert_eq!(
        listed["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{listed}"
    );
    for query in [
        "subscription { agentTaskUpdated { cursor } }",
        "subscription { deploymentUpdated { cursor } }",
    ] {
        let mut ws = ask(&app, &write_only, query, json!({})).await;
        assert_eq!(refusal(&mut ws).await, "FORBIDDEN", "{query}");
    }
}

/// A token whose reach of a project ends with time, in a check of its holder's own
/// form: that project's events stop at that time, although the subscription's first
/// event judged the project readable, while another project's go on.
async fn a_project_s_events_stop_when_the_token_s_time_on_it_ends(app: TestApp) {
    let world = World::new(&app).await;
    let until = whole_seconds_from_now(5);
    let token = app.appended(
        world.owner().token(),
        BlockBuilder::new()
            .code_with_params(
                r#"check if resource("project", {other}) or resource("project", {project}), time($t), $t < {until} or resource("account");"#,
                std::collections::HashMap::from([
                    ("other".to_owned(), world.other_project.clone().into()),
                    ("project".to_owned(), world.project.clone().into()),
                    ("until".to_owned(), biscuit_auth::builder::date(&until)),
                ]),
                std::collections::HashMap::new(),
            )
            .expect("block"),
    );
    let mut ws = subscribe(&app, &token, TASKS, json!({})).await;
    let first = create_task(&world, &world.project, "code-reviewer", 0).await;
    assert_eq!(
        event(&mut ws, "agentTaskUpdated").await["task"]["id"],
        first
    );
    until_the_clock_reaches(until).await;
    create_task(&world, &world.project, "code-reviewer", 0).await;
    let elsewhere = create_task(&world, &world.other_project, "code-reviewer", 0).await;
    // Events come in order: the first after the limit is the other project's.
    assert_eq!(
        event(&mut ws, "agentTaskUpdated").await["task"]["id"],
        elsewhere
    );
}

/// A subscription's set-up counts in `/metrics` as an operation of its name, type
/// `subscription` and transport `websocket`: `ok` once its feed started, `errors` when
/// its field refused it (an anonymous caller) or validation did, its errors by code; a
/// document that does not parse is counted as over HTTP (type `unknown`).
#[tokio::test]
async fn subscription_set_ups_are_counted_in_the_metrics() {
    const FEED: &str = "subscription Feed { notificationAdded { cursor } }";
    let app = TestApp::postgres().await;
    let (ada, _) = app.user("ada@example.com").await;
    let operations = |outcome| {
        (
            "flashfusion_graphql_operations_total",
            vec![
                ("operation", "Feed"),
                ("operation_type", "subscription"),
                ("transport", "websocket"),
                ("outcome", outcome),
            ],
        )
    };
    let errors = |code| ("flashfusion_graphql_errors_total", vec![("code", code)]);
    let series = [
        operations("ok"),
        operations("errors"),
        errors("UNAUTHENTICATED"),
        errors("BAD_USER_INPUT"),
        (
            "flashfusion_graphql_operation_duration_seconds_count",
            vec![
                ("operation_type", "subscription"),
                ("transport", "websocket"),
            ],
        ),
        (
            "flashfusion_graphql_operations_total",
            vec![
                ("operation", "anonymous"),
                ("operation_type", "unknown"),
                ("transport", "websocket"),
                ("outcome", "bad_request"),
            ],
        ),
    ];
    let before = Scrape::of(&app.anonymous()).await;

    let _started = subscribe(&app, ada.token(), FEED, json!({})).await;
    let mut anonymous = ask(&app, "", FEED, json!({})).await;
    assert_eq!(refusal(&mut anonymous).await, "UNAUTHENTICATED");
    let mut invalid = ask(
        &app,
        ada.token(),
        "subscription Feed { notificationAdded { nope } }",
        json!({}),
    )
    .await;
    assert_eq!(refusal(&mut invalid).await, "BAD_USER_INPUT");
    // Refused before its operation is known, as over HTTP.
    let mut unparsable = ask(&app, ada.token(), "subscription Feed {", json!({})).await;
    assert_eq!(refusal(&mut unparsable).await, "BAD_USER_INPUT");

    let after = Scrape::of(&app.anonymous()).await;
    let counted: Vec<f64> = series
        .iter()
        .map(|(name, labels)| after.sum(name, labels) - before.sum(name, labels))
        .collect();
    assert_eq!(counted, [1.0, 2.0, 1.0, 2.0, 3.0, 1.0], "{series:?}");
}
