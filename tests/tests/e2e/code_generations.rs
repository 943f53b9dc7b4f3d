//! Code generations: the owner asks on their own project, the service moves them along
//! the state machine, completion is priced exactly and recorded as usage.

use flashfusion_tests::{Actors, Client, TestApp};
use serde_json::{Value, json};

use crate::{
    api_keys::SONNET,
    code,
    fixtures::{all, outcome, usage_count},
};

on_both_backends!(
    generations_per_actor,
    the_state_machine_moves_forward_only,
    completion_is_priced_exactly_and_recorded,
    a_retired_ai_service_still_prices_its_running_generation,
);

const CREATE: &str = "mutation($i: CreateCodeGenerationInput!) { createCodeGeneration(input: $i) { codeGeneration { id status prompt language tokensIn tokensOut cost project { id } aiService { provider } } } }";
const GET: &str = "query($id: ID!) { codeGeneration(id: $id) { id status cost output error } }";
const LIST: &str = "query($p: ID, $s: GenerationStatus) { codeGenerations(projectId: $p, status: $s) { totalCount edges { node { id } } } }";
const START: &str =
    "mutation($id: ID!) { startCodeGeneration(id: $id) { codeGeneration { id status } } }";
const COMPLETE: &str = "mutation($i: CompleteCodeGenerationInput!) { completeCodeGeneration(input: $i) { codeGeneration { id status output tokensIn tokensOut cost durationMs } } }";
const FAIL: &str = "mutation($i: FailCodeGenerationInput!) { failCodeGeneration(input: $i) { codeGeneration { id status error } } }";

async fn create(client: &Client, project: &str) -> Value {
    client
        .graphql(
            CREATE,
            json!({ "i": { "projectId": project, "aiServiceId": SONNET, "prompt": "write a parser", "language": "rust" } }),
        )
        .await
}

async fn created(client: &Client, project: &str) -> String {
    let response = create(client, project).await;
    response["data"]["createCodeGeneration"]["codeGeneration"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("createCodeGeneration failed: {response}"))
        .to_owned()
}

fn complete(id: &str, tokens_in: i64, tokens_out: i64) -> Value {
    json!({ "i": { "id": id, "output": "fn main() {}", "tokensIn": tokens_in, "tokensOut": tokens_out, "durationMs": 1500 } })
}

async fn generations_per_actor(app: TestApp) {
    let a = Actors::new(&app).await;
    let first = create(&a.owner, &a.project_id).await;
    let generation = &first["data"]["createCodeGeneration"]["codeGeneration"];
    assert_eq!(generation["status"], "PENDING", "{first}");
    assert_eq!(generation["cost"], "0");
    assert_eq!(generation["project"]["id"], a.project_id.as_str());
    assert_eq!(generation["aiService"]["provider"], "anthropic");
    let id = generation["id"].as_str().expect("id").to_owned();

    for (who, client) in all(&a) {
        let response = create(client, &a.project_id).await;
        let expected = match who {
            "anonymous" => "UNAUTHENTICATED",
            "other user" | "other-project token" => "NOT_FOUND",
            "owner" => "ok",
            _ => "FORBIDDEN",
        };
        assert_eq!(outcome(&response), expected, "create by {who}: {response}");
    }
    // The owner's project has two generations now: `id` and the owner's second one.
    for (who, client) in all(&a) {
        let one = client.graphql(GET, json!({ "id": id })).await;
        assert_eq!(outcome(&one), "ok", "{who}: {one}");
        let sees = matches!(who, "owner" | "service" | "read-only token");
        assert_eq!(
            !one["data"]["codeGeneration"].is_null(),
            sees,
            "{who}: {one}"
        );

        let list = client.graphql(LIST, json!({ "p": a.project_id })).await;
        let expected = if who == "anonymous" {
            "UNAUTHENTICATED"
        } else {
            "ok"
        };
        assert_eq!(outcome(&list), expected, "list by {who}: {list}");
        if expected == "ok" {
            let count = if sees { 2 } else { 0 };
            assert_eq!(
                list["data"]["codeGenerations"]["totalCount"], count,
                "{who}: {list}"
            );
        }
        let started = client.graphql(START, json!({ "id": id })).await;
        let expected = match who {
            "anonymous" => "UNAUTHENTICATED",
            "service" => "ok",
            _ => "FORBIDDEN",
        };
        assert_eq!(outcome(&started), expected, "start by {who}: {started}");
    }
    let nested = a
        .owner
        .graphql(
            "query($id: ID!) { project(id: $id) { codeGenerations(status: RUNNING) { totalCount edges { node { id status } } } } }",
            json!({ "id": a.project_id }),
        )
        .await;
    let page = &nested["data"]["project"]["codeGenerations"];
    assert_eq!(page["totalCount"], 1, "{nested}");
    assert_eq!(page["edges"][0]["node"]["id"], id.as_str());

    // The admin creates on their own project, but not on someone else's.
    let admins = flashfusion_tests::create_project(&a.admin, "admin's").await;
    assert_eq!(code(&create(&a.admin, &admins).await), "");
    // Bob's generations are his: the owner's list does not grow.
    let bobs = flashfusion_tests::create_project(&a.other, "bob's").await;
    let bob_generation = created(&a.other, &bobs).await;
    let hidden = a.owner.graphql(GET, json!({ "id": bob_generation })).await;
    assert!(hidden["data"]["codeGeneration"].is_null(), "{hidden}");
    let all = a.owner.graphql(LIST, json!({})).await;
    assert_eq!(all["data"]["codeGenerations"]["totalCount"], 2, "{all}");
    let scoped = a.other_project.graphql(LIST, json!({})).await;
    assert_eq!(
        scoped["data"]["codeGenerations"]["totalCount"], 0,
        "{scoped}"
    );
}

