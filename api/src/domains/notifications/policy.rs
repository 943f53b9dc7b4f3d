//! Who may do what with notifications: the one statement of the `notifications`
//! policies. The owner reads, marks read and deletes their own; the service and admins
//! create them for anyone.

use entity::notifications;
use sea_orm::{ColumnTrait, Condition};
use uuid::Uuid;

/// The notifications of `user_id`: what `notifications` lists and the owner may change.
pub fn owned_by(user_id: Uuid) -> Condition {
    Condition::all().add(notifications::Column::UserId.eq(user_id))
}
