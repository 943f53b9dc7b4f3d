//! The WebSocket protocol over real sockets: every close code of graphql-transport-ws
//! (the graphql-ws project's PROTOCOL.md), ping/pong, the `error`-message rule, the
//! per-socket limits, and the legacy `graphql-ws` protocol.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use biscuit_auth::{BlockBuilder, KeyPair, builder::date};
use flashfusion_api::auth::{Role, TokenService};
use flashfusion_tests::{
    Client, Scrape, TestApp, TestDb, WsClient, WsEnd, eventually, whole_seconds_from_now,
};
use serde_json::{Value, json};

const TRANSPORT_WS: &str = "graphql-transport-ws";
const LEGACY: &str = "graphql-ws";
const ME: &str = "{ me { email } }";
const NOTIFICATIONS: &str = "subscription { notificationAdded { cursor } }";

/// The close code that ended `ws`, failing if a message came instead.
async fn close_code(ws: &mut WsClient) -> u16 {
    match ws.next().await {
        Err(WsEnd::Closed(code)) => code,
        Ok(message) => panic!("expected the socket to close, got {message}"),
    }
}

/// A socket that has been acknowledged, anonymous.
async fn acknowledged(app: &TestApp, protocol: &str) -> WsClient {
    let mut ws = app.websocket(protocol, json!({})).await;
    assert_eq!(ws.next().await.expect("ack")["type"], "connection_ack");
    ws
}

/// `ws` once its subscription to the caller's notifications (id `mine`) is live.
async fn subscribed(app: &TestApp, mut ws: WsClient) -> WsClient {
    let live = app.state.fanout.live();
    subscribe(&mut ws, "mine", NOTIFICATIONS).await;
    app.until_live("the subscription never started", |now| now > live)
        .await;
    ws
}

async fn subscribe(ws: &mut WsClient, id: &str, query: &str) {
    ws.send(json!({ "id": id, "type": "subscribe", "payload": { "query": query } }))
        .await;
}

#[tokio::test]
async fn a_malformed_message_closes_4400() {
    let app = TestApp::sqlite().await;
    for message in [
        json!("not an object"),
        json!({ "payload": {} }),
        json!({ "type": "subscribe", "payload": { "query": ME } }),
        json!({ "type": "subscribe", "id": "1", "payload": { "variables": {} } }),
    ] {
        let mut ws = acknowledged(&app, TRANSPORT_WS).await;
        ws.send(message.clone()).await;
        assert_eq!(close_code(&mut ws).await, 4400, "{message}");
    }
}

#[tokio::test]
async fn an_unknown_message_type_closes_4400() {
    let app = TestApp::sqlite().await;
    for kind in ["bogus", "next", "connection_ack", "start"] {
        let mut ws = acknowledged(&app, TRANSPORT_WS).await;
        ws.send(json!({ "type": kind, "id": "1", "payload": {} }))
            .await;
        assert_eq!(close_code(&mut ws).await, 4400, "{kind}");
    }
}

#[tokio::test]
async fn subscribe_before_connection_ack_closes_4401() {
    let app = TestApp::sqlite().await;
    let mut ws = app.silent_websocket(TRANSPORT_WS).await;
    subscribe(&mut ws, "1", ME).await;
    assert_eq!(close_code(&mut ws).await, 4401);
}

#[tokio::test]
async fn a_refused_connection_init_closes_4403() {
    let app = TestApp::postgres().await;
    let mut ws = app
        .websocket(TRANSPORT_WS, json!({ "Authorization": "Bearer garbage" }))
        .await;
    assert_eq!(
        close_code(&mut ws).await,
        4403,
        "a token that does not verify"
    );

    let (ada, _) = app.user("ada@example.com").await;
    let out = ada.graphql("mutation { signOut }", json!({})).await;
    assert_eq!(out["data"]["signOut"], true, "{out}");
    let mut ws = app
        .websocket(TRANSPORT_WS, json!({ "authToken": ada.token() }))
        .await;
    assert_eq!(close_code(&mut ws).await, 4403, "a revoked token");
}

#[tokio::test]
async fn the_socket_closes_4403_when_its_token_expires() {
    let app = TestApp::postgres().await;
    let (_, id) = app.user("ada@example.com").await;
    let tokens = TokenService::from_key_pair(
        KeyPair::from(&app.root.private()),
        Duration::from_secs(3600),
    );
    let (token, expires_at) = tokens
        .issue(
            id.parse().expect("uuid"),
            Role::User,
            Some(Duration::from_secs(2)),
        )
        .expect("mint");
    let mut ws = app.socket_as(&token).await;
    // The close is the event awaited: nothing is sent, the expiry alone ends the socket.
    assert_eq!(close_code(&mut ws).await, 4403);
    assert!(
        chrono::Utc::now() >= expires_at,
        "closed before the token expired ({expires_at})"
    );
}

