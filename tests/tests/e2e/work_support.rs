//! Shared set-up for the agent task and deployment tests: the common cast of callers,
//! the operations' documents, and small steps (create, claim, read) they repeat.

use flashfusion_tests::{Actors, Client, TestApp};
use serde_json::{Value, json};

pub use flashfusion_tests::Actor;

/// Every kind of caller the access tables cover.
pub const ACTORS: [Actor; 7] = Actor::ALL;

/// The shared cast ([`Actors`]: an owner with two projects and a client per actor),
/// named for these tests.
pub struct World {
    pub owner_id: String,
    /// The project the tests work on.
    pub project: String,
    /// The owner's other project, the only one `OtherProject` reaches.
    pub other_project: String,
    cast: Actors,
}

impl World {
    pub async fn new(app: &TestApp) -> Self {
        let cast = Actors::new(app).await;
        Self {
            owner_id: cast.owner_id.clone(),
            project: cast.project_id.clone(),
            other_project: cast.side_project_id.clone(),
            cast,
        }
    }

    pub fn client(&self, actor: Actor) -> &Client {
        self.cast.client(actor)
    }

    pub fn owner(&self) -> &Client {
        &self.cast.owner
    }

    /// The account of [`Actor::Other`].
    pub fn other_id(&self) -> &str {
        &self.cast.other_id
    }

    pub fn service(&self) -> &Client {
        &self.cast.service
    }
}

/// Runs a mutation and returns its payload's `field` (`task` or `deployment`), panicking
/// with the response when it failed.
pub async fn ok(
    client: &Client,
    query: &str,
    variables: Value,
    mutation: &str,
    field: &str,
) -> Value {
    let response = client.graphql(query, variables).await;
    let value = response["data"][mutation][field].clone();
    assert!(
        response["errors"].is_null() && !value.is_null(),
        "{mutation} failed: {response}"
    );
    value
}

pub const CREATE_TASK: &str = "mutation($i: CreateAgentTaskInput!) { createAgentTask(input: $i) { task { id status progress attempts priority title input agent { slug } project { id } parentTask { id } } } }";
pub const TASK: &str = "query($id: ID!) { agentTask(id: $id) { id status progress attempts output error startedAt finishedAt project { id } } }";
pub const CANCEL_TASK: &str =
    "mutation($id: ID!) { cancelAgentTask(id: $id) { task { id status finishedAt } } }";
pub const CLAIM: &str = "mutation($slugs: [String!]!) { claimAgentTask(input: {agentSlugs: $slugs}) { task { id status attempts startedAt } } }";
pub const PROGRESS: &str = "mutation($i: ReportAgentTaskProgressInput!) { reportAgentTaskProgress(input: $i) { task { id status progress output } } }";
pub const COMPLETE: &str = "mutation($i: CompleteAgentTaskInput!) { completeAgentTask(input: $i) { task { id status progress output finishedAt } } }";
pub const FAIL: &str = "mutation($i: FailAgentTaskInput!) { failAgentTask(input: $i) { task { id status attempts error finishedAt } } }";

/// The owner queues a task for `agent` on `project`; returns its id.
pub async fn create_task(world: &World, project: &str, agent: &str, priority: i32) -> String {
    let task = ok(
        world.owner(),
        CREATE_TASK,
        json!({ "i": { "projectId": project, "agentSlug": agent, "title": "work", "priority": priority } }),
        "createAgentTask",
        "task",
    )
    .await;
    task["id"].as_str().expect("id").to_owned()
}

/// The service claims the next task of `agent`; returns its id (None when none is
/// queued).
pub async fn claim(world: &World, agent: &str) -> Option<String> {
    let response = world
        .service()
        .graphql(CLAIM, json!({ "slugs": [agent] }))
        .await;
    assert!(response["errors"].is_null(), "claim failed: {response}");
    response["data"]["claimAgentTask"]["task"]["id"]
        .as_str()
        .map(str::to_owned)
}

/// The task as its owner reads it.
pub async fn task(world: &World, id: &str) -> Value {
    world.owner().graphql(TASK, json!({ "id": id })).await["data"]["agentTask"].clone()
}

