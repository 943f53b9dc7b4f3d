//! `projects`: a user's code-generation projects, private or public.
//!
//! Anyone may read a public project; everything else belongs to its owner (and admins).
//! The owner's public face is reachable through [`Relation::OwnerProfile`], never through
//! `users`, which a stranger may not read.

use sea_orm::entity::prelude::*;

/// Who may read a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum ProjectVisibility {
    #[sea_orm(string_value = "private")]
    Private,
    #[sea_orm(string_value = "public")]
    Public,
}

/// Lifecycle of a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum ProjectStatus {
    #[sea_orm(string_value = "active")]
    Active,
    #[sea_orm(string_value = "archived")]
    Archived,
}

/// One row of `projects`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "projects")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub visibility: ProjectVisibility,
    pub framework: Option<String>,
    pub status: ProjectStatus,
    /// Free-form JSON object, `{}` by default.
    #[sea_orm(column_type = "JsonBinary")]
    pub settings: Json,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// Every column of `projects` but `settings`: what a project shows (no field exposes
/// `settings`), so lists do not read and decode a JSON value per row to drop it.
#[derive(Clone, Debug, PartialEq, DerivePartialModel)]
#[sea_orm(entity = "Entity")]
pub struct Shown {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub visibility: ProjectVisibility,
    pub framework: Option<String>,
    pub status: ProjectStatus,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

impl From<Model> for Shown {
    fn from(m: Model) -> Self {
        Self {
            id: m.id,
            owner_id: m.owner_id,
            name: m.name,
            description: m.description,
            visibility: m.visibility,
            framework: m.framework,
            status: m.status,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::users::Entity",
        from = "Column::OwnerId",
        to = "super::users::Column::Id",
        on_delete = "Cascade"
    )]
    Owner,
    /// The owner's public face (id, display name), readable by whoever can read the project.
    #[sea_orm(
        belongs_to = "super::profiles::Entity",
        from = "Column::OwnerId",
        to = "super::profiles::Column::Id"
    )]
    OwnerProfile,
    #[sea_orm(has_many = "super::agent_tasks::Entity")]
    AgentTasks,
    #[sea_orm(has_many = "super::deployments::Entity")]
    Deployments,
    #[sea_orm(has_many = "super::code_generations::Entity")]
    CodeGenerations,
}

impl Related<super::users::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Owner.def()
    }
}

impl Related<super::profiles::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::OwnerProfile.def()
    }
}

impl Related<super::agent_tasks::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::AgentTasks.def()
    }
}

impl Related<super::deployments::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Deployments.def()
    }
}

impl Related<super::code_generations::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::CodeGenerations.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