/// A token its holder limited in time offline (an appended `check if time($t), $t <
/// ..` with no `expires` fact) closes its socket at that time too, not at the expiry
/// the gateway signed an hour later.
#[tokio::test]
async fn the_socket_closes_4403_when_a_time_check_appended_offline_fails() {
    let (_app, mut ws, until) = socket_with_time_check("check if time($t), $t < {until};").await;
    assert_eq!(close_code(&mut ws).await, 4403);
    assert!(
        std::time::SystemTime::now() >= until,
        "closed before its time"
    );
}

/// A time check of another form than the gateway's (here `<=`) gives no exact end, so
/// the socket asks the authorizer every `LIVENESS_POLL` and closes within one of them.
#[tokio::test]
async fn the_socket_closes_4403_when_a_time_check_of_another_form_fails() {
    let (_app, mut ws, until) = socket_with_time_check("check if time($t), $t <= {until};").await;
    assert_eq!(close_code(&mut ws).await, 4403);
    let closed = std::time::SystemTime::now();
    // `<=` passes through the whole second `until`.
    let ends = until + Duration::from_secs(1);
    assert!(closed >= ends, "closed before its time");
    assert!(
        closed < ends + 3 * flashfusion_api::pipeline::LIVENESS_POLL,
        "closed {:?} after its time",
        closed.duration_since(ends)
    );
}

