//! Projects: the GraphQL types and resolvers of the projects domain.
//!
//! Visibility rules (owner: all; anyone: read public; admin: all) live in [`repo`] as
//! SQL conditions that mirror the `projects` policies, so SQLite is guarded too; a
//! project the caller cannot see is `NOT_FOUND` for mutations and `null` for `project`.

mod repo;

use async_graphql::{
    ComplexObject, Context, Enum, ID, InputObject, MaybeUndefined, Object, SimpleObject,
    dataloader::DataLoader,
};
use chrono::{DateTime, Utc};
use entity::projects::{self, ProjectStatus as DbStatus, ProjectVisibility as DbVisibility};
use sea_orm::{ColumnTrait, QueryFilter, QuerySelect, Select};
use uuid::Uuid;

use crate::{
    auth::{Operation, Resource, Role, Session},
    error::{ApiError, ApiResult},
    graphql::{RequestContext, parse_id},
    loaders::{Profile, ProfileLoader},
    pagination::{Page, PageArgs, page_complexity, paginate},
    validate::{self, Lines},
};

/// Who may read a project.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ProjectVisibility {
    Private,
    Public,
}

/// Lifecycle of a project.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ProjectStatus {
    Active,
    Archived,
}

/// Maps each API enum to its entity twin and back, both ways in one place.
macro_rules! mirror_enum {
    ($api:ident <=> $db:ident { $($variant:ident),+ $(,)? }) => {
        impl From<$db> for $api {
            fn from(value: $db) -> Self {
                match value { $($db::$variant => Self::$variant),+ }
            }
        }
        impl From<$api> for $db {
            fn from(value: $api) -> Self {
                match value { $($api::$variant => Self::$variant),+ }
            }
        }
    };
}
mirror_enum!(ProjectVisibility <=> DbVisibility { Private, Public });
mirror_enum!(ProjectStatus <=> DbStatus { Active, Archived });

/// A project as clients see it; `owner` is a public profile, never the account.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Project {
    id: ID,
    name: String,
    description: Option<String>,
    visibility: ProjectVisibility,
    framework: Option<String>,
    status: ProjectStatus,
    #[graphql(skip)]
    owner_id: Uuid,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[ComplexObject]
impl Project {
    /// The owner's public profile, batched across a page of projects.
    async fn owner(&self, ctx: &Context<'_>) -> ApiResult<Profile> {
        ctx.data::<DataLoader<ProfileLoader>>()
            .map_err(|_| ApiError::bug("profile loader missing"))?
            .load_one(self.owner_id)
            .await
            .map_err(|e| (*e).clone())?
            .ok_or(ApiError::NotFound("owner"))
    }
}

