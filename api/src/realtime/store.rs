//! The SQL of the `events` table, per backend: read events after a cursor in cursor
//! order (on Postgres only those of transactions no older transaction can overtake),
//! find where the feed ends, check a cursor is still retained, and prune old events.
//! Everything runs as the gateway's service identity, whose policies read and prune
//! every event; who may see an event is judged later, per subscriber.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseBackend, QueryResult, Statement, Value};
use uuid::Uuid;

use super::{Change, Cursor, Event, Row};
use crate::{
    auth::{Identity, Role},
    db::Database,
    error::{ApiError, ApiResult},
};

/// The identity the hub reads and prunes as.
fn service() -> Identity {
    Identity::user(Uuid::nil(), Role::Service)
}

/// The events after `after`, oldest first, at most `limit`, only those of `owner`'s
/// rows when given; and whether events after them already committed but are held back
/// because an older transaction still runs (the caller should look again shortly).
pub async fn after(
    db: &Database,
    after: Cursor,
    limit: u64,
    owner: Option<Uuid>,
) -> ApiResult<(Vec<Event>, bool)> {
    let backend = db.backend();
    let sql = match backend {
        DatabaseBackend::Postgres => {
            "select id, tx_id::text as tx, topic, kind, owner_id, payload::text as payload,
                    tx_id < pg_snapshot_xmin(pg_current_snapshot()) as safe
             from events where (tx_id, id) > ($1::text::xid8, $2)
                 and ($4::uuid is null or owner_id = $4::uuid)
             order by tx_id, id limit $3"
        }
        _ => {
            "select id, cast(tx_id as text) as tx, topic, kind, owner_id, payload, 1 as safe
             from events where (tx_id, id) > (cast($1 as integer), $2)
                 and ($4 is null or owner_id = $4)
             order by tx_id, id limit $3"
        }
    };
    let values: [Value; 4] = [
        after.tx.to_string().into(),
        after.id.into(),
        i64::try_from(limit).unwrap_or(i64::MAX).into(),
        owner.into(),
    ];
    let rows = query(db, sql, values).await?;
    let mut events = Vec::with_capacity(rows.len());
    let mut held_back = false;
    for row in rows {
        if !row.try_get::<bool>("", "safe")? {
            held_back = true;
            break;
        }
        match decode(&row) {
            Ok(event) => events.push(event),
            Err(err) => {
                // A row this build cannot read must not stop the feed: skip it, loudly.
                let cursor = cursor_of(&row)?;
                tracing::error!(%cursor, error = ?err, "skipping an event that cannot be decoded");
                events.push(Event {
                    cursor,
                    change: Change::Updated,
                    owner_id: None,
                    row: Row::Unreadable,
                });
            }
        }
    }
    Ok((events, held_back))
}

/// The cursor of the last event a subscriber may be given now (the start when there
/// is none): a new hub begins there.
pub async fn head(db: &Database) -> ApiResult<Cursor> {
    let sql = match db.backend() {
        DatabaseBackend::Postgres => {
            "select id, tx_id::text as tx from events
             where tx_id < pg_snapshot_xmin(pg_current_snapshot())
             order by tx_id desc, id desc limit 1"
        }
        _ => {
            "select id, cast(tx_id as text) as tx from events
             order by tx_id desc, id desc limit 1"
        }
    };
    let rows = query(db, sql, []).await?;
    rows.first().map_or(Ok(Cursor::default()), cursor_of)
}

/// Whether the event at `cursor` is still stored. Pruning removes events in cursor
/// order, so while it is, nothing after it has been pruned.
pub async fn retains(db: &Database, cursor: Cursor) -> ApiResult<bool> {
    let sql = match db.backend() {
        DatabaseBackend::Postgres => {
            "select id from events where tx_id = $1::text::xid8 and id = $2"
        }
        _ => "select id from events where tx_id = cast($1 as integer) and id = $2",
    };
    let rows = query(db, sql, [cursor.tx.to_string().into(), cursor.id.into()]).await?;
    Ok(!rows.is_empty())
}

/// Deletes the events older than `age`, in cursor order up to the newest of them; none
/// when `age` reaches back before any instant a timestamp holds (a retention meant as
/// "for ever").
pub async fn prune(db: &Database, age: Duration) -> ApiResult<u64> {
    let cutoff = chrono::Duration::from_std(age)
        .ok()
        .and_then(|age| chrono::Utc::now().checked_sub_signed(age));
    let Some(cutoff) = cutoff else {
        return Ok(0);
    };
    let sql = "delete from events where (tx_id, id) <= (
                   select tx_id, id from events where created_at < $1
                   order by tx_id desc, id desc limit 1)";
    let tx = db.begin(&service(), false).await?;
    let result = tx
        .conn()
        .execute_raw(Statement::from_sql_and_values(
            db.backend(),
            sql,
            [cutoff.into()],
        ))
        .await;
    let pruned = match result {
        Ok(done) => done.rows_affected(),
        Err(err) => {
            let _ = tx.finish(false).await;
            return Err(err.into());
        }
    };
    tx.finish(true).await?;
    Ok(pruned)
}

async fn query<const N: usize>(
    db: &Database,
    sql: &str,
    values: [Value; N],
) -> ApiResult<Vec<QueryResult>> {
    let tx = db.begin(&service(), true).await?;
    let rows = tx
        .conn()
        .query_all_raw(Statement::from_sql_and_values(db.backend(), sql, values))
        .await;
    tx.finish(rows.is_ok()).await?;
    Ok(rows?)
}

fn cursor_of(row: &QueryResult) -> ApiResult<Cursor> {
    let tx: String = row.try_get("", "tx")?;
    Ok(Cursor {
        tx: tx
            .parse()
            .map_err(|e| ApiError::internal("event transaction id", e))?,
        id: row.try_get("", "id")?,
    })
}

fn decode(row: &QueryResult) -> ApiResult<Event> {
    let kind: String = row.try_get("", "kind")?;
    let change = match kind.as_str() {
        "CREATED" => Change::Created,
        "DELETED" => Change::Deleted,
        _ => Change::Updated,
    };
    let topic: String = row.try_get("", "topic")?;
    let payload = || -> ApiResult<String> { Ok(row.try_get("", "payload")?) };
    let parse = |e: serde_json::Error| ApiError::internal("event payload", e);
    let row_of = match topic.as_str() {
        "agent_task" => Row::AgentTask(serde_json::from_str(&payload()?).map_err(parse)?),
        "deployment" => Row::Deployment(serde_json::from_str(&payload()?).map_err(parse)?),
        "notification" => Row::Notification(serde_json::from_str(&payload()?).map_err(parse)?),
        "session" => Row::Session,
        other => {
            tracing::error!(topic = other, "skipping an event of an unknown topic");
            Row::Unreadable
        }
    };
    Ok(Event {
        cursor: cursor_of(row)?,
        change,
        owner_id: row.try_get("", "owner_id")?,
        row: row_of,
    })
}
