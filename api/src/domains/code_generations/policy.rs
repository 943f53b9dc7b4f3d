//! Who may touch a code generation, and how its status may move: the one statement of
//! the `code_generations` policies and state machine.
//!
//! The owner reads, creates (`pending`, on a project they own) and nothing else; the
//! service reads every generation and moves it along (start, complete, fail). Admins
//! get nothing of other users' generations: the policies grant them none. The status
//! moves pending→running→succeeded|failed, or pending→failed (a worker that cannot
//! start one); anything else is `INVALID_TRANSITION` ([`transition`]).

use entity::code_generations::{self, CodeGenerationStatus as Status};
use sea_orm::{ColumnTrait, Condition};
use uuid::Uuid;

use crate::{
    auth::{Identity, Role},
    error::{ApiError, ApiResult},
};

/// The rows `identity` may read, as a condition: its own, or all for services.
pub fn readable(identity: Identity) -> Condition {
    match (identity.role(), identity.user_id()) {
        (Some(Role::Service), _) => Condition::all(),
        (Some(Role::User | Role::Admin), Some(user)) => {
            Condition::all().add(code_generations::Column::UserId.eq(user))
        }
        _ => Condition::all().add(code_generations::Column::UserId.is_null()),
    }
}

/// Whether `identity` may read any generation at all: anonymous callers may not (they
/// have no privilege on the table).
pub fn reads_any(identity: Identity) -> bool {
    identity.role().is_some()
}

/// Whether `identity` may ask for a generation on a project owned by `owner`: only the
/// project's owner, never an admin for someone else or a service.
pub fn may_create(identity: Identity, owner: Uuid) -> bool {
    matches!(identity.role(), Some(Role::User | Role::Admin)) && identity.user_id() == Some(owner)
}

/// The one place the status of a generation changes: `Ok` for a legal move.
pub fn transition(from: Status, to: Status) -> ApiResult<()> {
    use Status::*;
    match (from, to) {
        (Pending, Running) | (Running, Succeeded | Failed) | (Pending, Failed) => Ok(()),
        _ => Err(ApiError::InvalidTransition(format!(
            "a {} generation cannot become {}",
            name(from),
            name(to)
        ))),
    }
}

fn name(status: Status) -> &'static str {
    match status {
        Status::Pending => "pending",
        Status::Running => "running",
        Status::Succeeded => "succeeded",
        Status::Failed => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_forward_moves_are_legal() {
        use Status::*;
        let all = [Pending, Running, Succeeded, Failed];
        let legal = [
            (Pending, Running),
            (Running, Succeeded),
            (Running, Failed),
            (Pending, Failed),
        ];
        for from in all {
            for to in all {
                assert_eq!(
                    transition(from, to).is_ok(),
                    legal.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }
}
