//! The catalogs: everyone reads active AI services and agents; admins read inactive
//! ones and write; every other caller is refused with the right code.

use flashfusion_api::auth::Role;
use flashfusion_tests::TestApp;
use serde_json::{Value, json};

use crate::code;

on_both_backends!(
    everyone_reads_active_entries,
    only_admins_write_the_catalogs,
    inactive_entries_are_for_admins_only,
    catalog_input_is_validated,
    a_task_still_names_its_agent_after_the_agent_is_retired,
);

const CREATE_SERVICE: &str = "mutation($i: CreateAiServiceInput!) { createAiService(input: $i) { aiService { id slug inputPricePer1k outputPricePer1k capabilities isActive } } }";
const UPDATE_SERVICE: &str = "mutation($i: UpdateAiServiceInput!) { updateAiService(input: $i) { aiService { id name inputPricePer1k isActive } } }";
const CREATE_AGENT: &str = "mutation($i: CreateAgentInput!) { createAgent(input: $i) { agent { id slug config isActive } } }";
const UPDATE_AGENT: &str = "mutation($i: UpdateAgentInput!) { updateAgent(input: $i) { agent { id description isActive } } }";

fn new_service(slug: &str) -> Value {
    json!({ "slug": slug, "name": "Model", "provider": "acme", "model": "m-1",
            "capabilities": ["code"], "inputPricePer1k": "0.003", "outputPricePer1k": "0.015" })
}

async fn everyone_reads_active_entries(app: TestApp) {
    let (user, user_id) = app.user("ada@example.com").await;
    let service = app.with_token(&app.mint(&user_id, Role::Service));
    for client in [app.anonymous(), user, service] {
        let read = client
            .graphql(
                "{ aiServices { slug inputPricePer1k } agents { slug config } }",
                json!({}),
            )
            .await;
        assert_eq!(
            read["data"]["aiServices"].as_array().map(Vec::len),
            Some(4),
            "{read}"
        );
        assert_eq!(
            read["data"]["agents"].as_array().map(Vec::len),
            Some(5),
            "{read}"
        );
        assert!(
            read["data"]["aiServices"][0]["inputPricePer1k"].is_string(),
            "{read}"
        );
    }
}

async fn only_admins_write_the_catalogs(app: TestApp) {
    let (admin, _) = app.admin("root@example.com").await;
    let (user, user_id) = app.user("ada@example.com").await;
    let service = app.with_token(&app.mint(&user_id, Role::Service));
    let read_only_admin =
        app.with_token(&flashfusion_tests::scoped(&admin, json!({ "readOnly": true })).await);
    for (client, expected) in [
        (app.anonymous(), "UNAUTHENTICATED"),
        (user, "FORBIDDEN"),
        (service, "FORBIDDEN"),
        (read_only_admin, "FORBIDDEN"),
    ] {
        let refused = client
            .graphql(CREATE_SERVICE, json!({ "i": new_service("nope") }))
            .await;
        assert_eq!(code(&refused), expected, "{refused}");
        let refused = client
            .graphql(
                CREATE_AGENT,
                json!({ "i": { "slug": "nope", "name": "N" } }),
            )
            .await;
        assert_eq!(code(&refused), expected, "{refused}");
    }
    let created = admin
        .graphql(CREATE_SERVICE, json!({ "i": new_service("acme-m1") }))
        .await;
    let service = &created["data"]["createAiService"]["aiService"];
    assert_eq!(service["inputPricePer1k"], "0.003", "{created}");
    assert_eq!(service["capabilities"], json!(["code"]), "{created}");
    let updated = admin
        .graphql(
            UPDATE_SERVICE,
            json!({ "i": { "id": service["id"], "name": "Renamed", "inputPricePer1k": "0.004" } }),
        )
        .await;
    assert_eq!(
        updated["data"]["updateAiService"]["aiService"],
        json!({ "id": service["id"], "name": "Renamed", "inputPricePer1k": "0.004", "isActive": true }),
        "{updated}"
    );
    let agent = admin
        .graphql(
            CREATE_AGENT,
            json!({ "i": { "slug": "linter", "name": "Linter", "config": { "strict": true } } }),
        )
        .await;
    let agent = &agent["data"]["createAgent"]["agent"];
    assert_eq!(agent["config"], json!({ "strict": true }), "{agent}");
    let updated = admin
        .graphql(
            UPDATE_AGENT,
            json!({ "i": { "id": agent["id"], "description": "Lints" } }),
        )
        .await;
    assert_eq!(
        updated["data"]["updateAgent"]["agent"]["description"], "Lints",
        "{updated}"
    );
    let missing = admin
        .graphql(
            UPDATE_AGENT,
            json!({ "i": { "id": uuid::Uuid::now_v7().to_string(), "name": "x" } }),
        )
        .await;
    assert_eq!(code(&missing), "NOT_FOUND", "{missing}");
}

