//! Subscriptions fanned out to sockets. A subscription's responses are executed and
//! serialized once per *cohort*: the subscriptions of this replica that asked the same
//! thing (query text, operation name, variables) as the same caller. A dashboard open in
//! many tabs, or a service showing one feed to many viewers, costs one execution per
//! event instead of one per socket; Hasura's multiplexed subscriptions group subscribers
//! into cohorts the same way, by query, variables and session variables.
//!
//! The same caller is the same token, or, when a subscription's deliveries depend on
//! nothing but the caller's identity (account and role), any token of that identity
//! (`SubscriptionTx::by_identity`): a delivery that opens no transaction (its selection
//! reaches no other rows) for a token that restricts no projects. A user signed in on
//! several devices, each with its own token, then shares one execution too.
//!
//! Why sharing is safe: with the same token, document and variables, every resolver
//! answers the same — the domain's read rule and the token's scope give the same
//! verdicts, and a delivery's own transaction reads as the same caller. By identity,
//! a delivery runs only the domain's read rule, which takes the identity, and plain
//! fields: nothing asks the token, so its expiry or revocation cannot change a
//! response. Each member still runs its own set-up (its token's revocation and scope,
//! the project or row it names) before it joins, and its socket still watches its own
//! session (`ws.rs`), closing when that token may no longer act. A subscription that
//! resumes with `after` replays its own past, so it is never shared.
//!
//! A cohort runs in a task of its own and hands each delivery to its members through
//! bounded channels it never waits on: a member that does not keep up is dropped with
//! `RATE_LIMITED` while the others go on. The cohort ends when its last member goes.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock, PoisonError, Weak,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

use async_graphql::{Request, Response};
use futures_util::{
    StreamExt,
    stream::{self, BoxStream},
};
use tokio::{
    sync::{mpsc, watch},
    task::AbortHandle,
};

use crate::{
    auth::{Identity, Session},
    error::ApiError,
};

/// One response of a WebSocket operation, serialized once for every socket it goes to.
#[derive(Debug)]
pub struct Delivery {
    /// Errors, no data, and none of the errors from deeper than the root field: as an
    /// operation's first response, a refusal before execution (validation, the root
    /// field's set-up). An event whose nested field failed (its project deleted with it)
    /// was executed, and is delivered as such.
    pub refused: bool,
    /// The response as JSON text.
    pub response: String,
    /// Its errors alone as JSON text when `refused` (an `error` message's payload).
    pub errors: String,
}

impl Delivery {
    /// Serializes `response`.
    pub fn of(response: &Response) -> Arc<Self> {
        let refused = !response.errors.is_empty()
            && response.data == async_graphql::Value::Null
            && response.errors.iter().all(|error| error.path.len() <= 1);
        let errors = if refused {
            serde_json::to_string(&response.errors).unwrap_or_else(|_| internal_errors())
        } else {
            String::new()
        };
        let response = serde_json::to_string(response)
            .unwrap_or_else(|_| format!(r#"{{"data":null,"errors":{}}}"#, internal_errors()));
        Arc::new(Self {
            refused,
            response,
            errors,
        })
    }

    /// A response made of `error` alone.
    pub fn error(error: ApiError) -> Arc<Self> {
        Self::of(&Response::from_errors(vec![error.into()]))
    }
}

/// The errors of a response that could not be serialized.
fn internal_errors() -> String {
    r#"[{"message":"internal error","extensions":{"code":"INTERNAL"}}]"#.to_owned()
}

/// What makes two subscriptions the same: the caller and the request.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Key {
    caller: Caller,
    query: String,
    operation: Option<String>,
    variables: String,
}

/// Who a subscription's responses are for.
#[derive(Debug, PartialEq, Eq, Hash)]
enum Caller {
    /// A token: all its blocks' revocation ids, which are its signatures, shared with
    /// its session; `None` for an anonymous caller.
    Token(Option<Arc<[String]>>),
    /// Any token acting as this identity, for a subscription whose responses depend on
    /// nothing else (`SubscriptionTx::by_identity`).
    Identity(Identity),
}

impl Key {
    /// The key of `request` sent with `session`; `None` when it cannot be told apart
    /// reliably (variables that do not serialize), so it is not shared.
    pub fn of(request: &Request, session: Option<&Session>) -> Option<Self> {
        Some(Self {
            caller: Caller::Token(session.map(Session::shared_revocation_ids)),
            query: request.query.clone(),
            operation: request.operation_name.clone(),
            variables: serde_json::to_string(&request.variables).ok()?,
        })
    }

