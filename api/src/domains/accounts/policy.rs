//! Who may read and change an account: the one statement of the `users` policies
//! (self: read, update profile; admin: all), used by the resolvers and `repo`.

use uuid::Uuid;

use crate::auth::Identity;

/// Whether `identity` may read (and edit the profile of) account `id`.
pub fn may_access(identity: Identity, id: Uuid) -> bool {
    identity.user_id() == Some(id) || identity.is_admin()
}
