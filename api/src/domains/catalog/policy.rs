//! Who may read and write the catalogs (`ai_services`, `agents`): the one statement of
//! their policies. Everyone (anonymous and scoped tokens included) reads active
//! entries, admins read all and write; services read active entries like everyone.

use sea_orm::{ColumnTrait, Condition};

use crate::auth::Identity;

/// The entries `identity` may read, as a condition on the table's `is_active` column.
pub fn readable(identity: Identity, is_active: impl ColumnTrait) -> Condition {
    if identity.is_admin() {
        Condition::all()
    } else {
        Condition::all().add(is_active.eq(true))
    }
}

/// Whether `identity` may see inactive entries (what `includeInactive` asks for).
pub fn sees_inactive(identity: Identity) -> bool {
    identity.is_admin()
}
