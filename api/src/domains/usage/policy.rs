//! Who may read usage: the one statement of the `usage_analytics` policies. An account
//! reads its own; admins read anyone's (migration m20261125_000005); the gateway and
//! the service append rows as part of what they count.

use uuid::Uuid;

use crate::auth::Identity;

/// Whether `identity` may read the usage of account `user_id`.
pub fn may_read(identity: Identity, user_id: Uuid) -> bool {
    identity.user_id() == Some(user_id) || identity.is_admin()
}
