//! Who may touch an integration: the one statement of the `integrations` policies. The
//! owner does everything with their own (credentials write-only); nobody else reaches
//! them through the API, admins included; services read credentials in the database,
//! never through the API.

use entity::integrations;
use sea_orm::{ColumnTrait, Condition};
use uuid::Uuid;

use crate::auth::{Identity, Role};

/// The account whose integrations `identity` manages: its own, as a user or an admin;
/// none for services and anonymous callers.
pub fn owner(identity: Identity) -> Option<Uuid> {
    match identity.role() {
        Some(Role::User | Role::Admin) => identity.user_id(),
        Some(Role::Service) | None => None,
    }
}

/// The rows `identity` may read and change, as a condition.
pub fn manageable(identity: Identity) -> Condition {
    match owner(identity) {
        Some(user) => Condition::all().add(integrations::Column::UserId.eq(user)),
        None => Condition::all().add(integrations::Column::UserId.is_null()),
    }
}
