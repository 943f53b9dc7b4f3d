//! `deployments`: a project deployed to a hosting provider.
//!
//! The owner creates, reads and cancels; the service role (the deployer) advances the
//! status; admins do everything. Legal transitions (queued→building→deploying→ready|failed,
//! any unfinished→cancelled) are enforced by the API in one place, not here.

use sea_orm::entity::prelude::*;

/// Where a deployment goes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, serde::Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "lowercase")]
pub enum DeploymentEnvironment {
    #[sea_orm(string_value = "preview")]
    Preview,
    #[sea_orm(string_value = "production")]
    Production,
}

/// Lifecycle of a deployment.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, serde::Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "lowercase")]
pub enum DeploymentStatus {
    #[sea_orm(string_value = "queued")]
    Queued,
    #[sea_orm(string_value = "building")]
    Building,
    #[sea_orm(string_value = "deploying")]
    Deploying,
    #[sea_orm(string_value = "ready")]
    Ready,
    #[sea_orm(string_value = "failed")]
    Failed,
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

/// One row of `deployments`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Deserialize)]
#[sea_orm(table_name = "deployments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub project_id: Uuid,
    /// Who asked for the deployment (the project's owner).
    pub user_id: Uuid,
    pub environment: DeploymentEnvironment,
    /// Hosting provider (`vercel`, `netlify`, `fly`, ...).
    pub provider: String,
    pub status: DeploymentStatus,
    pub url: Option<String>,
    pub commit_sha: Option<String>,
    #[sea_orm(column_type = "Text", nullable)]
    pub log: Option<String>,
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

impl ActiveModelBehavior for ActiveModel {}
