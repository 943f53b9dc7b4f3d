//! `usage_analytics`: append-only usage records (tokens, generations, deployments, ...).
//!
//! The owner reads their own; the gateway (as the user) and the service role write.
//! Rows are never updated, so there is no `updated_at`.

use sea_orm::entity::prelude::*;

/// One usage record.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_analytics")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    /// Set to NULL when the project is deleted, so the usage history survives.
    pub project_id: Option<Uuid>,
    /// What was used (`code_generation`, `agent_task`, `deployment`, ...).
    pub event_type: String,
    pub quantity: i64,
    pub tokens: i64,
    /// US dollars.
    pub cost: f64,
    /// JSON object with details.
    #[sea_orm(column_type = "JsonBinary")]
    pub metadata: Json,
    pub created_at: DateTimeUtc,
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
        on_delete = "SetNull"
    )]
    Project,
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

impl ActiveModelBehavior for ActiveModel {}
