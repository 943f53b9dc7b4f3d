//! Every kind of caller an access test asks about, built once per test: anonymous, the
//! owner (with a project), another user, an admin, a service, the owner's read-only
//! token and the owner's token scoped to another of their projects.

use flashfusion_api::auth::Role;
use flashfusion_tests::{Client, TestApp};
use serde_json::{Value, json};

/// The callers of an access test.
pub struct Actors {
    pub anonymous: Client,
    pub owner: Client,
    pub owner_id: String,
    /// A project of the owner's.
    pub project: String,
    pub other: Client,
    pub other_id: String,
    pub admin: Client,
    pub service: Client,
    /// The owner's token, narrowed to reading.
    pub read_only: Client,
    /// The owner's token, narrowed to another project of theirs.
    pub other_project: Client,
}

impl Actors {
    pub async fn new(app: &TestApp) -> Self {
        let (owner, owner_id) = app.user("ada@example.com").await;
        let (other, other_id) = app.user("bob@example.com").await;
        let (admin, _) = app.admin("root@example.com").await;
        let (_, worker_id) = app.user("worker@example.com").await;
        let service = app.with_token(&app.mint(&worker_id, Role::Service));
        let first_project = project(&owner, "site").await;
        let second_project = project(&owner, "other").await;
        let read_only = app.with_token(&scoped(&owner, json!({ "readOnly": true })).await);
        let other_project =
            app.with_token(&scoped(&owner, json!({ "projectId": second_project })).await);
        Self {
            anonymous: app.anonymous(),
            owner,
            owner_id,
            project: first_project,
            other,
            other_id,
            admin,
            service,
            read_only,
            other_project,
        }
    }

    /// Every actor with its name, for table-driven checks.
    pub fn all(&self) -> [(&'static str, &Client); 7] {
        [
            ("anonymous", &self.anonymous),
            ("owner", &self.owner),
            ("other user", &self.other),
            ("admin", &self.admin),
            ("service", &self.service),
            ("read-only token", &self.read_only),
            ("other-project token", &self.other_project),
        ]
    }
}

/// Creates a private project and returns its id.
pub async fn project(client: &Client, name: &str) -> String {
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

async fn scoped(client: &Client, input: Value) -> String {
    let payload = client
        .graphql(
            "mutation($i: ScopedTokenInput!) { createScopedToken(input: $i) { token } }",
            json!({ "i": input }),
        )
        .await;
    payload["data"]["createScopedToken"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("createScopedToken failed: {payload}"))
        .to_owned()
}

/// What an access test expects of an actor: data (checked by the test) or an error code.
pub fn outcome(response: &Value) -> &str {
    match crate::code(response) {
        "" => "ok",
        code => code,
    }
}

/// Inserts an agent task for `user` on `project` with `status` directly in the database
/// (the tasks domain is not part of these tests), returning its id.
pub async fn task(app: &TestApp, user: &str, project: &str, status: &str) -> String {
    use entity::agent_tasks::{self, AgentTaskStatus};
    use sea_orm::{ActiveValue::Set, EntityTrait};
    let status = match status {
        "queued" => AgentTaskStatus::Queued,
        "running" => AgentTaskStatus::Running,
        other => panic!("no task status {other} in these tests"),
    };
    let id = uuid::Uuid::now_v7();
    let now = chrono::Utc::now();
    let row = agent_tasks::ActiveModel {
        id: Set(id),
        project_id: Set(project.parse().expect("uuid")),
        user_id: Set(user.parse().expect("uuid")),
        agent_id: Set(uuid::Uuid::from_u128(
            0x0193_6b2a_0000_7000_8000_0000_0001_0001,
        )),
        parent_task_id: Set(None),
        title: Set("task".to_owned()),
        input: Set(json!({})),
        output: Set(None),
        status: Set(status),
        progress: Set(0),
        priority: Set(0),
        error: Set(None),
        attempts: Set(0),
        started_at: Set(None),
        finished_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    };
    agent_tasks::Entity::insert(row)
        .exec_without_returning(app.state.db.connection())
        .await
        .expect("insert a task");
    id.to_string()
}

/// How many usage rows of `event_type` the database holds.
pub async fn usage_count(app: &TestApp, event_type: &str) -> u64 {
    use entity::usage_analytics;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    usage_analytics::Entity::find()
        .filter(usage_analytics::Column::EventType.eq(event_type))
        .count(app.state.db.connection())
        .await
        .expect("count usage")
}
