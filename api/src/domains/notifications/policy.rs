//! Who may do what with notifications: the one statement of the `notifications`
//! policies. The owner reads, marks read and deletes their own; the service and admins
//! create them for anyone.

use entity::notifications;
use sea_orm::Condition;
use uuid::Uuid;

use crate::kit::authz::Readers;

/// Whose notifications `user_id` reads: its own, whatever its role (admins create
/// notifications for others but do not read them).
pub fn readers(user_id: Uuid) -> Readers {
    Readers::Owner(user_id)
}

/// The notifications of `user_id`: what `notifications` lists and the owner may change.
pub fn owned_by(user_id: Uuid) -> Condition {
    readers(user_id).condition(notifications::Column::UserId, notifications::Column::Id)
}