    /// The same request, for every token acting as `identity`.
    pub fn by_identity(self, identity: Identity) -> Self {
        Self {
            caller: Caller::Identity(identity),
            ..self
        }
    }
}

/// This replica's open cohorts, and how many subscriptions are live.
pub struct Cohorts {
    /// Keyed by the same `Key` its cohort holds (one copy of the query per cohort).
    open: Mutex<HashMap<Arc<Key>, Weak<Cohort>>>,
    /// How many deliveries a member may fall behind before it is dropped.
    buffer: usize,
    live: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
}

impl Cohorts {
    /// No cohort yet; members may fall `buffer` deliveries behind.
    pub fn new(buffer: usize) -> Arc<Self> {
        Arc::new(Self {
            open: Mutex::new(HashMap::new()),
            buffer: buffer.max(1),
            live: Arc::new(AtomicUsize::new(0)),
            running: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// How many cohorts are running: executions of a subscription, each serving one
    /// or more live subscriptions.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// How many subscriptions on this replica are live: joined to a cohort whose feed
    /// receives events. An event committed once this has counted a subscription reaches
    /// it.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// The deliveries of a subscription that has passed its set-up. With a `key`, it
    /// joins the open cohort of that key, dropping its own `responses`, or starts that
    /// cohort with them; without one it gets a cohort of its own. `live` turns true
    /// once `responses`' feed receives events.
    pub fn join(
        self: &Arc<Self>,
        key: Option<Key>,
        responses: BoxStream<'static, Arc<Delivery>>,
        live: watch::Receiver<bool>,
    ) -> BoxStream<'static, Arc<Delivery>> {
        // Upgraded outside the lock: the last reference to a cohort may drop here, and
        // its `Drop` takes the lock.
        let open = key.as_ref().and_then(|key| {
            let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
            open.get(key).and_then(Weak::upgrade)
        });
        if let Some(member) = open.and_then(|cohort| cohort.admit(self)) {
            // Its set-up was only to check it may subscribe; the cohort's feed serves it.
            drop(responses);
            return member;
        }
        let key = key.map(Arc::new);
        let (cohort, member) = Cohort::start(key.clone(), responses, live, self);
        if let Some(key) = key {
            // Two first members of one key may race here; the later cohort is the one
            // found from now on, and the earlier one serves its member all the same.
            self.open
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key, Arc::downgrade(&cohort));
        }
        member
    }
}

/// The subscriptions sharing one execution.
struct Cohort {
    key: Option<Arc<Key>>,
    /// The members' channels; `None` once the execution has ended.
    members: Arc<Mutex<Option<Vec<Member>>>>,
    live: watch::Receiver<bool>,
    cohorts: Weak<Cohorts>,
    /// The task running the execution ([`fan_out`]).
    task: OnceLock<AbortHandle>,
    _running: LiveCount,
}

/// The cohort's side of one member.
struct Member {
    sender: mpsc::Sender<Arc<Delivery>>,
    /// Set when the member was dropped for not keeping up.
    lagged: Arc<AtomicBool>,
}

impl Cohort {
    /// Runs `responses` for a new cohort and returns it with its first member.
    fn start(
        key: Option<Arc<Key>>,
        responses: BoxStream<'static, Arc<Delivery>>,
        live: watch::Receiver<bool>,
        cohorts: &Arc<Cohorts>,
    ) -> (Arc<Self>, BoxStream<'static, Arc<Delivery>>) {
        let members = Arc::new(Mutex::new(Some(Vec::<Member>::new())));
        let cohort = Arc::new(Self {
            key,
            members: members.clone(),
            live,
            cohorts: Arc::downgrade(cohorts),
            task: OnceLock::new(),
            _running: LiveCount::new(&cohorts.running),
        });
        // The first member is in before the task runs: it gets the first delivery too.
        let member = cohort
            .admit(cohorts)
            .unwrap_or_else(|| stream::empty().boxed());
        let ended = Ended {
            members,
            finished: false,
        };
        let task = tokio::spawn(fan_out(responses, ended));
        let _ = cohort.task.set(task.abort_handle());
        (cohort, member)
    }

