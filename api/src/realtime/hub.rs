//! [`Hub`]: one per replica. A single task reads new events from the `events` table,
//! once each whatever the number of subscribers, and broadcasts them; subscribers hold a
//! receiver of a bounded broadcast ring, so a slow one falls behind alone (it learns
//! it lagged and its subscription ends) and never delays the others or the hub.

use std::{
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sea_orm::DatabaseBackend;
use tokio::{
    sync::{Notify, broadcast, watch},
    task::JoinHandle,
};
use uuid::Uuid;

use super::{Cursor, Event, Row, listener, store};
use crate::{db::Database, error::ApiResult};

/// How many events one read takes at most.
const BATCH: u64 = 500;
/// How soon to look again when events are held back behind a running transaction, at
/// first and at most.
const HELD_BACK_RETRY: (Duration, Duration) =
    (Duration::from_millis(2), Duration::from_millis(200));
/// How long events may be held back before the hub says so in the log.
const HELD_BACK_WARNING: Duration = Duration::from_secs(10);
/// How long to wait before reading again after the database failed.
const FAILURE_RETRY: Duration = Duration::from_millis(500);
/// How often the hub looks on SQLite when nothing woke it. The pipeline wakes it after
/// each commit it makes, but nothing tells it of a write from anywhere else (an
/// operator's revocation in the `sqlite3` shell, another process on the file, a commit
/// whose request was dropped before it could wake the hub); Postgres has NOTIFY.
const SQLITE_POLL: Duration = Duration::from_secs(1);

/// The replica's event hub. Its tasks start on first use, so commands that never
/// serve (`migrate`, `token`) and databases not yet migrated never run them.
pub struct Hub {
    shared: Arc<Shared>,
    tasks: OnceLock<Vec<JoinHandle<()>>>,
}

/// What the hub's tasks share with it.
pub(super) struct Shared {
    db: Database,
    sender: broadcast::Sender<Arc<Event>>,
    /// The `session` events alone, for the sockets watching their token: they do not
    /// wake for every change, and a burst of other events cannot make them lag.
    sessions: broadcast::Sender<Arc<Event>>,
    /// The cursor of the last event broadcast. Held while sending, so a new subscriber
    /// learns exactly where its live events begin.
    position: Mutex<Cursor>,
    /// Whether `position` has been read from the database (the feed's end at start).
    ready: watch::Sender<bool>,
    /// Set by NOTIFY (Postgres) or by the pipeline after a commit (SQLite, which is
    /// also looked at every [`SQLITE_POLL`]).
    pub(super) wake: Notify,
    pub(super) health: HubHealth,
}

/// What `/readyz` and the logs can tell about the hub.
#[derive(Default)]
pub(super) struct HubHealth {
    /// Whether the Postgres listener holds a LISTENing connection (always on SQLite).
    pub listening: AtomicBool,
    /// How many times the listener lost its connection and reconnected.
    pub reconnects: AtomicU64,
    /// How many events have been broadcast.
    pub events: AtomicU64,
}

impl Shared {
    /// The pool's Postgres pool, whose connect options the listener reuses.
    pub(super) fn db_pool(&self) -> Option<&sea_orm::sqlx::PgPool> {
        (self.db.backend() == DatabaseBackend::Postgres)
            .then(|| self.db.connection().get_postgres_connection_pool())
    }
}

impl Hub {
    /// A hub over `db` with a broadcast ring of `capacity` events. It begins at the
    /// feed's end when first used.
    pub fn new(db: Database, capacity: usize) -> Self {
        let is_postgres = db.backend() == DatabaseBackend::Postgres;
        Self {
            shared: Arc::new(Shared {
                sender: broadcast::channel(capacity.max(1)).0,
                sessions: broadcast::channel(capacity.max(1)).0,
                position: Mutex::new(Cursor::default()),
                ready: watch::channel(false).0,
                wake: Notify::new(),
                health: HubHealth {
                    listening: AtomicBool::new(!is_postgres),
                    reconnects: AtomicU64::new(0),
                    events: AtomicU64::new(0),
                },
                db,
            }),
            tasks: OnceLock::new(),
        }
    }

    /// The shared part, with the reading task (and on Postgres the listener) running.
    fn running(&self) -> &Shared {
        self.tasks.get_or_init(|| {
            let mut tasks = vec![tokio::spawn(read_loop(self.shared.clone()))];
            if self.shared.db_pool().is_some() {
                tasks.push(tokio::spawn(listener::run(self.shared.clone())));
            }
            tasks
        });
        &self.shared
    }

    /// A receiver of every event broadcast from now on, and the cursor of the last
    /// event broadcast before it (live events begin right after it).
    pub async fn subscribe(&self) -> (broadcast::Receiver<Arc<Event>>, Cursor) {
        let shared = self.running();
        let mut ready = shared.ready.subscribe();
        // Cannot fail: the sender lives as long as `shared`.
        let _ = ready.wait_for(|ready| *ready).await;
        let position = lock(&shared.position);
        (shared.sender.subscribe(), *position)
    }

    /// A receiver of every `session` event broadcast from now on (a revocation, or an
    /// account's role changed or the account deleted).
    pub async fn sessions(&self) -> broadcast::Receiver<Arc<Event>> {
        let shared = self.running();
        let mut ready = shared.ready.subscribe();
        let _ = ready.wait_for(|ready| *ready).await;
        shared.sessions.subscribe()
    }

    /// Asks the hub to read new events now (after a commit of this process).
    pub fn wake(&self) {
        self.running().wake.notify_one();
    }

    /// The next batch of events after `after` up to and including `upto`, oldest
    /// first, only of `owner`'s rows when given: part of what a resuming subscriber
    /// missed before its live events begin. Empty when there is no more.
    pub async fn replay(
        &self,
        after: Cursor,
        upto: Cursor,
        owner: Option<Uuid>,
    ) -> ApiResult<Vec<Arc<Event>>> {
        if after >= upto {
            return Ok(Vec::new());
        }
        let (batch, _) = store::after(&self.shared.db, after, BATCH, owner).await?;
        Ok(batch
            .into_iter()
            .take_while(|event| event.cursor <= upto)
            .map(Arc::new)
            .collect())
    }

    /// Whether resuming after `cursor` is still possible (its event is retained).
    pub async fn retains(&self, cursor: Cursor) -> ApiResult<bool> {
        store::retains(&self.shared.db, cursor).await
    }

    /// Deletes events older than `age`; returns how many.
    pub async fn prune(&self, age: Duration) -> ApiResult<u64> {
        store::prune(&self.shared.db, age).await
    }

    /// Starts the hub's tasks now rather than at the first subscription, so its
    /// health is known from the start.
    pub fn start(&self) {
        self.running();
    }

    /// Whether events reach this replica: the listener holds its connection (or the
    /// hub has not been started, so nobody waits for events yet).
    pub fn is_listening(&self) -> bool {
        self.tasks.get().is_none() || self.shared.health.listening.load(Ordering::Relaxed)
    }

    /// How many times the listener lost its connection and reconnected.
    pub fn reconnects(&self) -> u64 {
        self.shared.health.reconnects.load(Ordering::Relaxed)
    }

    /// How many events this hub has broadcast to the replica's subscriptions.
    pub fn events_broadcast(&self) -> u64 {
        self.shared.health.events.load(Ordering::Relaxed)
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        for task in self.tasks.get().into_iter().flatten() {
            task.abort();
        }
    }
}

/// Finds the feed's end, then reads and broadcasts new events whenever woken, until the
/// hub is dropped.
async fn read_loop(shared: Arc<Shared>) {
    loop {
        match store::head(&shared.db).await {
            Ok(head) => {
                *lock(&shared.position) = head;
                shared.ready.send_replace(true);
                break;
            }
            Err(err) => {
                tracing::warn!(error = ?err, "cannot find the end of the event feed; retrying");
                tokio::time::sleep(FAILURE_RETRY).await;
            }
        }
    }
    let mut held_back_retry = HELD_BACK_RETRY.0;
    let mut held_back_since: Option<Instant> = None;
    loop {
        let from = *lock(&shared.position);
        match store::after(&shared.db, from, BATCH, None).await {
            Ok((events, held_back)) => {
                let full = events.len() as u64 == BATCH;
                broadcast(&shared, events);
                if full {
                    continue;
                }
                if held_back {
                    // Committed events wait behind an older transaction that is still
                    // running; it may write nothing, so no NOTIFY would come.
                    let since = *held_back_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > HELD_BACK_WARNING {
                        tracing::warn!(
                            waited = ?since.elapsed(),
                            "events are held back by a long-running transaction \
                             (see pg_stat_activity, pg_prepared_xacts)"
                        );
                        held_back_since = Some(Instant::now());
                    }
                    let _ = tokio::time::timeout(held_back_retry, shared.wake.notified()).await;
                    held_back_retry = (held_back_retry * 2).min(HELD_BACK_RETRY.1);
                    continue;
                }
                held_back_retry = HELD_BACK_RETRY.0;
                held_back_since = None;
                if shared.db.backend() == DatabaseBackend::Postgres {
                    shared.wake.notified().await;
                } else {
                    let _ = tokio::time::timeout(SQLITE_POLL, shared.wake.notified()).await;
                }
            }
            Err(err) => {
                tracing::warn!(error = ?err, "reading events failed; retrying");
                tokio::time::sleep(FAILURE_RETRY).await;
            }
        }
    }
}

fn broadcast(shared: &Shared, events: Vec<Event>) {
    for event in events {
        let mut position = lock(&shared.position);
        if event.cursor <= *position {
            continue;
        }
        *position = event.cursor;
        let event = Arc::new(event);
        // No receiver is not an error: nobody subscribes right now.
        if matches!(event.row, Row::Session) {
            let _ = shared.sessions.send(event.clone());
        }
        let _ = shared.sender.send(event);
        shared.health.events.fetch_add(1, Ordering::Relaxed);
    }
}

/// Locks `mutex`, recovering the value if a holder panicked (a cursor stays valid).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
