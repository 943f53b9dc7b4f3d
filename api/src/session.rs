//! Whether a verified token may still act, decided against the database: revocations,
//! the account's existence and role. The pipeline asks before every operation and the
//! WebSocket handshake at `connection_init` (the check itself is
//! `db::session_is_current`, shared with the statement that opens a request's
//! transaction); `signOut` records revocations here and `serve` purges the expired
//! ones. Nothing here knows of GraphQL.

use std::time::Duration;

use chrono::Utc;
use entity::revoked_tokens;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::{
    auth::{Identity, Session},
    db::{self, Database},
    error::ApiResult,
};

/// Whether the session may still act, checked in one statement on an open transaction
/// as whoever it acts as: none of its revocation ids is revoked, its account still
/// exists, and an admin token's account is still an admin (a demoted admin's tokens
/// stop working at once instead of at their expiry). The pipeline gets the same check
/// from [`Database::begin_session`], in the statement that opens its transaction.
pub async fn is_current(db: &impl ConnectionTrait, session: &Session) -> ApiResult<bool> {
    db::session_is_current(db, &session.identity(), &session.revocation_ids()).await
}

/// Revokes `session`'s own (last block's) revocation id, which kills it and every token
/// derived from it, and nothing it was derived from; recording one twice is harmless.
/// The row names the account, which the `revoked_tokens` policy checks is the caller's.
pub async fn revoke(db: &impl ConnectionTrait, session: &Session) -> ApiResult<()> {
    let now = Utc::now();
    let user_id = session.identity().user_id();
    let rows = session
        .own_revocation_id()
        .into_iter()
        .map(|id| revoked_tokens::ActiveModel {
            revocation_id: Set(id),
            user_id: Set(user_id),
            revoked_at: Set(now),
            expires_at: Set(Some(session.authority_expires_at())),
        });
    revoked_tokens::Entity::insert_many(rows)
        .on_conflict_do_nothing_on([revoked_tokens::Column::RevocationId])
        .exec(db)
        .await?;
    Ok(())
}

/// Deletes the revocations of tokens that have expired anyway, as the service (whose
/// policy allows exactly that); `serve` runs it every [`PURGE_EVERY`]. Returns how many.
pub async fn purge_expired_revocations(db: &Database) -> ApiResult<u64> {
    let tx = db.begin(&Identity::SERVICE, false).await?;
    let purged = revoked_tokens::Entity::delete_many()
        .filter(revoked_tokens::Column::ExpiresAt.lt(Utc::now()))
        .exec(tx.conn())
        .await
        .map(|done| done.rows_affected)
        .map_err(Into::into);
    tx.finish(purged.is_ok()).await?;
    purged
}

/// How often `serve` purges expired revocations (and idle sign-in limiter keys).
pub const PURGE_EVERY: Duration = Duration::from_secs(3600);