    /// A new member's deliveries from now on; `None` when the cohort has ended.
    fn admit(self: &Arc<Self>, cohorts: &Cohorts) -> Option<BoxStream<'static, Arc<Delivery>>> {
        let (sender, receiver) = mpsc::channel(cohorts.buffer);
        let lagged = Arc::new(AtomicBool::new(false));
        self.members
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()?
            .push(Member {
                sender,
                lagged: lagged.clone(),
            });
        let state = Membership {
            receiver,
            lagged,
            live: self.live.clone(),
            counter: cohorts.live.clone(),
            counted: None,
            _cohort: self.clone(),
        };
        Some(stream::unfold(state, Membership::next).boxed())
    }
}

/// Hands each of `responses` to every member that keeps up.
async fn fan_out(mut responses: BoxStream<'static, Arc<Delivery>>, mut ended: Ended) {
    while let Some(delivery) = responses.next().await {
        let mut members = ended.members.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(members) = members.as_mut() else {
            return;
        };
        members.retain(|member| match member.sender.try_send(delivery.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                member.lagged.store(true, Ordering::Relaxed);
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }
    ended.finished = true;
}

/// A cohort's members, released however its task ends: its stream finished, or it
/// stopped early: aborted when its last member left (nobody is left to tell), or a
/// resolver panicked (then each member still listening is told `INTERNAL` first).
/// Later subscribers start a cohort of their own, and dropping the senders ends every
/// member's stream.
struct Ended {
    members: Arc<Mutex<Option<Vec<Member>>>>,
    finished: bool,
}

impl Drop for Ended {
    fn drop(&mut self) {
        let members = self
            .members
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if self.finished {
            return;
        }
        let listening: Vec<Member> = members
            .into_iter()
            .flatten()
            .filter(|member| !member.sender.is_closed())
            .collect();
        if listening.is_empty() {
            // Aborted after its last member left: nothing failed (and nothing is logged).
            return;
        }
        let error = Delivery::error(ApiError::internal(
            "subscription failed",
            anyhow::anyhow!("its execution panicked"),
        ));
        for member in listening {
            let _ = member.sender.try_send(error.clone());
        }
    }
}

impl Drop for Cohort {
    fn drop(&mut self) {
        if let Some(task) = self.task.get() {
            task.abort();
        }
        if let (Some(key), Some(cohorts)) = (&self.key, self.cohorts.upgrade()) {
            let mut open = cohorts.open.lock().unwrap_or_else(PoisonError::into_inner);
            // A newer cohort may hold the key by now.
            if open
                .get(key)
                .is_some_and(|cohort| cohort.strong_count() == 0)
            {
                open.remove(key);
            }
        }
    }
}

/// One member's side: its deliveries, counted live once the cohort's feed is.
struct Membership {
    receiver: mpsc::Receiver<Arc<Delivery>>,
    lagged: Arc<AtomicBool>,
    live: watch::Receiver<bool>,
    counter: Arc<AtomicUsize>,
    counted: Option<LiveCount>,
    /// Keeps the cohort (and its execution) running while this member is.
    _cohort: Arc<Cohort>,
}

impl Membership {
    async fn next(mut self) -> Option<(Arc<Delivery>, Self)> {
        while self.counted.is_none() {
            if *self.live.borrow_and_update() {
                self.counted = Some(LiveCount::new(&self.counter));
                break;
            }
            tokio::select! {
                delivery = self.receiver.recv() => return self.handle(delivery),
                changed = self.live.changed() => {
                    if changed.is_err() {
                        // The execution is gone: what it sent is all there is.
                        break;
                    }
                }
            }
        }
        let delivery = self.receiver.recv().await;
        self.handle(delivery)
    }

    fn handle(self, delivery: Option<Arc<Delivery>>) -> Option<(Arc<Delivery>, Self)> {
        match delivery {
            Some(delivery) => Some((delivery, self)),
            // Said once: the flag is cleared as it is read.
            None if self.lagged.swap(false, Ordering::Relaxed) => {
                let error = ApiError::RateLimited(
                    "subscriber too slow: its buffer of events overflowed; subscribe again \
                     with `after` set to the last cursor received"
                        .to_owned(),
                );
                Some((Delivery::error(error), self))
            }
            None => None,
        }
    }
}

/// Counts one live subscription (or running cohort) while it lives.
struct LiveCount(Arc<AtomicUsize>);

impl LiveCount {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter.clone())
    }
}

impl Drop for LiveCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::Stream;
    use tokio_stream::wrappers::UnboundedReceiverStream;

