//! SQL for notifications. Every read and change is limited to the owner's rows with
//! [`super::policy::owned_by`], so SQLite (no RLS) hides the same rows.

use chrono::Utc;
use entity::notifications;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    Select, sea_query::Expr,
};
use uuid::Uuid;

use super::{NewNotification, policy::owned_by};
use crate::{db::new_id, error::ApiResult};

/// Inserts a notification without reading it back (the writer may not be its reader).
pub async fn insert(db: &impl ConnectionTrait, new: NewNotification) -> ApiResult<Uuid> {
    let id = new_id();
    let now = Utc::now();
    let row = notifications::ActiveModel {
        id: Set(id),
        user_id: Set(new.user_id),
        kind: Set(new.kind),
        title: Set(new.title),
        body: Set(new.body),
        data: Set(new.data),
        read_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    };
    notifications::Entity::insert(row)
        .exec_without_returning(db)
        .await?;
    Ok(id)
}

/// `user_id`'s notifications, optionally unread ones only.
pub fn list(user_id: Uuid, unread_only: bool) -> Select<notifications::Entity> {
    let query = notifications::Entity::find().filter(owned_by(user_id));
    if unread_only {
        query.filter(notifications::Column::ReadAt.is_null())
    } else {
        query
    }
}

/// How many unread notifications `user_id` has.
pub async fn unread_count(db: &impl ConnectionTrait, user_id: Uuid) -> ApiResult<u64> {
    Ok(list(user_id, true).count(db).await?)
}

/// The notification `id` if it belongs to `user_id`.
pub async fn find_owned(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    id: Uuid,
) -> ApiResult<Option<notifications::Model>> {
    Ok(notifications::Entity::find_by_id(id)
        .filter(owned_by(user_id))
        .one(db)
        .await?)
}

/// Marks `user_id`'s unread notifications read (those matching `only`, or all);
/// returns how many changed.
pub async fn mark_read(
    db: &impl ConnectionTrait,
    user_id: Uuid,
    only: Option<Uuid>,
) -> ApiResult<u64> {
    let now = Utc::now();
    let mut update = notifications::Entity::update_many()
        .col_expr(notifications::Column::ReadAt, Expr::value(now))
        .col_expr(notifications::Column::UpdatedAt, Expr::value(now))
        .filter(owned_by(user_id))
        .filter(notifications::Column::ReadAt.is_null());
    if let Some(id) = only {
        update = update.filter(notifications::Column::Id.eq(id));
    }
    Ok(update.exec(db).await?.rows_affected)
}

/// Deletes notification `id` of `user_id`; whether it existed.
pub async fn delete(db: &impl ConnectionTrait, user_id: Uuid, id: Uuid) -> ApiResult<bool> {
    let done = notifications::Entity::delete_many()
        .filter(owned_by(user_id))
        .filter(notifications::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(done.rows_affected > 0)
}
