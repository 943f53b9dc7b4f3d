//! Usage: what each account consumed (generations' tokens and cost, tasks, deployments,
//! key uses). Other domains append rows with [`record`] in the same transaction as
//! what they count; `usageSummary` sums them into buckets. Reading someone else's
//! usage is for admins ([`policy`]); a token narrowed to a project does not reach it
//! (`resource("usage")`).

pub mod policy;
mod repo;

use async_graphql::{Context, Enum, ID, Object, SimpleObject};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::{
    auth::{Operation, Resource},
    error::{ApiError, ApiResult},
    kit::{RequestContext, money, parse_optional_id},
    validate,
};

/// One usage row to append.
pub struct UsageEvent {
    pub user_id: Uuid,
    pub project_id: Option<Uuid>,
    /// What was used: `code_generation.completed`, `agent_task.created`, ...
    pub event_type: &'static str,
    pub quantity: i64,
    pub tokens: i64,
    pub cost: Decimal,
    pub metadata: serde_json::Value,
}

/// Appends `event` in the caller's transaction, so it commits or rolls back with what
/// it counts.
pub async fn record(db: &impl ConnectionTrait, event: UsageEvent) -> ApiResult<()> {
    repo::insert(db, event).await
}

/// How `usageSummary` groups rows.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum UsageGroupBy {
    /// One bucket per UTC day (`YYYY-MM-DD`).
    Day,
    /// One bucket per event type.
    EventType,
    /// One bucket per project id (`""` for usage outside any project).
    Project,
}

/// A sum of usage rows.
#[derive(SimpleObject)]
pub struct UsageBucket {
    key: String,
    quantity: i64,
    tokens: i64,
    cost: Decimal,
}

#[derive(Default)]
pub struct UsageQuery;

#[Object]
impl UsageQuery {
    /// The caller's usage created in `[from, to)`, summed per `groupBy`; `userId` other
    /// than the caller's own is for admins.
    async fn usage_summary(
        &self,
        ctx: &Context<'_>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        group_by: UsageGroupBy,
        user_id: Option<ID>,
    ) -> ApiResult<Vec<UsageBucket>> {
        let rc = RequestContext::of(ctx)?;
        let caller = rc.user_id()?;
        let user_id = parse_optional_id("userId", user_id.as_ref())?.unwrap_or(caller);
        if !policy::may_read(rc.identity(), user_id) {
            return Err(ApiError::Forbidden(
                "only an admin may read another account's usage",
            ));
        }
        rc.authorize(Operation::Read, Resource::Usage)?;
        let (from, to) = (
            validate::instant("from", from)?,
            validate::instant("to", to)?,
        );
        if from >= to {
            return Err(ApiError::bad_input("from: must be before to"));
        }
        let grouping = match group_by {
            UsageGroupBy::Day => repo::Grouping::Day,
            UsageGroupBy::EventType => repo::Grouping::EventType,
            UsageGroupBy::Project => repo::Grouping::Project,
        };
        let rows = repo::summarize(&*rc.tx().await?, user_id, (from, to), grouping).await?;
        Ok(rows
            .into_iter()
            .map(|row| UsageBucket {
                key: row
                    .key
                    .or_else(|| row.project_id.map(|id| id.to_string()))
                    .unwrap_or_default(),
                quantity: row.quantity,
                tokens: row.tokens,
                cost: money::from_column(row.cost),
            })
            .collect())
    }
}
