//! A project's deployments as a child list (`Project.deployments`), first pages batched
//! under a page of projects by [`crate::kit::nested`].

use std::sync::Arc;

use async_graphql::Context;
use entity::deployments::{self, DeploymentStatus as DbStatus};
use sea_orm::Select;
use uuid::Uuid;

use super::{Deployment, DeploymentStatus, repo};
use crate::{
    auth::Identity,
    error::ApiResult,
    kit::{
        loaders::Loaders,
        nested::{self, ChildList},
        pagination::{Page, PageArgs},
        plain::Plain,
    },
};

/// The deployments of a project, optionally in one status.
pub struct ProjectDeployments;

impl ChildList for ProjectDeployments {
    type Entity = deployments::Entity;
    type Filter = Option<DbStatus>;
    type Node = Plain<Deployment>;

    const PARENT: deployments::Column = deployments::Column::ProjectId;
    const ID: deployments::Column = deployments::Column::Id;

    fn readable(identity: Identity, status: Self::Filter) -> Select<deployments::Entity> {
        repo::readable(identity, None, status)
    }

    fn parent_and_key(row: &deployments::Model) -> (Uuid, Uuid) {
        (row.project_id, row.id)
    }
}

/// Registers the child list for a request.
pub fn register(loaders: Loaders) -> Loaders {
    nested::register::<ProjectDeployments>(loaders)
}

/// One page of the deployments of `project` that the caller may read.
pub(crate) async fn project_page(
    ctx: &Context<'_>,
    project: Uuid,
    siblings: &Arc<[Uuid]>,
    status: Option<DeploymentStatus>,
    args: PageArgs,
) -> ApiResult<Page<Plain<Deployment>>> {
    let status = status.map(DbStatus::from);
    nested::child_page::<ProjectDeployments>(ctx, project, siblings, status, args).await
}