async fn the_state_machine_moves_forward_only(app: TestApp) {
    let a = Actors::new(&app).await;
    let id = created(&a.owner, &a.project_id).await;
    let premature = a.service.graphql(COMPLETE, complete(&id, 1, 1)).await;
    assert_eq!(code(&premature), "INVALID_TRANSITION", "{premature}");
    let started = a.service.graphql(START, json!({ "id": id })).await;
    assert_eq!(
        started["data"]["startCodeGeneration"]["codeGeneration"]["status"], "RUNNING",
        "{started}"
    );
    let twice = a.service.graphql(START, json!({ "id": id })).await;
    assert_eq!(code(&twice), "INVALID_TRANSITION");
    let done = a.service.graphql(COMPLETE, complete(&id, 10, 20)).await;
    assert_eq!(
        done["data"]["completeCodeGeneration"]["codeGeneration"]["status"], "SUCCEEDED",
        "{done}"
    );
    for (query, variables) in [
        (START, json!({ "id": id })),
        (COMPLETE, complete(&id, 1, 1)),
        (FAIL, json!({ "i": { "id": id, "error": "late" } })),
    ] {
        let refused = a.service.graphql(query, variables).await;
        assert_eq!(code(&refused), "INVALID_TRANSITION", "{refused}");
    }

    // A pending generation may fail without starting; a failed one stays failed.
    let other = created(&a.owner, &a.project_id).await;
    let failed = a
        .service
        .graphql(
            FAIL,
            json!({ "i": { "id": other, "error": "provider down" } }),
        )
        .await;
    let generation = &failed["data"]["failCodeGeneration"]["codeGeneration"];
    assert_eq!(generation["status"], "FAILED", "{failed}");
    assert_eq!(generation["error"], "provider down");
    let restart = a.service.graphql(START, json!({ "id": other })).await;
    assert_eq!(code(&restart), "INVALID_TRANSITION");
    let by_status = a.owner.graphql(LIST, json!({ "s": "FAILED" })).await;
    assert_eq!(
        by_status["data"]["codeGenerations"]["totalCount"], 1,
        "{by_status}"
    );
    assert_eq!(
        by_status["data"]["codeGenerations"]["edges"][0]["node"]["id"],
        other.as_str()
    );

    let unknown = a
        .service
        .graphql(
            START,
            json!({ "id": "01936b2a-0000-7000-8000-0000000000ff" }),
        )
        .await;
    assert_eq!(code(&unknown), "NOT_FOUND");
    let blank = a
        .service
        .graphql(FAIL, json!({ "i": { "id": other, "error": " " } }))
        .await;
    assert_eq!(code(&blank), "BAD_USER_INPUT");
}

