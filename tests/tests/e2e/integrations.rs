//! Integrations: the owner's alone, credentials write-only, one per provider.

use flashfusion_tests::{Actors, TestApp};
use serde_json::{Value, json};

use crate::{
    code,
    fixtures::{all, outcome},
};

on_both_backends!(
    integrations_are_their_owners_alone,
    credentials_are_write_only_and_providers_unique,
);

pub const CONNECT: &str = "mutation($i: ConnectIntegrationInput!) { connectIntegration(input: $i) { integration { id provider config status hasCredentials createdAt updatedAt } } }";
const MINE: &str = "{ myIntegrations { nodes { id provider config status hasCredentials } } }";
const UPDATE: &str = "mutation($i: UpdateIntegrationInput!) { updateIntegration(input: $i) { integration { id config hasCredentials } } }";
const DISCONNECT: &str = "mutation($id: ID!) { disconnectIntegration(id: $id) { deletedId } }";

async fn integrations_are_their_owners_alone(app: TestApp) {
    let a = Actors::new(&app).await;
    let connected = a
        .owner
        .graphql(
            CONNECT,
            json!({ "i": { "provider": "GitHub", "config": { "org": "acme" }, "credentials": "ghp_SECRETTOKEN" } }),
        )
        .await;
    let integration = &connected["data"]["connectIntegration"]["integration"];
    assert_eq!(integration["provider"], "github", "{connected}");
    assert_eq!(integration["config"], json!({ "org": "acme" }));
    assert_eq!(integration["status"], "CONNECTED");
    assert_eq!(integration["hasCredentials"], true);
    let id = integration["id"].as_str().expect("id").to_owned();

    for (who, client) in all(&a) {
        let response = client.graphql(MINE, json!({})).await;
        let expected = match who {
            "anonymous" => "UNAUTHENTICATED",
            "service" | "other-project token" => "FORBIDDEN",
            _ => "ok",
        };
        assert_eq!(outcome(&response), expected, "{who}: {response}");
        if expected == "ok" {
            let sees = response["data"]["myIntegrations"]["nodes"]
                .as_array()
                .expect("list")
                .iter()
                .any(|i| i["id"] == id);
            assert_eq!(sees, matches!(who, "owner" | "read-only token"), "{who}");
        }
    }
    for (who, client) in all(&a) {
        let response = client
            .graphql(CONNECT, json!({ "i": { "provider": "vercel" } }))
            .await;
        let expected = match who {
            "anonymous" => "UNAUTHENTICATED",
            "service" | "read-only token" | "other-project token" => "FORBIDDEN",
            _ => "ok",
        };
        assert_eq!(outcome(&response), expected, "{who}: {response}");
    }
    let change = json!({ "i": { "id": id, "config": { "org": "stolen" } } });
    for (who, client) in all(&a) {
        if who == "owner" {
            continue;
        }
        let expected = match who {
            "anonymous" => "UNAUTHENTICATED",
            "service" | "read-only token" | "other-project token" => "FORBIDDEN",
            _ => "NOT_FOUND",
        };
        let updated = client.graphql(UPDATE, change.clone()).await;
        assert_eq!(outcome(&updated), expected, "update by {who}: {updated}");
        let deleted = client.graphql(DISCONNECT, json!({ "id": id })).await;
        assert_eq!(
            outcome(&deleted),
            expected,
            "disconnect by {who}: {deleted}"
        );
    }
    let mine = a.owner.graphql(MINE, json!({})).await;
    let github = mine["data"]["myIntegrations"]["nodes"]
        .as_array()
        .expect("list")
        .iter()
        .find(|i| i["id"] == id)
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(
        github["config"],
        json!({ "org": "acme" }),
        "untouched: {mine}"
    );

    let gone = a.owner.graphql(DISCONNECT, json!({ "id": id })).await;
    assert_eq!(
        gone["data"]["disconnectIntegration"]["deletedId"], id,
        "{gone}"
    );
    let again = a.owner.graphql(DISCONNECT, json!({ "id": id })).await;
    assert_eq!(code(&again), "NOT_FOUND");
}

async fn credentials_are_write_only_and_providers_unique(app: TestApp) {
    let (ada, _) = app.user("ada@example.com").await;
    let (bob, _) = app.user("bob@example.com").await;
    let plain = ada
        .graphql(CONNECT, json!({ "i": { "provider": "slack" } }))
        .await;
    let integration = &plain["data"]["connectIntegration"]["integration"];
    assert_eq!(integration["config"], json!({}), "{plain}");
    assert_eq!(integration["hasCredentials"], false);
    let id = integration["id"].clone();

    let duplicate = ada
        .graphql(CONNECT, json!({ "i": { "provider": "Slack" } }))
        .await;
    assert_eq!(code(&duplicate), "CONFLICT", "{duplicate}");
    let bobs = bob
        .graphql(CONNECT, json!({ "i": { "provider": "slack" } }))
        .await;
    assert_eq!(code(&bobs), "", "another user's slack is theirs: {bobs}");

    let with = ada
        .graphql(
            UPDATE,
            json!({ "i": { "id": id, "credentials": "xoxb-SECRET" } }),
        )
        .await;
    let updated = &with["data"]["updateIntegration"]["integration"];
    assert_eq!(updated["hasCredentials"], true, "{with}");
    assert_eq!(updated["config"], json!({}), "an omitted config stays");
    assert!(!with.to_string().contains("xoxb"), "{with}");
    let configured = ada
        .graphql(
            UPDATE,
            json!({ "i": { "id": id, "config": { "channel": "ops" } } }),
        )
        .await;
    let updated = &configured["data"]["updateIntegration"]["integration"];
    assert_eq!(updated["hasCredentials"], true, "omitted credentials stay");
    assert_eq!(updated["config"], json!({ "channel": "ops" }));
    let cleared = ada
        .graphql(UPDATE, json!({ "i": { "id": id, "credentials": null } }))
        .await;
    assert_eq!(
        cleared["data"]["updateIntegration"]["integration"]["hasCredentials"], false,
        "{cleared}"
    );

    for input in [
        json!({ "provider": "x", "config": [1, 2] }),
        json!({ "provider": "x", "config": "text" }),
        json!({ "provider": "x", "config": { "org": "nul\u{0}" } }),
        json!({ "provider": " " }),
        json!({ "provider": "x", "credentials": "  " }),
        json!({ "provider": "x", "config": { "big": "y".repeat(20_000) } }),
    ] {
        let refused = ada.graphql(CONNECT, json!({ "i": input })).await;
        assert_eq!(code(&refused), "BAD_USER_INPUT", "{input}: {refused}");
    }
    let listed = ada.graphql(MINE, json!({})).await;
    assert_eq!(
        listed["data"]["myIntegrations"]["nodes"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{listed}"
    );
}
