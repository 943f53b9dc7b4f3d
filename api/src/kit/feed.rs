//! What every subscription shares, and which knows no domain: the `ChangeKind` enum,
//! the feed of events a subscription receives (what it missed after `after`, replayed
//! from the `events` table, then live events from the replica's hub, with no gap and no
//! duplicate at the seam), the token's project scope judged per event, and the
//! subscription's database access.
//!
//! A subscription holds no transaction while it waits. Its checks (the token, the
//! project or row it names) run in the pipeline's short transaction, which ends when
//! the field calls [`feed`]. Each event is then judged in memory by the domain's read
//! rule (its `policy`), so a delivery costs no database round trip; only a delivery
//! whose selection reaches other rows (`task { project { name } }`) opens a short
//! read-only transaction of its own as the subscriber, which the pipeline ends as soon
//! as the response is built.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use async_graphql::{Context, Enum};
use futures_util::{Stream, StreamExt, stream, stream::BoxStream};
use tokio::sync::{broadcast, oneshot};
use uuid::Uuid;

use super::{RequestContext, app_state};
use crate::{
    auth::{Operation, Resource, Session},
    db::RequestTx,
    error::{ApiError, ApiResult},
    kit::authz::Readers,
    realtime::{Change, Cursor, Event, FeedCount, Row},
    state::AppState,
};

/// What happened to the row an event carries.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
}

impl From<Change> for ChangeKind {
    fn from(change: Change) -> Self {
        match change {
            Change::Created => Self::Created,
            Change::Updated => Self::Updated,
            Change::Deleted => Self::Deleted,
        }
    }
}

/// A subscription operation's database access, shared by the pipeline and [`feed`]:
/// the end of its set-up, and the transaction of the delivery being built.
pub struct SubscriptionTx {
    setup_done: Mutex<Option<oneshot::Sender<()>>>,
    delivery: Mutex<Option<RequestTx>>,
}

impl SubscriptionTx {
    /// A new one, and what resolves when the subscription's set-up is done.
    pub(crate) fn new() -> (Arc<Self>, oneshot::Receiver<()>) {
        let (done, setup) = oneshot::channel();
        let this = Self {
            setup_done: Mutex::new(Some(done)),
            delivery: Mutex::new(None),
        };
        (Arc::new(this), setup)
    }

    fn set_up(&self) {
        if let Some(done) = self.setup_done.lock().ok().and_then(|mut done| done.take()) {
            let _ = done.send(());
        }
    }

    fn hold(&self, tx: RequestTx) {
        if let Ok(mut delivery) = self.delivery.lock() {
            *delivery = Some(tx);
        }
    }

    /// Ends the transaction of the delivery just built, if it opened one.
    pub(crate) async fn end_delivery(&self) -> ApiResult<()> {
        let tx = self.delivery.lock().ok().and_then(|mut tx| tx.take());
        match tx {
            Some(tx) => tx.finish(true).await,
            None => Ok(()),
        }
    }
}

/// The token's verdicts on reading projects, remembered for a subscription's life
/// (bounded): a one-project token receives events of that project only.
pub struct ProjectScope {
    session: Option<Session>,
    verdicts: HashMap<Uuid, bool>,
}

/// How many projects' verdicts a subscription remembers before starting over.
const SCOPE_MEMORY: usize = 1024;

impl ProjectScope {
    /// The scope of the operation's token.
    pub fn of(rc: &RequestContext) -> Self {
        Self {
            session: rc
                .session_opt()
                .filter(|session| session.restricts_resources())
                .cloned(),
            verdicts: HashMap::new(),
        }
    }

    /// Whether the token may read `project`.
    pub fn reads(&mut self, project: Uuid) -> bool {
        let Some(session) = &self.session else {
            return true;
        };
        if let Some(verdict) = self.verdicts.get(&project) {
            return *verdict;
        }
        if self.verdicts.len() >= SCOPE_MEMORY {
            self.verdicts.clear();
        }
        let verdict = session
            .authorize(Operation::Read, Resource::Project(project))
            .is_ok();
        self.verdicts.insert(project, verdict);
        verdict
    }
}

/// Whether the subscription's selection under `field` reaches any of `nested` (fields
/// that read other rows), so each delivery needs a transaction.
pub fn selects_any(ctx: &Context<'_>, field: &str, nested: &[&str]) -> bool {
    let payload = ctx.look_ahead().field(field);
    nested.iter().any(|name| payload.field(name).exists())
}

