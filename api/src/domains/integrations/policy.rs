//! Who may touch an integration: the one statement of the `integrations` policies. The
//! owner does everything with their own (credentials write-only); nobody else reaches
//! them through the API, admins included; services read credentials in the database,
//! never through the API.

use entity::integrations;
use sea_orm::Condition;

use crate::{auth::Identity, kit::authz::own_rows};

/// The rows `identity` may read and change, as a condition: its own (users and admins alike).
pub fn manageable(identity: Identity) -> Condition {
    own_rows(identity, integrations::Column::UserId)
}
