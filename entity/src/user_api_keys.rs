//! `user_api_keys`: a user's provider API keys, sealed with an AEAD.
//!
//! The database holds only `ciphertext` and `nonce`; the plaintext never reaches it. On
//! Postgres `flashfusion_authenticated` has no SELECT privilege on those two columns (only
//! `flashfusion_service` may read them), so a user's queries must select
//! [`Metadata`] (or name columns explicitly) and must not ask for the full [`Model`] back
//! (`ActiveModel::insert`/`update` do, through `RETURNING *`).

use sea_orm::DerivePartialModel;
use sea_orm::entity::prelude::*;

/// One row of `user_api_keys`, secret included (service only).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "user_api_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    /// The catalog service this key is for, if any; set to NULL if the service is deleted.
    pub ai_service_id: Option<Uuid>,
    /// Provider name (`openai`, ...), always set, so a key outlives its catalog entry.
    pub provider: String,
    pub label: String,
    /// AEAD ciphertext of the key (tag included), owner id bound as associated data.
    pub ciphertext: Vec<u8>,
    pub nonce: Vec<u8>,
    /// Which sealing key was used, for rotation.
    pub key_id: String,
    /// The last four characters of the plaintext key, for display.
    pub hint: String,
    pub last_used_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// Every column of `user_api_keys` except the secret: what its owner may read.
#[derive(Clone, Debug, PartialEq, Eq, DerivePartialModel)]
#[sea_orm(entity = "Entity")]
pub struct Metadata {
    pub id: Uuid,
    pub user_id: Uuid,
    pub ai_service_id: Option<Uuid>,
    pub provider: String,
    pub label: String,
    pub key_id: String,
    pub hint: String,
    pub last_used_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
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

impl Related<super::ai_services::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::AiService.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