    use super::*;
    use crate::auth::Role;

    const TIMEOUT: Duration = Duration::from_secs(10);

    /// A subscription's execution fed by hand, and its feed's live signal.
    struct Execution {
        events: mpsc::UnboundedSender<u32>,
        live: watch::Sender<bool>,
        dropped: Arc<AtomicBool>,
    }

    /// Sets the flag when dropped, so a test sees an execution go.
    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    fn execution() -> (
        Execution,
        BoxStream<'static, Arc<Delivery>>,
        watch::Receiver<bool>,
    ) {
        let (events, receiver) = mpsc::unbounded_channel();
        let live = watch::Sender::new(false);
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(dropped.clone());
        let responses = UnboundedReceiverStream::new(receiver)
            .map(move |n: u32| {
                let _alive = &flag;
                Delivery::of(&Response::new(async_graphql::Value::from(n)))
            })
            .boxed();
        let receiver = live.subscribe();
        let execution = Execution {
            events,
            live,
            dropped,
        };
        (execution, responses, receiver)
    }

    /// Only errors before execution or from the root field refuse; an event whose
    /// nested field failed (and nulled the data, through non-null fields) was executed.
    #[test]
    fn a_refusal_is_an_error_of_the_root_field_or_before_it() {
        use async_graphql::{PathSegment, ServerError};
        let failed = |path: &[&str]| {
            let mut error = ServerError::new("not found", None);
            error.path = path
                .iter()
                .map(|field| PathSegment::Field((*field).to_owned()))
                .collect();
            Delivery::of(&Response::from_errors(vec![error])).refused
        };
        assert!(failed(&[]), "validation");
        assert!(failed(&["deploymentUpdated"]), "the subscription's set-up");
        assert!(!failed(&["deploymentUpdated", "deployment", "project"]));
        let mut data = Response::new(async_graphql::Value::Null);
        assert!(!Delivery::of(&data).refused, "no errors");
        data.data = async_graphql::Value::from("x");
        data.errors = vec![ServerError::new("x", None)];
        assert!(!Delivery::of(&data).refused, "data");
    }

