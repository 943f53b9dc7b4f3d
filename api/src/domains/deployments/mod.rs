//! Deployments: a project's owner asks for one, a deployer (service token) advances it
//! through building and deploying to ready or failed, and the owner may cancel it while
//! it is unfinished.
//!
//! Who may do what lives in [`policy`], which mirrors the `deployments` policies, and so
//! does the one state machine every status change goes through
//! ([`policy::transition`], applied by [`repo::apply`]). A deployment the caller cannot
//! see is `NOT_FOUND` for mutations and `null` for `deployment`. Creating one records
//! usage, and its end notifies its owner, in the operation's transaction.

mod nested;
pub mod policy;
mod repo;

use async_graphql::{
    ComplexObject, Context, Enum, ID, InputObject, Object, SimpleObject, Subscription,
};
use chrono::{DateTime, Utc};
use entity::deployments::{
    self, DeploymentEnvironment as DbEnvironment, DeploymentStatus as DbStatus,
};
use futures_util::stream::BoxStream;
use serde_json::json;
use uuid::Uuid;

pub(crate) use nested::project_page;

use rust_decimal::Decimal;

use super::{
    notifications::{NewNotification, notify},
    projects::{Project, load_visible, named_visible, require_changeable},
    usage::{self, UsageEvent},
};
use crate::{
    auth::{Operation, Resource},
    error::{ApiError, ApiResult},
    kit::{
        RequestContext,
        authz::{as_service, require_service, scope_to_token},
        enums::mirror_enum,
        feed::{ProjectRow, event_type, project_feed, selects_any},
        loaders::Loaders,
        pagination::{Page, PageArgs, page_complexity, paginate},
        parse_id, parse_optional_id,
        plain::{Plain, PlainFields, enumerated, nullable, nullable_timestamp, scalar, timestamp},
    },
    realtime::Row,
    validate::{self, Lines},
};

/// Where a deployment goes.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum DeploymentEnvironment {
    Preview,
    Production,
}

/// Lifecycle of a deployment.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum DeploymentStatus {
    Queued,
    Building,
    Deploying,
    Ready,
    Failed,
    Cancelled,
}

mirror_enum!(DeploymentEnvironment <=> DbEnvironment { Preview, Production });
mirror_enum!(DeploymentStatus <=> DbStatus { Queued, Building, Deploying, Ready, Failed, Cancelled });

/// A project deployed to a hosting provider.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Deployment {
    id: ID,
    environment: DeploymentEnvironment,
    /// Hosting provider (`vercel`, `netlify`, `fly`, ...).
    provider: String,
    status: DeploymentStatus,
    url: Option<String>,
    commit_sha: Option<String>,
    /// What the deployer reported so far.
    log: String,
    finished_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    #[graphql(skip)]
    project_id: Uuid,
}

impl From<deployments::Model> for Deployment {
    fn from(d: deployments::Model) -> Self {
        Self {
            id: d.id.into(),
            environment: d.environment.into(),
            provider: d.provider,
            status: d.status.into(),
            url: d.url,
            commit_sha: d.commit_sha,
            log: d.log.unwrap_or_default(),
            finished_at: d.finished_at,
            created_at: d.created_at,
            updated_at: d.updated_at,
            project_id: d.project_id,
        }
    }
}

/// Deployments in lists answer a selection of these without resolving each field
/// (`kit::plain`); `project` is resolved.
impl PlainFields for Deployment {
    fn plain(&self, name: &str) -> Option<async_graphql::Value> {
        Some(match name {
            "id" => scalar(&self.id),
            "environment" => enumerated(self.environment),
            "provider" => scalar(&self.provider),
            "status" => enumerated(self.status),
            "url" => nullable(self.url.as_ref()),
            "commitSha" => nullable(self.commit_sha.as_ref()),
            "log" => scalar(&self.log),
            "finishedAt" => nullable_timestamp(self.finished_at.as_ref()),
            "createdAt" => timestamp(&self.created_at),
            "updatedAt" => timestamp(&self.updated_at),
            _ => return None,
        })
    }
}