pub const CREATE_DEPLOYMENT: &str = "mutation($i: CreateDeploymentInput!) { createDeployment(input: $i) { deployment { id status environment provider commitSha log url project { id } } } }";
pub const DEPLOYMENT: &str =
    "query($id: ID!) { deployment(id: $id) { id status url log finishedAt project { id } } }";
pub const CANCEL_DEPLOYMENT: &str =
    "mutation($id: ID!) { cancelDeployment(id: $id) { deployment { id status finishedAt } } }";
pub const ADVANCE: &str = "mutation($i: AdvanceDeploymentInput!) { advanceDeployment(input: $i) { deployment { id status url log finishedAt } } }";

/// The owner queues a preview deployment of `project`; returns its id.
pub async fn create_deployment(world: &World, project: &str) -> String {
    let deployment = ok(
        world.owner(),
        CREATE_DEPLOYMENT,
        json!({ "i": { "projectId": project, "environment": "PREVIEW", "provider": "vercel", "commitSha": "abc123" } }),
        "createDeployment",
        "deployment",
    )
    .await;
    deployment["id"].as_str().expect("id").to_owned()
}

/// The deployment as its owner reads it.
pub async fn deployment(world: &World, id: &str) -> Value {
    world.owner().graphql(DEPLOYMENT, json!({ "id": id })).await["data"]["deployment"].clone()
}

/// Checks the fast path for lists' plain fields (`kit::plain`) on `list` (a root list
/// field, e.g. `agentTasks`) and `nested` (its child list under `myProjects`, e.g.
/// `tasks`): selecting `fields` alone, and beside `resolved` (a field that is not
/// plain, forcing the type's own resolver), both lists give the same nodes, and each
/// node is what `single` (the one-row query field, e.g. `agentTask`) gives. Returns
/// the nodes, sorted by id.
pub async fn plain_lists_agree(
    client: &Client,
    (list, nested, single): (&str, &str, &str),
    fields: &str,
    resolved: &str,
) -> Vec<Value> {
    let edges = |connection: &Value| -> Vec<Value> {
        connection["edges"]
            .as_array()
            .unwrap_or_else(|| panic!("no edges: {connection}"))
            .iter()
            .map(|edge| edge["node"].clone())
            .collect()
    };
    let sorted = |mut nodes: Vec<Value>| {
        for node in &mut nodes {
            let plain = node.as_object_mut().expect("a node");
            plain.remove(resolved.split_whitespace().next().unwrap_or_default());
        }
        nodes.sort_by_key(|node| node["id"].to_string());
        nodes
    };
    let mut answers = Vec::new();
    for extra in ["", resolved] {
        let top = format!("{{ {list}(first: 10) {{ edges {{ node {{ {fields} {extra} }} }} }} }}");
        let response = client.graphql(&top, json!({})).await;
        answers.push(sorted(edges(&response["data"][list])));
        let under = format!(
            "{{ myProjects {{ edges {{ node {{ {nested}(first: 10) {{ edges {{ node {{ {fields} {extra} }} }} }} }} }} }} }}"
        );
        let response = client.graphql(&under, json!({})).await;
        let projects = edges(&response["data"]["myProjects"]);
        answers.push(sorted(
            projects
                .iter()
                .flat_map(|project| edges(&project[nested]))
                .collect(),
        ));
    }
    for answer in &answers[1..] {
        assert_eq!(answer, &answers[0]);
    }
    for node in &answers[0] {
        let one = client
            .graphql(
                &format!("query($id: ID!) {{ {single}(id: $id) {{ {fields} }} }}"),
                json!({ "id": node["id"] }),
            )
            .await;
        assert_eq!(&one["data"][single], node, "{one}");
    }
    answers.swap_remove(0)
}

/// Of concurrent writes of `tried` (one response each, in order) that raced on one row,
/// the one that was applied; the others must have been refused `INVALID_TRANSITION`
/// (the row changed between their read and their write) rather than overwrite it.
pub fn the_one_applied<T: Copy + std::fmt::Debug>(tried: &[T], responses: &[Value]) -> T {
    let mut applied = Vec::new();
    for (tried, response) in tried.iter().zip(responses) {
        match crate::code(response) {
            "" => applied.push(*tried),
            refused => assert_eq!(refused, "INVALID_TRANSITION", "{response}"),
        }
    }
    assert_eq!(
        applied.len(),
        1,
        "one write applied, the others refused: {applied:?}"
    );
    applied[0]
}
