//! `agent_tasks`: work a user asks an agent to do on one of their projects.
//!
//! The owner creates, reads and cancels; the service role claims queued tasks, reports
//! progress and finishes them; admins do everything. The legal status transitions
//! (queued→running→succeeded|failed, queued|running→cancelled) are enforced by the API in
//! one place, not here.

use sea_orm::entity::prelude::*;

/// Lifecycle of an agent task.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, serde::Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "lowercase")]
pub enum AgentTaskStatus {
    #[sea_orm(string_value = "queued")]
    Queued,
    #[sea_orm(string_value = "running")]
    Running,
    #[sea_orm(string_value = "succeeded")]
    Succeeded,
    #[sea_orm(string_value = "failed")]
    Failed,
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

/// One row of `agent_tasks`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, serde::Deserialize)]
#[sea_orm(table_name = "agent_tasks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub project_id: Uuid,
    /// Who asked for the task (the project's owner).
    pub user_id: Uuid,
    /// `ON DELETE RESTRICT`: deactivate an agent rather than delete its history.
    pub agent_id: Uuid,
    /// Set to NULL when the parent task is deleted.
    pub parent_task_id: Option<Uuid>,
    pub title: String,
    /// JSON object given to the agent.
    #[sea_orm(column_type = "JsonBinary")]
    pub input: Json,
    /// JSON result, once the agent has produced one.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub output: Option<Json>,
    pub status: AgentTaskStatus,
    /// 0 to 100 (checked).
    pub progress: i32,
    /// Higher runs first.
    pub priority: i32,
    pub error: Option<String>,
    pub attempts: i32,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::projects::Entity",
        from = "Column::ProjectId",
        to = "super::projects::Column::Id",
        on_delete = "Cascade"
    )]
    Project,
    #[sea_orm(
        belongs_to = "super::users::Entity",
        from = "Column::UserId",
        to = "super::users::Column::Id",
        on_delete = "Cascade"
    )]
    User,
    #[sea_orm(
        belongs_to = "super::agents::Entity",
        from = "Column::AgentId",
        to = "super::agents::Column::Id",
        on_delete = "Restrict"
    )]
    Agent,
    #[sea_orm(
        belongs_to = "Entity",
        from = "Column::ParentTaskId",
        to = "Column::Id",
        on_delete = "SetNull"
    )]
    ParentTask,
}

impl Related<super::projects::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Project.def()
    }
}

impl Related<super::users::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl Related<super::agents::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Agent.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
