//! The fields that join two domains in the parent-to-child direction (a project's owner,
//! tasks, deployments and generations). A child domain imports its parent's type for its
//! own `project` field, so the parent's fields that reach down would point upward: they
//! are attached here, above every domain, and each only calls into its domain.

use async_graphql::{ComplexObject, Context};

use super::projects::Project;
use crate::{
    error::{ApiError, ApiResult},
    kit::{
        loaders::load_one,
        profiles::{Profile, ProfileLoader},
    },
};

#[ComplexObject]
impl Project {
    /// The owner's public profile, batched across a page of projects.
    async fn owner(&self, ctx: &Context<'_>) -> ApiResult<Profile> {
        load_one::<ProfileLoader, _>(ctx, self.owner_id)
            .await?
            .ok_or(ApiError::NotFound("owner"))
    }
}
