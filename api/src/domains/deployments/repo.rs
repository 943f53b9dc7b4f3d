//! SQL for deployments. Reads filter with [`super::policy::readable`], so the same rows
//! are hidden on SQLite, where no policy runs. Writes name only the columns they change
//! (owners may update only `status`, `finished_at` and `updated_at`), and each update is
//! conditional on the status it was checked against, so a concurrent change is refused
//! instead of overwritten.

use chrono::Utc;
use entity::deployments::{self, DeploymentEnvironment, DeploymentStatus as Status};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Select,
};
use uuid::Uuid;

use super::policy;
use crate::{
    auth::Identity,
    error::{ApiError, ApiResult},
};

/// The deployment `id` if `identity` may read it.
pub async fn find_readable(
    db: &impl ConnectionTrait,
    identity: Identity,
    id: Uuid,
) -> ApiResult<Option<deployments::Model>> {
    Ok(deployments::Entity::find_by_id(id)
        .filter(policy::readable(identity))
        .one(db)
        .await?)
}

/// The deployments `identity` may read, of one project or all, of one status or all.
pub fn readable(
    identity: Identity,
    project: Option<Uuid>,
    status: Option<Status>,
) -> Select<deployments::Entity> {
    let mut query = deployments::Entity::find().filter(policy::readable(identity));
    if let Some(project) = project {
        query = query.filter(deployments::Column::ProjectId.eq(project));
    }
    if let Some(status) = status {
        query = query.filter(deployments::Column::Status.eq(status));
    }
    query
}

/// A validated new deployment.
pub struct NewDeployment {
    pub id: Uuid,
    pub project_id: Uuid,
    pub user_id: Uuid,
    pub environment: DeploymentEnvironment,
    pub provider: String,
    pub commit_sha: Option<String>,
}

/// Inserts a queued deployment, naming only the columns an owner may write.
pub async fn insert(
    db: &impl ConnectionTrait,
    new: NewDeployment,
) -> ApiResult<deployments::Model> {
    let now = Utc::now();
    let deployment = deployments::ActiveModel {
        id: Set(new.id),
        project_id: Set(new.project_id),
        user_id: Set(new.user_id),
        environment: Set(new.environment),
        provider: Set(new.provider),
        status: Set(Status::Queued),
        commit_sha: Set(new.commit_sha),
        log: Set(Some(String::new())),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    };
    Ok(deployments::Entity::insert(deployment)
        .exec_with_returning(db)
        .await?)
}

/// The columns a step writes; `None` leaves a column as it is.
#[derive(Default)]
pub struct Step {
    pub url: Option<String>,
    /// The whole log after this step.
    pub log: Option<String>,
}

/// Moves `deployment` to `to` (checked by [`policy::transition`]; a final status also
/// stamps `finished_at`) or, with `None`, keeps its status (only while unfinished), and
/// writes `step`, only if the row still has the status it was read with.
pub async fn apply(
    db: &impl ConnectionTrait,
    deployment: &deployments::Model,
    to: Option<Status>,
    step: Step,
) -> ApiResult<deployments::Model> {
    match to {
        Some(to) => policy::transition(deployment.status, to)?,
        None if policy::is_final(deployment.status) => {
            return Err(ApiError::InvalidTransition(format!(
                "the deployment is {} and changes no more",
                policy::name(deployment.status)
            )));
        }
        None => {}
    }
    let now = Utc::now();
    let changes = deployments::ActiveModel {
        status: to.map_or(NotSet, Set),
        url: step.url.map_or(NotSet, |url| Set(Some(url))),
        log: step.log.map_or(NotSet, |log| Set(Some(log))),
        finished_at: if to.is_some_and(policy::is_final) {
            Set(Some(now))
        } else {
            NotSet
        },
        updated_at: Set(now),
        ..Default::default()
    };
    // Only if the row is still as read: the move was judged from its status and the
    // log appended to what was read, and a concurrent change must not be overwritten.
    let log = match &deployment.log {
        Some(log) => deployments::Column::Log.eq(log.as_str()),
        None => deployments::Column::Log.is_null(),
    };
    let updated = deployments::Entity::update_many()
        .set(changes)
        .filter(deployments::Column::Id.eq(deployment.id))
        .filter(deployments::Column::Status.eq(deployment.status))
        .filter(log)
        .exec(db)
        .await?;
    if updated.rows_affected == 0 {
        return Err(ApiError::InvalidTransition(format!(
            "the deployment changed meanwhile (it was {}); read it again",
            policy::name(deployment.status)
        )));
    }
    deployments::Entity::find_by_id(deployment.id)
        .one(db)
        .await?
        .ok_or(ApiError::NotFound("deployment"))
}
