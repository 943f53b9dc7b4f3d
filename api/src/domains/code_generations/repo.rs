//! SQL for code generations. Reads filter with [`super::policy::readable`], so SQLite
//! hides the same rows as the policies. Owners insert only the request's columns; the
//! service writes results.

use chrono::Utc;
use entity::{
    ai_services,
    code_generations::{self, CodeGenerationStatus},
};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, Select,
    sea_query::Expr,
};
use uuid::Uuid;

use crate::error::ApiResult;

/// The generation `id` if `visible` allows it.
pub async fn find(
    db: &impl ConnectionTrait,
    visible: Condition,
    id: Uuid,
) -> ApiResult<Option<code_generations::Model>> {
    Ok(code_generations::Entity::find_by_id(id)
        .filter(visible)
        .one(db)
        .await?)
}

/// Generations `visible` allows that belong to a project, optionally narrowed.
pub fn listed(
    visible: Condition,
    project: Option<Uuid>,
    status: Option<CodeGenerationStatus>,
) -> Select<code_generations::Entity> {
    let mut query = code_generations::Entity::find()
        .filter(visible)
        // Token scoping works per project; every generation the API creates has one.
        .filter(code_generations::Column::ProjectId.is_not_null());
    if let Some(project) = project {
        query = query.filter(code_generations::Column::ProjectId.eq(project));
    }
    if let Some(status) = status {
        query = query.filter(code_generations::Column::Status.eq(status));
    }
    query
}

/// The active AI service `id`, as the caller sees the catalog.
pub async fn active_service(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> ApiResult<Option<ai_services::Model>> {
    Ok(ai_services::Entity::find_by_id(id)
        .filter(ai_services::Column::IsActive.eq(true))
        .one(db)
        .await?)
}

/// The AI service `id` whatever its state (for pricing a finished generation).
pub async fn service(db: &impl ConnectionTrait, id: Uuid) -> ApiResult<Option<ai_services::Model>> {
    Ok(ai_services::Entity::find_by_id(id).one(db).await?)
}

/// A validated request.
pub struct NewGeneration {
    pub id: Uuid,
    pub user_id: Uuid,
    pub project_id: Uuid,
    pub ai_service_id: Uuid,
    pub prompt: String,
    pub language: Option<String>,
}

/// Inserts a `pending` generation, naming only the request's columns (the owner's
/// grant); results keep their defaults.
pub async fn insert(
    db: &impl ConnectionTrait,
    new: NewGeneration,
) -> ApiResult<code_generations::Model> {
    let now = Utc::now();
    let row = code_generations::ActiveModel {
        id: Set(new.id),
        user_id: Set(new.user_id),
        project_id: Set(Some(new.project_id)),
        ai_service_id: Set(Some(new.ai_service_id)),
        prompt: Set(new.prompt),
        language: Set(new.language),
        status: Set(CodeGenerationStatus::Pending),
        created_at: Set(now),
        updated_at: Set(now),
        output: NotSet,
        tokens_in: NotSet,
        tokens_out: NotSet,
        cost: NotSet,
        error: NotSet,
        duration_ms: NotSet,
    };
    Ok(code_generations::Entity::insert(row)
        .exec_with_returning(db)
        .await?)
}

/// What a status change writes besides the status.
#[derive(Default)]
pub struct Outcome {
    pub output: Option<String>,
    pub tokens_in: Option<i32>,
    pub tokens_out: Option<i32>,
    pub cost: Option<f64>,
    pub error: Option<String>,
    pub duration_ms: Option<i64>,
}

/// Moves generation `id` from `from` to `to` with `outcome`; the `from` condition makes
/// a concurrent move lose instead of overwrite. Returns whether the row moved.
pub async fn advance(
    db: &impl ConnectionTrait,
    id: Uuid,
    from: CodeGenerationStatus,
    to: CodeGenerationStatus,
    outcome: Outcome,
) -> ApiResult<bool> {
    use code_generations::Column as C;
    let mut update = code_generations::Entity::update_many()
        .col_expr(C::Status, Expr::value(to))
        .col_expr(C::UpdatedAt, Expr::value(Utc::now()))
        .filter(C::Id.eq(id))
        .filter(C::Status.eq(from));
    if let Some(output) = outcome.output {
        update = update.col_expr(C::Output, Expr::value(output));
    }
    if let Some(tokens) = outcome.tokens_in {
        update = update.col_expr(C::TokensIn, Expr::value(tokens));
    }
    if let Some(tokens) = outcome.tokens_out {
        update = update.col_expr(C::TokensOut, Expr::value(tokens));
    }
    if let Some(cost) = outcome.cost {
        update = update.col_expr(C::Cost, Expr::value(cost));
    }
    if let Some(error) = outcome.error {
        update = update.col_expr(C::Error, Expr::value(error));
    }
    if let Some(duration) = outcome.duration_ms {
        update = update.col_expr(C::DurationMs, Expr::value(duration));
    }
    Ok(update.exec(db).await?.rows_affected == 1)
}
