//! The access-matrix rows of agent tasks and deployments (see `matrix`): what each of
//! the seven actors gets from every operation. The owner's and the admin's successful
//! cancels change the row for whoever comes next, so `agent_task_access` and
//! `deployments` check those per actor on fresh rows instead.

use flashfusion_tests::{Actor, Actors, Case, TestApp, run_matrix};
use serde_json::{Value, json};

on_both_backends!(agent_tasks_and_deployments);

const U: &str = "UNAUTHENTICATED";
const F: &str = "FORBIDDEN";
const N: &str = "NOT_FOUND";
const D: &str = "data";
const NULL: &str = "null";

/// Rows over the variables of [`agent_tasks_and_deployments`], run in this order: the
/// service claims `$task`, reports on it, retries it, claims and completes it.
#[rustfmt::skip]
pub const CASES: [Case; 15] = [
    //                                     anon owner other admin service readOnly otherProject
    Case { field: "agentTask", query: "query($task: ID!) { agentTask(id: $task) { id } }",
           expected: [NULL, D, NULL, D, D, D, NULL] },
    Case { field: "agentTasks", query: "{ agentTasks { totalCount } }",
           expected: [U, D, D, D, D, D, D] },
    Case { field: "createAgentTask", query: "mutation($project: ID!) { createAgentTask(input: {projectId: $project, agentSlug: \"doc-writer\", title: \"t\"}) { task { id } } }",
           expected: [U, D, N, D, F, F, N] },
    Case { field: "cancelAgentTask", query: "mutation($doomedTask: ID!) { cancelAgentTask(id: $doomedTask) { task { id } } }",
           expected: [U, D, N, D, F, F, N] },
    Case { field: "claimAgentTask", query: "mutation { claimAgentTask(input: {agentSlugs: [\"code-reviewer\"]}) { task { id } } }",
           expected: [U, F, F, F, D, F, F] },
    Case { field: "reportAgentTaskProgress", query: "mutation($task: ID!) { reportAgentTaskProgress(input: {id: $task, progress: 10}) { task { id } } }",
           expected: [U, F, F, F, D, F, F] },
    Case { field: "failAgentTask", query: "mutation($task: ID!) { failAgentTask(input: {id: $task, error: \"e\", retry: true}) { task { id } } }",
           expected: [U, F, F, F, D, F, F] },
    Case { field: "claimAgentTask", query: "mutation { claimAgentTask(input: {agentSlugs: [\"code-reviewer\"]}) { task { id } } }",
           expected: [U, F, F, F, D, F, F] },
    Case { field: "completeAgentTask", query: "mutation($task: ID!) { completeAgentTask(input: {id: $task}) { task { id } } }",
           expected: [U, F, F, F, D, F, F] },
    Case { field: "deployment", query: "query($deployment: ID!) { deployment(id: $deployment) { id } }",
           expected: [NULL, D, NULL, D, D, D, NULL] },
    Case { field: "deployments", query: "{ deployments { totalCount } }",
           expected: [U, D, D, D, D, D, D] },
    Case { field: "createDeployment", query: "mutation($project: ID!) { createDeployment(input: {projectId: $project, environment: PREVIEW, provider: \"fly\"}) { deployment { id } } }",
           expected: [U, D, N, D, F, F, N] },
    Case { field: "cancelDeployment", query: "mutation($doomedDeployment: ID!) { cancelDeployment(id: $doomedDeployment) { deployment { id } } }",
           expected: [U, D, N, D, F, F, N] },
    Case { field: "advanceDeployment", query: "mutation($deployment: ID!) { advanceDeployment(input: {id: $deployment, status: BUILDING}) { deployment { id } } }",
           expected: [U, F, F, F, D, F, F] },
    Case { field: "advanceDeployment", query: "mutation($deployment: ID!) { advanceDeployment(input: {id: $deployment, status: DEPLOYING}) { deployment { id } } }",
           expected: [U, F, F, F, D, F, F] },
];

async fn id_of(response: Value, mutation: &str, field: &str) -> String {
    response["data"][mutation][field]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{mutation} failed: {response}"))
        .to_owned()
}

async fn agent_tasks_and_deployments(app: TestApp) {
    let cast = Actors::new(&app).await;
    let task = "mutation($p: ID!, $a: String!) { createAgentTask(input: {projectId: $p, agentSlug: $a, title: \"t\"}) { task { id } } }";
    let deployment = "mutation($p: ID!) { createDeployment(input: {projectId: $p, environment: PRODUCTION, provider: \"fly\"}) { deployment { id } } }";
    let mut ids = Vec::new();
    for (query, agent, mutation, field) in [
        (task, "code-reviewer", "createAgentTask", "task"),
        (task, "doc-writer", "createAgentTask", "task"),
        (deployment, "", "createDeployment", "deployment"),
        (deployment, "", "createDeployment", "deployment"),
    ] {
        let response = cast
            .owner
            .graphql(query, json!({ "p": cast.project_id, "a": agent }))
            .await;
        ids.push(id_of(response, mutation, field).await);
    }
    let vars = json!({
        "project": cast.project_id,
        "task": ids[0], "doomedTask": ids[1],
        "deployment": ids[2], "doomedDeployment": ids[3],
    });
    run_matrix(&cast, &CASES, &vars, |field, actor| {
        // A cancelled row cannot be cancelled again: these two run on fresh rows in
        // `agent_task_access` and `deployments`.
        matches!(field, "cancelAgentTask" | "cancelDeployment")
            && matches!(actor, Actor::Owner | Actor::Admin)
    })
    .await;
    let done = cast
        .owner
        .graphql(
            "query($task: ID!) { agentTask(id: $task) { status attempts } }",
            vars.clone(),
        )
        .await;
    assert_eq!(
        done["data"]["agentTask"],
        json!({ "status": "SUCCEEDED", "attempts": 2 }),
        "{done}"
    );
}
