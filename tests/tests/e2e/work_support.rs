//! Shared set-up for the agent task and deployment tests: one owner with two projects,
//! and a client for every kind of caller, so each test reads as "who does what".

use flashfusion_api::auth::Role;
use flashfusion_tests::{Client, TestApp};
use serde_json::{Value, json};

/// Every kind of caller the access tables cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Anonymous,
    Owner,
    Stranger,
    Admin,
    Service,
    /// The owner's token narrowed to read-only.
    ReadOnly,
    /// The owner's token narrowed to the owner's other project.
    OtherProject,
}

pub const ACTORS: [Actor; 7] = [
    Actor::Anonymous,
    Actor::Owner,
    Actor::Stranger,
    Actor::Admin,
    Actor::Service,
    Actor::ReadOnly,
    Actor::OtherProject,
];

/// An owner (Ada) with a project and a second one, and a client per [`Actor`].
pub struct World {
    pub owner_id: String,
    /// The project the tests work on.
    pub project: String,
    /// Ada's other project, the only one `OtherProject` reaches.
    pub other_project: String,
    clients: Vec<(Actor, Client)>,
}

impl World {
    pub async fn new(app: &TestApp) -> Self {
        let (owner, owner_id) = app.user("ada@example.com").await;
        let (stranger, _) = app.user("bob@example.com").await;
        let (admin, _) = app.admin("root@example.com").await;
        let (_, worker_id) = app.user("worker@example.com").await;
        let service = app.with_token(&app.mint(&worker_id, Role::Service));
        let project = create_project(&owner, "site").await;
        let other_project = create_project(&owner, "other").await;
        let read_only = scoped(app, &owner, json!({ "readOnly": true })).await;
        let elsewhere = scoped(app, &owner, json!({ "projectId": other_project })).await;
        Self {
            owner_id,
            project,
            other_project,
            clients: vec![
                (Actor::Anonymous, app.anonymous()),
                (Actor::Owner, owner),
                (Actor::Stranger, stranger),
                (Actor::Admin, admin),
                (Actor::Service, service),
                (Actor::ReadOnly, read_only),
                (Actor::OtherProject, elsewhere),
            ],
        }
    }

    pub fn client(&self, actor: Actor) -> &Client {
        self.clients
            .iter()
            .find(|(a, _)| *a == actor)
            .map(|(_, c)| c)
            .expect("every actor has a client")
    }

    pub fn owner(&self) -> &Client {
        self.client(Actor::Owner)
    }

    pub fn service(&self) -> &Client {
        self.client(Actor::Service)
    }
}

async fn create_project(client: &Client, name: &str) -> String {
    let response = client
        .graphql(
            "mutation($i: CreateProjectInput!) { createProject(input: $i) { project { id } } }",
            json!({ "i": { "name": name } }),
        )
        .await;
    response["data"]["createProject"]["project"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("createProject failed: {response}"))
        .to_owned()
}

async fn scoped(app: &TestApp, client: &Client, input: Value) -> Client {
    let response = client
        .graphql(
            "mutation($i: ScopedTokenInput!) { createScopedToken(input: $i) { token } }",
            json!({ "i": input }),
        )
        .await;
    let token = response["data"]["createScopedToken"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("createScopedToken failed: {response}"));
    app.with_token(token)
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

/// Ada queues a task for `agent` on `project`; returns its id.
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

/// Ada queues a preview deployment of `project`; returns its id.
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
