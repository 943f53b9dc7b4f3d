//! The access matrix of provider keys, integrations and code generations: what each of
//! the seven actors gets from every operation (see `matrix.rs`).

use flashfusion_tests::{Actors, Case, TestApp, run_matrix};
use serde_json::json;

use crate::{api_keys::key_input, fixtures::task};

on_both_backends!(keys_integrations_and_generations);

const U: &str = "UNAUTHENTICATED";
const F: &str = "FORBIDDEN";
const N: &str = "NOT_FOUND";
const D: &str = "data";
const NULL: &str = "null";

/// Rows over the variables of [`keys_integrations_and_generations`], run in order.
#[rustfmt::skip]
pub const CASES: [Case; 15] = [
    //                                         anon owner other admin service readOnly otherProject
    Case { field: "myApiKeys", query: "{ myApiKeys { nodes { id } } }",
           expected: [U, D, D, D, F, D, F] },
    Case { field: "createApiKey", query: "mutation { createApiKey(input: {label: \"l\", provider: \"anthropic\", secret: \"sk-matrix-0001\"}) { apiKey { id } } }",
           expected: [U, D, D, D, F, F, F] },
    Case { field: "agentTaskCredential", query: "mutation($task: ID!) { agentTaskCredential(input: {taskId: $task, provider: \"anthropic\"}) { secret } }",
           expected: [U, F, F, F, D, F, F] },
    Case { field: "revokeApiKey", query: "mutation($key: ID!) { revokeApiKey(id: $key) { apiKey { id } } }",
           expected: [U, D, N, N, F, F, F] },
    Case { field: "myIntegrations", query: "{ myIntegrations { nodes { id } } }",
           expected: [U, D, D, D, F, D, F] },
    Case { field: "connectIntegration", query: "mutation { connectIntegration(input: {provider: \"vercel\"}) { integration { id } } }",
           expected: [U, D, D, D, F, F, F] },
    Case { field: "updateIntegration", query: "mutation($integration: ID!) { updateIntegration(input: {id: $integration, config: {a: 1}}) { integration { id } } }",
           expected: [U, D, N, N, F, F, F] },
    Case { field: "disconnectIntegration", query: "mutation($integration: ID!) { disconnectIntegration(id: $integration) { deletedId } }",
           expected: [U, D, N, N, F, F, F] },
    Case { field: "codeGeneration", query: "query($generation: ID!) { codeGeneration(id: $generation) { id } }",
           expected: [NULL, D, NULL, NULL, D, D, NULL] },
    Case { field: "codeGenerations", query: "{ codeGenerations { totalCount } }",
           expected: [U, D, D, D, D, D, D] },
    Case { field: "createCodeGeneration", query: "mutation($project: ID!, $service: ID!) { createCodeGeneration(input: {projectId: $project, aiServiceId: $service, prompt: \"p\"}) { codeGeneration { id } } }",
           expected: [U, D, N, F, F, F, N] },
    Case { field: "startCodeGeneration", query: "mutation($generation: ID!) { startCodeGeneration(id: $generation) { codeGeneration { id } } }",
           expected: [U, F, F, F, D, F, F] },
    Case { field: "completeCodeGeneration", query: "mutation($generation: ID!) { completeCodeGeneration(input: {id: $generation, output: \"o\", tokensIn: 1, tokensOut: 1}) { codeGeneration { id } } }",
           expected: [U, F, F, F, D, F, F] },
    Case { field: "failCodeGeneration", query: "mutation($second: ID!) { failCodeGeneration(input: {id: $second, error: \"e\"}) { codeGeneration { id } } }",
           expected: [U, F, F, F, D, F, F] },
    // The service reads every generation; a narrowed token only its project's.
    Case { field: "codeGeneration", query: "query($second: ID!) { codeGeneration(id: $second) { id } }",
           expected: [NULL, D, NULL, NULL, D, D, NULL] },
];

async fn keys_integrations_and_generations(app: TestApp) {
    let cast = Actors::new(&app).await;
    let key = cast
        .owner
        .graphql(crate::api_keys::CREATE, key_input("k", "sk-ant-matrix-key"))
        .await;
    let integration = cast
        .owner
        .graphql(
            crate::integrations::CONNECT,
            json!({ "i": { "provider": "github" } }),
        )
        .await;
    let generation = "mutation($p: ID!, $s: ID!) { createCodeGeneration(input: {projectId: $p, aiServiceId: $s, prompt: \"p\"}) { codeGeneration { id } } }";
    let ask = json!({ "p": cast.project_id, "s": crate::api_keys::SONNET });
    let first = cast.owner.graphql(generation, ask.clone()).await;
    let second = cast.owner.graphql(generation, ask).await;
    let running = task(&app, &cast.owner_id, &cast.project_id, "running").await;
    let vars = json!({
        "key": key["data"]["createApiKey"]["apiKey"]["id"],
        "integration": integration["data"]["connectIntegration"]["integration"]["id"],
        "generation": first["data"]["createCodeGeneration"]["codeGeneration"]["id"],
        "second": second["data"]["createCodeGeneration"]["codeGeneration"]["id"],
        "project": cast.project_id,
        "service": crate::api_keys::SONNET,
        "task": running,
    });
    for (name, value) in vars.as_object().expect("object") {
        assert!(value.is_string(), "{name} was not set up: {vars}");
    }
    run_matrix(&cast, &CASES, &vars, |_, _| false).await;
}
