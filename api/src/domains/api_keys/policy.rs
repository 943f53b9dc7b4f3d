//! Who may touch a provider API key: the one statement of the `user_api_keys` policies.
//! The owner creates, lists (metadata only) and revokes their own keys; nobody else
//! reaches them through the API, admins included (the policies give admins nothing on
//! this table); a service token reads a secret only through `agentTaskCredential`, for
//! a running task, and never lists keys.

use entity::user_api_keys;
use sea_orm::Condition;

use crate::{auth::Identity, kit::authz::own_rows};

/// The rows `identity` may list and revoke, as a condition: its own (users and admins alike).
pub fn manageable(identity: Identity) -> Condition {
    own_rows(identity, user_api_keys::Column::UserId)
}