async fn completion_is_priced_exactly_and_recorded(app: TestApp) {
    let a = Actors::new(&app).await;
    let id = created(&a.owner, &a.project_id).await;
    a.service.graphql(START, json!({ "id": id })).await;
    for bad in [
        complete(&id, -1, 0),
        complete(&id, 0, -1),
        json!({ "i": { "id": id, "output": "", "tokensIn": 1, "tokensOut": 1, "durationMs": -5 } }),
    ] {
        let refused = a.service.graphql(COMPLETE, bad).await;
        assert_eq!(code(&refused), "BAD_USER_INPUT", "{refused}");
    }
    assert_eq!(usage_count(&app, "code_generation.completed").await, 0);

    // 1234 tokens in at $0.003 and 567 out at $0.015 per 1,000: 0.003702 + 0.008505.
    let done = a.service.graphql(COMPLETE, complete(&id, 1234, 567)).await;
    let generation = &done["data"]["completeCodeGeneration"]["codeGeneration"];
    assert_eq!(generation["cost"], "0.012207", "{done}");
    assert_eq!(generation["tokensIn"], 1234);
    assert_eq!(generation["tokensOut"], 567);
    assert_eq!(generation["durationMs"], 1500);
    assert_eq!(generation["output"], "fn main() {}");
    let read = a.owner.graphql(GET, json!({ "id": id })).await;
    assert_eq!(read["data"]["codeGeneration"]["cost"], "0.012207", "{read}");
    assert_eq!(usage_count(&app, "code_generation.completed").await, 1);

    // An inactive or unknown service cannot be asked for.
    let unknown = a
        .owner
        .graphql(
            CREATE,
            json!({ "i": { "projectId": a.project_id, "aiServiceId": "01936b2a-0000-7000-8000-0000000000ff", "prompt": "x" } }),
        )
        .await;
    assert_eq!(code(&unknown), "NOT_FOUND", "{unknown}");
    let blank = a
        .owner
        .graphql(
            CREATE,
            json!({ "i": { "projectId": a.project_id, "aiServiceId": SONNET, "prompt": "  " } }),
        )
        .await;
    assert_eq!(code(&blank), "BAD_USER_INPUT");
}

/// An admin retires the AI service while a generation runs on it: the service still
/// completes and prices it, on Postgres under RLS as on SQLite (migration
/// m20261126_000014); new generations cannot choose it.
async fn a_retired_ai_service_still_prices_its_running_generation(app: TestApp) {
    let a = Actors::new(&app).await;
    let id = created(&a.owner, &a.project_id).await;
    let started = a.service.graphql(START, json!({ "id": id })).await;
    assert_eq!(outcome(&started), "ok", "{started}");
    let retired = a
        .admin
        .graphql(
            "mutation($i: UpdateAiServiceInput!) { updateAiService(input: $i) { aiService { isActive } } }",
            json!({ "i": { "id": SONNET, "isActive": false } }),
        )
        .await;
    assert_eq!(
        retired["data"]["updateAiService"]["aiService"]["isActive"], false,
        "{retired}"
    );
    let done = a.service.graphql(COMPLETE, complete(&id, 1000, 1000)).await;
    let generation = &done["data"]["completeCodeGeneration"]["codeGeneration"];
    assert_eq!(generation["status"], "SUCCEEDED", "{done}");
    assert_ne!(generation["cost"], "0", "{done}");
    // The service reads the retired service one by one too; the owner no longer does.
    for (client, sees) in [(&a.service, true), (&a.owner, false)] {
        let read = client
            .graphql(
                "query($id: ID!) { codeGeneration(id: $id) { aiService { id } } }",
                json!({ "id": id }),
            )
            .await;
        let service = &read["data"]["codeGeneration"]["aiService"];
        assert_eq!(!service.is_null(), sees, "{read}");
    }
    assert_eq!(code(&create(&a.owner, &a.project_id).await), "NOT_FOUND");
}
