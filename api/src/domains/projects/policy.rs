//! Who may read and change a project: the one statement of the `projects` policies
//! (owner: all; anyone: read public; admin: all; service: read all, change nothing),
//! used by the resolvers, the list conditions and the SQL in `repo`.

use entity::projects::{self, ProjectVisibility};
use sea_orm::{ColumnTrait, Condition};
use uuid::Uuid;

use crate::auth::{Identity, Role};

/// The rows `identity` may read, as a condition: public projects, its own, or all for
/// admins and services.
pub fn readable(identity: Identity) -> Condition {
    let public = projects::Column::Visibility.eq(ProjectVisibility::Public);
    match (identity.role(), identity.user_id()) {
        (Some(Role::Admin | Role::Service), _) => Condition::all(),
        (_, Some(user)) => Condition::any()
            .add(public)
            .add(projects::Column::OwnerId.eq(user)),
        (_, None) => Condition::all().add(public),
    }
}

/// Whether `identity` may change (or hang new rows off) a project owned by `owner`:
/// its owner or an admin, never a service.
pub fn may_change(identity: Identity, owner: Uuid) -> bool {
    match identity.role() {
        Some(Role::Admin) => true,
        Some(Role::User) => identity.user_id() == Some(owner),
        Some(Role::Service) | None => false,
    }
}