impl From<projects::Model> for Project {
    fn from(p: projects::Model) -> Self {
        Self {
            id: p.id.into(),
            name: p.name,
            description: p.description,
            visibility: p.visibility.into(),
            framework: p.framework,
            status: p.status.into(),
            owner_id: p.owner_id,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(SimpleObject)]
pub struct ProjectPayload {
    project: Project,
}

#[derive(SimpleObject)]
pub struct DeletePayload {
    deleted_id: ID,
}

#[derive(InputObject)]
pub struct CreateProjectInput {
    name: String,
    description: Option<String>,
    visibility: Option<ProjectVisibility>,
    framework: Option<String>,
}

/// Omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateProjectInput {
    id: ID,
    name: Option<String>,
    description: MaybeUndefined<String>,
    visibility: Option<ProjectVisibility>,
    status: Option<ProjectStatus>,
}

#[derive(Default)]
pub struct ProjectQuery;

#[Object]
impl ProjectQuery {
    /// One project; null when it does not exist or the caller may not see it.
    async fn project(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<Project>> {
        let rc = RequestContext::of(ctx)?;
        let id = parse_id("id", &id)?;
        if rc
            .authorize(Operation::Read, Resource::Project(id))
            .is_err()
        {
            return Ok(None);
        }
        Ok(repo::find_visible(&*rc.tx()?, rc.identity(), id)
            .await?
            .map(Project::from))
    }

    /// The caller's own projects, newest first.
    #[graphql(complexity = "page_complexity(first, last, child_complexity)")]
    async fn my_projects(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<Page<Project>> {
        let rc = RequestContext::of(ctx)?;
        let owner = rc.user_id()?;
        let args = PageArgs {
            first,
            after,
            last,
            before,
        };
        list(rc, repo::owned_by(owner), args).await
    }

    /// Everyone's public projects, newest first.
    #[graphql(complexity = "page_complexity(first, last, child_complexity)")]
    async fn public_projects(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<Page<Project>> {
        let rc = RequestContext::of(ctx)?;
        let args = PageArgs {
            first,
            after,
            last,
            before,
        };
        list(rc, repo::public(), args).await
    }
}

/// One page of `query`, as far as the token's checks allow.
///
/// When no appended block mentions `resource`, every check evaluates the same for the
/// account as for any row, so one authorization of the account decides for the whole
/// list (a token refused everything is refused the list). Otherwise the candidates are
/// authorized row by row first, so pages and `totalCount` count only what it may see.
async fn list(
    rc: &RequestContext,
    query: Select<projects::Entity>,
    args: PageArgs,
) -> ApiResult<Page<Project>> {
    let query = match &rc.session {
        Some(session) if session.restricts_resources() => {
            let allowed = scoped_candidates(rc, session, query.clone()).await?;
            query.filter(projects::Column::Id.is_in(allowed))
        }
        _ => {
            rc.authorize(Operation::Read, Resource::Account)?;
            query
        }
    };
    paginate(
        rc.tx_ref(),
        query,
        (projects::Column::Id, |p: &projects::Model| p.id),
        args,
        Project::from,
    )
    .await
}

/// Most candidates a restricted token without `scope_project` hints may have
/// authorized one by one in a list.
const MAX_SCOPED_CANDIDATES: u64 = 5_000;

/// The ids among `query`'s rows that a restricted token may read.
async fn scoped_candidates(
    rc: &RequestContext,
    session: &Session,
    mut query: Select<projects::Entity>,
) -> ApiResult<Vec<Uuid>> {
    if !session.project_hints().is_empty() {
        query = query.filter(projects::Column::Id.is_in(session.project_hints().iter().copied()));
    }
    let candidates: Vec<Uuid> = query
        .select_only()
        .column(projects::Column::Id)
        .limit(MAX_SCOPED_CANDIDATES + 1)
        .into_tuple()
        .all(&*rc.tx()?)
        .await?;
    if candidates.len() as u64 > MAX_SCOPED_CANDIDATES {
        return Err(ApiError::bad_input(
            "this token restricts projects without naming them; add scope_project(\"<id>\") \
             facts to its block so lists can be narrowed",
        ));
    }
    let session = session.clone();
    tokio::task::spawn_blocking(move || {
        let mut allowed = Vec::new();
        for id in candidates {
            match session.authorize(Operation::Read, Resource::Project(id)) {
                Ok(()) => allowed.push(id),
                Err(ApiError::Internal(err)) => return Err(ApiError::Internal(err)),
                Err(_) => {}
            }
        }
        Ok(allowed)
    })
    .await
    .map_err(|e| ApiError::internal("authorizing candidates failed", e))?
}

#[derive(Default)]
pub struct ProjectMutation;

#[Object]
impl ProjectMutation {
    /// Creates a project owned by the caller.
    async fn create_project(
        &self,
        ctx: &Context<'_>,
        input: CreateProjectInput,
    ) -> ApiResult<ProjectPayload> {
        let rc = RequestContext::of(ctx)?;
        let owner = rc.user_id()?;
        refuse_service(rc)?;
        let id = crate::db::new_id();
        rc.authorize(Operation::Write, Resource::Project(id))?;
        let new = repo::NewProject {
            id,
            owner_id: owner,
            name: validate::required("name", &input.name, NAME_MAX, Lines::One)?,
            description: validate::optional(
                "description",
                input.description.as_deref(),
                DESCRIPTION_MAX,
                Lines::Many,
            )?,
            visibility: input
                .visibility
                .unwrap_or(ProjectVisibility::Private)
                .into(),
            framework: validate::optional(
                "framework",
                input.framework.as_deref(),
                FRAMEWORK_MAX,
                Lines::One,
            )?,
        };
        let project = repo::insert(&*rc.tx()?, new).await?;
        Ok(ProjectPayload {
            project: project.into(),
        })
    }

    /// Changes the given fields of a project the caller owns (or any, for admins).
    /// An omitted field stays; `description: null` or `""` clears the description.
    async fn update_project(
        &self,
        ctx: &Context<'_>,
        input: UpdateProjectInput,
    ) -> ApiResult<ProjectPayload> {
        let rc = RequestContext::of(ctx)?;
        let id = parse_id("id", &input.id)?;
        let current = require_writable(rc, id).await?;
        let description = match &input.description {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(text) => Some(validate::optional(
                "description",
                Some(text),
                DESCRIPTION_MAX,
                Lines::Many,
            )?),
        };
        let changes = repo::ProjectChanges {
            name: input
                .name
                .as_deref()
                .map(|name| validate::required("name", name, NAME_MAX, Lines::One))
                .transpose()?,
            description,
            visibility: input.visibility.map(Into::into),
            status: input.status.map(Into::into),
        };
        let project = repo::update(&*rc.tx()?, current, changes).await?;
        Ok(ProjectPayload {
            project: project.into(),
        })
    }

    /// Deletes a project the caller owns (or any, for admins).
    async fn delete_project(&self, ctx: &Context<'_>, id: ID) -> ApiResult<DeletePayload> {
        let rc = RequestContext::of(ctx)?;
        let id = parse_id("id", &id)?;
        let current = require_writable(rc, id).await?;
        repo::delete(&*rc.tx()?, current).await?;
        Ok(DeletePayload {
            deleted_id: id.into(),
        })
    }
}

/// The project `id` if the caller may see it, `NOT_FOUND` otherwise (token scope
/// included: a scoped token does not see other projects).
pub(crate) async fn require_visible(rc: &RequestContext, id: Uuid) -> ApiResult<projects::Model> {
    const MISSING: ApiError = ApiError::NotFound("project");
    rc.authorize(Operation::Read, Resource::Project(id))
        .map_err(|_| MISSING)?;
    repo::find_visible(&*rc.tx()?, rc.identity(), id)
        .await?
        .ok_or(MISSING)
}

/// The project `id` if the caller may change it: `NOT_FOUND` when invisible,
/// `FORBIDDEN` when visible but not theirs, for service tokens, or when the token is
/// read-only.
async fn require_writable(rc: &RequestContext, id: Uuid) -> ApiResult<projects::Model> {
    let project = require_visible(rc, id).await?;
    refuse_service(rc)?;
    let identity = rc.identity();
    if identity.user_id() != Some(project.owner_id) && !identity.is_admin() {
        return Err(ApiError::Forbidden(
            "only the owner may change this project",
        ));
    }
    rc.authorize(Operation::Write, Resource::Project(id))?;
    Ok(project)
}

/// Services read projects but never change them (the policies grant them SELECT only);
/// saying so here keeps SQLite, which has no policies, to the same rule.
fn refuse_service(rc: &RequestContext) -> ApiResult<()> {
    if rc.identity().role() == Some(Role::Service) {
        return Err(ApiError::Forbidden("service tokens cannot change projects"));
    }
    Ok(())
}

/// Longest project name, in characters.
const NAME_MAX: usize = 200;
/// Longest description, in characters.
const DESCRIPTION_MAX: usize = 10_000;
/// Longest framework name, in characters.
const FRAMEWORK_MAX: usize = 100;
