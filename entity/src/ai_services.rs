//! `ai_services`: the catalog of AI models the platform can call, with their prices.
//!
//! Everyone reads active services; only admins write. Seeded by the migration.

use sea_orm::entity::prelude::*;

/// One AI model offered by a provider.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "ai_services")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Stable, unique, URL-safe name (`openai-gpt-4o`).
    #[sea_orm(unique)]
    pub slug: String,
    pub name: String,
    /// Provider name (`openai`, `anthropic`, ...), also used to match a user's API key.
    pub provider: String,
    /// The provider's model identifier (`gpt-4o`).
    pub model: String,
    /// JSON array of capability names (`["code", "chat"]`).
    #[sea_orm(column_type = "JsonBinary")]
    pub capabilities: Json,
    /// US dollars per 1,000 input tokens.
    pub input_price_per_1k: f64,
    /// US dollars per 1,000 output tokens.
    pub output_price_per_1k: f64,
    pub is_active: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::user_api_keys::Entity")]
    UserApiKeys,
    #[sea_orm(has_many = "super::code_generations::Entity")]
    CodeGenerations,
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

impl ActiveModelBehavior for ActiveModel {}
