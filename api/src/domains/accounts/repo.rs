//! SQL for accounts. Every query also filters as the `users`
//! policies do, so SQLite (no RLS) is guarded by the same rules.

use chrono::Utc;
use entity::users;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Select,
    sea_query::{Expr, ExprTrait, Func},
};
use uuid::Uuid;

use crate::{
    auth::{Email, Identity},
    db::new_id,
    error::ApiResult,
};

/// The account `id` if `identity` may read it (itself, or an admin).
pub async fn find(
    db: &impl ConnectionTrait,
    identity: Identity,
    id: Uuid,
) -> ApiResult<Option<users::Account>> {
    if !super::policy::may_access(identity, id) {
        return Ok(None);
    }
    Ok(users::Entity::find_by_id(id)
        .into_partial_model::<users::Account>()
        .one(db)
        .await?)
}

/// The account with this email, compared case-insensitively.
pub(crate) async fn find_by_email(
    db: &impl ConnectionTrait,
    email: &Email,
) -> ApiResult<Option<users::Model>> {
    Ok(users::Entity::find()
        .filter(Func::lower(Expr::col(users::Column::Email)).eq(email.as_str()))
        .one(db)
        .await?)
}

/// Creates an ordinary account; a taken email is `CONFLICT`.
pub async fn insert(
    db: &impl ConnectionTrait,
    email: &Email,
    display_name: &str,
    password_hash: String,
) -> ApiResult<users::Model> {
    let now = Utc::now();
    let user = users::ActiveModel {
        id: Set(new_id()),
        email: Set(email.as_str().to_owned()),
        display_name: Set(display_name.to_owned()),
        avatar_url: Set(None),
        role: Set(users::UserRole::User),
        password_hash: Set(password_hash),
        created_at: Set(now),
        updated_at: Set(now),
    };
    Ok(users::Entity::insert(user).exec_with_returning(db).await?)
}

/// Makes the account an administrator (the CLI's `token issue --role admin`).
pub(crate) async fn promote_to_admin(db: &impl ConnectionTrait, id: Uuid) -> ApiResult<()> {
    set_role(db, id, users::UserRole::Admin).await
}

/// Every account, for the admins' directory.
pub fn all() -> Select<users::Entity> {
    users::Entity::find()
}

/// Validated profile changes; `None` keeps a field.
pub struct ProfileChanges {
    pub display_name: Option<String>,
    /// `Some(None)` clears the avatar.
    pub avatar_url: Option<Option<String>>,
}

/// Changes the profile of account `id` (without RETURNING: the hash is not readable).
pub async fn update_profile(
    db: &impl ConnectionTrait,
    id: Uuid,
    changes: ProfileChanges,
) -> ApiResult<()> {
    let mut update = users::Entity::update_many()
        .col_expr(users::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(users::Column::Id.eq(id));
    if let Some(name) = changes.display_name {
        update = update.col_expr(users::Column::DisplayName, Expr::value(name));
    }
    if let Some(url) = changes.avatar_url {
        update = update.col_expr(users::Column::AvatarUrl, Expr::value(url));
    }
    update.exec(db).await?;
    Ok(())
}

/// Sets the role of account `id`; `NOT_FOUND` when there is none.
pub async fn set_role(db: &impl ConnectionTrait, id: Uuid, role: users::UserRole) -> ApiResult<()> {
    let done = users::Entity::update_many()
        .col_expr(users::Column::Role, Expr::value(role))
        .col_expr(users::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(users::Column::Id.eq(id))
        .exec(db)
        .await?;
    if done.rows_affected == 0 {
        return Err(crate::error::ApiError::NotFound("user"));
    }
    Ok(())
}
