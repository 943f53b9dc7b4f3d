//! Authentication: sign-up, sign-in, sign-out, token verification, attenuation (online
//! and offline), and auth over WebSocket.

use std::collections::HashMap;

use biscuit_auth::{
    Biscuit, BlockBuilder, KeyPair,
    builder::{date, string},
};
use flashfusion_tests::{TestApp, scoped};
use serde_json::{Value, json};

use crate::code;

on_both_backends!(
    sign_up_refuses_bad_input_and_duplicates,
    sign_out_revokes_the_token_and_its_derivatives,
    a_derived_token_signs_out_only_itself,
    read_only_scoped_token_cannot_mutate,
    project_scoped_token_sees_only_its_project,
    offline_attenuation_is_enforced,
    offline_deny_lists_hide_projects_from_lists,
);

const ME: &str = "{ me { id email displayName role } }";
const CREATE: &str =
    "mutation($name: String!) { createProject(input: {name: $name}) { project { id } } }";

async fn sign_up(app: &TestApp, email: &str, password: &str) -> Value {
    app.anonymous()
        .graphql(
            "mutation($i: SignUpInput!) { signUp(input: $i) { token user { id email displayName role } } }",
            json!({ "i": { "email": email, "password": password, "displayName": "Ada" } }),
        )
        .await
}

async fn sign_in(app: &TestApp, email: &str, password: &str) -> Value {
    app.anonymous()
        .graphql(
            "mutation($i: SignInInput!) { signIn(input: $i) { token user { email } } }",
            json!({ "i": { "email": email, "password": password } }),
        )
        .await
}

#[tokio::test]
async fn sign_up_then_me_and_sign_in() {
    let app = TestApp::postgres().await;
    let up = sign_up(&app, "  Ada@Example.com ", "correct horse").await;
    let user = &up["data"]["signUp"]["user"];
    assert_eq!(user["email"], "ada@example.com", "{up}");
    assert_eq!(user["role"], "USER");
    let token = up["data"]["signUp"]["token"].as_str().expect("token");

    let me = app.with_token(token).graphql(ME, json!({})).await;
    assert_eq!(me["data"]["me"]["id"], user["id"]);
    assert_eq!(
        app.anonymous().graphql(ME, json!({})).await["data"]["me"],
        Value::Null
    );

    let signed_in = sign_in(&app, "ADA@example.com", "correct horse").await;
    assert_eq!(
        signed_in["data"]["signIn"]["user"]["email"],
        "ada@example.com"
    );
}