/// A time limit joined to an access (`check if operation("read"), time($t), $t < ..`)
/// fails for that access only, never for the token alone: the socket asks again what
/// its subscription was granted, and closes once that read is refused.
#[tokio::test]
async fn the_socket_closes_4403_when_a_time_limit_on_reading_passes() {
    let (app, ws, until) =
        socket_with_time_check(r#"check if operation("read"), time($t), $t < {until};"#).await;
    let mut ws = subscribed(&app, ws).await;
    assert_eq!(close_code(&mut ws).await, 4403);
    let closed = std::time::SystemTime::now();
    assert!(closed >= until, "closed before its time");
    assert!(
        closed < until + 3 * flashfusion_api::pipeline::LIVENESS_POLL,
        "closed {:?} after its time",
        closed.duration_since(until)
    );
}

/// An acknowledged socket of a new account whose token carries `check`, appended
/// offline, with `{until}` four seconds from now (time enough to set a subscription up
/// first); with its app, and `until`.
async fn socket_with_time_check(check: &str) -> (TestApp, WsClient, std::time::SystemTime) {
    let app = TestApp::sqlite().await;
    let (ada, _) = app.user("ada@example.com").await;
    let until = whole_seconds_from_now(4);
    let token = app.appended(
        ada.token(),
        BlockBuilder::new()
            .code_with_params(
                check,
                HashMap::from([("until".to_owned(), date(&until))]),
                HashMap::new(),
            )
            .expect("block"),
    );
    let ws = app.socket_as(&token).await;
    (app, ws, until)
}

#[tokio::test]
async fn no_connection_init_in_time_closes_4408() {
    let db = TestDb::new().await;
    let url = db.url().to_owned();
    let app = TestApp::start_with(url, Some(db), |config| {
        config.ws_init_timeout = Duration::from_millis(300);
    })
    .await;
    let mut silent = app.silent_websocket(TRANSPORT_WS).await;
    assert_eq!(close_code(&mut silent).await, 4408);
}

#[tokio::test]
async fn reusing_an_active_id_closes_4409() {
    let app = TestApp::postgres().await;
    let (ada, _) = app.user("ada@example.com").await;
    let mut ws = app
        .websocket(TRANSPORT_WS, json!({ "authToken": ada.token() }))
        .await;
    assert_eq!(ws.next().await.expect("ack")["type"], "connection_ack");
    let live = app.state.fanout.live();
    subscribe(&mut ws, "live", NOTIFICATIONS).await;
    // Once the hub counts its feed, the subscription is active (not refused).
    app.until_live("the live subscriptions never came to live + 1", |now| {
        now == live + 1
    })
    .await;
    subscribe(&mut ws, "live", NOTIFICATIONS).await;
    assert_eq!(close_code(&mut ws).await, 4409);
}

on_both_backends!(
    signing_out_elsewhere_closes_the_socket_4403,
    demoting_an_admin_closes_its_admin_socket_4403,
);

async fn demoting_an_admin_closes_its_admin_socket_4403(app: TestApp) {
    let (ada, ada_id) = app.admin("ada@example.com").await;
    let (boss, _) = app.admin("boss@example.com").await;
    let mut ws = app
        .websocket(TRANSPORT_WS, json!({ "authToken": ada.token() }))
        .await;
    assert_eq!(ws.next().await.expect("ack")["type"], "connection_ack");
    let out = boss
        .graphql(
            "mutation($i: SetUserRoleInput!) { setUserRole(input: $i) { __typename } }",
            json!({ "i": { "userId": ada_id, "role": "USER" } }),
        )
        .await;
    assert!(out["errors"].is_null(), "{out}");
    assert_eq!(close_code(&mut ws).await, 4403);
}

async fn signing_out_elsewhere_closes_the_socket_4403(app: TestApp) {
    let (ada, _) = app.user("ada@example.com").await;
    let mut ws = app
        .websocket(TRANSPORT_WS, json!({ "authToken": ada.token() }))
        .await;
    assert_eq!(ws.next().await.expect("ack")["type"], "connection_ack");
    let out = ada.graphql("mutation { signOut }", json!({})).await;
    assert_eq!(out["data"]["signOut"], true, "{out}");
    assert_eq!(close_code(&mut ws).await, 4403);
}

/// A revocation and a change its token could see, committed together: the hub sends
/// the revocation's event first, and the socket holds the change's delivery until its
/// session has been looked at, so it closes 4403 without delivering it.
#[tokio::test]
async fn a_change_committed_with_the_token_s_revocation_is_not_delivered() {
    let app = TestApp::postgres().await;
    let (ada, ada_id) = app.user("ada@example.com").await;
    let mut ws = subscribed(&app, app.socket_as(ada.token()).await).await;
    revoke_with(
        &app,
        &ada,
        &ada_id,
        &format!(
            "insert into notifications (id, user_id, kind, title) \
             values (gen_random_uuid(), '{ada_id}', 'k', 'after the revocation')"
        ),
    )
    .await;
    assert_eq!(close_code(&mut ws).await, 4403);
}

/// A look at the session that the database cannot answer (here the function that
/// checks a session is gone for a while; the hub reads events without it) is tried
/// again, deliveries held meanwhile: a token revoked then still closes its socket once
/// the database answers.
#[tokio::test]
async fn a_session_look_the_database_fails_is_tried_again() {
    let app = TestApp::postgres().await;
    let (ada, ada_id) = app.user("ada@example.com").await;
    let mut ws = subscribed(&app, app.socket_as(ada.token()).await).await;
    let failed = || Scrape::of_state(&app).sum("flashfusion_session_looks_failed_total", &[]);
    let before = failed();
    let conn = app.db.as_ref().expect("postgres").connect().await;
    let rename = |from: &str, to: &str| format!("alter function {from} rename to {to}");
    let (checks, away) = (
        "flashfusion_session_is_current",
        "flashfusion_session_is_away",
    );
    sea_orm::ConnectionTrait::execute_unprepared(&conn, &rename(checks, away))
        .await
        .expect("the session check gone");
    revoke(&app, &ada, &ada_id).await;
    eventually("the look never failed", || {
        std::future::ready(failed() > before)
    })
    .await;
    sea_orm::ConnectionTrait::execute_unprepared(&conn, &rename(away, checks))
        .await
        .expect("the session check back");
    assert_eq!(close_code(&mut ws).await, 4403);
}

/// Revokes `client`'s token (of account `id`) behind the gateway's back, as an operator
/// would, with `also` in the same transaction.
async fn revoke_with(app: &TestApp, client: &Client, id: &str, also: &str) {
    let session = app
        .state
        .tokens
        .verify(client.token())
        .expect("a valid token");
    let own = session.own_revocation_id().expect("a revocation id");
    let conn = app.db.as_ref().expect("postgres").connect().await;
    sea_orm::ConnectionTrait::execute_unprepared(
        &conn,
        &format!(
            "insert into revoked_tokens (revocation_id, user_id, expires_at) \
             values ('{own}', '{id}', now() + interval '1 day'); {also}"
        ),
    )
    .await
    .expect("a revocation");
}

/// On SQLite nothing tells the hub of a write made outside this gateway's pipeline (an
/// operator's `sqlite3` shell, another process on the file); it looks every second, so
/// a revocation written so still closes the socket.
#[tokio::test]
async fn a_revocation_written_behind_the_gateway_s_back_closes_the_socket_on_sqlite() {
    let app = TestApp::sqlite().await;
    let (ada, ada_id) = app.user("ada@example.com").await;
    let mut ws = subscribed(&app, app.socket_as(ada.token()).await).await;
    let session = app.state.tokens.verify(ada.token()).expect("a valid token");
    let own = session.own_revocation_id().expect("a revocation id");
    let account = ada_id.replace('-', "");
    sea_orm::ConnectionTrait::execute_unprepared(
        app.state.db.connection(),
        &format!(
            "insert into revoked_tokens (revocation_id, user_id, expires_at) \
             values ('{own}', X'{account}', '2100-01-01T00:00:00Z')"
        ),
    )
    .await
    .expect("a revocation");
    assert_eq!(close_code(&mut ws).await, 4403);
}

/// [`revoke_with`] nothing else.
async fn revoke(app: &TestApp, client: &Client, id: &str) {
    revoke_with(app, client, id, "").await;
}

#[tokio::test]
async fn a_second_connection_init_closes_4429() {
    let app = TestApp::sqlite().await;
    let mut ws = acknowledged(&app, TRANSPORT_WS).await;
    ws.send(json!({ "type": "connection_init", "payload": {} }))
        .await;
    assert_eq!(close_code(&mut ws).await, 4429);
}

#[tokio::test]
async fn ping_is_answered_with_pong_and_its_payload() {
    let app = TestApp::sqlite().await;
    // Allowed before connection_init too.
    let mut ws = app.silent_websocket(TRANSPORT_WS).await;
    ws.send(json!({ "type": "ping", "payload": { "seq": 7 } }))
        .await;
    assert_eq!(
        ws.next().await.expect("pong"),
        json!({ "type": "pong", "payload": { "seq": 7 } })
    );
    ws.send(json!({ "type": "pong" })).await;
    ws.send(json!({ "type": "ping" })).await;
    assert_eq!(ws.next().await.expect("pong"), json!({ "type": "pong" }));
}

/// A query's `complete` follows its `next` at once. With Nagle's algorithm on (the
/// gateway's accepted connections turn it off, `app::accepting`), the second of two
/// small frames waits until the client acknowledges the first, and the client delays
/// that ACK by 40 ms or more: every query over a socket took that long to complete.
/// The median of seven gaps is compared with 30 ms, well under that delay and far above
/// the microseconds between the two writes.
#[tokio::test]
async fn a_query_completes_without_waiting_for_the_client_to_acknowledge_its_data() {
    let app = TestApp::sqlite().await;
    let mut ws = acknowledged(&app, TRANSPORT_WS).await;
    let mut gaps = Vec::new();
    for round in 0..7 {
        let id = format!("q{round}");
        subscribe(&mut ws, &id, "{ __typename }").await;
        let next = ws.next().await.expect("next");
        assert_eq!(next["type"], "next", "{next}");
        let data_at = Instant::now();
        let complete = ws.next().await.expect("complete");
        gaps.push(data_at.elapsed());
        assert_eq!(complete, json!({ "type": "complete", "id": id }));
    }
    gaps.sort();
    assert!(gaps[3] < Duration::from_millis(30), "{gaps:?}");
}

#[tokio::test]
async fn a_query_is_next_then_complete_and_a_refusal_is_one_error() {
    let app = TestApp::sqlite().await;
    let mut ws = acknowledged(&app, TRANSPORT_WS).await;
    subscribe(&mut ws, "q", "{ __typename }").await;
    let next = ws.next().await.expect("next");
    assert_eq!(next["type"], "next", "{next}");
    assert_eq!(next["id"], "q");
    assert_eq!(next["payload"]["data"]["__typename"], "Query");
    assert_eq!(
        ws.next().await.expect("complete"),
        json!({ "type": "complete", "id": "q" })
    );

    // Refused before execution (validation): `error` with the errors array, no `complete`.
    subscribe(&mut ws, "bad", "{ noSuchField }").await;
    let error = ws.next().await.expect("error");
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["id"], "bad");
    assert_eq!(error["payload"][0]["extensions"]["code"], "BAD_USER_INPUT");
    ws.send(json!({ "type": "ping" })).await;
    assert_eq!(
        ws.next().await.expect("pong, not a complete")["type"],
        "pong"
    );
    // The refused id is free again.
    subscribe(&mut ws, "bad", "{ __typename }").await;
    assert_eq!(ws.next().await.expect("next")["type"], "next");
}

