//! STAND-IN for the lead's `usage` domain (same signature as announced in the brief),
//! replaced by main's version at merge.

use rust_decimal::{Decimal, prelude::ToPrimitive};
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};
use uuid::Uuid;

use crate::error::ApiResult;

/// One usage event.
pub struct UsageEvent {
    pub user_id: Uuid,
    pub project_id: Option<Uuid>,
    pub event_type: &'static str,
    pub quantity: i64,
    pub tokens: i64,
    pub cost: Decimal,
    pub metadata: serde_json::Value,
}

/// Appends a usage row.
pub async fn record(db: &impl ConnectionTrait, event: UsageEvent) -> ApiResult<()> {
    use entity::usage_analytics as ua;
    let row = ua::ActiveModel {
        id: Set(crate::db::new_id()),
        user_id: Set(event.user_id),
        project_id: Set(event.project_id),
        event_type: Set(event.event_type.to_owned()),
        quantity: Set(event.quantity),
        tokens: Set(event.tokens),
        cost: Set(event.cost.to_f64().unwrap_or_default()),
        metadata: Set(event.metadata),
        created_at: Set(chrono::Utc::now()),
    };
    ua::Entity::insert(row).exec_without_returning(db).await?;
    Ok(())
}
