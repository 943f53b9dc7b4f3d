//! Agent tasks: work a project's owner asks an agent to do, which agent workers (service
//! tokens) claim, report on and finish.
//!
//! Who may do what lives in [`policy`], which mirrors the `agent_tasks` policies, and so
//! does the one state machine every status change goes through
//! ([`policy::transition`], applied by [`repo::apply`]). A task the caller cannot see is
//! `NOT_FOUND` for mutations and `null` for `agentTask`. Creating and finishing a task
//! records usage, and a task's end notifies its owner, in the operation's transaction.

mod nested;
pub mod policy;
mod repo;

use async_graphql::{
    ComplexObject, Context, Enum, ID, InputObject, Json, Object, SimpleObject, Subscription,
};
use chrono::{DateTime, Utc};
use entity::agent_tasks::{self, AgentTaskStatus as DbStatus};
use futures_util::stream::BoxStream;
use serde_json::json;
use uuid::Uuid;

pub(crate) use nested::project_page;

use rust_decimal::Decimal;

use super::{
    catalog::{Agent, AgentLoader},
    notifications::{NewNotification, notify},
    projects::{Project, load_visible, named_visible, require_changeable},
    usage::{self, UsageEvent},
};
use crate::{
    auth::{Operation, Resource, Role},
    error::{ApiError, ApiResult},
    kit::{
        RequestContext,
        authz::{as_service, require_service, scope_for, scope_to_token},
        enums::mirror_enum,
        feed::{ProjectRow, event_type, project_feed, selects_any},
        loaders::{ById, Loaders, load_one},
        pagination::{Page, PageArgs, page_complexity, paginate},
        parse_id, parse_optional_id,
        plain::{
            Plain, PlainFields, enumerated, json, nullable, nullable_json, nullable_timestamp,
            scalar, timestamp,
        },
    },
    realtime::Row,
    validate::{self, Lines},
};

/// Lifecycle of an agent task.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum AgentTaskStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

mirror_enum!(AgentTaskStatus <=> DbStatus { Queued, Running, Succeeded, Failed, Cancelled });

/// Work an agent does on a project.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct AgentTask {
    id: ID,
    title: String,
    /// What the agent was given.
    input: Json<serde_json::Value>,
    /// What the agent produced, once it has.
    output: Option<Json<serde_json::Value>>,
    status: AgentTaskStatus,
    /// 0 to 100; only rises while the task runs.
    progress: i32,
    /// Higher runs first.
    priority: i32,
    error: Option<String>,
    /// How many times a worker has claimed the task.
    attempts: i32,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    #[graphql(skip)]
    project_id: Uuid,
    #[graphql(skip)]
    agent_id: Uuid,
    /// The agent, when the loader of a nested page read it with the page.
    #[graphql(skip)]
    preloaded_agent: Option<Agent>,
    #[graphql(skip)]
    parent_task_id: Option<Uuid>,
}

impl From<agent_tasks::Model> for AgentTask {
    fn from(t: agent_tasks::Model) -> Self {
        Self {
            id: t.id.into(),
            title: t.title,
            input: Json(t.input),
            output: t.output.map(Json),
            status: t.status.into(),
            progress: t.progress,
            priority: t.priority,
            error: t.error,
            attempts: t.attempts,
            started_at: t.started_at,
            finished_at: t.finished_at,
            created_at: t.created_at,
            updated_at: t.updated_at,
            project_id: t.project_id,
            agent_id: t.agent_id,
            preloaded_agent: None,
            parent_task_id: t.parent_task_id,
        }
    }
}

/// Tasks in lists answer a selection of these without resolving each field
/// (`kit::plain`); `agent`, `project` and the other resolved fields are not plain.
impl PlainFields for AgentTask {
    fn plain(&self, name: &str) -> Option<async_graphql::Value> {
        Some(match name {
            "id" => scalar(&self.id),
            "title" => scalar(&self.title),
            "input" => json(&self.input),
            "output" => nullable_json(self.output.as_ref()),
            "status" => enumerated(self.status),
            "progress" => scalar(&self.progress),
            "priority" => scalar(&self.priority),
            "error" => nullable(self.error.as_ref()),
            "attempts" => scalar(&self.attempts),
            "startedAt" => nullable_timestamp(self.started_at.as_ref()),
            "finishedAt" => nullable_timestamp(self.finished_at.as_ref()),
            "createdAt" => timestamp(&self.created_at),
            "updatedAt" => timestamp(&self.updated_at),
            _ => return None,
        })
    }
}

