//! The fields that join two domains in the parent-to-child direction (a project's owner,
//! tasks, deployments and generations). A child domain imports its parent's type for its
//! own `project` field, so the parent's fields that reach down would point upward: they
//! are attached here, above every domain, and each only calls into its domain.

use async_graphql::{ComplexObject, Context};

use super::{
    agent_tasks::{self, AgentTask, AgentTaskStatus},
    code_generations::{self, CodeGeneration, GenerationStatus},
    deployments::{self, Deployment, DeploymentStatus},
    projects::Project,
};
use crate::{
    error::{ApiError, ApiResult},
    kit::{
        loaders::load_one,
        pagination::{Page, PageArgs, page_complexity},
        plain::Plain,
        profiles::{Profile, ProfileLoader},
    },
};

// Each field that reaches the database awaits a boxed future: async-graphql resolves
// every field of a `Project`, `id` and `name` included, through one future as large as
// its largest field's, and moves it into a box of its own per field (BENCHMARKS.md,
// "Instructions per read").
#[ComplexObject]
impl Project {
    /// The owner's public profile, batched across a page of projects.
    async fn owner(&self, ctx: &Context<'_>) -> ApiResult<Profile> {
        if let Some(profile) = &self.owner_profile {
            return Ok(profile.clone());
        }
        Box::pin(load_one::<ProfileLoader, _>(ctx, self.owner_id))
            .await?
            .ok_or(ApiError::NotFound("owner"))
    }

    /// The project's agent tasks the caller may read, newest first; first pages are
    /// batched across a page of projects.
    #[graphql(complexity = "page_complexity(first, last, child_complexity)")]
    async fn tasks(
        &self,
        ctx: &Context<'_>,
        status: Option<AgentTaskStatus>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<Page<Plain<AgentTask>>> {
        let args = PageArgs::new(ctx, first, after, last, before);
        Box::pin(agent_tasks::project_page(
            ctx,
            self.key,
            &self.siblings,
            status,
            args,
        ))
        .await
    }

    /// The project's deployments the caller may read, newest first; first pages are
    /// batched across a page of projects.
    #[graphql(complexity = "page_complexity(first, last, child_complexity)")]
    async fn deployments(
        &self,
        ctx: &Context<'_>,
        status: Option<DeploymentStatus>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<Page<Plain<Deployment>>> {
        let args = PageArgs::new(ctx, first, after, last, before);
        Box::pin(deployments::project_page(
            ctx,
            self.key,
            &self.siblings,
            status,
            args,
        ))
        .await
    }

    /// The project's code generations the caller may see (the owner's; all for
    /// services), newest first, optionally in one status; first pages are batched
    /// across a page of projects.
    #[graphql(complexity = "page_complexity(first, last, child_complexity)")]
    async fn code_generations(
        &self,
        ctx: &Context<'_>,
        status: Option<GenerationStatus>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<Page<CodeGeneration>> {
        let args = PageArgs::new(ctx, first, after, last, before);
        Box::pin(code_generations::project_page(
            ctx,
            self.key,
            &self.siblings,
            status,
            args,
        ))
        .await
    }
}
