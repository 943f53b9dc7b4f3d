//! Billing: every account's plan and subscription state. The owner reads it
//! (`myBilling`, `User.billing`), the service and admins write it (`setBilling`); a
//! FREE row is created with every account. A token narrowed to a project does not reach
//! it (`resource("billing")`).

pub mod policy;
mod repo;

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::billing::{self, BillingPlan as DbPlan, BillingStatus as DbStatus};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

use crate::{
    auth::{Operation, Resource},
    error::{ApiError, ApiResult},
    kit::{
        RequestContext,
        authz::require_service_or_admin,
        enums::mirror_enum,
        loaders::{ById, Loaders},
        parse_id, profiles,
    },
    validate,
};

/// The plan an account pays for.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum Plan {
    Free,
    Pro,
    Team,
    Enterprise,
}
mirror_enum!(Plan <=> DbPlan { Free, Pro, Team, Enterprise });

/// The subscription's state at the payment provider.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum BillingStatus {
    Active,
    Trialing,
    PastDue,
    Canceled,
}

impl From<DbStatus> for BillingStatus {
    fn from(status: DbStatus) -> Self {
        match status {
            DbStatus::Active => Self::Active,
            DbStatus::Trialing => Self::Trialing,
            // A first payment not yet made is, to the client, a payment due.
            DbStatus::PastDue | DbStatus::Incomplete => Self::PastDue,
            DbStatus::Cancelled => Self::Canceled,
        }
    }
}

impl From<BillingStatus> for DbStatus {
    fn from(status: BillingStatus) -> Self {
        match status {
            BillingStatus::Active => Self::Active,
            BillingStatus::Trialing => Self::Trialing,
            BillingStatus::PastDue => Self::PastDue,
            BillingStatus::Canceled => Self::Cancelled,
        }
    }
}

/// An account's plan and subscription.
#[derive(SimpleObject, Clone)]
pub struct Billing {
    plan: Plan,
    status: BillingStatus,
    current_period_start: Option<DateTime<Utc>>,
    current_period_end: Option<DateTime<Utc>>,
    cancel_at_period_end: bool,
}

impl Billing {
    /// What an account without a billing row has: the free plan.
    fn free() -> Self {
        Self {
            plan: Plan::Free,
            status: BillingStatus::Active,
            current_period_start: None,
            current_period_end: None,
            cancel_at_period_end: false,
        }
    }
}

impl From<billing::Model> for Billing {
    fn from(b: billing::Model) -> Self {
        Self {
            plan: b.plan.into(),
            status: b.status.into(),
            current_period_start: b.current_period_start,
            current_period_end: b.current_period_end,
            cancel_at_period_end: b.cancel_at_period_end,
        }
    }
}

/// Loads billing by account id, as far as the caller may read it.
pub type BillingLoader = ById<billing::Entity, Billing>;

/// Registers the billing loader for a request.
pub fn register(loaders: Loaders) -> Loaders {
    loaders.register(|tx, identity| {
        BillingLoader::new(
            tx,
            policy::readable(identity),
            billing::Column::UserId,
            |row| (row.user_id, row.into()),
        )
    })
}

/// Creates the FREE billing row of a new account, in its sign-up transaction.
pub async fn create_for_new_account(db: &impl ConnectionTrait, user_id: Uuid) -> ApiResult<()> {
    repo::create_free(db, user_id).await
}

/// The billing of `user_id` for `User.billing`: `None` when the caller may not read it.
pub async fn of_account(
    ctx: &Context<'_>,
    rc: &RequestContext,
    user_id: Uuid,
) -> ApiResult<Option<Billing>> {
    if !policy::may_read(rc.identity(), user_id) {
        return Ok(None);
    }
    rc.authorize(Operation::Read, Resource::Billing)?;
    let loaded = crate::kit::loaders::load_one::<BillingLoader, _>(ctx, user_id).await?;
    Ok(Some(loaded.unwrap_or_else(Billing::free)))
}

#[derive(InputObject)]
pub struct SetBillingInput {
    user_id: ID,
    plan: Option<Plan>,
    status: Option<BillingStatus>,
    current_period_end: Option<DateTime<Utc>>,
    cancel_at_period_end: Option<bool>,
}

#[derive(SimpleObject)]
pub struct SetBillingPayload {
    billing: Billing,
}

#[derive(Default)]
pub struct BillingQuery;

#[Object]
impl BillingQuery {
    /// The caller's plan and subscription.
    async fn my_billing(&self, ctx: &Context<'_>) -> ApiResult<Billing> {
        let rc = RequestContext::of(ctx)?;
        let user_id = rc.user_id()?;
        rc.authorize(Operation::Read, Resource::Billing)?;
        Ok(repo::find(&*rc.tx().await?, user_id)
            .await?
            .map_or_else(Billing::free, Billing::from))
    }
}

#[derive(Default)]
pub struct BillingMutation;

#[Object]
impl BillingMutation {
    /// Sets an account's plan and subscription (the service and admins).
    async fn set_billing(
        &self,
        ctx: &Context<'_>,
        input: SetBillingInput,
    ) -> ApiResult<SetBillingPayload> {
        let rc = RequestContext::of(ctx)?;
        require_service_or_admin(rc)?;
        rc.authorize(Operation::Write, Resource::Billing)?;
        let user_id = parse_id("userId", &input.user_id)?;
        let db = rc.tx().await?;
        if !profiles::account_exists(&*db, user_id).await? {
            return Err(ApiError::NotFound("user"));
        }
        let changes = repo::BillingChanges {
            plan: input.plan.map(Into::into),
            status: input.status.map(Into::into),
            current_period_end: input
                .current_period_end
                .map(|end| validate::instant("currentPeriodEnd", end))
                .transpose()?,
            cancel_at_period_end: input.cancel_at_period_end,
        };
        repo::upsert(&*db, user_id, changes).await?;
        let billing = repo::find(&*db, user_id)
            .await?
            .ok_or(ApiError::bug("billing row missing after upsert"))?;
        Ok(SetBillingPayload {
            billing: billing.into(),
        })
    }
}