#[tokio::test]
async fn beyond_the_socket_limits_an_operation_is_refused_not_queued() {
    let db = TestDb::new().await;
    let url = db.url().to_owned();
    let app = TestApp::start_with(url, Some(db), |config| {
        config.ws_max_operations = 0;
        config.ws_max_subscriptions = 0;
    })
    .await;
    let mut ws = acknowledged(&app, TRANSPORT_WS).await;
    for (id, query, setting) in [
        ("q", "{ __typename }", "FLASHFUSION_WS_MAX_OPERATIONS"),
        ("s", NOTIFICATIONS, "FLASHFUSION_WS_MAX_SUBSCRIPTIONS"),
    ] {
        subscribe(&mut ws, id, query).await;
        let error = ws.next().await.expect("error");
        assert_eq!(error["type"], "error", "{error}");
        assert_eq!(error["id"], id);
        assert_eq!(error["payload"][0]["extensions"]["code"], "RATE_LIMITED");
        let message = error["payload"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(setting), "{message}");
    }
}

#[tokio::test]
async fn completing_a_subscription_drops_it_and_frees_its_place() {
    let db = TestDb::new().await;
    let url = db.url().to_owned();
    let app = TestApp::start_with(url, Some(db), |config| {
        config.ws_max_subscriptions = 1;
    })
    .await;
    let (ada, _) = app.user("ada@example.com").await;
    let mut ws = app
        .websocket(TRANSPORT_WS, json!({ "authToken": ada.token() }))
        .await;
    assert_eq!(ws.next().await.expect("ack")["type"], "connection_ack");
    let live = app.state.fanout.live();
    subscribe(&mut ws, "a", NOTIFICATIONS).await;
    app.until_live("the live subscriptions never came to live + 1", |now| {
        now == live + 1
    })
    .await;
    subscribe(&mut ws, "b", NOTIFICATIONS).await;
    let error = ws.next().await.expect("error");
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["id"], "b");
    assert_eq!(error["payload"][0]["extensions"]["code"], "RATE_LIMITED");

    ws.send(json!({ "type": "complete", "id": "a" })).await;
    app.until_live("the live subscriptions never came to live", |now| {
        now == live
    })
    .await;
    subscribe(&mut ws, "b", NOTIFICATIONS).await;
    app.until_live("the live subscriptions never came to live + 1", |now| {
        now == live + 1
    })
    .await;
    // Nothing was sent for `a` after the client completed it: the next message is pong.
    ws.send(json!({ "type": "ping" })).await;
    assert_eq!(ws.next().await.expect("pong"), json!({ "type": "pong" }));
}