    /// Keyed by identity, two tokens of one account and role are one caller; another
    /// role of the account, or the same request keyed by token, is not.
    #[test]
    fn keys_by_identity_ignore_the_token_but_not_the_role() {
        let account = uuid::Uuid::new_v4();
        let by = |token, role| key(token).map(|key| key.by_identity(Identity::user(account, role)));
        assert_eq!(by("laptop", Role::User), by("phone", Role::User));
        assert_ne!(by("laptop", Role::User), by("laptop", Role::Admin));
        assert_ne!(by("laptop", Role::User), key("laptop"));
        assert_ne!(key("laptop"), key("phone"));
    }

    fn key(token: &str) -> Option<Key> {
        Some(Key {
            caller: Caller::Token(Some(Arc::from([token.to_owned()]))),
            query: "subscription { n }".to_owned(),
            operation: None,
            variables: "{}".to_owned(),
        })
    }

    async fn next(
        member: &mut (impl Stream<Item = Arc<Delivery>> + Unpin),
    ) -> Option<Arc<Delivery>> {
        tokio::time::timeout(TIMEOUT, member.next())
            .await
            .expect("a delivery in time")
    }

    async fn until(what: &str, done: impl Fn() -> bool) {
        tokio::time::timeout(TIMEOUT, async {
            while !done() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("never: {what}"));
    }

    /// Subscriptions with the same key share one execution: the second's own is
    /// dropped, both get the very same serialized bytes, and they count as two live
    /// subscriptions once the feed is live.
    #[tokio::test]
    async fn the_same_key_shares_one_execution_and_its_bytes() {
        let cohorts = Cohorts::new(8);
        let (first, responses, live) = execution();
        let mut a = cohorts.join(key("t"), responses, live);
        let (second, responses, live) = execution();
        let mut b = cohorts.join(key("t"), responses, live);
        assert!(
            second.dropped.load(Ordering::Relaxed),
            "the joiner's own execution runs"
        );
        assert_eq!(cohorts.running(), 1);

        first.live.send_replace(true);
        first.events.send(7).expect("running");
        let (x, y) = (next(&mut a).await, next(&mut b).await);
        let (x, y) = (x.expect("a delivery"), y.expect("a delivery"));
        assert!(Arc::ptr_eq(&x, &y), "serialized twice");
        assert_eq!(x.response, r#"{"data":7}"#);
        assert_eq!(cohorts.live(), 2);
    }

    /// Another token, or a subscription that may not be shared, runs on its own.
    #[tokio::test]
    async fn other_keys_and_no_key_run_apart() {
        let cohorts = Cohorts::new(8);
        let mut members = Vec::new();
        let mut executions = Vec::new();
        for key in [key("t"), key("u"), None, None] {
            let (execution, responses, live) = execution();
            members.push(cohorts.join(key, responses, live));
            executions.push(execution);
        }
        assert_eq!(cohorts.running(), 4);
        assert!(
            executions
                .iter()
                .all(|e| !e.dropped.load(Ordering::Relaxed))
        );
        for (n, execution) in executions.iter().enumerate() {
            execution.events.send(n as u32).expect("running");
        }
        for (n, member) in members.iter_mut().enumerate() {
            let delivery = next(member).await.expect("a delivery");
            assert_eq!(delivery.response, format!(r#"{{"data":{n}}}"#));
        }
    }

    /// A member that does not read is dropped with `RATE_LIMITED` once its buffer is
    /// full, while the other gets every delivery.
    #[tokio::test]
    async fn a_member_that_falls_behind_is_dropped_alone() {
        let cohorts = Cohorts::new(2);
        let (source, responses, live) = execution();
        let mut slow = cohorts.join(key("t"), responses, live);
        let (_, responses, live) = execution();
        let mut fast = cohorts.join(key("t"), responses, live);
        source.live.send_replace(true);
        for n in 0..5 {
            source.events.send(n).expect("running");
            let delivery = next(&mut fast).await.expect("a delivery");
            assert_eq!(delivery.response, format!(r#"{{"data":{n}}}"#));
        }
        for n in 0..2 {
            let delivery = next(&mut slow).await.expect("a buffered delivery");
            assert_eq!(delivery.response, format!(r#"{{"data":{n}}}"#));
        }
        let ended = next(&mut slow).await.expect("the reason it ended");
        assert!(
            ended.refused && ended.errors.contains("RATE_LIMITED"),
            "{ended:?}"
        );
        assert!(next(&mut slow).await.is_none(), "went on after lagging");
        source.events.send(5).expect("still running");
        assert!(next(&mut fast).await.is_some());
    }

    /// Counts the `ERROR` events logged on this thread (the test's runtime's) while the
    /// guard lives.
    fn count_logged_errors() -> (Arc<AtomicUsize>, tracing::subscriber::DefaultGuard) {
        use tracing_subscriber::layer::SubscriberExt as _;

        struct Errors(Arc<AtomicUsize>);
        impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Errors {
            fn on_event(
                &self,
                event: &tracing::Event<'_>,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                if *event.metadata().level() == tracing::Level::ERROR {
                    self.0.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let errors = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry().with(Errors(errors.clone()));
        (errors, tracing::subscriber::set_default(subscriber))
    }

    /// The execution stops when its last member goes, and the key starts afresh. That is
    /// no failure: nothing is logged as one.
    #[tokio::test]
    async fn the_last_member_leaving_ends_the_execution() {
        let (errors, _guard) = count_logged_errors();
        let cohorts = Cohorts::new(8);
        let (first, responses, live) = execution();
        let a = cohorts.join(key("t"), responses, live);
        let (_, responses, live) = execution();
        let b = cohorts.join(key("t"), responses, live);
        drop(a);
        assert!(
            !first.dropped.load(Ordering::Relaxed),
            "ended with a member left"
        );
        drop(b);
        until("the execution is dropped", || {
            first.dropped.load(Ordering::Relaxed)
        })
        .await;
        assert_eq!(cohorts.running(), 0);
        let (again, responses, live) = execution();
        let _c = cohorts.join(key("t"), responses, live);
        assert!(
            !again.dropped.load(Ordering::Relaxed),
            "joined a dead cohort"
        );
        assert_eq!(cohorts.running(), 1);
        assert_eq!(errors.load(Ordering::Relaxed), 0, "an error was logged");
    }

    /// An execution that panics ends its members with `INTERNAL`, and the key starts
    /// afresh instead of leaving later subscribers hanging on it.
    #[tokio::test]
    async fn a_panicking_execution_ends_its_members_with_internal() {
        let cohorts = Cohorts::new(8);
        let panicking = stream::once(async { panic!("a resolver bug") }).boxed();
        let live = watch::Sender::new(true).subscribe();
        let mut member = cohorts.join(key("t"), panicking, live);
        let ended = next(&mut member).await.expect("the reason it ended");
        assert!(
            ended.refused && ended.errors.contains("INTERNAL"),
            "{ended:?}"
        );
        assert!(next(&mut member).await.is_none());
        let (again, responses, live) = execution();
        let _other = cohorts.join(key("t"), responses, live);
        assert!(
            !again.dropped.load(Ordering::Relaxed),
            "joined a dead cohort"
        );
    }

    /// An execution that ends ends its members, and the next subscriber of its key
    /// starts a new one instead of joining it.
    #[tokio::test]
    async fn an_ended_execution_is_not_joined() {
        let cohorts = Cohorts::new(8);
        let (first, responses, live) = execution();
        let mut a = cohorts.join(key("t"), responses, live);
        drop(first);
        assert!(next(&mut a).await.is_none());
        let (second, responses, live) = execution();
        let mut b = cohorts.join(key("t"), responses, live);
        assert!(
            !second.dropped.load(Ordering::Relaxed),
            "joined an ended cohort"
        );
        second.events.send(1).expect("running");
        assert!(next(&mut b).await.is_some());
    }
}
