//! SQL for usage: appending a row, and summing rows into buckets. The bucket key is
//! computed in SQL per backend (a day is a `YYYY-MM-DD` string of the UTC timestamp).

use chrono::{DateTime, Utc};
use entity::usage_analytics;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, FromQueryResult,
    QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use super::UsageEvent;
use crate::{db::new_id, error::ApiResult, kit::money};

/// Appends one usage row in the caller's transaction.
pub async fn insert(db: &impl ConnectionTrait, event: UsageEvent) -> ApiResult<()> {
    let row = usage_analytics::ActiveModel {
        id: Set(new_id()),
        user_id: Set(event.user_id),
        project_id: Set(event.project_id),
        event_type: Set(event.event_type.to_owned()),
        quantity: Set(event.quantity),
        tokens: Set(event.tokens),
        cost: Set(money::to_column("cost", event.cost)?),
        metadata: Set(event.metadata),
        created_at: Set(Utc::now()),
    };
    usage_analytics::Entity::insert(row)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// How rows are grouped into buckets.
#[derive(Debug, Clone, Copy)]
pub enum Grouping {
    Day,
    EventType,
    Project,
}

/// One bucket as summed by the database.
#[derive(Debug, FromQueryResult)]
pub struct BucketRow {
    pub key: Option<String>,
    pub project_id: Option<Uuid>,
    pub quantity: i64,
    pub tokens: i64,
    pub cost: f64,
}

/// Sums `user_id`'s usage created in `[from, to)` into buckets.
pub async fn summarize(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    grouping: Grouping,
) -> ApiResult<Vec<BucketRow>> {
    let day = match db.get_database_backend() {
        DatabaseBackend::Postgres => "to_char(created_at at time zone 'UTC', 'YYYY-MM-DD')",
        _ => "substr(created_at, 1, 10)",
    };
    let mut query = usage_analytics::Entity::find()
        .select_only()
        .filter(usage_analytics::Column::UserId.eq(user_id))
        .filter(usage_analytics::Column::CreatedAt.gte(from))
        .filter(usage_analytics::Column::CreatedAt.lt(to))
        .expr_as(
            Expr::cust("cast(coalesce(sum(quantity), 0) as bigint)"),
            "quantity",
        )
        .expr_as(
            Expr::cust("cast(coalesce(sum(tokens), 0) as bigint)"),
            "tokens",
        )
        .expr_as(Expr::cust("coalesce(sum(cost), 0)"), "cost");
    query = match grouping {
        Grouping::Day => query
            .expr_as(Expr::cust(day), "key")
            .expr_as(Expr::cust("null"), "project_id")
            .group_by(Expr::cust(day))
            .order_by_asc(Expr::cust(day)),
        Grouping::EventType => query
            .expr_as(Expr::col(usage_analytics::Column::EventType), "key")
            .expr_as(Expr::cust("null"), "project_id")
            .group_by(usage_analytics::Column::EventType)
            .order_by_asc(usage_analytics::Column::EventType),
        Grouping::Project => query
            .expr_as(Expr::cust("null"), "key")
            .column(usage_analytics::Column::ProjectId)
            .group_by(usage_analytics::Column::ProjectId)
            .order_by_asc(usage_analytics::Column::ProjectId),
    };
    Ok(query.into_model::<BucketRow>().all(db).await?)
}
