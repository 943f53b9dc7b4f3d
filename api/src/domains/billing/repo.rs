//! SQL for billing: the row created with every account, and the upsert the service and
//! admins make.

use chrono::{DateTime, Utc};
use entity::billing::{self, BillingPlan, BillingStatus};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    sea_query::OnConflict,
};
use uuid::Uuid;

use crate::{db::new_id, error::ApiResult};

/// The FREE, active row every new account gets (in the sign-up transaction).
pub async fn create_free(db: &impl ConnectionTrait, user_id: Uuid) -> ApiResult<()> {
    let now = Utc::now();
    let row = billing::ActiveModel {
        id: Set(new_id()),
        user_id: Set(user_id),
        plan: Set(BillingPlan::Free),
        status: Set(BillingStatus::Active),
        external_customer_id: Set(None),
        external_subscription_id: Set(None),
        current_period_start: Set(Some(now)),
        current_period_end: Set(None),
        cancel_at_period_end: Set(false),
        created_at: Set(now),
        updated_at: Set(now),
    };
    billing::Entity::insert(row)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// The billing row of `user_id`, if any.
pub async fn find(db: &impl ConnectionTrait, user_id: Uuid) -> ApiResult<Option<billing::Model>> {
    Ok(billing::Entity::find()
        .filter(billing::Column::UserId.eq(user_id))
        .one(db)
        .await?)
}

/// What `setBilling` changes; `None` keeps a field (or its default on a new row).
pub struct BillingChanges {
    pub plan: Option<BillingPlan>,
    pub status: Option<BillingStatus>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: Option<bool>,
}

/// Creates or updates `user_id`'s billing row with `changes`.
pub async fn upsert(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    changes: BillingChanges,
) -> ApiResult<()> {
    let now = Utc::now();
    // On conflict, only the given fields (and the update time) change.
    let given = [
        (changes.plan.is_some(), billing::Column::Plan),
        (changes.status.is_some(), billing::Column::Status),
        (
            changes.current_period_end.is_some(),
            billing::Column::CurrentPeriodEnd,
        ),
        (
            changes.cancel_at_period_end.is_some(),
            billing::Column::CancelAtPeriodEnd,
        ),
    ];
    let update = given
        .into_iter()
        .filter_map(|(given, column)| given.then_some(column))
        .chain([billing::Column::UpdatedAt]);
    let row = billing::ActiveModel {
        id: Set(new_id()),
        user_id: Set(user_id),
        plan: Set(changes.plan.unwrap_or(BillingPlan::Free)),
        status: Set(changes.status.unwrap_or(BillingStatus::Active)),
        external_customer_id: NotSet,
        external_subscription_id: NotSet,
        current_period_start: Set(Some(now)),
        current_period_end: Set(changes.current_period_end),
        cancel_at_period_end: Set(changes.cancel_at_period_end.unwrap_or(false)),
        created_at: Set(now),
        updated_at: Set(now),
    };
    billing::Entity::insert(row)
        .on_conflict(
            OnConflict::column(billing::Column::UserId)
                .update_columns(update)
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}
