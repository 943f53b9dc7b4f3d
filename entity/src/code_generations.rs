//! `code_generations`: one prompt sent to an AI service and what came back.
//!
//! The owner does everything with their generations; the service role completes them
//! (output, tokens, cost, status).

use sea_orm::entity::prelude::*;

/// Lifecycle of a code generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum CodeGenerationStatus {
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "running")]
    Running,
    #[sea_orm(string_value = "succeeded")]
    Succeeded,
    #[sea_orm(string_value = "failed")]
    Failed,
}

/// One row of `code_generations`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "code_generations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    /// The project this generation belongs to, if any (deleted with the project).
    pub project_id: Option<Uuid>,
    /// Set to NULL if the catalog service is deleted.
    pub ai_service_id: Option<Uuid>,
    #[sea_orm(column_type = "Text")]
    pub prompt: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub output: Option<String>,
    pub language: Option<String>,
    pub tokens_in: i32,
    pub tokens_out: i32,
    /// US dollars.
    pub cost: f64,
    pub status: CodeGenerationStatus,
    pub error: Option<String>,
    pub duration_ms: Option<i64>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::users::Entity",
        from = "Column::UserId",
        to = "super::users::Column::Id",
        on_delete = "Cascade"
    )]
    User,
    #[sea_orm(
        belongs_to = "super::projects::Entity",
        from = "Column::ProjectId",
        to = "super::projects::Column::Id",
        on_delete = "Cascade"
    )]
    Project,
    #[sea_orm(
        belongs_to = "super::ai_services::Entity",
        from = "Column::AiServiceId",
        to = "super::ai_services::Column::Id",
        on_delete = "SetNull"
    )]
    AiService,
}

impl Related<super::users::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl Related<super::projects::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Project.def()
    }
}

impl Related<super::ai_services::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::AiService.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