/// The feed of a subscription: the events after `after` (a cursor it was handed),
/// then live ones, each turned into an item by `admit` or skipped when it returns
/// `None`. `readers` is the domain's read rule, which `admit` applies; the replay
/// reads only rows it may admit. Call it last in a subscription field: it ends the set-up transaction.
///
/// Errors: `BAD_USER_INPUT` for a cursor that is malformed or older than the retention
/// window; the stream ends with `RATE_LIMITED` when the subscriber fell so far behind
/// that the replica's buffer dropped events it had not read (resume with `after`).
pub async fn feed<T, F>(
    ctx: &Context<'_>,
    after: Option<String>,
    readers: Readers,
    needs_db: bool,
    admit: F,
) -> ApiResult<impl Stream<Item = ApiResult<T>> + Send + 'static>
where
    F: FnMut(&Event) -> Option<T> + Send + 'static,
    T: Send + 'static,
{
    let rc = RequestContext::of(ctx)?;
    let state = app_state(ctx)?.clone();
    let subscription = ctx
        .data::<Arc<SubscriptionTx>>()
        .map_err(|_| ApiError::bug("subscription outside the subscription pipeline"))?
        .clone();
    let after = after.map(|cursor| cursor.parse::<Cursor>()).transpose()?;
    let (live, position) = state.hub.subscribe().await;
    let counted = state.hub.count_feed();
    if let Some(after) = after
        && !state.hub.retains(after).await?
    {
        return Err(ApiError::bad_input(
            "cursor expired: refetch, then subscribe without `after`",
        ));
    }
    let identity = rc.identity();
    let tx = rc.tx_ref().clone();
    let db = needs_db.then(|| state.db.clone());
    subscription.set_up();
    let feed = Feed {
        replay: after.map(|after| Replay {
            state: state.clone(),
            from: after,
            upto: position,
            owner: readers.owner(),
            batch: VecDeque::new(),
        }),
        live,
        // Live events up to here were replayed, or come before `after`.
        live_after: after.map_or(position, |after| after.max(position)),
        admit,
        ended: false,
        _counted: counted,
    };
    Ok(stream::unfold(feed, move |mut feed| {
        let (db, tx, subscription) = (db.clone(), tx.clone(), subscription.clone());
        async move {
            let item = feed.next().await?;
            if let Some(db) = db.filter(|_| item.is_ok()) {
                match db.begin(&identity, true).await {
                    Ok(delivery) => {
                        tx.rebind(&delivery);
                        subscription.hold(delivery);
                    }
                    Err(err) => {
                        feed.ended = true;
                        return Some((Err(err), feed));
                    }
                }
            }
            Some((item, feed))
        }
    }))
}

/// What a resuming subscriber missed, read from the `events` table in batches as it is
/// delivered (so a long absence does not load every event at once).
struct Replay {
    state: Arc<AppState>,
    /// The last cursor read.
    from: Cursor,
    /// Where live events begin.
    upto: Cursor,
    /// Only this account's rows, when the subscriber reads no other.
    owner: Option<Uuid>,
    batch: VecDeque<Arc<Event>>,
}

impl Replay {
    /// The next missed event; `None` once caught up.
    async fn next(&mut self) -> ApiResult<Option<Arc<Event>>> {
        if self.batch.is_empty() {
            let batch = self
                .state
                .hub
                .replay(self.from, self.upto, self.owner)
                .await?;
            self.from = batch.last().map_or(self.upto, |event| event.cursor);
            self.batch = batch.into();
        }
        Ok(self.batch.pop_front())
    }
}

/// The state of one subscription's feed.
struct Feed<F> {
    replay: Option<Replay>,
    live: broadcast::Receiver<Arc<Event>>,
    live_after: Cursor,
    admit: F,
    ended: bool,
    _counted: FeedCount,
}

impl<T, F: FnMut(&Event) -> Option<T>> Feed<F> {
    /// The next admitted item; `None` once the feed has ended.
    async fn next(&mut self) -> Option<ApiResult<T>> {
        if self.ended {
            return None;
        }
        loop {
            let missed = match &mut self.replay {
                Some(replay) => match replay.next().await {
                    Ok(missed) => missed,
                    Err(err) => {
                        self.ended = true;
                        return Some(Err(err));
                    }
                },
                None => None,
            };
            if missed.is_none() {
                self.replay = None;
            }
            let event = match missed {
                Some(event) => event,
                None => match self.live.recv().await {
                    Ok(event) if event.cursor <= self.live_after => continue,
                    Ok(event) => event,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        self.ended = true;
                        return Some(Err(ApiError::RateLimited(format!(
                            "subscriber too slow: {missed} events were dropped; \
                             subscribe again with `after` set to the last cursor received"
                        ))));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            };
            if let Some(item) = (self.admit)(&event) {
                return Some(Ok(item));
            }
        }
    }
}

/// A row of a table whose rows belong to an account and a project (tasks,
/// deployments), as events carry it.
pub trait ProjectRow: Clone + Send + 'static {
    /// The row, if the event carries one of this table.
    fn pick(row: &Row) -> Option<&Self>;
    fn id(&self) -> Uuid;
    fn project_id(&self) -> Uuid;
    /// The account the row belongs to.
    fn owner_id(&self) -> Uuid;
}

