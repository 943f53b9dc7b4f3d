//! SQL for provider API keys. The owner's role may not read `ciphertext`/`nonce`, so
//! every owner read selects [`Metadata`] only and inserts run without `RETURNING`; the
//! full row (secret included) is read only for `agentTaskCredential`, as the service.

use chrono::Utc;
use entity::{
    agent_tasks,
    user_api_keys::{self, Metadata},
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, Select, sea_query::Expr,
};
use uuid::Uuid;

use crate::{error::ApiResult, secrets::Sealed};

/// The owner's keys that `visible` allows (paged newest first by
/// `kit::pagination::paginate`).
pub fn list(visible: Condition) -> Select<user_api_keys::Entity> {
    user_api_keys::Entity::find().filter(visible)
}

/// The key `id` if `visible` allows it.
pub async fn find(
    db: &impl ConnectionTrait,
    visible: Condition,
    id: Uuid,
) -> ApiResult<Option<Metadata>> {
    Ok(user_api_keys::Entity::find_by_id(id)
        .filter(visible)
        .into_partial_model::<Metadata>()
        .one(db)
        .await?)
}

/// A validated new key, already sealed.
pub struct NewKey {
    pub id: Uuid,
    pub user_id: Uuid,
    pub ai_service_id: Option<Uuid>,
    pub provider: String,
    pub label: String,
    pub sealed: Sealed,
    pub hint: String,
}

/// Inserts without `RETURNING` (which would read the secret columns back).
pub async fn insert(db: &impl ConnectionTrait, new: NewKey) -> ApiResult<()> {
    let now = Utc::now();
    let row = user_api_keys::ActiveModel {
        id: Set(new.id),
        user_id: Set(new.user_id),
        ai_service_id: Set(new.ai_service_id),
        provider: Set(new.provider),
        label: Set(new.label),
        ciphertext: Set(new.sealed.ciphertext),
        nonce: Set(new.sealed.nonce),
        key_id: Set(new.sealed.key_id),
        hint: Set(new.hint),
        last_used_at: Set(None),
        revoked_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    };
    user_api_keys::Entity::insert(row)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Marks the key revoked unless it already is (the owner may update `revoked_at` and
/// `updated_at` only), if `visible` allows it.
pub async fn revoke(db: &impl ConnectionTrait, visible: Condition, id: Uuid) -> ApiResult<()> {
    let now = Utc::now();
    user_api_keys::Entity::update_many()
        .col_expr(user_api_keys::Column::RevokedAt, Expr::value(now))
        .col_expr(user_api_keys::Column::UpdatedAt, Expr::value(now))
        .filter(user_api_keys::Column::Id.eq(id))
        .filter(user_api_keys::Column::RevokedAt.is_null())
        .filter(visible)
        .exec(db)
        .await?;
    Ok(())
}

/// The task `id` (read as the service, which sees every task).
pub async fn find_task(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> ApiResult<Option<agent_tasks::Model>> {
    Ok(agent_tasks::Entity::find_by_id(id).one(db).await?)
}

/// The newest unrevoked key of `user` for `provider`, secret included (service only).
pub async fn newest_usable(
    db: &impl ConnectionTrait,
    user: Uuid,
    provider: &str,
) -> ApiResult<Option<user_api_keys::Model>> {
    Ok(user_api_keys::Entity::find()
        .filter(user_api_keys::Column::UserId.eq(user))
        .filter(user_api_keys::Column::Provider.eq(provider))
        .filter(user_api_keys::Column::RevokedAt.is_null())
        .order_by_desc(user_api_keys::Column::Id)
        .one(db)
        .await?)
}

/// Stamps `last_used_at` (the service may update it and `updated_at` only).
pub async fn mark_used(db: &impl ConnectionTrait, id: Uuid) -> ApiResult<()> {
    let now = Utc::now();
    user_api_keys::Entity::update_many()
        .col_expr(user_api_keys::Column::LastUsedAt, Expr::value(now))
        .col_expr(user_api_keys::Column::UpdatedAt, Expr::value(now))
        .filter(user_api_keys::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Whether an active AI service `id` exists (as the caller sees the catalog).
pub async fn active_service_provider(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> ApiResult<Option<String>> {
    Ok(entity::ai_services::Entity::find_by_id(id)
        .filter(entity::ai_services::Column::IsActive.eq(true))
        .one(db)
        .await?
        .map(|service| service.provider))
}
