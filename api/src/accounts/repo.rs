//! SQL for accounts and revoked tokens. Every query also filters as the `users`
//! policies do, so SQLite (no RLS) is guarded by the same rules.

use chrono::{DateTime, Utc};
use entity::{revoked_tokens, users};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, ExprTrait, Func},
};
use uuid::Uuid;

use crate::{
    auth::{Email, Identity, Session},
    db::new_id,
    error::ApiResult,
};

/// The account `id` if `identity` may read it (itself, or an admin).
pub async fn find(
    db: &impl ConnectionTrait,
    identity: Identity,
    id: Uuid,
) -> ApiResult<Option<users::Model>> {
    if identity.user_id() != Some(id) && !identity.is_admin() {
        return Ok(None);
    }
    Ok(users::Entity::find_by_id(id).one(db).await?)
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

/// Records revocation ids; recording one twice is harmless.
pub async fn revoke(
    db: &impl ConnectionTrait,
    revocation_ids: Vec<String>,
    expires_at: DateTime<Utc>,
) -> ApiResult<()> {
    let now = Utc::now();
    let rows = revocation_ids
        .into_iter()
        .map(|id| revoked_tokens::ActiveModel {
            revocation_id: Set(id),
            revoked_at: Set(now),
            expires_at: Set(Some(expires_at)),
            user_id: Set(None),
        });
    revoked_tokens::Entity::insert_many(rows)
        .on_conflict_do_nothing_on([revoked_tokens::Column::RevocationId])
        .exec(db)
        .await?;
    Ok(())
}

/// Whether the session may still act: none of its revocation ids is revoked, its
/// account still exists, and an admin token's account is still an admin (a demoted
/// admin's tokens stop working at once instead of at their expiry).
pub(crate) async fn session_is_current(
    db: &impl ConnectionTrait,
    session: &Session,
) -> ApiResult<bool> {
    if any_revoked(db, session.revocation_ids()).await? {
        return Ok(false);
    }
    let identity = session.identity();
    let Some(user_id) = identity.user_id() else {
        return Ok(false);
    };
    let role: Option<users::UserRole> = users::Entity::find_by_id(user_id)
        .select_only()
        .column(users::Column::Role)
        .into_tuple()
        .one(db)
        .await?;
    Ok(match role {
        None => false,
        Some(stored) => !identity.is_admin() || stored == users::UserRole::Admin,
    })
}

/// Whether any of these revocation ids has been revoked.
async fn any_revoked(db: &impl ConnectionTrait, revocation_ids: Vec<String>) -> ApiResult<bool> {
    Ok(revoked_tokens::Entity::find()
        .filter(revoked_tokens::Column::RevocationId.is_in(revocation_ids))
        .one(db)
        .await?
        .is_some())
}

/// Makes the account an administrator (the CLI's `token issue --role admin`).
pub(crate) async fn promote_to_admin(
    db: &impl ConnectionTrait,
    user: users::Model,
) -> ApiResult<users::Model> {
    use sea_orm::{ActiveModelTrait, IntoActiveModel};
    let mut user = user.into_active_model();
    user.role = Set(users::UserRole::Admin);
    user.updated_at = Set(Utc::now());
    Ok(user.update(db).await?)
}

/// Deletes revocations whose token has expired anyway; returns how many.
pub(crate) async fn purge_expired_revocations(db: &impl ConnectionTrait) -> ApiResult<u64> {
    let purged = revoked_tokens::Entity::delete_many()
        .filter(revoked_tokens::Column::ExpiresAt.lt(Utc::now()))
        .exec(db)
        .await?;
    Ok(purged.rows_affected)
}