#[tokio::test]
async fn the_legacy_protocol_still_works() {
    let app = TestApp::postgres().await;
    let (ada, _) = app.user("ada@example.com").await;
    let mut ws = app
        .websocket(LEGACY, json!({ "authToken": ada.token() }))
        .await;
    assert_eq!(ws.next().await.expect("ack")["type"], "connection_ack");
    ws.send(json!({ "id": "1", "type": "start", "payload": { "query": ME } }))
        .await;
    let data = ws.next().await.expect("data");
    assert_eq!(data["type"], "data", "{data}");
    assert_eq!(data["payload"]["data"]["me"]["email"], "ada@example.com");
    assert_eq!(
        ws.next().await.expect("complete"),
        json!({ "type": "complete", "id": "1" })
    );
    ws.send(json!({ "type": "connection_terminate" })).await;
    assert_eq!(close_code(&mut ws).await, 1000);

    // A refused init says why in connection_error, then closes.
    let mut ws = app
        .websocket(LEGACY, json!({ "authToken": "garbage" }))
        .await;
    let error: Value = ws.next().await.expect("connection_error");
    assert_eq!(error["type"], "connection_error", "{error}");
    assert_eq!(close_code(&mut ws).await, 4403);
}

#[tokio::test]
async fn a_message_over_the_body_limit_ends_the_socket() {
    let db = TestDb::new().await;
    let url = db.url().to_owned();
    let app = TestApp::start_with(url, Some(db), |config| {
        config.max_body_bytes = 1024;
    })
    .await;
    let mut ws = acknowledged(&app, TRANSPORT_WS).await;
    let padding = "x".repeat(2048);
    subscribe(&mut ws, "big", &format!("{{ __typename }} # {padding}")).await;
    // The WebSocket layer refuses the frame and drops the connection (1006): no answer.
    let code = close_code(&mut ws).await;
    assert_ne!(code, 1000, "not a normal closure");
}
