//! Who may read and write billing: the one statement of the `billing` policies. The
//! owner reads their own; admins read and write anyone's; the service (the payment
//! provider's webhook) writes anyone's.

use entity::billing;
use sea_orm::{ColumnTrait, Condition};
use uuid::Uuid;

use crate::auth::{Identity, Role};

/// Whether `identity` may read the billing of account `user_id`.
pub fn may_read(identity: Identity, user_id: Uuid) -> bool {
    identity.user_id() == Some(user_id)
        || matches!(identity.role(), Some(Role::Admin | Role::Service))
}

/// The billing rows `identity` may read, as a condition.
pub fn readable(identity: Identity) -> Condition {
    match (identity.role(), identity.user_id()) {
        (Some(Role::Admin | Role::Service), _) => Condition::all(),
        (_, Some(user)) => Condition::all().add(billing::Column::UserId.eq(user)),
        (_, None) => Condition::all().add(billing::Column::UserId.is_null()),
    }
}