impl From<agent_tasks::Model> for Plain<AgentTask> {
    fn from(task: agent_tasks::Model) -> Self {
        Plain(task.into())
    }
}

impl AgentTask {
    /// The task with its agent already read (`None`: the agent is not readable, and the
    /// `agent` field asks the catalog's loader).
    pub(crate) fn with_agent(self, agent: Option<Agent>) -> Self {
        Self {
            preloaded_agent: agent,
            ..self
        }
    }
}

#[ComplexObject]
impl AgentTask {
    /// The project the task works on; whoever reads a task may read its project.
    async fn project(&self, ctx: &Context<'_>) -> ApiResult<Project> {
        load_visible(ctx, self.project_id).await
    }

    /// The agent doing the task.
    async fn agent(&self, ctx: &Context<'_>) -> ApiResult<Agent> {
        if let Some(agent) = &self.preloaded_agent {
            return Ok(agent.clone());
        }
        load_one::<AgentLoader, _>(ctx, self.agent_id)
            .await?
            .ok_or(ApiError::NotFound("agent"))
    }

    /// The task this one was split from, if any.
    async fn parent_task(&self, ctx: &Context<'_>) -> ApiResult<Option<AgentTask>> {
        match self.parent_task_id {
            Some(parent) => load_one::<TaskLoader, _>(ctx, parent).await,
            None => Ok(None),
        }
    }
}

/// Loads [`AgentTask`]s by id, as far as the caller may read them.
pub type TaskLoader = ById<agent_tasks::Entity, AgentTask>;

/// Registers the agent tasks domain's loaders for a request.
pub fn register(loaders: Loaders) -> Loaders {
    nested::register(loaders).register(|tx, identity| {
        TaskLoader::new(
            tx,
            policy::readable(identity),
            agent_tasks::Column::Id,
            |row| (row.id, row.into()),
        )
    })
}

#[derive(InputObject)]
pub struct CreateAgentTaskInput {
    project_id: ID,
    /// An active agent of the catalog.
    agent_slug: String,
    title: String,
    /// A JSON object for the agent; `{}` when omitted.
    input: Option<Json<serde_json::Value>>,
    /// Higher runs first; 0 when omitted.
    priority: Option<i32>,
    /// A task of the same project this one is split from.
    parent_task_id: Option<ID>,
}

#[derive(InputObject)]
pub struct ClaimAgentTaskInput {
    /// The agents this worker runs.
    agent_slugs: Vec<String>,
}

#[derive(InputObject)]
pub struct ReportAgentTaskProgressInput {
    id: ID,
    /// 0 to 100, at least the current progress.
    progress: i32,
    /// Partial output so far, replacing the previous one.
    output: Option<Json<serde_json::Value>>,
}

#[derive(InputObject)]
pub struct CompleteAgentTaskInput {
    id: ID,
    output: Option<Json<serde_json::Value>>,
}

#[derive(InputObject)]
pub struct FailAgentTaskInput {
    id: ID,
    error: String,
    /// Put the task back in the queue while it has attempts left.
    #[graphql(default)]
    retry: bool,
}

/// The payload of `createAgentTask`.
#[derive(SimpleObject)]
pub struct CreateAgentTaskPayload {
    task: AgentTask,
}

/// The payload of `cancelAgentTask`.
#[derive(SimpleObject)]
pub struct CancelAgentTaskPayload {
    task: AgentTask,
}

/// The payload of `claimAgentTask`: null when no task of those agents is queued.
#[derive(SimpleObject)]
pub struct ClaimAgentTaskPayload {
    task: Option<AgentTask>,
}

