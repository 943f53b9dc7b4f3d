//! The replica's one LISTEN connection (Postgres): sqlx's `PgListener` on a pool of
//! its own with a single connection (same `DATABASE_URL`), so it never takes a
//! request's slot. LISTEN needs a session of its own: `DATABASE_URL` must reach
//! Postgres directly or through a session-mode pooler, never a transaction-mode one.
//! Every notification only wakes the hub. When the connection is lost (`try_recv`
//! returns `Ok(None)` or an error, see sqlx's `PgListener` docs), it reconnects with
//! backoff and LISTENs again, then wakes the hub, which catches up from the `events`
//! table: nothing sent meanwhile is lost.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use sea_orm::sqlx::postgres::{PgListener, PgPoolOptions};

use super::hub::Shared;

/// The channel the `events` triggers notify (migration m20261126_000009).
pub const CHANNEL: &str = "flashfusion_events";
/// Reconnection backoff: first wait and longest wait.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// Listens until the hub is dropped (which aborts this task).
pub(super) async fn run(shared: Arc<Shared>) {
    let Some(pool) = shared.db_pool() else {
        return;
    };
    let options = (*pool.connect_options()).clone();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(options);
    let mut backoff = BACKOFF.0;
    loop {
        let listening = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sea_orm::sqlx::Error>(listener)
        };
        match listening.await {
            Ok(mut listener) => {
                backoff = BACKOFF.0;
                shared.health.listening.store(true, Ordering::Relaxed);
                // Whatever was written while nobody listened is read now.
                shared.wake.notify_one();
                // `Ok(None)`: the connection was lost. sqlx would re-establish it on
                // the next call, but only a fresh LISTEN followed by a catch-up (above)
                // tells when events flow again, so start over instead.
                loop {
                    match listener.try_recv().await {
                        Ok(Some(_)) => shared.wake.notify_one(),
                        Ok(None) => {
                            tracing::warn!("LISTEN connection lost; reconnecting");
                            break;
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "LISTEN connection failed; reconnecting");
                            break;
                        }
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot LISTEN; retrying"),
        }
        if shared.health.listening.swap(false, Ordering::Relaxed) {
            shared.health.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}