/// The [`feed`] of a [`ProjectRow`] table: the rows `readers` admits (the domain's
/// read rule) in projects the token may read, of `project` and of row `id` when given,
/// each turned into an item by `make`.
pub async fn project_feed<M: ProjectRow, T: Send + 'static>(
    ctx: &Context<'_>,
    after: Option<String>,
    (project, id): (Option<Uuid>, Option<Uuid>),
    readers: Readers,
    needs_db: bool,
    make: fn(&Event, M) -> T,
) -> ApiResult<BoxStream<'static, ApiResult<T>>> {
    let mut scope = ProjectScope::of(RequestContext::of(ctx)?);
    let admit = move |event: &Event| {
        let row = M::pick(&event.row)?;
        let wanted = project.is_none_or(|project| project == row.project_id())
            && id.is_none_or(|id| id == row.id());
        (wanted && readers.admits(row.owner_id()) && scope.reads(row.project_id()))
            .then(|| make(event, row.clone()))
    };
    Ok(feed(ctx, after, readers, needs_db, admit).await?.boxed())
}

/// Declares a subscription's event type: the cursor, what happened, and the row under
/// `$field`, built from an [`Event`] with `new`.
macro_rules! event_type {
    ($(#[$doc:meta])* $name:ident { $field:ident: $ty:ty }) => {
        $(#[$doc])*
        #[derive(async_graphql::SimpleObject)]
        pub struct $name {
            /// Where this event sits in the feed: subscribe with it as `after` to resume
            /// right after it.
            cursor: String,
            /// What happened to the row.
            kind: $crate::kit::feed::ChangeKind,
            /// The row as this change left it (as it was, for `DELETED`).
            $field: $ty,
        }

        impl $name {
            fn new(event: &$crate::realtime::Event, $field: $ty) -> Self {
                Self {
                    cursor: event.cursor.to_string(),
                    kind: event.change.into(),
                    $field,
                }
            }
        }
    };
}
pub(crate) use event_type;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sea_orm::ConnectionTrait;

    use super::*;
    use crate::{db::Database, realtime::Hub};

    /// A feed whose subscriber stopped reading while more events than the replica's
    /// buffer went by ends with `RATE_LIMITED` (then nothing), instead of silently
    /// skipping what it missed.
    #[tokio::test]
    async fn a_subscriber_that_falls_behind_the_buffer_ends_with_rate_limited() {
        let db = Database::connect("sqlite::memory:", 1)
            .await
            .expect("in-memory SQLite");
        db.migrate().await.expect("migrated");
        let hub = Hub::new(db.clone(), 2);
        let (live, position) = hub.subscribe().await;
        let (mut probe, _) = hub.subscribe().await;
        let mut feed = Feed {
            replay: None,
            live,
            live_after: position,
            admit: |event: &Event| Some(event.cursor),
            ended: false,
            _counted: hub.count_feed(),
        };
        for _ in 0..5 {
            db.connection()
                .execute_unprepared(
                    "insert into events (topic, kind, entity_id) values ('session', 'UPDATED', zeroblob(16))",
                )
                .await
                .expect("an event");
        }
        hub.wake();
        // The probe lags too; once it has seen the last event, all five were broadcast.
        tokio::time::timeout(Duration::from_secs(10), async {
            let mut seen = 0;
            while seen < 5 {
                match probe.recv().await {
                    Ok(_) => seen += 1,
                    Err(broadcast::error::RecvError::Lagged(missed)) => seen += missed,
                    Err(broadcast::error::RecvError::Closed) => panic!("hub gone"),
                }
            }
        })
        .await
        .expect("the hub broadcast the events");
        match feed.next().await {
            Some(Err(ApiError::RateLimited(message))) => {
                assert!(message.contains("after"), "{message}")
            }
            other => panic!("not ended for lagging: {:?}", other.map(|r| r.is_ok())),
        }
        assert!(feed.next().await.is_none(), "the feed goes on after lagging");
    }
}
