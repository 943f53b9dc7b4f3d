//! Revocations: `signOut` records them here and `serve` purges the expired ones.
//! Whether a verified token may still act (none of its revocation ids revoked, its
//! account there with its role) is checked by the statement that opens a request's
//! transaction (`Database::begin_session`), which the pipeline, the WebSocket
//! handshake and a socket's session watcher all go through. Nothing here knows of
//! GraphQL.

use std::time::Duration;

use chrono::Utc;
use entity::revoked_tokens;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::{
    auth::{Identity, Session},
    db::Database,
    error::ApiResult,
};

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
            revocation_id: Set(id.to_owned()),
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
