//! SQL for agent tasks. Reads filter with [`super::policy::readable`], so the same rows
//! are hidden on SQLite, where no policy runs. Writes name only the columns they change
//! (owners may update only `status`, `finished_at` and `updated_at`), and each update is
//! conditional on the status it was checked against, so a concurrent change is refused
//! instead of overwritten.

use chrono::Utc;
use entity::{
    agent_tasks::{self, AgentTaskStatus as Status},
    agents,
};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, Order, QueryFilter, QueryOrder,
    QuerySelect, Select,
    sea_query::{LockBehavior, LockType},
};
use uuid::Uuid;

use super::policy;
use crate::{
    auth::Identity,
    error::{ApiError, ApiResult},
};

/// The task `id` if `identity` may read it.
pub async fn find_readable(
    db: &impl ConnectionTrait,
    identity: Identity,
    id: Uuid,
) -> ApiResult<Option<agent_tasks::Model>> {
    Ok(agent_tasks::Entity::find_by_id(id)
        .filter(policy::readable(identity))
        .one(db)
        .await?)
}

/// The tasks `identity` may read, of one project or all, of one status or all.
pub fn readable(
    identity: Identity,
    project: Option<Uuid>,
    status: Option<Status>,
) -> Select<agent_tasks::Entity> {
    let mut query = agent_tasks::Entity::find().filter(policy::readable(identity));
    if let Some(project) = project {
        query = query.filter(agent_tasks::Column::ProjectId.eq(project));
    }
    if let Some(status) = status {
        query = query.filter(agent_tasks::Column::Status.eq(status));
    }
    query
}

/// The active agent `slug`, if any.
pub async fn find_active_agent(
    db: &impl ConnectionTrait,
    slug: &str,
) -> ApiResult<Option<agents::Model>> {
    Ok(agents::Entity::find()
        .filter(agents::Column::Slug.eq(slug))
        .filter(agents::Column::IsActive.eq(true))
        .one(db)
        .await?)
}

/// The agents among `ids` that `identity` may read one by one (the catalog's policy).
pub async fn agents_by_id(
    db: &impl ConnectionTrait,
    identity: Identity,
    ids: impl IntoIterator<Item = Uuid>,
) -> ApiResult<Vec<agents::Model>> {
    let mut ids = ids.into_iter().peekable();
    if ids.peek().is_none() {
        // An empty `IN` would still cost a round trip (sea-query writes `1 = 2`).
        return Ok(Vec::new());
    }
    Ok(agents::Entity::find()
        .filter(agents::Column::Id.is_in(ids))
        .filter(crate::domains::catalog::policy::agent_readable(identity))
        .all(db)
        .await?)
}

/// The ids of the active agents among `slugs`.
pub async fn active_agent_ids(db: &impl ConnectionTrait, slugs: &[String]) -> ApiResult<Vec<Uuid>> {
    Ok(agents::Entity::find()
        .filter(agents::Column::Slug.is_in(slugs.iter().cloned()))
        .filter(agents::Column::IsActive.eq(true))
        .select_only()
        .column(agents::Column::Id)
        .into_tuple()
        .all(db)
        .await?)
}

/// A validated new task.
pub struct NewTask {
    pub id: Uuid,
    pub project_id: Uuid,
    pub user_id: Uuid,
    pub agent_id: Uuid,
    pub parent_task_id: Option<Uuid>,
    pub title: String,
    pub input: serde_json::Value,
    pub priority: i32,
}

/// Inserts a queued task, naming only the columns an owner may write.
pub async fn insert(db: &impl ConnectionTrait, new: NewTask) -> ApiResult<agent_tasks::Model> {
    let now = Utc::now();
    let task = agent_tasks::ActiveModel {
        id: Set(new.id),
        project_id: Set(new.project_id),
        user_id: Set(new.user_id),
        agent_id: Set(new.agent_id),
        parent_task_id: Set(new.parent_task_id),
        title: Set(new.title),
        input: Set(new.input),
        status: Set(Status::Queued),
        progress: Set(0),
        priority: Set(new.priority),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    };
    Ok(agent_tasks::Entity::insert(task)
        .exec_with_returning(db)
        .await?)
}

/// The highest-priority, oldest queued task of `agents`, locked for this transaction.
/// On Postgres `FOR UPDATE SKIP LOCKED`, so concurrent claimers each get a different
/// task; a SQLite writing transaction holds the database's write lock from its
/// `BEGIN IMMEDIATE`, so no other claimer runs between this read and the update.
pub async fn next_queued(
    db: &impl ConnectionTrait,
    agents: &[Uuid],
    query: Select<agent_tasks::Entity>,
) -> ApiResult<Option<agent_tasks::Model>> {
    let mut query = query
        .filter(agent_tasks::Column::Status.eq(Status::Queued))
        .filter(agent_tasks::Column::AgentId.is_in(agents.iter().copied()))
        .order_by(agent_tasks::Column::Priority, Order::Desc)
        .order_by(agent_tasks::Column::Id, Order::Asc)
        .limit(1);
    if db.get_database_backend() == DatabaseBackend::Postgres {
        query = query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    Ok(query.one(db).await?)
}

/// The columns a step of the state machine writes; `None` leaves a column as it is.
#[derive(Default)]
pub struct Step {
    pub progress: Option<i32>,
    pub output: Option<serde_json::Value>,
    pub error: Option<Option<String>>,
    pub attempts: Option<i32>,
    pub started_at: bool,
    pub finished_at: bool,
}

/// Moves `task` to `to` (checked by [`policy::transition`]; `None` keeps its status,
/// for progress reports on a running task) and writes `step`, only if the row still has
/// the status it was read with.
pub async fn apply(
    db: &impl ConnectionTrait,
    task: &agent_tasks::Model,
    to: Option<Status>,
    step: Step,
) -> ApiResult<agent_tasks::Model> {
    if let Some(to) = to {
        policy::transition(task.status, to)?;
    }
    let now = Utc::now();
    let set = |flag: bool| if flag { Set(Some(now)) } else { NotSet };
    let changes = agent_tasks::ActiveModel {
        status: to.map_or(NotSet, Set),
        progress: step.progress.map_or(NotSet, Set),
        output: step.output.map_or(NotSet, |output| Set(Some(output))),
        error: step.error.map_or(NotSet, Set),
        attempts: step.attempts.map_or(NotSet, Set),
        started_at: set(step.started_at),
        finished_at: set(step.finished_at),
        updated_at: Set(now),
        ..Default::default()
    };
    // Only if the row is still as read: the move was judged from its status and the
    // progress rule from its progress, and a concurrent change must not be overwritten.
    let updated = agent_tasks::Entity::update_many()
        .set(changes)
        .filter(agent_tasks::Column::Id.eq(task.id))
        .filter(agent_tasks::Column::Status.eq(task.status))
        .filter(agent_tasks::Column::Progress.eq(task.progress))
        .exec(db)
        .await?;
    if updated.rows_affected == 0 {
        return Err(ApiError::InvalidTransition(format!(
            "the agent task changed meanwhile (it was {} at {}%); read it again",
            policy::name(task.status),
            task.progress
        )));
    }
    agent_tasks::Entity::find_by_id(task.id)
        .one(db)
        .await?
        .ok_or(ApiError::NotFound("agent task"))
}