/// The payload of `reportAgentTaskProgress`.
#[derive(SimpleObject)]
pub struct ReportAgentTaskProgressPayload {
    task: AgentTask,
}

/// The payload of `completeAgentTask`.
#[derive(SimpleObject)]
pub struct CompleteAgentTaskPayload {
    task: AgentTask,
}

/// The payload of `failAgentTask`.
#[derive(SimpleObject)]
pub struct FailAgentTaskPayload {
    task: AgentTask,
}

#[derive(Default)]
pub struct AgentTaskQuery;

#[Object]
impl AgentTaskQuery {
    /// One task; null when it does not exist or the caller may not see it.
    async fn agent_task(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<AgentTask>> {
        let rc = RequestContext::of(ctx)?;
        let id = parse_id("id", &id)?;
        if rc.session_opt().is_none() {
            // Anonymous callers read no tasks (and Postgres grants them no SELECT).
            return Ok(None);
        }
        let Some(task) = repo::find_readable(&*rc.tx().await?, rc.identity(), id).await? else {
            return Ok(None);
        };
        if rc
            .authorize(Operation::Read, Resource::Project(task.project_id))
            .is_err()
        {
            return Ok(None);
        }
        Ok(Some(task.into()))
    }

    /// The tasks the caller may read (its own; all for admins and services), of one
    /// project when `projectId` is given, newest first.
    #[graphql(complexity = "page_complexity(first, last, child_complexity)")]
    #[expect(
        clippy::too_many_arguments,
        reason = "a list field takes its filters and the four Relay arguments"
    )]
    async fn agent_tasks(
        &self,
        ctx: &Context<'_>,
        project_id: Option<ID>,
        status: Option<AgentTaskStatus>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<Page<Plain<AgentTask>>> {
        let rc = RequestContext::of(ctx)?;
        rc.session()?;
        let project = parse_optional_id("projectId", project_id.as_ref())?;
        let query = repo::readable(rc.identity(), project, status.map(Into::into));
        let query =
            scope_to_token(rc, query, agent_tasks::Column::ProjectId, Resource::Account).await?;
        paginate(
            rc.tx_ref(),
            query,
            (agent_tasks::Column::Id, |t: &agent_tasks::Model| t.id),
            PageArgs::new(ctx, first, after, last, before),
            Plain::from,
        )
        .await
    }
}

event_type!(
    /// A change to an agent task.
    AgentTaskEvent { task: AgentTask }
);

/// The fields of [`AgentTask`] that read other rows: every field that is not plain
/// (its `ComplexObject`'s), as [`selects_any`] requires.
const TASK_EDGES: &[&str] = &["project", "agent", "parentTask"];

#[derive(Default)]
pub struct AgentTaskSubscription;

#[Subscription]
impl AgentTaskSubscription {
    /// Every change to the tasks the caller may read (its own; all for admins and
    /// services), as it happens: of one project with `projectId`, of one task with
    /// `taskId`. With `after`, a cursor received earlier, what was missed since comes
    /// first, then live changes, with none lost or repeated.
    async fn agent_task_updated(
        &self,
        ctx: &Context<'_>,
        project_id: Option<ID>,
        task_id: Option<ID>,
        after: Option<String>,
    ) -> Result<BoxStream<'static, ApiResult<AgentTaskEvent>>, ApiError> {
        let rc = RequestContext::of(ctx)?;
        rc.session()?;
        let project = Box::pin(named_visible(rc, project_id.as_ref())).await?;
        let task = match &task_id {
            Some(id) => Some(Box::pin(require_readable(rc, id)).await?.id),
            None => None,
        };
        project_feed(
            ctx,
            after,
            (project, task),
            policy::readers(rc.identity()),
            selects_any(ctx, "task", TASK_EDGES),
            |event, task: agent_tasks::Model| AgentTaskEvent::new(event, task.into()),
        )
        .await
    }
}

impl ProjectRow for agent_tasks::Model {
    fn pick(row: &Row) -> Option<&Self> {
        match row {
            Row::AgentTask(task) => Some(task),
            _ => None,
        }
    }
    fn id(&self) -> Uuid {
        self.id
    }
    fn project_id(&self) -> Uuid {
        self.project_id
    }
    fn owner_id(&self) -> Uuid {
        self.user_id
    }
}

