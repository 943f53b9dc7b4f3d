//! Provider API keys: who may list, create and revoke them, that the secret is never
//! shown again, and that only a service gets it back, for a running task.

use flashfusion_tests::{Actors, TestApp};
use serde_json::{Value, json};

use crate::{
    code,
    fixtures::{all, outcome, task, usage_count},
};

on_both_backends!(
    keys_are_their_owners_alone,
    bad_key_input_is_refused_without_echoing_the_secret,
    only_a_service_gets_a_running_tasks_key,
);

pub const CREATE: &str = "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { apiKey { id label provider aiService { slug } hint lastUsedAt revokedAt createdAt } } }";
const MINE: &str = "{ myApiKeys { nodes { id label hint revokedAt lastUsedAt } } }";
const REVOKE: &str = "mutation($id: ID!) { revokeApiKey(id: $id) { apiKey { id revokedAt } } }";
pub const CREDENTIAL: &str =
    "mutation($i: AgentTaskCredentialInput!) { agentTaskCredential(input: $i) { secret } }";
/// Claude Sonnet in the seed catalog (provider `anthropic`).
pub const SONNET: &str = "01936b2a-0000-7000-8000-000000000002";

pub fn key_input(label: &str, secret: &str) -> Value {
    json!({ "i": { "label": label, "provider": "Anthropic", "aiServiceId": SONNET, "secret": secret } })
}

async fn keys_are_their_owners_alone(app: TestApp) {
    let a = Actors::new(&app).await;
    let created = a
        .owner
        .graphql(CREATE, key_input("  laptop ", "sk-ant-secret-0001-WXYZ"))
        .await;
    let key = &created["data"]["createApiKey"]["apiKey"];
    assert_eq!(key["label"], "laptop", "{created}");
    assert_eq!(key["provider"], "anthropic");
    assert_eq!(key["hint"], "WXYZ");
    assert_eq!(key["aiService"]["slug"], "anthropic-claude-sonnet");
    assert_eq!(key["revokedAt"], Value::Null);
    assert!(!created.to_string().contains("secret-0001"), "{created}");
    let id = key["id"].as_str().expect("id").to_owned();

    // myApiKeys: the owner's own keys only; tokens need resource("api_keys").
    for (who, client) in all(&a) {
        let response = client.graphql(MINE, json!({})).await;
        let expected = match who {
            "anonymous" => "UNAUTHENTICATED",
            "service" | "other-project token" => "FORBIDDEN",
            _ => "ok",
        };
        assert_eq!(outcome(&response), expected, "{who}: {response}");
        if expected == "ok" {
            let ids: Vec<&Value> = response["data"]["myApiKeys"]["nodes"]
                .as_array()
                .expect("list")
                .iter()
                .map(|k| &k["id"])
                .collect();
            let sees = ids.iter().any(|k| **k == id);
            assert_eq!(sees, matches!(who, "owner" | "read-only token"), "{who}");
        }
    }

    // createApiKey: any account for itself, never a service or a narrowed token.
    for (who, client) in all(&a) {
        let response = client
            .graphql(CREATE, key_input("mine", &format!("sk-{who}-key-abcd")))
            .await;
        let expected = match who {
            "anonymous" => "UNAUTHENTICATED",
            "service" | "read-only token" | "other-project token" => "FORBIDDEN",
            _ => "ok",
        };
        assert_eq!(outcome(&response), expected, "{who}: {response}");
    }
    let bobs = a.other.graphql(MINE, json!({})).await;
    assert_eq!(
        bobs["data"]["myApiKeys"]["nodes"].as_array().map(Vec::len),
        Some(1)
    );

    // revokeApiKey of the owner's key: invisible to everyone else.
    for (who, client) in all(&a) {
        if who == "owner" {
            continue;
        }
        let response = client.graphql(REVOKE, json!({ "id": id })).await;
        let expected = match who {
            "anonymous" => "UNAUTHENTICATED",
            "service" | "read-only token" | "other-project token" => "FORBIDDEN",
            _ => "NOT_FOUND",
        };
        assert_eq!(outcome(&response), expected, "{who}: {response}");
    }
    let revoked = a.owner.graphql(REVOKE, json!({ "id": id })).await;
    let first = revoked["data"]["revokeApiKey"]["apiKey"]["revokedAt"].clone();
    assert!(first.is_string(), "{revoked}");
    // Revoking twice is fine and keeps the first time.
    let again = a.owner.graphql(REVOKE, json!({ "id": id })).await;
    assert_eq!(again["data"]["revokeApiKey"]["apiKey"]["revokedAt"], first);
    let listed = a.owner.graphql(MINE, json!({})).await;
    let keys = listed["data"]["myApiKeys"]["nodes"]
        .as_array()
        .expect("list");
    assert_eq!(keys.len(), 2, "revoked keys stay listed: {listed}");
    assert_eq!(keys[1]["id"], id, "newest first");
    assert_eq!(keys[1]["revokedAt"], first);
    // A connection like every list: paged, counted, resumable after a cursor.
    let page = a
        .owner
        .graphql(
            "{ myApiKeys(first: 1) { totalCount edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }",
            json!({}),
        )
        .await;
    let connection = &page["data"]["myApiKeys"];
    assert_eq!(connection["totalCount"], 2, "{page}");
    assert_eq!(
        connection["edges"][0]["node"]["id"], keys[0]["id"],
        "{page}"
    );
    assert_eq!(connection["pageInfo"]["hasNextPage"], true, "{page}");
    let rest = a
        .owner
        .graphql(
            "query($after: String) { myApiKeys(first: 1, after: $after) { nodes { id } } }",
            json!({ "after": connection["pageInfo"]["endCursor"] }),
        )
        .await;
    assert_eq!(
        rest["data"]["myApiKeys"]["nodes"],
        json!([{ "id": id }]),
        "{rest}"
    );
}

