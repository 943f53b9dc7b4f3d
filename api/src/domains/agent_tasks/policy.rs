//! Who may read and change an agent task, and how its status may move: the one
//! statement of the `agent_tasks` policies (owner: create, read, cancel; service: read
//! all, claim, progress, finish; admin: all) and of the task state machine.

use entity::agent_tasks::{self, AgentTaskStatus as Status};
use sea_orm::Condition;
use uuid::Uuid;

use crate::{
    auth::{Identity, Role},
    error::{ApiError, ApiResult},
    kit::authz::Readers,
};

/// Whose tasks `identity` may read: its own, or all for admins and services.
pub fn readers(identity: Identity) -> Readers {
    match (identity.role(), identity.user_id()) {
        (Some(Role::Admin | Role::Service), _) => Readers::All,
        (Some(Role::User), Some(user)) => Readers::Owner(user),
        // Anonymous callers read no tasks.
        _ => Readers::Nobody,
    }
}

/// The tasks `identity` may read, as a condition.
pub fn readable(identity: Identity) -> Condition {
    readers(identity).condition(agent_tasks::Column::UserId, agent_tasks::Column::Id)
}

/// Whether `identity` may cancel a task requested by `owner`: the owner or an admin.
pub fn may_cancel(identity: Identity, owner: Uuid) -> bool {
    match identity.role() {
        Some(Role::Admin) => true,
        Some(Role::User) => identity.user_id() == Some(owner),
        Some(Role::Service) | None => false,
    }
}

/// How many times a task runs before a failure is final.
pub const MAX_ATTEMPTS: i32 = 3;

/// The task state machine: queued→running→succeeded|failed, queued|running→cancelled,
/// and running→queued when a failed attempt is retried. Anything else is
/// `INVALID_TRANSITION`, checked before anything is written.
pub fn transition(from: Status, to: Status) -> ApiResult<()> {
    use Status::*;
    let legal = matches!(
        (from, to),
        (Queued, Running) | (Running, Succeeded | Failed | Queued) | (Queued | Running, Cancelled)
    );
    if legal {
        Ok(())
    } else {
        Err(ApiError::InvalidTransition(format!(
            "an agent task cannot go from {} to {}",
            name(from),
            name(to)
        )))
    }
}

/// The status as clients spell it.
pub fn name(status: Status) -> &'static str {
    match status {
        Status::Queued => "QUEUED",
        Status::Running => "RUNNING",
        Status::Succeeded => "SUCCEEDED",
        Status::Failed => "FAILED",
        Status::Cancelled => "CANCELLED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::Iterable;

    #[test]
    fn only_the_documented_moves_are_legal() {
        use Status::*;
        let legal = [
            (Queued, Running),
            (Running, Succeeded),
            (Running, Failed),
            (Running, Queued),
            (Queued, Cancelled),
            (Running, Cancelled),
        ];
        for from in Status::iter() {
            for to in Status::iter() {
                assert_eq!(
                    transition(from, to).is_ok(),
                    legal.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }
}