#[derive(Default)]
pub struct AgentTaskMutation;

#[Object]
impl AgentTaskMutation {
    /// Queues a task for an active agent on a project the caller owns (any, for
    /// admins).
    async fn create_agent_task(
        &self,
        ctx: &Context<'_>,
        input: CreateAgentTaskInput,
    ) -> ApiResult<CreateAgentTaskPayload> {
        let rc = RequestContext::of(ctx)?;
        rc.session()?;
        let project_id = parse_id("projectId", &input.project_id)?;
        let project = require_changeable(rc, project_id).await?;
        let title = validate::required("title", &input.title, TITLE_MAX, Lines::One)?;
        let payload = input.input.map_or_else(|| json!({}), |Json(value)| value);
        validate::json_object("input", &payload)?;
        let slug = validate::required("agentSlug", &input.agent_slug, SLUG_MAX, Lines::One)?;
        let tx = rc.tx().await?;
        let agent = repo::find_active_agent(&*tx, &slug)
            .await?
            .ok_or_else(|| ApiError::bad_input("agentSlug: no active agent has this slug"))?;
        let parent_task_id = match &input.parent_task_id {
            Some(id) => {
                let id = parse_id("parentTaskId", id)?;
                repo::find_readable(&*tx, rc.identity(), id)
                    .await?
                    .filter(|parent| parent.project_id == project_id)
                    .ok_or_else(|| {
                        ApiError::bad_input("parentTaskId: not a task of this project")
                    })?;
                Some(id)
            }
            None => None,
        };
        let task = repo::insert(
            &*tx,
            repo::NewTask {
                id: crate::db::new_id(),
                project_id,
                user_id: project.owner_id,
                agent_id: agent.id,
                parent_task_id,
                title,
                input: payload,
                priority: input.priority.unwrap_or(0),
            },
        )
        .await?;
        record_usage(rc, &task, "agent_task.created").await?;
        Ok(CreateAgentTaskPayload { task: task.into() })
    }