async fn inactive_entries_are_for_admins_only(app: TestApp) {
    let (admin, _) = app.admin("root@example.com").await;
    let (user, _) = app.user("ada@example.com").await;
    let created = admin
        .graphql(
            CREATE_AGENT,
            json!({ "i": { "slug": "retired", "name": "Retired", "isActive": false } }),
        )
        .await;
    assert_eq!(
        created["data"]["createAgent"]["agent"]["isActive"], false,
        "{created}"
    );
    let slugs = |v: &Value| -> Vec<String> {
        v["data"]["agents"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x["slug"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let all = admin
        .graphql("{ agents(includeInactive: true) { slug } }", json!({}))
        .await;
    assert!(slugs(&all).contains(&"retired".to_owned()), "{all}");
    let active = admin.graphql("{ agents { slug } }", json!({})).await;
    assert!(!slugs(&active).contains(&"retired".to_owned()), "{active}");
    for client in [user, app.anonymous()] {
        let refused = client
            .graphql("{ agents(includeInactive: true) { slug } }", json!({}))
            .await;
        assert_eq!(code(&refused), "FORBIDDEN", "{refused}");
        let listed = client.graphql("{ agents { slug } }", json!({})).await;
        assert!(!slugs(&listed).contains(&"retired".to_owned()), "{listed}");
    }
}

async fn catalog_input_is_validated(app: TestApp) {
    let (admin, _) = app.admin("root@example.com").await;
    let mut negative = new_service("neg");
    negative["inputPricePer1k"] = json!("-1");
    let mut bad_slug = new_service("Bad Slug");
    bad_slug["slug"] = json!("Bad Slug");
    for input in [negative, bad_slug] {
        let refused = admin.graphql(CREATE_SERVICE, json!({ "i": input })).await;
        assert_eq!(code(&refused), "BAD_USER_INPUT", "{refused}");
    }
    let config = admin
        .graphql(
            CREATE_AGENT,
            json!({ "i": { "slug": "x", "name": "X", "config": [1, 2] } }),
        )
        .await;
    assert_eq!(code(&config), "BAD_USER_INPUT", "{config}");
    let duplicate = admin
        .graphql(CREATE_SERVICE, json!({ "i": new_service("openai-gpt-4o") }))
        .await;
    assert_eq!(code(&duplicate), "CONFLICT", "{duplicate}");
}

async fn a_task_still_names_its_agent_after_the_agent_is_retired(app: TestApp) {
    let cast = flashfusion_tests::Actors::new(&app).await;
    let created = cast
        .owner
        .graphql(
            "mutation($p: ID!) { createAgentTask(input: {projectId: $p, agentSlug: \"doc-writer\", title: \"t\"}) { task { id agent { id } } } }",
            json!({ "p": cast.project_id }),
        )
        .await;
    let task = &created["data"]["createAgentTask"]["task"];
    let retired = cast
        .admin
        .graphql(
            "mutation($a: ID!) { updateAgent(input: {id: $a, isActive: false}) { agent { isActive } } }",
            json!({ "a": task["agent"]["id"] }),
        )
        .await;
    assert_eq!(
        retired["data"]["updateAgent"]["agent"]["isActive"], false,
        "{retired}"
    );
    const READ: &str = "query($t: ID!) { agentTask(id: $t) { agent { slug isActive } } }";
    for client in [&cast.owner, &cast.admin, &cast.service] {
        let read = client.graphql(READ, json!({ "t": task["id"] })).await;
        assert_eq!(
            read["data"]["agentTask"]["agent"],
            json!({ "slug": "doc-writer", "isActive": false }),
            "{read}"
        );
    }
    // The catalog itself no longer lists it for the owner.
    let listed = cast.owner.graphql("{ agents { slug } }", json!({})).await;
    assert!(!listed.to_string().contains("doc-writer"), "{listed}");
}