impl From<deployments::Model> for Plain<Deployment> {
    fn from(deployment: deployments::Model) -> Self {
        Plain(deployment.into())
    }
}

#[ComplexObject]
impl Deployment {
    /// The project deployed; whoever reads a deployment may read its project.
    async fn project(&self, ctx: &Context<'_>) -> ApiResult<Project> {
        load_visible(ctx, self.project_id).await
    }
}

/// Registers the deployments domain's loaders for a request.
pub fn register(loaders: Loaders) -> Loaders {
    nested::register(loaders)
}

#[derive(InputObject)]
pub struct CreateDeploymentInput {
    project_id: ID,
    environment: DeploymentEnvironment,
    provider: String,
    commit_sha: Option<String>,
}

#[derive(InputObject)]
pub struct AdvanceDeploymentInput {
    id: ID,
    /// The next status; omitted to only report a URL or log lines.
    status: Option<DeploymentStatus>,
    url: Option<String>,
    /// Text appended to the log.
    log_append: Option<String>,
}

/// The payload of `createDeployment`.
#[derive(SimpleObject)]
pub struct CreateDeploymentPayload {
    deployment: Deployment,
}

/// The payload of `cancelDeployment`.
#[derive(SimpleObject)]
pub struct CancelDeploymentPayload {
    deployment: Deployment,
}

/// The payload of `advanceDeployment`.
#[derive(SimpleObject)]
pub struct AdvanceDeploymentPayload {
    deployment: Deployment,
}

#[derive(Default)]
pub struct DeploymentQuery;

#[Object]
impl DeploymentQuery {
    /// One deployment; null when it does not exist or the caller may not see it.
    async fn deployment(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<Deployment>> {
        let rc = RequestContext::of(ctx)?;
        let id = parse_id("id", &id)?;
        if rc.session_opt().is_none() {
            // Anonymous callers read no deployments (and Postgres grants them no SELECT).
            return Ok(None);
        }
        let Some(deployment) = repo::find_readable(&*rc.tx().await?, rc.identity(), id).await?
        else {
            return Ok(None);
        };
        if rc
            .authorize(Operation::Read, Resource::Project(deployment.project_id))
            .is_err()
        {
            return Ok(None);
        }
        Ok(Some(deployment.into()))
    }

    /// The deployments the caller may read (its own; all for admins and services), of
    /// one project when `projectId` is given, newest first.
    #[graphql(complexity = "page_complexity(first, last, child_complexity)")]
    #[expect(
        clippy::too_many_arguments,
        reason = "a list field takes its filters and the four Relay arguments"
    )]
    async fn deployments(
        &self,
        ctx: &Context<'_>,
        project_id: Option<ID>,
        status: Option<DeploymentStatus>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<Page<Plain<Deployment>>> {
        let rc = RequestContext::of(ctx)?;
        rc.session()?;
        let project = parse_optional_id("projectId", project_id.as_ref())?;
        let query = repo::readable(rc.identity(), project, status.map(Into::into));
        let query =
            scope_to_token(rc, query, deployments::Column::ProjectId, Resource::Account).await?;
        paginate(
            rc.tx_ref(),
            query,
            (deployments::Column::Id, |d: &deployments::Model| d.id),
            PageArgs::new(ctx, first, after, last, before),
            Plain::from,
        )
        .await
    }
}

event_type!(
    /// A change to a deployment.
    DeploymentEvent { deployment: Deployment }
);

/// The fields of [`Deployment`] that read other rows: every field that is not plain
/// (its `ComplexObject`'s), as [`selects_any`] requires.
const DEPLOYMENT_EDGES: &[&str] = &["project"];

#[derive(Default)]
pub struct DeploymentSubscription;

