//! Who may touch a provider API key: the one statement of the `user_api_keys` policies.
//! The owner creates, lists (metadata only) and revokes their own keys; nobody else
//! reaches them through the API, admins included (the policies give admins nothing on
//! this table); a service token reads a secret only through `agentTaskCredential`, for
//! a running task, and never lists keys.

use entity::user_api_keys;
use sea_orm::{ColumnTrait, Condition};
use uuid::Uuid;

use crate::auth::{Identity, Role};

/// The account whose keys `identity` manages: its own, as a user or an admin; none for
/// services and anonymous callers.
pub fn owner(identity: Identity) -> Option<Uuid> {
    match identity.role() {
        Some(Role::User | Role::Admin) => identity.user_id(),
        Some(Role::Service) | None => None,
    }
}

/// The rows `identity` may list and revoke, as a condition.
pub fn manageable(identity: Identity) -> Condition {
    match owner(identity) {
        Some(user) => Condition::all().add(user_api_keys::Column::UserId.eq(user)),
        None => Condition::all().add(user_api_keys::Column::UserId.is_null()),
    }
}