    /// Cancels a queued or running task of the caller's (any, for admins).
    async fn cancel_agent_task(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> ApiResult<CancelAgentTaskPayload> {
        let rc = RequestContext::of(ctx)?;
        rc.session()?;
        let task = require_task(rc, &id).await?;
        if !policy::may_cancel(rc.identity(), task.user_id) {
            return Err(ApiError::Forbidden(
                "only the owner or an admin may cancel a task",
            ));
        }
        let task = repo::apply(
            &*rc.tx().await?,
            &task,
            Some(DbStatus::Cancelled),
            repo::Step {
                finished_at: true,
                ..repo::Step::default()
            },
        )
        .await?;
        notify_end(rc, &task).await?;
        Ok(CancelAgentTaskPayload { task: task.into() })
    }

    /// Service only: takes the highest-priority, oldest queued task of these agents
    /// and starts it; null when none is queued. Concurrent workers never get the same
    /// task.
    async fn claim_agent_task(
        &self,
        ctx: &Context<'_>,
        input: ClaimAgentTaskInput,
    ) -> ApiResult<ClaimAgentTaskPayload> {
        let rc = RequestContext::of(ctx)?;
        require_service(rc)?;
        let slugs = input
            .agent_slugs
            .iter()
            .map(|slug| validate::required("agentSlugs", slug, SLUG_MAX, Lines::One))
            .collect::<ApiResult<Vec<_>>>()?;
        let tx = rc.tx().await?;
        let agents = repo::active_agent_ids(&*tx, &slugs).await?;
        if agents.is_empty() {
            return Ok(ClaimAgentTaskPayload { task: None });
        }
        let candidates = scope_to_token(
            rc,
            repo::readable(rc.identity(), None, None),
            agent_tasks::Column::ProjectId,
            Resource::Account,
        )
        .await?;
        // And of those, the projects the token may write: a token limited to some must
        // not pick, every time, a task it cannot claim ahead of those it can.
        let candidates = scope_for(
            rc,
            Operation::Write,
            candidates,
            agent_tasks::Column::ProjectId,
            Resource::Account,
        )
        .await?;
        let Some(task) = repo::next_queued(&*tx, &agents, candidates).await? else {
            return Ok(ClaimAgentTaskPayload { task: None });
        };
        rc.authorize(Operation::Write, Resource::Project(task.project_id))?;
        let task = repo::apply(
            &*tx,
            &task,
            Some(DbStatus::Running),
            repo::Step {
                attempts: Some(task.attempts + 1),
                started_at: true,
                error: Some(None),
                ..repo::Step::default()
            },
        )
        .await?;
        Ok(ClaimAgentTaskPayload {
            task: Some(task.into()),
        })
    }

    /// Service only: records a running task's progress (which only rises) and its
    /// output so far.
    async fn report_agent_task_progress(
        &self,
        ctx: &Context<'_>,
        input: ReportAgentTaskProgressInput,
    ) -> ApiResult<ReportAgentTaskProgressPayload> {
        let rc = RequestContext::of(ctx)?;
        let task = require_worked_task(rc, &input.id).await?;
        if task.status != DbStatus::Running {
            return Err(ApiError::InvalidTransition(format!(
                "only a RUNNING task reports progress; this one is {}",
                policy::name(task.status)
            )));
        }
        if !(0..=100).contains(&input.progress) {
            return Err(ApiError::bad_input("progress: must be between 0 and 100"));
        }
        if input.progress < task.progress {
            return Err(ApiError::bad_input(format!(
                "progress: must not fall below the current {}",
                task.progress
            )));
        }
        let task = repo::apply(
            &*rc.tx().await?,
            &task,
            None,
            repo::Step {
                progress: Some(input.progress),
                output: output(input.output)?,
                ..repo::Step::default()
            },
        )
        .await?;
        Ok(ReportAgentTaskProgressPayload { task: task.into() })
    }

    /// Service only: a running task succeeded with `output`.
    async fn complete_agent_task(
        &self,
        ctx: &Context<'_>,
        input: CompleteAgentTaskInput,
    ) -> ApiResult<CompleteAgentTaskPayload> {
        let rc = RequestContext::of(ctx)?;
        let task = require_worked_task(rc, &input.id).await?;
        let task = repo::apply(
            &*rc.tx().await?,
            &task,
            Some(DbStatus::Succeeded),
            repo::Step {
                progress: Some(100),
                output: output(input.output)?,
                finished_at: true,
                ..repo::Step::default()
            },
        )
        .await?;
        record_usage(rc, &task, "agent_task.finished").await?;
        notify_end(rc, &task).await?;
        Ok(CompleteAgentTaskPayload { task: task.into() })
    }

    /// Service only: a running task's attempt failed. With `retry` it is queued again
    /// while it has had fewer than three attempts; otherwise it is FAILED.
    async fn fail_agent_task(
        &self,
        ctx: &Context<'_>,
        input: FailAgentTaskInput,
    ) -> ApiResult<FailAgentTaskPayload> {
        let rc = RequestContext::of(ctx)?;
        let task = require_worked_task(rc, &input.id).await?;
        let error = validate::required("error", &input.error, ERROR_MAX, Lines::Many)?;
        let again = input.retry && task.attempts < policy::MAX_ATTEMPTS;
        let to = if again {
            DbStatus::Queued
        } else {
            DbStatus::Failed
        };
        let task = repo::apply(
            &*rc.tx().await?,
            &task,
            Some(to),
            repo::Step {
                error: Some(Some(error)),
                finished_at: !again,
                ..repo::Step::default()
            },
        )
        .await?;
        if !again {
            record_usage(rc, &task, "agent_task.finished").await?;
            notify_end(rc, &task).await?;
        }
        Ok(FailAgentTaskPayload { task: task.into() })
    }
}

/// The task `id` if the caller may see it (token scope included), `NOT_FOUND`
/// otherwise.
async fn require_readable(rc: &RequestContext, id: &ID) -> ApiResult<agent_tasks::Model> {
    const MISSING: ApiError = ApiError::NotFound("agent task");
    let id = parse_id("id", id)?;
    let task = repo::find_readable(&*rc.tx().await?, rc.identity(), id)
        .await?
        .ok_or(MISSING)?;
    rc.authorize(Operation::Read, Resource::Project(task.project_id))
        .map_err(|_| MISSING)?;
    Ok(task)
}

/// [`require_readable`], and `FORBIDDEN` when the token may not write to its project.
async fn require_task(rc: &RequestContext, id: &ID) -> ApiResult<agent_tasks::Model> {
    let task = require_readable(rc, id).await?;
    rc.authorize(Operation::Write, Resource::Project(task.project_id))?;
    Ok(task)
}

/// [`require_task`] for the service's own steps (progress, completion, failure).
async fn require_worked_task(rc: &RequestContext, id: &ID) -> ApiResult<agent_tasks::Model> {
    require_service(rc)?;
    require_task(rc, id).await
}

/// Records one usage event of `task` for its owner, as the caller when that is the owner
/// or the service; an admin acting on someone else's project records it as the
/// gateway's service identity, since the owner's usage is not the admin's to append.
async fn record_usage(
    rc: &RequestContext,
    task: &agent_tasks::Model,
    event_type: &'static str,
) -> ApiResult<()> {
    let event = UsageEvent {
        user_id: task.user_id,
        project_id: Some(task.project_id),
        event_type,
        quantity: 1,
        tokens: 0,
        cost: Decimal::ZERO,
        metadata: json!({ "taskId": task.id, "status": policy::name(task.status) }),
    };
    let identity = rc.identity();
    if identity.user_id() == Some(task.user_id) || identity.role() == Some(Role::Service) {
        usage::record(&*rc.tx().await?, event).await
    } else {
        as_service(rc, async { usage::record(&*rc.tx().await?, event).await }).await
    }
}

/// Tells the owner that `task` ended, as the gateway's service identity (only the
/// service and admins create notifications).
async fn notify_end(rc: &RequestContext, task: &agent_tasks::Model) -> ApiResult<()> {
    let (kind, title) = match task.status {
        DbStatus::Succeeded => ("agent_task.succeeded", "Agent task succeeded"),
        DbStatus::Failed => ("agent_task.failed", "Agent task failed"),
        DbStatus::Cancelled => ("agent_task.cancelled", "Agent task cancelled"),
        DbStatus::Queued | DbStatus::Running => return Ok(()),
    };
    let new = NewNotification {
        user_id: task.user_id,
        kind: kind.to_owned(),
        title: title.to_owned(),
        body: Some(task.title.clone()),
        data: json!({ "taskId": task.id, "projectId": task.project_id }),
    };
    as_service(rc, async { notify(&*rc.tx().await?, new).await }).await
}

/// Longest task title, in characters.
const TITLE_MAX: usize = 200;
/// Longest error message, in characters.
const ERROR_MAX: usize = 10_000;
/// Longest agent slug, in characters (the catalog's).
const SLUG_MAX: usize = 64;

/// A task's output as a client sent it, if any.
fn output(raw: Option<Json<serde_json::Value>>) -> ApiResult<Option<serde_json::Value>> {
    raw.map(|Json(output)| validate::json("output", &output).map(|()| output))
        .transpose()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn task_edges_are_its_fields_that_are_not_plain() {
        let row: agent_tasks::Model = serde_json::from_value(json!({
            "id": Uuid::nil(), "project_id": Uuid::nil(), "user_id": Uuid::nil(),
            "agent_id": Uuid::nil(), "parent_task_id": null, "title": "t", "input": {},
            "output": null, "status": "queued", "progress": 0, "priority": 0, "error": null,
            "attempts": 0, "started_at": null, "finished_at": null,
            "created_at": "2026-11-26T00:00:00Z", "updated_at": "2026-11-26T00:00:00Z",
        }))
        .expect("a task row");
        crate::kit::feed::assert_edges_are_the_fields_not_plain(&AgentTask::from(row), TASK_EDGES);
    }
}
