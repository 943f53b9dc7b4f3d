//! `users`: accounts, their application role and their password hash.
//!
//! `password_hash` is an argon2id PHC string; it must never leave the API. Strangers read
//! the public face of a user (id, display name) through the `profiles` view instead.

use sea_orm::entity::prelude::*;

/// The application role carried in a user's token and in `app.role` on Postgres.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum UserRole {
    /// An ordinary account.
    #[sea_orm(string_value = "user")]
    User,
    /// May read and write everything the design gives to admins.
    #[sea_orm(string_value = "admin")]
    Admin,
}

/// One row of `users`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Unique case-insensitively (index `users_email_lower_key` on `lower(email)`).
    pub email: String,
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub role: UserRole,
    pub password_hash: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// Every column of `users` but `password_hash`: what the gateway's user and admin roles
/// may read (the column grants leave the hash to the service role, for sign-in).
#[derive(Clone, Debug, PartialEq, Eq, DerivePartialModel)]
#[sea_orm(entity = "Entity")]
pub struct Account {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub avatar_url: Option<String>,
    pub role: UserRole,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

impl From<Model> for Account {
    fn from(m: Model) -> Self {
        Self {
            id: m.id,
            email: m.email,
            display_name: m.display_name,
            avatar_url: m.avatar_url,
            role: m.role,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::projects::Entity")]
    Projects,
    #[sea_orm(has_many = "super::user_api_keys::Entity")]
    UserApiKeys,
    #[sea_orm(has_many = "super::code_generations::Entity")]
    CodeGenerations,
    #[sea_orm(has_many = "super::agent_tasks::Entity")]
    AgentTasks,
    #[sea_orm(has_many = "super::deployments::Entity")]
    Deployments,
    #[sea_orm(has_many = "super::integrations::Entity")]
    Integrations,
    #[sea_orm(has_one = "super::billing::Entity")]
    Billing,
    #[sea_orm(has_many = "super::usage_analytics::Entity")]
    UsageAnalytics,
    #[sea_orm(has_many = "super::notifications::Entity")]
    Notifications,
}

impl Related<super::projects::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Projects.def()
    }
}

impl Related<super::user_api_keys::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::UserApiKeys.def()
    }
}

impl Related<super::code_generations::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::CodeGenerations.def()
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

impl Related<super::integrations::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Integrations.def()
    }
}

impl Related<super::billing::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Billing.def()
    }
}

impl Related<super::usage_analytics::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::UsageAnalytics.def()
    }
}

impl Related<super::notifications::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Notifications.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