#[Subscription]
impl DeploymentSubscription {
    /// Every change to the deployments the caller may read (its own; all for admins and
    /// services), as it happens: of one project with `projectId`, of one deployment with
    /// `deploymentId`. With `after`, a cursor received earlier, what was missed since
    /// comes first, then live changes, with none lost or repeated.
    async fn deployment_updated(
        &self,
        ctx: &Context<'_>,
        project_id: Option<ID>,
        deployment_id: Option<ID>,
        after: Option<String>,
    ) -> Result<BoxStream<'static, ApiResult<DeploymentEvent>>, ApiError> {
        let rc = RequestContext::of(ctx)?;
        rc.session()?;
        let project = Box::pin(named_visible(rc, project_id.as_ref())).await?;
        let deployment = match &deployment_id {
            Some(id) => Some(Box::pin(require_readable(rc, id)).await?.id),
            None => None,
        };
        project_feed(
            ctx,
            after,
            (project, deployment),
            policy::readers(rc.identity()),
            selects_any(ctx, "deployment", DEPLOYMENT_EDGES),
            |event, deployment: deployments::Model| DeploymentEvent::new(event, deployment.into()),
        )
        .await
    }
}

impl ProjectRow for deployments::Model {
    fn pick(row: &Row) -> Option<&Self> {
        match row {
            Row::Deployment(deployment) => Some(deployment),
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
pub struct DeploymentMutation;

#[Object]
impl DeploymentMutation {
    /// Queues a deployment of a project the caller owns (any, for admins).
    async fn create_deployment(
        &self,
        ctx: &Context<'_>,
        input: CreateDeploymentInput,
    ) -> ApiResult<CreateDeploymentPayload> {
        let rc = RequestContext::of(ctx)?;
        rc.session()?;
        let project_id = parse_id("projectId", &input.project_id)?;
        let project = require_changeable(rc, project_id).await?;
        let provider = validate::required("provider", &input.provider, PROVIDER_MAX, Lines::One)?;
        let commit_sha = validate::optional(
            "commitSha",
            input.commit_sha.as_deref(),
            COMMIT_SHA_MAX,
            Lines::One,
        )?;
        let deployment = repo::insert(
            &*rc.tx().await?,
            repo::NewDeployment {
                id: crate::db::new_id(),
                project_id,
                user_id: project.owner_id,
                environment: input.environment.into(),
                provider,
                commit_sha,
            },
        )
        .await?;
        record_usage(rc, &deployment, "deployment.created").await?;
        Ok(CreateDeploymentPayload {
            deployment: deployment.into(),
        })
    }

    /// Cancels an unfinished deployment of the caller's (any, for admins).
    async fn cancel_deployment(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> ApiResult<CancelDeploymentPayload> {
        let rc = RequestContext::of(ctx)?;
        rc.session()?;
        let deployment = require_deployment(rc, &id).await?;
        if !policy::may_cancel(rc.identity(), deployment.user_id) {
            return Err(ApiError::Forbidden(
                "only the owner or an admin may cancel a deployment",
            ));
        }
        let deployment = repo::apply(
            &*rc.tx().await?,
            &deployment,
            Some(DbStatus::Cancelled),
            repo::Step::default(),
        )
        .await?;
        notify_end(rc, &deployment).await?;
        Ok(CancelDeploymentPayload {
            deployment: deployment.into(),
        })
    }

    /// Service only: moves a deployment to its next status, sets its URL and appends
    /// to its log.
    async fn advance_deployment(
        &self,
        ctx: &Context<'_>,
        input: AdvanceDeploymentInput,
    ) -> ApiResult<AdvanceDeploymentPayload> {
        let rc = RequestContext::of(ctx)?;
        require_service(rc)?;
        let deployment = require_deployment(rc, &input.id).await?;
        let url = validate::optional("url", input.url.as_deref(), URL_MAX, Lines::One)?;
        let log = match input.log_append.as_deref() {
            Some(lines) if !lines.is_empty() => {
                let mut log = deployment.log.clone().unwrap_or_default();
                log.push_str(lines);
                validate::optional("logAppend", Some(&log), LOG_MAX, Lines::Many)?;
                Some(log)
            }
            _ => None,
        };
        let to = input.status.map(DbStatus::from);
        let deployment =
            repo::apply(&*rc.tx().await?, &deployment, to, repo::Step { url, log }).await?;
        if to.is_some_and(policy::is_final) {
            notify_end(rc, &deployment).await?;
        }
        Ok(AdvanceDeploymentPayload {
            deployment: deployment.into(),
        })
    }
}

/// [`require_readable`], and `FORBIDDEN` when the token may not write to its
/// project.
async fn require_deployment(rc: &RequestContext, id: &ID) -> ApiResult<deployments::Model> {
    let deployment = require_readable(rc, id).await?;
    rc.authorize(Operation::Write, Resource::Project(deployment.project_id))?;
    Ok(deployment)
}

/// The deployment `id` if the caller may see it (token scope included), `NOT_FOUND`
/// otherwise.
async fn require_readable(rc: &RequestContext, id: &ID) -> ApiResult<deployments::Model> {
    const MISSING: ApiError = ApiError::NotFound("deployment");
    let id = parse_id("id", id)?;
    let deployment = repo::find_readable(&*rc.tx().await?, rc.identity(), id)
        .await?
        .ok_or(MISSING)?;
    rc.authorize(Operation::Read, Resource::Project(deployment.project_id))
        .map_err(|_| MISSING)?;
    Ok(deployment)
}

/// Records one usage event of `deployment` for its owner. An admin acting on someone
/// else's project records it as the gateway's service identity, since the owner's
/// usage is not the admin's to append.
async fn record_usage(
    rc: &RequestContext,
    deployment: &deployments::Model,
    event_type: &'static str,
) -> ApiResult<()> {
    let event = UsageEvent {
        user_id: deployment.user_id,
        project_id: Some(deployment.project_id),
        event_type,
        quantity: 1,
        tokens: 0,
        cost: Decimal::ZERO,
        metadata: json!({ "deploymentId": deployment.id, "provider": deployment.provider }),
    };
    if rc.identity().user_id() == Some(deployment.user_id) {
        usage::record(&*rc.tx().await?, event).await
    } else {
        as_service(rc, async { usage::record(&*rc.tx().await?, event).await }).await
    }
}

/// Tells the owner that `deployment` ended, as the gateway's service identity (only
/// the service and admins create notifications).
async fn notify_end(rc: &RequestContext, deployment: &deployments::Model) -> ApiResult<()> {
    let (kind, title) = match deployment.status {
        DbStatus::Ready => ("deployment.ready", "Deployment is live"),
        DbStatus::Failed => ("deployment.failed", "Deployment failed"),
        DbStatus::Cancelled => ("deployment.cancelled", "Deployment cancelled"),
        DbStatus::Queued | DbStatus::Building | DbStatus::Deploying => return Ok(()),
    };
    let new = NewNotification {
        user_id: deployment.user_id,
        kind: kind.to_owned(),
        title: title.to_owned(),
        body: deployment.url.clone(),
        data: json!({ "deploymentId": deployment.id, "projectId": deployment.project_id }),
    };
    as_service(rc, async { notify(&*rc.tx().await?, new).await }).await
}

/// Longest provider name, in characters.
const PROVIDER_MAX: usize = 100;
/// Longest commit reference, in characters.
const COMMIT_SHA_MAX: usize = 100;
/// Longest URL, in characters.
const URL_MAX: usize = 2_000;
/// Longest log, in characters; a deployer that needs more keeps its own.
const LOG_MAX: usize = 1_000_000;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn deployment_edges_are_its_fields_that_are_not_plain() {
        let row: deployments::Model = serde_json::from_value(json!({
            "id": Uuid::nil(), "project_id": Uuid::nil(), "user_id": Uuid::nil(),
            "environment": "preview", "provider": "p", "status": "queued", "url": null,
            "commit_sha": null, "log": null, "finished_at": null,
            "created_at": "2026-11-26T00:00:00Z", "updated_at": "2026-11-26T00:00:00Z",
        }))
        .expect("a deployment row");
        crate::kit::feed::assert_edges_are_the_fields_not_plain(
            &Deployment::from(row),
            DEPLOYMENT_EDGES,
        );
    }
}
