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
//!
//! The database futures a subscription awaits (the retention check, the replay, a
//! delivery's transaction) are awaited boxed: awaited inline, a future sizes the
//! subscription's stream, which keeps that room while it waits for events, however
//! rarely the future runs.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use async_graphql::{Context, Enum};
use futures_util::{Stream, StreamExt, stream, stream::BoxStream};
use tokio::sync::{broadcast, oneshot, watch};
use uuid::Uuid;

use super::{RequestContext, app_state};
use crate::{
    auth::{Operation, Resource, Session},
    db::RequestTx,
    error::{ApiError, ApiResult},
    kit::authz::Readers,
    realtime::{Change, Cursor, Event, Row},
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
    /// True once the feed receives live events.
    live: watch::Sender<bool>,
    /// Whether the feed starts from now (no `after`), so it may be shared.
    from_now: AtomicBool,
    /// Whether its deliveries depend on the caller's identity alone, not on its token.
    by_identity: AtomicBool,
}

impl SubscriptionTx {
    /// A new one, and what resolves when the subscription's set-up is done.
    pub(crate) fn new() -> (Arc<Self>, oneshot::Receiver<()>) {
        let (done, setup) = oneshot::channel();
        let this = Self {
            setup_done: Mutex::new(Some(done)),
            delivery: Mutex::new(None),
            live: watch::Sender::new(false),
            from_now: AtomicBool::new(false),
            by_identity: AtomicBool::new(false),
        };
        (Arc::new(this), setup)
    }

    /// The set-up is done; the feed starts from now when `starts_now` (no `after`), and
    /// its deliveries depend on the caller's identity alone when `by_identity`.
    fn set_up(&self, starts_now: bool, by_identity: bool) {
        self.from_now.store(starts_now, Ordering::Relaxed);
        self.by_identity.store(by_identity, Ordering::Relaxed);
        if let Some(done) = self.setup_done.lock().ok().and_then(|mut done| done.take()) {
            let _ = done.send(());
        }
    }

    /// Turns true once the feed receives live events.
    pub(crate) fn live(&self) -> watch::Receiver<bool> {
        self.live.subscribe()
    }

    /// Whether the subscription's feed starts from now, not from a cursor it replays:
    /// only then may it share another's responses ([`crate::fanout`]).
    pub(crate) fn starts_now(&self) -> bool {
        self.from_now.load(Ordering::Relaxed)
    }

    /// Whether each delivery is the same for every token of the caller's identity: it
    /// opens no transaction (its selection reaches no other rows, whose resolvers ask
    /// the token) and the token restricts no projects (its scope is judged per event).
    /// Then the token only matters to the set-up, which every subscriber runs, and to
    /// its socket, which watches it (`ws.rs`); so it may share the responses of another
    /// token of the same identity ([`crate::fanout`]).
    pub(crate) fn by_identity(&self) -> bool {
        self.by_identity.load(Ordering::Relaxed)
    }

    fn went_live(&self) {
        self.live.send_replace(true);
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
            Some(tx) => Box::pin(tx.finish(true)).await,
            None => Ok(()),
        }
    }
}

/// The token's verdicts on reading projects, remembered for a subscription's life
/// (bounded): a one-project token receives events of that project only. A token whose
/// end the clock cannot tell (`Session::ends_by_the_clock`) may lose a project with
/// time, so its verdicts are not remembered: each event asks the authorizer.
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
        let verdict = session
            .authorize(Operation::Read, Resource::Project(project))
            .is_ok();
        if session.ends_by_the_clock() {
            if self.verdicts.len() >= SCOPE_MEMORY {
                self.verdicts.clear();
            }
            self.verdicts.insert(project, verdict);
        }
        verdict
    }
}

/// Whether the subscription's selection under `field` reaches any of `nested` (fields
/// that read other rows), so each delivery needs a transaction. `nested` must name
/// every field of the row's type that is not plain (every resolver of its
/// `ComplexObject`): a subscription reaching none of them is shared by every token of
/// its identity ([`SubscriptionTx::by_identity`]), so a field left out that asks the
/// token would answer all of them as one.
pub fn selects_any(ctx: &Context<'_>, field: &str, nested: &[&str]) -> bool {
    let payload = ctx.look_ahead().field(field);
    nested.iter().any(|name| payload.field(name).exists())
}

