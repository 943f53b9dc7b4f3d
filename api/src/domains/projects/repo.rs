//! SQL for projects. Reads filter with [`super::policy::readable`], so the same rows are
//! hidden on SQLite, where no policy runs.

use chrono::Utc;
use entity::projects::{self, ProjectStatus, ProjectVisibility};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel,
    ModelTrait, QueryFilter, Select,
};
use uuid::Uuid;

use crate::{auth::Identity, error::ApiResult};

/// The project `id` if `identity` may read it.
pub async fn find_visible(
    db: &impl ConnectionTrait,
    identity: Identity,
    id: Uuid,
) -> ApiResult<Option<projects::Model>> {
    Ok(projects::Entity::find_by_id(id)
        .filter(super::policy::readable(identity))
        .one(db)
        .await?)
}

/// Projects owned by `owner`.
pub fn owned_by(owner: Uuid) -> Select<projects::Entity> {
    projects::Entity::find().filter(projects::Column::OwnerId.eq(owner))
}

/// Public projects.
pub fn public() -> Select<projects::Entity> {
    projects::Entity::find().filter(projects::Column::Visibility.eq(ProjectVisibility::Public))
}

/// A validated new project.
pub struct NewProject {
    pub id: Uuid,
    pub owner_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub visibility: ProjectVisibility,
    pub framework: Option<String>,
}

pub async fn insert(db: &impl ConnectionTrait, new: NewProject) -> ApiResult<projects::Model> {
    let now = Utc::now();
    let project = projects::ActiveModel {
        id: Set(new.id),
        owner_id: Set(new.owner_id),
        name: Set(new.name),
        description: Set(new.description),
        visibility: Set(new.visibility),
        framework: Set(new.framework),
        status: Set(ProjectStatus::Active),
        settings: Set(serde_json::json!({})),
        created_at: Set(now),
        updated_at: Set(now),
    };
    Ok(projects::Entity::insert(project)
        .exec_with_returning(db)
        .await?)
}

/// Validated changes; `None` leaves a field as it is.
pub struct ProjectChanges {
    pub name: Option<String>,
    /// `Some(None)` clears the description.
    pub description: Option<Option<String>>,
    pub visibility: Option<ProjectVisibility>,
    pub status: Option<ProjectStatus>,
}

pub async fn update(
    db: &impl ConnectionTrait,
    current: projects::Model,
    changes: ProjectChanges,
) -> ApiResult<projects::Model> {
    let mut project = current.into_active_model();
    if let Some(name) = changes.name {
        project.name = Set(name);
    }
    if let Some(description) = changes.description {
        project.description = Set(description);
    }
    if let Some(visibility) = changes.visibility {
        project.visibility = Set(visibility);
    }
    if let Some(status) = changes.status {
        project.status = Set(status);
    }
    project.updated_at = Set(Utc::now());
    Ok(project.update(db).await?)
}

pub async fn delete(db: &impl ConnectionTrait, current: projects::Model) -> ApiResult<()> {
    current.delete(db).await?;
    Ok(())
}
