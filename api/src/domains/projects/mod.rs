//! Projects: the GraphQL types and resolvers of the projects domain.
//!
//! Who may do what lives in [`policy`], which mirrors the `projects` policies, so SQLite
//! is guarded too; a project the caller cannot see is `NOT_FOUND` for mutations and
//! `null` for `project`. Everything project-owned builds on [`require_visible`] and
//! [`require_changeable`].

pub mod policy;
mod repo;

use std::{collections::HashSet, sync::Arc};

use async_graphql::{Context, Enum, ID, InputObject, MaybeUndefined, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::projects::{self, ProjectStatus as DbStatus, ProjectVisibility as DbVisibility};
use sea_orm::Select;
use uuid::Uuid;

use crate::{
    auth::{Operation, Resource},
    error::{ApiError, ApiResult},
    kit::{
        RequestContext,
        authz::{refuse_service, scope_to_token},
        enums::mirror_enum,
        loaders::{ById, Loaders, load_one},
        pagination::{Page, PageArgs, page_complexity, paginate},
        parse_id, parse_optional_id,
        payloads::DeletePayload,
        plain::{Plain, PlainFields, enumerated, nullable, scalar, timestamp},
        profiles::{self, Profile},
    },
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

mirror_enum!(ProjectVisibility <=> DbVisibility { Private, Public });
mirror_enum!(ProjectStatus <=> DbStatus { Active, Archived });

// Its fields that reach into other domains (owner, tasks, ...) live in `domains::edges`.
/// A project as clients see it; `owner` is a public profile, never the account.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Project {
    id: ID,
    /// The projects on the same page of a list (empty outside lists), so a nested list
    /// loads the children of the whole page at once.
    #[graphql(skip)]
    pub(crate) siblings: Arc<[Uuid]>,
    /// The owner's profile, when the list read it with its page.
    #[graphql(skip)]
    pub(crate) owner_profile: Option<Profile>,
    name: String,
    description: Option<String>,
    visibility: ProjectVisibility,
    framework: Option<String>,
    status: ProjectStatus,
    /// The project's id, for the fields attached in `domains::edges`.
    #[graphql(skip)]
    pub(crate) key: Uuid,
    #[graphql(skip)]
    pub(crate) owner_id: Uuid,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<projects::Model> for Project {
    fn from(p: projects::Model) -> Self {
        projects::Shown::from(p).into()
    }
}

impl From<projects::Shown> for Project {
    fn from(p: projects::Shown) -> Self {
        Self {
            id: p.id.into(),
            key: p.id,
            siblings: Arc::from([]),
            owner_profile: None,
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

/// A list's projects answer a selection of these without resolving each field
/// (`kit::plain`); the fields of `domains::edges` are resolved.
impl PlainFields for Project {
    fn plain(&self, name: &str) -> Option<async_graphql::Value> {
        Some(match name {
            "id" => scalar(&self.id),
            "name" => scalar(&self.name),
            "description" => nullable(self.description.as_ref()),
            "visibility" => enumerated(self.visibility),
            "framework" => nullable(self.framework.as_ref()),
            "status" => enumerated(self.status),
            "createdAt" => timestamp(&self.created_at),
            "updatedAt" => timestamp(&self.updated_at),
            _ => return None,
        })
    }
}

#[derive(SimpleObject)]
pub struct ProjectPayload {
    project: Project,
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
        Ok(repo::find_visible(&*rc.tx().await?, rc.identity(), id)
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
    ) -> ApiResult<Page<Plain<Project>>> {
        let rc = RequestContext::of(ctx)?;
        let owner = rc.user_id()?;
        let args = PageArgs::new(ctx, first, after, last, before);
        list(rc, repo::owned_by(owner), args, asks_for_owners(ctx)).await
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
    ) -> ApiResult<Page<Plain<Project>>> {
        let rc = RequestContext::of(ctx)?;
        let args = PageArgs::new(ctx, first, after, last, before);
        list(rc, repo::public(), args, asks_for_owners(ctx)).await
    }
}

/// Whether the list field being resolved selects its projects' owners.
fn asks_for_owners(ctx: &Context<'_>) -> bool {
    ctx.look_ahead()
        .field("edges")
        .field("node")
        .field("owner")
        .exists()
}

/// One page of `query`, as far as the token's checks allow; with `with_owners`, the
/// owners' profiles are read with the page (one statement, however long the page), since
/// a DataLoader's time window may split a page's owner fields over several batches.
async fn list(
    rc: &RequestContext,
    query: Select<projects::Entity>,
    args: PageArgs,
    with_owners: bool,
) -> ApiResult<Page<Plain<Project>>> {
    let query = scope_to_token(rc, query, projects::Column::Id, Resource::Account).await?;
    let mut page = paginate(
        rc.tx_ref(),
        query,
        (projects::Column::Id, |p: &projects::Shown| p.id),
        args,
        |row| Plain(Project::from(row)),
    )
    .await?;
    let siblings: Arc<[Uuid]> = page.edges.iter().map(|edge| edge.node.key).collect();
    for edge in &mut page.edges {
        edge.node.siblings = siblings.clone();
    }
    if with_owners && !page.edges.is_empty() {
        let owners: HashSet<Uuid> = page.edges.iter().map(|edge| edge.node.owner_id).collect();
        let profiles = profiles::find_many(&*rc.tx().await?, owners).await?;
        for edge in &mut page.edges {
            edge.node.owner_profile = profiles.get(&edge.node.owner_id).cloned();
        }
    }
    Ok(page)
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
        refuse_service(rc, SERVICE_REFUSED)?;
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
        let project = repo::insert(&*rc.tx().await?, new).await?;
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
        let current = require_changeable(rc, id).await?;
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
        let project = repo::update(&*rc.tx().await?, current, changes).await?;
        Ok(ProjectPayload {
            project: project.into(),
        })
    }

    /// Deletes a project the caller owns (or any, for admins).
    async fn delete_project(&self, ctx: &Context<'_>, id: ID) -> ApiResult<DeletePayload> {
        let rc = RequestContext::of(ctx)?;
        let id = parse_id("id", &id)?;
        let current = require_changeable(rc, id).await?;
        repo::delete(&*rc.tx().await?, current).await?;
        Ok(DeletePayload::new(id))
    }
}

/// Loads projects by id, as far as the caller may read them.
pub type ProjectLoader = ById<projects::Entity, Project>;

/// Registers the project loader for a request.
pub fn register(loaders: Loaders) -> Loaders {
    loaders.register(|tx, identity| {
        ProjectLoader::new(
            tx,
            policy::readable(identity),
            projects::Column::Id,
            |row| (row.id, row.into()),
        )
    })
}

/// The project `id` for a child row's `project` field, batched across a page:
/// `NOT_FOUND` when the caller (or its token) may not see it.
pub(crate) async fn load_visible(ctx: &Context<'_>, id: Uuid) -> ApiResult<Project> {
    const MISSING: ApiError = ApiError::NotFound("project");
    RequestContext::of(ctx)?
        .authorize(Operation::Read, Resource::Project(id))
        .map_err(|_| MISSING)?;
    load_one::<ProjectLoader, _>(ctx, id).await?.ok_or(MISSING)
}

/// The project `id` if the caller may see it, `NOT_FOUND` otherwise (token scope
/// included: a scoped token does not see other projects).
pub(crate) async fn require_visible(rc: &RequestContext, id: Uuid) -> ApiResult<projects::Model> {
    const MISSING: ApiError = ApiError::NotFound("project");
    rc.authorize(Operation::Read, Resource::Project(id))
        .map_err(|_| MISSING)?;
    repo::find_visible(&*rc.tx().await?, rc.identity(), id)
        .await?
        .ok_or(MISSING)
}

/// The project a subscription names with `projectId`, if any, once the caller is known
/// to see it: `NOT_FOUND` otherwise, as a query would say.
pub(crate) async fn named_visible(rc: &RequestContext, id: Option<&ID>) -> ApiResult<Option<Uuid>> {
    let Some(id) = parse_optional_id("projectId", id)? else {
        return Ok(None);
    };
    require_visible(rc, id).await?;
    Ok(Some(id))
}

/// The project `id` if the caller may change it or hang rows off it: `NOT_FOUND` when
/// invisible, `FORBIDDEN` when visible but not theirs (see [`policy::may_change`]) or
/// when the token does not allow writing to it.
pub(crate) async fn require_changeable(
    rc: &RequestContext,
    id: Uuid,
) -> ApiResult<projects::Model> {
    let project = require_visible(rc, id).await?;
    refuse_service(rc, SERVICE_REFUSED)?;
    if !policy::may_change(rc.identity(), project.owner_id) {
        return Err(ApiError::Forbidden(
            "only the owner may change this project",
        ));
    }
    rc.authorize(Operation::Write, Resource::Project(id))?;
    Ok(project)
}

/// Services read projects but never change them (the policies grant them SELECT only).
const SERVICE_REFUSED: &str = "service tokens cannot change projects";

/// Longest project name, in characters.
const NAME_MAX: usize = 200;
/// Longest description, in characters.
const DESCRIPTION_MAX: usize = 10_000;
/// Longest framework name, in characters.
const FRAMEWORK_MAX: usize = 100;