async fn sign_up_refuses_bad_input_and_duplicates(app: TestApp) {
    assert_eq!(
        code(&sign_up(&app, "not-an-email", "correct horse").await),
        "BAD_USER_INPUT"
    );
    let short = sign_up(&app, "ada@example.com", "short").await;
    assert_eq!(code(&short), "BAD_USER_INPUT");
    assert!(
        short["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("8")
    );
    assert!(sign_up(&app, "ada@example.com", "correct horse").await["errors"].is_null());
    // A taken email is refused as a malformed one is, so sign-up does not tell which
    // emails have accounts (abuse.rs has the rest).
    let again = sign_up(&app, "ADA@EXAMPLE.COM", "another one").await;
    assert_eq!(code(&again), "BAD_USER_INPUT", "{again}");
    assert_eq!(
        again,
        sign_up(&app, "not-an-email", "another one").await,
        "a taken email is answered as a malformed one"
    );
    let nul = sign_up(&app, "a\u{0}@example.com", "correct horse").await;
    assert_eq!(code(&nul), "BAD_USER_INPUT", "{nul}");
    let nul = sign_in(&app, "a\u{0}@example.com", "correct horse").await;
    assert_eq!(code(&nul), "UNAUTHENTICATED", "{nul}");
}

#[tokio::test]
async fn wrong_credentials_do_not_say_which_part_was_wrong() {
    let app = TestApp::postgres().await;
    sign_up(&app, "ada@example.com", "correct horse").await;
    let wrong_password = sign_in(&app, "ada@example.com", "wrong horse").await;
    let unknown_email = sign_in(&app, "bob@example.com", "correct horse").await;
    assert_eq!(code(&wrong_password), "UNAUTHENTICATED");
    assert_eq!(code(&unknown_email), "UNAUTHENTICATED");
    assert_eq!(
        wrong_password["errors"][0]["message"],
        unknown_email["errors"][0]["message"]
    );
}

async fn sign_out_revokes_the_token_and_its_derivatives(app: TestApp) {
    let (ada, _) = app.user("ada@example.com").await;
    let scoped = ada
        .graphql(
            "mutation { createScopedToken(input: {readOnly: true}) { token } }",
            json!({}),
        )
        .await;
    let scoped = app.with_token(
        scoped["data"]["createScopedToken"]["token"]
            .as_str()
            .expect("token"),
    );
    assert!(scoped.graphql(ME, json!({})).await["data"]["me"].is_object());

    let out = ada.graphql("mutation { signOut }", json!({})).await;
    assert_eq!(out["data"]["signOut"], true, "{out}");
    for client in [&ada, &scoped] {
        let (status, body) = client.post_json(json!({ "query": ME })).await;
        assert_eq!(code(&body), "UNAUTHENTICATED", "{body}");
        assert_eq!(status, 401);
        assert_eq!(challenge(client).await.as_deref(), Some("Bearer"));
    }
    // Signing in again gives a fresh, working token.
    let again = sign_in(&app, "ada@example.com", "correct horse").await;
    let token = again["data"]["signIn"]["token"].as_str().expect("token");
    assert!(app.with_token(token).graphql(ME, json!({})).await["data"]["me"].is_object());
}

/// A token with this user and an expiry in the past, signed by `key`.
fn token_expiring(key: &KeyPair, user_id: &str, expires: std::time::SystemTime) -> String {
    let params = HashMap::from([
        ("user".to_owned(), string(user_id)),
        ("exp".to_owned(), date(&expires)),
    ]);
    Biscuit::builder()
        .code_with_params(
            r#"user({user}); role("user"); expires({exp}); check if time($t), $t < {exp};"#,
            params,
            HashMap::new(),
        )
        .and_then(|b| b.build(key))
        .and_then(|t| t.to_base64())
        .expect("token")
}

#[tokio::test]
async fn expired_tampered_and_foreign_tokens_are_unauthenticated() {
    let app = TestApp::postgres().await;
    let (ada, id) = app.user("ada@example.com").await;
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    let future = std::time::SystemTime::now() + std::time::Duration::from_secs(600);
    let expired = token_expiring(&app.root, &id, past);
    let foreign = token_expiring(&KeyPair::new(), &id, future);
    let valid_here = token_expiring(&app.root, &id, future);
    let mut tampered = ada.token().to_owned().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");

    assert!(app.with_token(&valid_here).graphql(ME, json!({})).await["data"]["me"].is_object());
    for token in [expired, foreign, tampered, "garbage".to_owned()] {
        let (status, body) = app
            .with_token(&token)
            .post_json(json!({ "query": ME }))
            .await;
        assert_eq!(code(&body), "UNAUTHENTICATED", "{body}");
        assert_eq!(status, 401);
        let refused = app.with_token(&token);
        assert_eq!(challenge(&refused).await.as_deref(), Some("Bearer"));
    }
}

/// The `WWW-Authenticate` header of the answer to `client`'s `{ me }`, which must be
/// refused 401 (RFC 9110 §15.5.2: every 401 has one).
async fn challenge(client: &flashfusion_tests::Client) -> Option<String> {
    let request = client
        .request(reqwest::Method::POST, "/graphql")
        .bearer_auth(client.token())
        .json(&json!({ "query": ME }));
    let response = request.send().await.expect("a response");
    assert_eq!(response.status().as_u16(), 401);
    response
        .headers()
        .get("www-authenticate")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

#[tokio::test]
async fn identity_comes_from_the_authority_block_only() {
    let app = TestApp::postgres().await;
    let (ada, ada_id) = app.user("ada@example.com").await;
    let (bob, _) = app.user("bob@example.com").await;
    let secret = bob.graphql(CREATE, json!({ "name": "bob's secret" })).await;
    let secret_id = secret["data"]["createProject"]["project"]["id"].clone();

    // The holder appends a block claiming to be an admin and someone else.
    let token = Biscuit::from_base64(ada.token(), app.root.public()).expect("parse");
    let forged = token
        .append(
            BlockBuilder::new()
                .code(r#"user("00000000-0000-0000-0000-000000000000"); role("admin");"#)
                .expect("block"),
        )
        .and_then(|t| t.to_base64())
        .expect("append");
    let forged = app.with_token(&forged);
    let me = forged.graphql(ME, json!({})).await;
    assert_eq!(me["data"]["me"]["id"], ada_id.as_str());
    assert_eq!(me["data"]["me"]["role"], "USER");
    let peek = forged
        .graphql(
            "query($id: ID!) { project(id: $id) { name } }",
            json!({ "id": secret_id }),
        )
        .await;
    assert_eq!(peek["data"]["project"], Value::Null, "{peek}");
}

async fn read_only_scoped_token_cannot_mutate(app: TestApp) {
    let (ada, _) = app.user("ada@example.com").await;
    let payload = ada
        .graphql(
            "mutation { createScopedToken(input: {readOnly: true, ttlSeconds: 600}) { token expiresAt } }",
            json!({}),
        )
        .await;
    let read_only = app.with_token(
        payload["data"]["createScopedToken"]["token"]
            .as_str()
            .expect("token"),
    );
    assert!(read_only.graphql(ME, json!({})).await["data"]["me"].is_object());
    let refused = read_only.graphql(CREATE, json!({ "name": "nope" })).await;
    assert_eq!(code(&refused), "FORBIDDEN", "{refused}");
    let mine = ada
        .graphql("{ myProjects { totalCount } }", json!({}))
        .await;
    assert_eq!(
        mine["data"]["myProjects"]["totalCount"], 0,
        "nothing was written"
    );
}

async fn project_scoped_token_sees_only_its_project(app: TestApp) {
    let (ada, _) = app.user("ada@example.com").await;
    let mut ids = Vec::new();
    for name in ["one", "two"] {
        let created = ada.graphql(CREATE, json!({ "name": name })).await;
        ids.push(
            created["data"]["createProject"]["project"]["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    let payload = ada
        .graphql(
            "mutation($p: ID!) { createScopedToken(input: {projectId: $p}) { token } }",
            json!({ "p": ids[0] }),
        )
        .await;
    let scoped = app.with_token(
        payload["data"]["createScopedToken"]["token"]
            .as_str()
            .expect("token"),
    );
    let get = "query($id: ID!) { project(id: $id) { name } }";
    assert_eq!(
        scoped.graphql(get, json!({ "id": ids[0] })).await["data"]["project"]["name"],
        "one"
    );
    assert_eq!(
        scoped.graphql(get, json!({ "id": ids[1] })).await["data"]["project"],
        Value::Null
    );
    let list = scoped
        .graphql(
            "{ myProjects { totalCount edges { node { name } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        list["data"]["myProjects"],
        json!({ "totalCount": 1, "edges": [{ "node": { "name": "one" } }] }),
        "the other project is not even counted: {list}"
    );
    let update = scoped
        .graphql(
            "mutation($id: ID!) { updateProject(input: {id: $id, name: \"x\"}) { project { name } } }",
            json!({ "id": ids[1] }),
        )
        .await;
    assert_eq!(code(&update), "NOT_FOUND", "{update}");
    let create = scoped.graphql(CREATE, json!({ "name": "three" })).await;
    assert_eq!(code(&create), "FORBIDDEN", "{create}");
    let renamed = scoped
        .graphql(
            "mutation($id: ID!) { updateProject(input: {id: $id, name: \"uno\"}) { project { name } } }",
            json!({ "id": ids[0] }),
        )
        .await;
    assert_eq!(
        renamed["data"]["updateProject"]["project"]["name"], "uno",
        "{renamed}"
    );
}

#[tokio::test]
async fn scoped_token_expiry_only_shortens() {
    let app = TestApp::postgres().await;
    let (ada, _) = app.user("ada@example.com").await;
    let query =
        "mutation($ttl: Int) { createScopedToken(input: {ttlSeconds: $ttl}) { token expiresAt } }";
    let expiry = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(
            v["data"]["createScopedToken"]["expiresAt"]
                .as_str()
                .expect("expiresAt"),
        )
        .expect("rfc3339")
    };
    let parent = expiry(&ada.graphql(query, json!({ "ttl": null })).await);
    let asked_at = chrono::Utc::now();
    let short = expiry(&ada.graphql(query, json!({ "ttl": 60 })).await);
    assert!(
        short.with_timezone(&chrono::Utc) - asked_at >= chrono::Duration::seconds(60),
        "a token lives at least as long as asked: {short} from {asked_at}"
    );
    assert_eq!(
        short.timestamp_subsec_nanos(),
        0,
        "expiries are whole seconds"
    );
    let long = expiry(&ada.graphql(query, json!({ "ttl": 365 * 24 * 3600 })).await);
    assert!(short < parent, "{short} < {parent}");
    assert_eq!(
        long, parent,
        "a longer ttl is capped at the parent's expiry"
    );
    let zero = ada.graphql(query, json!({ "ttl": 0 })).await;
    assert_eq!(code(&zero), "BAD_USER_INPUT");
    let anonymous = app.anonymous().graphql(query, json!({ "ttl": 60 })).await;
    assert_eq!(code(&anonymous), "UNAUTHENTICATED");
}

async fn offline_attenuation_is_enforced(app: TestApp) {
    let (ada, _) = app.user("ada@example.com").await;
    // The holder derives a read-only token without asking the gateway.
    let read_only = app.appended(
        ada.token(),
        BlockBuilder::new()
            .code(r#"check if operation("read");"#)
            .expect("block"),
    );
    let read_only = app.with_token(&read_only);
    assert!(read_only.graphql(ME, json!({})).await["data"]["me"].is_object());
    assert_eq!(
        code(&read_only.graphql(CREATE, json!({ "name": "x" })).await),
        "FORBIDDEN"
    );

    // And one that has already expired.
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(1);
    let expired = app.appended(
        ada.token(),
        BlockBuilder::new()
            .code_with_params(
                "check if time($t), $t < {exp};",
                HashMap::from([("exp".to_owned(), date(&past))]),
                HashMap::new(),
            )
            .expect("block"),
    );
    assert_eq!(
        code(&app.with_token(&expired).graphql(ME, json!({})).await),
        "UNAUTHENTICATED"
    );
}

#[tokio::test]
async fn websocket_takes_auth_from_connection_init() {
    let app = TestApp::postgres().await;
    let (ada, _) = app.user("ada@example.com").await;
    let bearer = format!("Bearer {}", ada.token());
    for (protocol, payload, start) in [
        (
            "graphql-transport-ws",
            json!({ "Authorization": bearer }),
            "subscribe",
        ),
        ("graphql-ws", json!({ "authToken": ada.token() }), "start"),
    ] {
        let mut ws = app.websocket(protocol, payload).await;
        assert_eq!(ws.next().await.expect("ack")["type"], "connection_ack");
        ws.send(json!({ "id": "1", "type": start, "payload": { "query": ME } }))
            .await;
        let message = ws.next().await.expect("result");
        let result = &message["payload"]["data"]["me"]["email"];
        assert_eq!(result, "ada@example.com", "{protocol}: {message}");
    }
    let mut ws = app
        .websocket(
            "graphql-transport-ws",
            json!({ "Authorization": "Bearer garbage" }),
        )
        .await;
    assert!(
        ws.next().await.is_err(),
        "a bad token must not be acknowledged"
    );
    let mut ws = app.websocket("graphql-transport-ws", json!({})).await;
    assert_eq!(ws.next().await.expect("ack")["type"], "connection_ack");
    ws.send(json!({ "id": "1", "type": "subscribe", "payload": { "query": ME } }))
        .await;
    assert_eq!(
        ws.next().await.expect("result")["payload"]["data"]["me"],
        Value::Null
    );
}

async fn a_derived_token_signs_out_only_itself(app: TestApp) {
    let (ada, _) = app.user("ada@example.com").await;
    let child = app.with_token(&scoped(&ada, json!({})).await);
    let grandchild = app.with_token(&scoped(&child, json!({ "readOnly": true })).await);
    let sibling = app.with_token(&scoped(&ada, json!({})).await);
    let out = child.graphql("mutation { signOut }", json!({})).await;
    assert_eq!(out["data"]["signOut"], true, "{out}");
    assert_eq!(code(&child.graphql(ME, json!({})).await), "UNAUTHENTICATED");
    assert_eq!(
        code(&grandchild.graphql(ME, json!({})).await),
        "UNAUTHENTICATED",
        "what was derived from it dies with it"
    );
    for survivor in [&ada, &sibling] {
        let me = survivor.graphql(ME, json!({})).await;
        assert!(
            me["data"]["me"].is_object(),
            "the parent and siblings live on: {me}"
        );
    }
}

async fn offline_deny_lists_hide_projects_from_lists(app: TestApp) {
    let (ada, _) = app.user("ada@example.com").await;
    let public = |name: &'static str| {
        let ada = ada.clone();
        async move {
            let created = ada
                .graphql(
                    "mutation($n: String!) { createProject(input: {name: $n, visibility: PUBLIC}) { project { id } } }",
                    json!({ "n": name }),
                )
                .await;
            created["data"]["createProject"]["project"]["id"]
                .as_str()
                .expect("id")
                .to_owned()
        }
    };
    let secret = public("secret").await;
    public("shown").await;
    let token = Biscuit::from_base64(ada.token(), app.root.public()).expect("parse");
    let denying = token
        .append(
            BlockBuilder::new()
                .code_with_params(
                    r#"check if resource("project", $p), $p != {secret} or resource("account");"#,
                    HashMap::from([("secret".to_owned(), string(&secret))]),
                    HashMap::new(),
                )
                .expect("block"),
        )
        .and_then(|t| t.to_base64())
        .expect("append");
    let dashboard = app.with_token(&denying);
    let get = dashboard
        .graphql(
            "query($id: ID!) { project(id: $id) { name } }",
            json!({ "id": secret }),
        )
        .await;
    assert_eq!(get["data"]["project"], Value::Null);
    for list in ["myProjects", "publicProjects"] {
        let page = dashboard
            .graphql(
                &format!("{{ {list} {{ totalCount edges {{ node {{ name }} }} }} }}"),
                json!({}),
            )
            .await;
        assert_eq!(
            page["data"][list],
            json!({ "totalCount": 1, "edges": [{ "node": { "name": "shown" } }] }),
            "{list}: {page}"
        );
    }
}

#[tokio::test]
async fn expiry_is_told_from_other_refusals_however_it_is_written() {
    let app = TestApp::postgres().await;
    let (ada, _) = app.user("ada@example.com").await;
    let token = Biscuit::from_base64(ada.token(), app.root.public()).expect("parse");
    let append = |code: &str| {
        token
            .append(BlockBuilder::new().code(code).expect("block"))
            .and_then(|t| t.to_base64())
            .expect("append")
    };
    // A valid expiry combined with read-only in one check: usable for reads.
    let combined = app.with_token(&append(
        r#"check if time($t), $t < 2100-01-01T00:00:00Z, operation("read");"#,
    ));
    assert!(combined.graphql(ME, json!({})).await["data"]["me"].is_object());
    let write = combined
        .graphql(
            "mutation { createProject(input: {name: \"x\"}) { project { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&write), "FORBIDDEN", "{write}");
    // A "not before" in the future is a time refusal too, and lists obey it.
    let not_yet = app.with_token(&append(r#"check if time($t), $t > 2999-01-01T00:00:00Z;"#));
    assert_eq!(
        code(&not_yet.graphql(ME, json!({})).await),
        "UNAUTHENTICATED"
    );
    let list = not_yet
        .graphql("{ myProjects { totalCount } }", json!({}))
        .await;
    assert_eq!(code(&list), "UNAUTHENTICATED", "{list}");
    // A refusal that has nothing to do with time is FORBIDDEN, for lists as well.
    let nothing = app.with_token(&append(r#"check if operation("none");"#));
    let list = nothing
        .graphql("{ myProjects { totalCount } }", json!({}))
        .await;
    assert_eq!(code(&list), "FORBIDDEN", "{list}");
}

#[tokio::test]
async fn expensive_appended_blocks_are_refused_before_authorizing() {
    let app = TestApp::postgres().await;
    let (ada, _) = app.user("ada@example.com").await;
    let token = Biscuit::from_base64(ada.token(), app.root.public()).expect("parse");
    // Joins grow with facts to the power of a check's variables; biscuit's time limit
    // does not interrupt one join, so such a block must never reach the authorizer.
    let facts: String = (0..60).map(|i| format!("f({i});")).collect();
    let heavy = token
        .append(
            BlockBuilder::new()
                .code(format!(
                    "{facts} check if f($a), f($b), f($c), f($d), $a + $b + $c + $d == -1;"
                ))
                .expect("block"),
        )
        .and_then(|t| t.to_base64())
        .expect("append");
    let started = std::time::Instant::now();
    let (status, body) = app
        .with_token(&heavy)
        .post_json(json!({ "query": ME }))
        .await;
    assert_eq!((status, code(&body)), (401, "UNAUTHENTICATED"), "{body}");
    eprintln!("heavy token refused in {:?}", started.elapsed());
    let with_rule = token
        .append(
            BlockBuilder::new()
                .code("g($x) <- time($x);")
                .expect("block"),
        )
        .and_then(|t| t.to_base64())
        .expect("append");
    assert_eq!(
        code(&app.with_token(&with_rule).graphql(ME, json!({})).await),
        "UNAUTHENTICATED"
    );
}

#[tokio::test]
async fn a_websocket_closes_when_its_scoped_tokens_expiry_passes() {
    let app = TestApp::postgres().await;
    let (ada, _) = app.user("ada@example.com").await;
    let payload = ada
        .graphql(
            "mutation { createScopedToken(input: {ttlSeconds: 1}) { token expiresAt } }",
            json!({}),
        )
        .await;
    let token = payload["data"]["createScopedToken"]["token"]
        .as_str()
        .expect("token");
    let expires_at = chrono::DateTime::parse_from_rfc3339(
        payload["data"]["createScopedToken"]["expiresAt"]
            .as_str()
            .expect("expiresAt"),
    )
    .expect("rfc3339");
    let mut ws = app.socket_as(token).await;
    // The expiry of the appended block, not the authority's, ends the socket (4403).
    assert!(
        matches!(ws.next().await, Err(flashfusion_tests::WsEnd::Closed(4403))),
        "closed with 4403 at expiry"
    );
    assert!(chrono::Utc::now() >= expires_at, "not before {expires_at}");
}

#[tokio::test]
async fn expired_revocations_are_purged_and_live_ones_kept() {
    let app = TestApp::postgres().await;
    let (ada, _) = app.user("ada@example.com").await;
    assert_eq!(
        ada.graphql("mutation { signOut }", json!({})).await["data"]["signOut"],
        true
    );
    let conn = app.db.as_ref().expect("postgres").connect().await;
    sea_orm::ConnectionTrait::execute_unprepared(
        &conn,
        "insert into revoked_tokens (revocation_id, revoked_at, expires_at) \
         values ('00ff', now() - interval '2 days', now() - interval '1 day')",
    )
    .await
    .expect("an expired revocation");
    let purged = flashfusion_api::session::purge_expired_revocations(&app.state.db)
        .await
        .expect("purge");
    assert_eq!(purged, 1);
    assert_eq!(
        code(&ada.graphql(ME, json!({})).await),
        "UNAUTHENTICATED",
        "the live revocation stays"
    );
}

/// Failures are limited per client address and email (here every request comes from
/// 127.0.0.1); abuse.rs shows the owner is not locked out from elsewhere.
#[tokio::test]
async fn password_guessing_is_rate_limited_per_address_and_email() {
    let db = flashfusion_tests::TestDb::new().await;
    let url = db.url().to_owned();
    let app = TestApp::start_with(url, Some(db), |config| {
        config.signin_burst = 3;
        config.signin_refill = std::time::Duration::from_secs(3600);
    })
    .await;
    sign_up(&app, "ada@example.com", "correct horse").await;
    sign_up(&app, "bob@example.com", "correct horse").await;
    for _ in 0..3 {
        let wrong = sign_in(&app, "ada@example.com", "wrong horse").await;
        assert_eq!(code(&wrong), "UNAUTHENTICATED");
    }
    let limited = sign_in(&app, "ADA@example.com", "correct horse").await;
    assert_eq!(code(&limited), "RATE_LIMITED", "{limited}");
    let unknown = sign_in(&app, "nobody@example.com", "x").await;
    assert_eq!(
        code(&unknown),
        "UNAUTHENTICATED",
        "other emails are not affected"
    );
    let bob = sign_in(&app, "bob@example.com", "correct horse").await;
    assert_eq!(bob["data"]["signIn"]["user"]["email"], "bob@example.com");
}

#[tokio::test]
async fn a_claimed_expiry_does_not_shorten_a_revocation() {
    let app = TestApp::postgres().await;
    let (ada, _) = app.user("ada@example.com").await;
    // A holder appends a fact claiming the token expired long ago; no check enforces it.
    let token = Biscuit::from_base64(ada.token(), app.root.public()).expect("parse");
    let claimed = token
        .append(
            BlockBuilder::new()
                .code("expires(1970-01-01T00:00:00Z);")
                .expect("block"),
        )
        .and_then(|t| t.to_base64())
        .expect("append");
    let claimed = app.with_token(&claimed);
    assert_eq!(
        claimed.graphql("mutation { signOut }", json!({})).await["data"]["signOut"],
        true
    );
    let purged = flashfusion_api::session::purge_expired_revocations(&app.state.db)
        .await
        .expect("purge");
    assert_eq!(
        purged, 0,
        "the revocation lives as long as the signed expiry"
    );
    assert_eq!(
        code(&claimed.graphql(ME, json!({})).await),
        "UNAUTHENTICATED"
    );
}

#[tokio::test]
async fn derivation_depth_is_bounded_with_a_clear_error() {
    let app = TestApp::postgres().await;
    let (ada, _) = app.user("ada@example.com").await;
    let mut holder = ada.clone();
    for depth in 1..=4 {
        let token = scoped(&holder, json!({ "readOnly": true, "ttlSeconds": 600 })).await;
        holder = app.with_token(&token);
        assert!(
            holder.graphql(ME, json!({})).await["data"]["me"].is_object(),
            "depth {depth}"
        );
    }
    let refused = holder
        .graphql(
            "mutation { createScopedToken(input: {readOnly: true}) { token } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&refused), "BAD_USER_INPUT", "{refused}");
}

#[tokio::test]
async fn me_reports_the_role_the_token_acts_with() {
    let app = TestApp::postgres().await;
    let (admin, admin_id) = app.admin("root@example.com").await;
    assert_eq!(
        admin.graphql("{ me { role } }", json!({})).await["data"]["me"]["role"],
        "ADMIN"
    );
    let as_user = app.with_token(&app.mint(&admin_id, flashfusion_api::auth::Role::User));
    assert_eq!(
        as_user.graphql("{ me { role } }", json!({})).await["data"]["me"]["role"],
        "USER"
    );
}
