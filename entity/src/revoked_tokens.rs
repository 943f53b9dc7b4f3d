//! `revoked_tokens` (internal): revocation ids of signed-out biscuit tokens.
//!
//! A token is rejected when any of its blocks' revocation ids is stored here. Rows may be
//! purged once `expires_at` has passed, since the token would be refused anyway.

use sea_orm::entity::prelude::*;

/// One revoked biscuit block.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "revoked_tokens")]
pub struct Model {
    /// Hex encoding of the block's revocation identifier.
    #[sea_orm(primary_key, auto_increment = false)]
    pub revocation_id: String,
    pub revoked_at: DateTimeUtc,
    /// When the revoked token would have expired anyway, if known.
    pub expires_at: Option<DateTimeUtc>,
    /// The account that signed out, if recorded; a user may only record their own
    /// (`m20261125_000004_tighten_policies`), the service anyone's.
    pub user_id: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
