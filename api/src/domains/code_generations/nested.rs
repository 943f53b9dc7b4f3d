//! A project's code generations as a child list (`Project.codeGenerations`), first
//! pages batched under a page of projects by [`crate::kit::nested`].

use std::sync::Arc;

use async_graphql::Context;
use entity::code_generations::{self, CodeGenerationStatus as DbStatus};
use sea_orm::Select;
use uuid::Uuid;

use super::{CodeGeneration, GenerationStatus, policy, repo};
use crate::{
    auth::Identity,
    error::ApiResult,
    kit::{
        loaders::Loaders,
        nested::{self, ChildList},
        pagination::{Page, PageArgs},
    },
};

/// The code generations of a project, optionally in one status.
pub struct ProjectGenerations;

impl ChildList for ProjectGenerations {
    type Entity = code_generations::Entity;
    type Filter = Option<DbStatus>;
    type Node = CodeGeneration;

    const PARENT: code_generations::Column = code_generations::Column::ProjectId;
    const ID: code_generations::Column = code_generations::Column::Id;

    fn readable(identity: Identity, status: Self::Filter) -> Select<code_generations::Entity> {
        repo::listed(policy::readable(identity), None, status)
    }

    fn parent_and_key(row: &code_generations::Model) -> (Uuid, Uuid) {
        // Listed generations always have a project (`repo::listed`).
        (row.project_id.unwrap_or_default(), row.id)
    }
}

/// Registers the child list for a request.
pub fn register(loaders: Loaders) -> Loaders {
    nested::register::<ProjectGenerations>(loaders)
}

/// One page of the generations of `project` that the caller may read.
pub(crate) async fn project_page(
    ctx: &Context<'_>,
    project: Uuid,
    siblings: &Arc<[Uuid]>,
    status: Option<GenerationStatus>,
    args: PageArgs,
) -> ApiResult<Page<CodeGeneration>> {
    let status = status.map(DbStatus::from);
    nested::child_page::<ProjectGenerations>(ctx, project, siblings, status, args).await
}
