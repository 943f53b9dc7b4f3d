//! Who may read usage: the one statement of the `usage_analytics` policies. An account
//! reads its own; admins read anyone's (migration m20261125_000005); the gateway and
//! the service append rows as part of what they count, and the service reads none.

use uuid::Uuid;

use crate::auth::{Identity, Role};

/// Whether `identity` may read the usage of account `user_id`: its own, or anyone's for
/// an admin. Services append usage but read none.
pub fn may_read(identity: Identity, user_id: Uuid) -> bool {
    match identity.role() {
        Some(Role::Admin) => true,
        Some(Role::User) => identity.user_id() == Some(user_id),
        Some(Role::Service) | None => false,
    }
}