/// The feed of a subscription: the events after `after` (a cursor it was handed),
/// then live ones, each turned into an item by `admit` or skipped when it returns
/// `None`. `readers` is the domain's read rule, which `admit` applies; the replay
/// reads only rows it may admit. Call it last in a subscription field: it ends the
/// set-up transaction.
///
/// `admit` may depend on the caller's identity and the request, and on the token only
/// through a [`ProjectScope`] (which a token restricting no projects leaves empty): when
/// `needs_db` is false and the token restricts no projects, the subscription's
/// responses are shared by every token of its identity ([`crate::fanout`]).
///
/// Await it boxed (`Box::pin`), and the set-up checks before it too: the field stream
/// async-graphql generates holds the resolver's future for the subscription's whole
/// life, so whatever the resolver awaits inline keeps its room there while it idles.
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
    let identity = rc.identity();
    let tx = rc.tx_ref().clone();
    let db = needs_db.then(|| state.db.clone());
    let by_identity = !needs_db && !rc.session_opt().is_some_and(Session::restricts_resources);
    // The set-up transaction is not needed past this point: end it before waiting on
    // the hub or reading the events table.
    subscription.set_up(after.is_none(), by_identity);
    let (live, position) = state.hub.subscribe().await;
    subscription.went_live();
    if let Some(after) = after
        && !Box::pin(state.hub.retains(after)).await?
    {
        return Err(cursor_expired());
    }
    let owner = readers.owner();
    let feed = Feed {
        replay: after.map(|after| Replay::new(state.clone(), after, position, owner, true)),
        live,
        // Live events up to here were replayed, or come before `after`.
        live_after: after.map_or(position, |after| after.max(position)),
        last: after.unwrap_or(position),
        last_anchored: after.is_some(),
        live_read: after.is_none(),
        state,
        owner,
        admit,
        ended: false,
    };
    Ok(stream::unfold(feed, move |mut feed| {
        let (db, tx, subscription) = (db.clone(), tx.clone(), subscription.clone());
        async move {
            let item = feed.next().await?;
            if let Some(db) = db.filter(|_| item.is_ok()) {
                match Box::pin(db.begin(&identity, true)).await {
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

/// The refusal of a resume whose events have been pruned.
fn cursor_expired() -> ApiError {
    ApiError::bad_input("cursor expired: refetch, then subscribe without `after`")
}

/// What a resuming subscriber missed, read from the `events` table in batches as it is
/// delivered (so a long absence does not load every event at once).
struct Replay {
    state: Arc<AppState>,
    /// The last cursor read.
    from: Cursor,
    /// Whether `from` is an event's (one read, or a resume's `after` found retained),
    /// whose absence then means the events after it may have been pruned too.
    anchored: bool,
    /// Where live events begin.
    upto: Cursor,
    /// Only this account's rows, when the subscriber reads no other.
    owner: Option<Uuid>,
    batch: VecDeque<Arc<Event>>,
}

impl Replay {
    fn new(
        state: Arc<AppState>,
        from: Cursor,
        upto: Cursor,
        owner: Option<Uuid>,
        anchored: bool,
    ) -> Self {
        Self {
            state,
            from,
            anchored,
            upto,
            owner,
            batch: VecDeque::new(),
        }
    }

    /// The next missed event; `None` once caught up. A replay whose next events were
    /// pruned while it read (the housekeeping's prune reached past where it stands)
    /// ends with "cursor expired", as a resume from a pruned cursor does, rather than
    /// skip them.
    async fn next(&mut self) -> ApiResult<Option<Arc<Event>>> {
        if self.batch.is_empty() {
            let batch = Box::pin(self.state.hub.replay(self.from, self.upto, self.owner)).await?;
            // Pruning deletes the oldest events, in cursor order: `from` still there
            // after the batch was read means nothing after it was pruned before.
            if self.anchored
                && self.from < self.upto
                && !Box::pin(self.state.hub.retains(self.from)).await?
            {
                return Err(cursor_expired());
            }
            self.anchored = !batch.is_empty();
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
    /// Live events at or before this were replayed (or precede `after`).
    live_after: Cursor,
    /// The last event this feed went past, admitted or not.
    last: Cursor,
    /// Whether `last` is an event's cursor (see [`Replay`]'s `anchored`), not the
    /// hub's position.
    last_anchored: bool,
    /// Whether live events have been read since the last replay: until then, falling
    /// behind the buffer is the replay's doing, not the subscriber's.
    live_read: bool,
    state: Arc<AppState>,
    owner: Option<Uuid>,
    admit: F,
    ended: bool,
}

impl<T, F: FnMut(&Event) -> Option<T>> Feed<F> {
    /// The next admitted item; `None` once the feed has ended.
    async fn next(&mut self) -> Option<ApiResult<T>> {
        if self.ended {
            return None;
        }
        loop {
            let event = match self.next_event().await {
                Ok(Some(event)) => event,
                Ok(None) => return None,
                Err(err) => {
                    self.ended = true;
                    return Some(Err(err));
                }
            };
            self.last = event.cursor;
            self.last_anchored = true;
            if let Some(item) = (self.admit)(&event) {
                return Some(Ok(item));
            }
        }
    }

    /// The next missed event while replaying, then the next live one; `None` when the
    /// hub is gone.
    async fn next_event(&mut self) -> ApiResult<Option<Arc<Event>>> {
        loop {
            if let Some(replay) = &mut self.replay {
                match replay.next().await? {
                    Some(missed) => return Ok(Some(missed)),
                    None => self.replay = None,
                }
            }
            match self.live.recv().await {
                Ok(event) if event.cursor <= self.live_after => continue,
                Ok(event) => {
                    self.live_read = true;
                    return Ok(Some(event));
                }
                Err(broadcast::error::RecvError::Lagged(missed)) if !self.live_read => {
                    // The buffer overflowed while this feed was still replaying: catch
                    // up from the table again, then go live from the hub's new position.
                    tracing::debug!(missed, "replay outran by live events; replaying on");
                    let (live, position) = Box::pin(self.state.hub.subscribe()).await;
                    self.live = live;
                    self.replay = Some(Replay::new(
                        self.state.clone(),
                        self.last,
                        position,
                        self.owner,
                        self.last_anchored,
                    ));
                    // A feed resumed from a cursor ahead of this replica's hub (read
                    // from a replica further on) must still skip what precedes it.
                    self.live_after = position.max(self.live_after);
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    return Err(ApiError::RateLimited(format!(
                        "subscriber too slow: {missed} events were dropped; \
                         subscribe again with `after` set to the last cursor received"
                    )));
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(None),
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
    let rc = RequestContext::of(ctx)?;
    // As a list asks (`authz::scope_to_token`): a token that restricts no projects must
    // still be allowed to read the account's rows (a holder may have limited it to
    // writes); a restricted one is judged per event, project by project.
    if !rc.session_opt().is_some_and(Session::restricts_resources) {
        rc.authorize(Operation::Read, Resource::Account)?;
    }
    let mut scope = ProjectScope::of(rc);
    let admit = move |event: &Event| {
        let row = M::pick(&event.row)?;
        let wanted = project.is_none_or(|project| project == row.project_id())
            && id.is_none_or(|id| id == row.id());
        (wanted && readers.admits(row.owner_id()) && scope.reads(row.project_id()))
            .then(|| make(event, row.clone()))
    };
    Ok(Box::pin(feed(ctx, after, readers, needs_db, admit))
        .await?
        .boxed())
}

/// Declares a subscription's event type: the cursor, what happened, and the row under
/// `$field` (answered on the plain path, `kit::plain`), built from an [`Event`] with
/// `new`.
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
            $field: $crate::kit::plain::Plain<$ty>,
        }

        impl $name {
            fn new(event: &$crate::realtime::Event, $field: $ty) -> Self {
                Self {
                    cursor: event.cursor.to_string(),
                    kind: event.change.into(),
                    $field: $crate::kit::plain::Plain($field),
                }
            }
        }
    };
}
pub(crate) use event_type;

/// Asserts that the fields of `T` that are not plain are exactly `edges`, what its
/// subscription gives [`selects_any`]: a field missing from `edges` would be answered,
/// once, for every token of the identity (see [`SubscriptionTx::by_identity`]). Each
/// domain whose rows a subscription carries runs it on a sample row.
#[cfg(test)]
pub(crate) fn assert_edges_are_the_fields_not_plain<T: crate::kit::plain::PlainFields>(
    sample: &T,
    edges: &[&str],
) {
    use async_graphql::registry::{MetaType, Registry};

    let mut registry = Registry::default();
    T::create_type_info(&mut registry);
    let name = T::type_name();
    let Some(MetaType::Object { fields, .. }) = registry.types.get(name.as_ref()) else {
        panic!("{name} is not an object type");
    };
    let mut not_plain: Vec<&str> = fields
        .keys()
        .map(String::as_str)
        .filter(|field| !field.starts_with("__") && sample.plain(field).is_none())
        .collect();
    not_plain.sort_unstable();
    let mut edges = edges.to_vec();
    edges.sort_unstable();
    assert_eq!(not_plain, edges, "{name}: the fields that are not plain");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use biscuit_auth::KeyPair;
    use sea_orm::ConnectionTrait;

    use super::*;
    use crate::{auth::TokenService, config::Config, realtime::Hub};

    /// A gateway state over a fresh in-memory SQLite database whose hub buffers two
    /// events.
    async fn tiny_buffer_state() -> Arc<AppState> {
        let mut config = Config::defaults();
        config.database_url = "sqlite::memory:".to_owned().into();
        config.db_max_connections = 1;
        config.secrets_key = Some("00".repeat(32).into());
        let tokens = TokenService::from_key_pair(KeyPair::new(), Duration::from_secs(60));
        let state = AppState::with_tokens(config, tokens)
            .await
            .expect("an in-memory gateway");
        state.db.migrate().await.expect("migrated");
        let hub = Hub::new(state.db.clone(), 2);
        Arc::new(AppState {
            hub,
            ..Arc::into_inner(state).expect("one owner")
        })
    }

    /// Writes `n` events and returns once the hub has broadcast them all.
    async fn broadcast_events(state: &AppState, n: usize) {
        let (mut probe, _) = state.hub.subscribe().await;
        for _ in 0..n {
            state
                .db
                .connection()
                .execute_unprepared(
                    "insert into events (topic, kind, entity_id) \
                     values ('session', 'UPDATED', zeroblob(16))",
                )
                .await
                .expect("an event");
        }
        state.hub.wake();
        // The probe lags too; once it has seen the last event, all were broadcast.
        tokio::time::timeout(Duration::from_secs(10), async {
            let mut seen = 0;
            while seen < n as u64 {
                match probe.recv().await {
                    Ok(_) => seen += 1,
                    Err(broadcast::error::RecvError::Lagged(missed)) => seen += missed,
                    Err(broadcast::error::RecvError::Closed) => panic!("hub gone"),
                }
            }
        })
        .await
        .expect("the hub broadcast the events");
    }

    fn feed_of(
        state: &Arc<AppState>,
        live: broadcast::Receiver<Arc<Event>>,
        position: Cursor,
        replay: Option<Replay>,
    ) -> Feed<impl FnMut(&Event) -> Option<Cursor>> {
        Feed {
            live_read: replay.is_none(),
            replay,
            live,
            live_after: position,
            last: position,
            last_anchored: false,
            state: state.clone(),
            owner: None,
            admit: |event: &Event| Some(event.cursor),
            ended: false,
        }
    }

    /// A retention longer than any timestamp reaches back prunes nothing (it panicked
    /// in chrono's subtraction, which ended the housekeeping task for good).
    #[tokio::test]
    async fn a_retention_of_ages_prunes_nothing() {
        let state = tiny_buffer_state().await;
        broadcast_events(&state, 1).await;
        for age in [Duration::from_secs(300_000 * 366 * 86_400), Duration::MAX] {
            assert_eq!(state.hub.prune(age).await.expect("pruned"), 0, "{age:?}");
        }
    }

    /// A replay whose next events are pruned while it reads (here all of them, the
    /// prefix the hourly prune deletes reaching past it) ends with "cursor expired"
    /// instead of going live as if nothing had been missed.
    #[tokio::test]
    async fn a_replay_whose_events_are_pruned_meanwhile_ends_with_cursor_expired() {
        let state = tiny_buffer_state().await;
        let (_, start) = state.hub.subscribe().await;
        broadcast_events(&state, 3).await;
        let (live, upto) = state.hub.subscribe().await;
        let first = Replay::new(state.clone(), start, upto, None, false)
            .next()
            .await
            .expect("the events are read")
            .expect("an event")
            .cursor;
        let replay = Replay::new(state.clone(), first, upto, None, true);
        let mut feed = feed_of(&state, live, upto, Some(replay));
        state
            .db
            .connection()
            .execute_unprepared("delete from events")
            .await
            .expect("pruned");
        let next = tokio::time::timeout(Duration::from_secs(10), feed.next())
            .await
            .expect("not waiting for live events");
        assert!(
            matches!(&next, Some(Err(ApiError::BadUserInput(m))) if m.contains("cursor expired")),
            "{:?}",
            next.map(|r| r.map_err(|e| e.message()))
        );
    }

    /// A feed whose subscriber stopped reading while more events than the replica's
    /// buffer went by ends with `RATE_LIMITED` (then nothing), instead of silently
    /// skipping what it missed.
    #[tokio::test]
    async fn a_subscriber_that_falls_behind_the_buffer_ends_with_rate_limited() {
        let state = tiny_buffer_state().await;
        let (live, position) = state.hub.subscribe().await;
        let mut feed = feed_of(&state, live, position, None);
        broadcast_events(&state, 5).await;
        match feed.next().await {
            Some(Err(ApiError::RateLimited(message))) => {
                assert!(message.contains("after"), "{message}")
            }
            other => panic!("not ended for lagging: {:?}", other.map(|r| r.is_ok())),
        }
        assert!(
            feed.next().await.is_none(),
            "the feed goes on after lagging"
        );
    }

    /// A feed resumed from a cursor ahead of this replica's hub (the client read it
    /// from a replica further on), outrun by live events before reading any, catches up
    /// and still delivers nothing at or before that cursor.
    #[tokio::test]
    async fn a_feed_resumed_ahead_of_its_hub_repeats_nothing_after_catching_up() {
        let state = tiny_buffer_state().await;
        let (live, position) = state.hub.subscribe().await;
        let (tx, id) = position.to_string().split_once('-').map_or_else(
            || panic!("a cursor: {position}"),
            |(tx, id)| (tx.to_owned(), id.parse::<i64>().expect("an id")),
        );
        let ahead: Cursor = format!("{tx}-{}", id + 4).parse().expect("a cursor");
        let mut feed = Feed {
            live_after: ahead,
            last: ahead,
            live_read: false,
            ..feed_of(&state, live, position, None)
        };
        // Three events outrun the buffer of two: the feed catches up from the hub's new
        // position, the third event, still behind `ahead`.
        broadcast_events(&state, 3).await;
        let mut next = std::pin::pin!(feed.next());
        assert!(
            futures_util::poll!(&mut next).is_pending(),
            "an event before `ahead`"
        );
        // The fourth, which the client had, and the fifth.
        broadcast_events(&state, 2).await;
        let first = tokio::time::timeout(Duration::from_secs(10), next)
            .await
            .expect("an event within the timeout");
        match first {
            Some(Ok(cursor)) => assert!(cursor > ahead, "{cursor} repeated: not after {ahead}"),
            other => panic!("not an event: {:?}", other.map(|r| r.is_ok())),
        }
    }

    /// A resuming feed whose live buffer overflowed while it replayed is not the
    /// subscriber's fault: it reads the rest from the table and goes on, in order.
    #[tokio::test]
    async fn a_replay_outrun_by_live_events_catches_up_from_the_table() {
        let state = tiny_buffer_state().await;
        let (live, start) = state.hub.subscribe().await;
        let replay = Replay::new(state.clone(), start, start, None, false);
        let mut feed = feed_of(&state, live, start, Some(replay));
        broadcast_events(&state, 5).await;
        let mut cursors = Vec::new();
        for _ in 0..5 {
            match feed.next().await {
                Some(Ok(cursor)) => cursors.push(cursor),
                other => panic!("not an event: {:?}", other.map(|r| r.is_ok())),
            }
        }
        assert!(
            cursors.is_sorted() && cursors.first() > Some(&start),
            "{cursors:?}"
        );
        cursors.dedup();
        assert_eq!(cursors.len(), 5, "repeated events");
    }
}