async fn bad_key_input_is_refused_without_echoing_the_secret(app: TestApp) {
    let (ada, _) = app.user("ada@example.com").await;
    let secret = "sk-TOPSECRET-9876";
    let cases = [
        (
            json!({ "label": " ", "provider": "openai", "secret": secret }),
            "BAD_USER_INPUT",
        ),
        (
            json!({ "label": "x", "provider": "", "secret": secret }),
            "BAD_USER_INPUT",
        ),
        (
            json!({ "label": "x", "provider": "openai", "secret": "short" }),
            "BAD_USER_INPUT",
        ),
        (
            json!({ "label": "x", "provider": "openai", "secret": format!("{secret}\nline") }),
            "BAD_USER_INPUT",
        ),
        (
            json!({ "label": "x".repeat(201), "provider": "openai", "secret": secret }),
            "BAD_USER_INPUT",
        ),
        (
            json!({ "label": "x", "provider": "openai", "aiServiceId": SONNET, "secret": secret }),
            "BAD_USER_INPUT",
        ),
        (
            json!({ "label": "x", "provider": "openai", "aiServiceId": "01936b2a-0000-7000-8000-0000000000ff", "secret": secret }),
            "NOT_FOUND",
        ),
        (
            json!({ "label": "x", "provider": "openai", "aiServiceId": "nope", "secret": secret }),
            "BAD_USER_INPUT",
        ),
    ];
    for (input, expected) in cases {
        let response = ada.graphql(CREATE, json!({ "i": input })).await;
        assert_eq!(code(&response), expected, "{input}: {response}");
        assert!(!response.to_string().contains("TOPSECRET"), "{response}");
    }
    let without_service = ada
        .graphql(
            CREATE,
            json!({ "i": { "label": "x", "provider": "OpenAI", "secret": secret } }),
        )
        .await;
    let key = &without_service["data"]["createApiKey"]["apiKey"];
    assert_eq!(key["provider"], "openai", "{without_service}");
    assert_eq!(key["aiService"], Value::Null);
    let mine = ada.graphql(MINE, json!({})).await;
    assert_eq!(
        mine["data"]["myApiKeys"]["nodes"].as_array().map(Vec::len),
        Some(1)
    );
}

async fn only_a_service_gets_a_running_tasks_key(app: TestApp) {
    let a = Actors::new(&app).await;
    let old = "sk-ant-older-key-1111";
    let new = "sk-ant-newer-key-2222";
    for secret in [old, new] {
        let created = a.owner.graphql(CREATE, key_input("k", secret)).await;
        assert_eq!(code(&created), "", "{created}");
    }
    let running = task(&app, &a.owner_id, &a.project_id, "running").await;
    let queued = task(&app, &a.owner_id, &a.project_id, "queued").await;
    let ask = |task: &str, provider: &str| json!({ "i": { "taskId": task, "provider": provider } });

    for (who, client) in all(&a) {
        if who == "service" {
            continue;
        }
        let response = client.graphql(CREDENTIAL, ask(&running, "anthropic")).await;
        let expected = if who == "anonymous" {
            "UNAUTHENTICATED"
        } else {
            "FORBIDDEN"
        };
        assert_eq!(outcome(&response), expected, "{who}: {response}");
        assert!(!response.to_string().contains("newer-key"), "{who}");
    }
    assert_eq!(usage_count(&app, "api_key.used").await, 0);

    let given = a
        .service
        .graphql(CREDENTIAL, ask(&running, "Anthropic"))
        .await;
    assert_eq!(
        given["data"]["agentTaskCredential"]["secret"], new,
        "the newest key: {given}"
    );
    assert_eq!(usage_count(&app, "api_key.used").await, 1);
    let mine = a.owner.graphql(MINE, json!({})).await;
    assert!(
        mine["data"]["myApiKeys"]["nodes"][0]["lastUsedAt"].is_string(),
        "{mine}"
    );
    assert!(
        mine["data"]["myApiKeys"]["nodes"][1]["lastUsedAt"].is_null(),
        "{mine}"
    );

    let not_running = a
        .service
        .graphql(CREDENTIAL, ask(&queued, "anthropic"))
        .await;
    assert_eq!(code(&not_running), "INVALID_TRANSITION", "{not_running}");
    let no_key = a.service.graphql(CREDENTIAL, ask(&running, "openai")).await;
    assert_eq!(code(&no_key), "NOT_FOUND", "{no_key}");
    let no_task = a
        .service
        .graphql(
            CREDENTIAL,
            ask("01936b2a-0000-7000-8000-0000000000ff", "anthropic"),
        )
        .await;
    assert_eq!(code(&no_task), "NOT_FOUND", "{no_task}");

    // Revoked keys are never handed out: the older one takes over, then none is left.
    let newest = mine["data"]["myApiKeys"]["nodes"][0]["id"].clone();
    a.owner.graphql(REVOKE, json!({ "id": newest })).await;
    let older = a
        .service
        .graphql(CREDENTIAL, ask(&running, "anthropic"))
        .await;
    assert_eq!(
        older["data"]["agentTaskCredential"]["secret"], old,
        "{older}"
    );
    let oldest = mine["data"]["myApiKeys"]["nodes"][1]["id"].clone();
    a.owner.graphql(REVOKE, json!({ "id": oldest })).await;
    let none = a
        .service
        .graphql(CREDENTIAL, ask(&running, "anthropic"))
        .await;
    assert_eq!(code(&none), "NOT_FOUND", "{none}");
}
