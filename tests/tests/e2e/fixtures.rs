//! Helpers of the keys, integrations and generations tests: the shared cast
//! ([`Actors`]) by name, and rows the tests need but whose domains they do not test
//! (agent tasks) or only count (usage).

use flashfusion_tests::{Actor, Actors, Client, TestApp};
use serde_json::{Value, json};

/// Every actor with a readable name, for table-driven checks.
pub fn all(a: &Actors) -> [(&'static str, &Client); 7] {
    Actor::ALL.map(|actor| {
        let name = match actor {
            Actor::Anonymous => "anonymous",
            Actor::Owner => "owner",
            Actor::Other => "other user",
            Actor::Admin => "admin",
            Actor::Service => "service",
            Actor::ReadOnly => "read-only token",
            Actor::OtherProject => "other-project token",
        };
        (name, a.client(actor))
    })
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
