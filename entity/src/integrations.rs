//! `integrations`: a user's connections to third-party services (GitHub, Vercel, ...).
//!
//! Credentials are sealed with an AEAD and write-only for their owner: on Postgres only
//! `flashfusion_service` may SELECT `credentials` and `credentials_nonce`, so a user's
//! queries must select [`Metadata`] (or name columns explicitly) and must not ask for the
//! full [`Model`] back (`ActiveModel::insert`/`update` do, through `RETURNING *`).

use sea_orm::DerivePartialModel;
use sea_orm::entity::prelude::*;

/// Connection state of an integration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "Text")]
pub enum IntegrationStatus {
    #[sea_orm(string_value = "connected")]
    Connected,
    #[sea_orm(string_value = "disconnected")]
    Disconnected,
    #[sea_orm(string_value = "error")]
    Error,
}

/// One row of `integrations`, sealed credentials included (service only).
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "integrations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    /// `github`, `vercel`, `slack`, ...
    pub provider: String,
    /// Non-secret settings (JSON object).
    #[sea_orm(column_type = "JsonBinary")]
    pub config: Json,
    /// AEAD ciphertext of the credentials, owner id bound as associated data.
    pub credentials: Option<Vec<u8>>,
    pub credentials_nonce: Option<Vec<u8>>,
    /// Which sealing key was used, for rotation.
    pub key_id: Option<String>,
    pub status: IntegrationStatus,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// Every column of `integrations` except the sealed credentials: what its owner may read.
#[derive(Clone, Debug, PartialEq, DerivePartialModel)]
#[sea_orm(entity = "Entity")]
pub struct Metadata {
    pub id: Uuid,
    pub user_id: Uuid,
    pub provider: String,
    pub config: Json,
    pub key_id: Option<String>,
    pub status: IntegrationStatus,
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
}

impl Related<super::users::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
