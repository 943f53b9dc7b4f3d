//! The replica's one LISTEN connection (Postgres): sqlx's `PgListener` on a pool of
//! its own with a single connection, so it never takes a request's slot and never
//! goes through a transaction-mode pooler. Every notification only wakes the hub; when
//! the connection was lost (`try_recv` returns `Ok(None)`, see sqlx's `PgListener`
//! docs) or cannot be re-established, the hub is woken too once it listens again, and
//! it catches up from the `events` table: nothing sent meanwhile is lost.

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
                let err = loop {
                    match listener.try_recv().await {
                        Ok(Some(_)) => shared.wake.notify_one(),
                        Ok(None) => {
                            // Lost and (on the next call) re-established: catch up.
                            shared.health.reconnects.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!("LISTEN connection lost; reconnecting and catching up");
                            shared.wake.notify_one();
                        }
                        Err(err) => break err,
                    }
                };
                tracing::warn!(error = %err, "LISTEN connection failed; reconnecting");
            }
            Err(err) => tracing::warn!(error = %err, "cannot LISTEN; retrying"),
        }
        shared.health.listening.store(false, Ordering::Relaxed);
        shared.health.reconnects.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}
