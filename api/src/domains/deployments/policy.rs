//! Who may read and change a deployment, and how its status may move: the one
//! statement of the `deployments` policies (owner: create, read, cancel; service: read
//! all, advance; admin: all) and of the deployment state machine.

use entity::deployments::{self, DeploymentStatus as Status};
use sea_orm::Condition;
use uuid::Uuid;

use crate::{
    auth::{Identity, Role},
    error::{ApiError, ApiResult},
    kit::authz::Readers,
};

/// Whose deployments `identity` may read: its own, or all for admins and services.
pub fn readers(identity: Identity) -> Readers {
    match (identity.role(), identity.user_id()) {
        (Some(Role::Admin | Role::Service), _) => Readers::All,
        (Some(Role::User), Some(user)) => Readers::Owner(user),
        // Anonymous callers read no deployments.
        _ => Readers::Nobody,
    }
}

/// The deployments `identity` may read, as a condition.
pub fn readable(identity: Identity) -> Condition {
    readers(identity).condition(deployments::Column::UserId, deployments::Column::Id)
}

/// Whether `identity` may cancel a deployment requested by `owner`: the owner or an
/// admin.
pub fn may_cancel(identity: Identity, owner: Uuid) -> bool {
    match identity.role() {
        Some(Role::Admin) => true,
        Some(Role::User) => identity.user_id() == Some(owner),
        Some(Role::Service) | None => false,
    }
}

/// The deployment state machine: queued→building→deploying→ready, failed from any
/// unfinished step, cancelled from any unfinished step. Anything else is
/// `INVALID_TRANSITION`, checked before anything is written.
pub fn transition(from: Status, to: Status) -> ApiResult<()> {
    use Status::*;
    let legal = matches!(
        (from, to),
        (Queued, Building)
            | (Building, Deploying)
            | (Deploying, Ready)
            | (Queued | Building | Deploying, Failed | Cancelled)
    );
    if legal {
        Ok(())
    } else {
        Err(ApiError::InvalidTransition(format!(
            "a deployment cannot go from {} to {}",
            name(from),
            name(to)
        )))
    }
}

/// Whether a deployment in `status` is over.
pub fn is_final(status: Status) -> bool {
    matches!(status, Status::Ready | Status::Failed | Status::Cancelled)
}

/// The status as clients spell it.
pub fn name(status: Status) -> &'static str {
    match status {
        Status::Queued => "QUEUED",
        Status::Building => "BUILDING",
        Status::Deploying => "DEPLOYING",
        Status::Ready => "READY",
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
        let mut legal = vec![
            (Queued, Building),
            (Building, Deploying),
            (Deploying, Ready),
        ];
        for from in [Queued, Building, Deploying] {
            legal.push((from, Failed));
            legal.push((from, Cancelled));
        }
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
