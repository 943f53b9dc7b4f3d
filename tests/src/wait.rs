//! Waiting for a state on the gateway that no message announces (a subscription
//! counted live, a pool recovered, a statement waiting on a lock): polled, and bounded
//! by [`TIMEOUT`], never slept on.

use std::{future::Future, time::Duration};

use crate::{TIMEOUT, TestApp};

/// How often a state is looked at again.
const POLL: Duration = Duration::from_millis(10);

/// Polls `check` until it holds; fails the test naming `what` after [`TIMEOUT`].
pub async fn eventually<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let polled = tokio::time::timeout(TIMEOUT, async {
        while !check().await {
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
    assert!(polled.is_ok(), "{what}: not within {TIMEOUT:?}");
}

impl TestApp {
    /// Waits until the gateway's count of live subscriptions satisfies `done`: a
    /// subscription started or ended there, which no message on its socket announces.
    pub async fn until_live(&self, what: &str, done: impl Fn(usize) -> bool) {
        eventually(what, || std::future::ready(done(self.state.fanout.live()))).await;
    }
}

/// `secs` seconds from now, in whole seconds as biscuit's dates are: a time limit a
/// test appends to a token.
pub fn whole_seconds_from_now(secs: u64) -> std::time::SystemTime {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch");
    std::time::UNIX_EPOCH + Duration::from_secs(now.as_secs() + secs)
}

/// Waits until the wall clock reaches `at` (a token's time limit passing).
pub async fn until_the_clock_reaches(at: std::time::SystemTime) {
    if let Ok(left) = at.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(left).await;
    }
}

/// Whether at least `n` statements of the current database wait on a lock, as
/// `watcher` (a connection of its own) sees them: a test that holds a row or table
/// knows its requests have queued behind it.
pub async fn waiting_on_locks(watcher: &impl sea_orm::ConnectionTrait, n: i64) -> bool {
    statements_waiting_on_locks(watcher, n, "%").await
}

/// [`waiting_on_locks`], counting only statements whose text is `like` (an SQL `ilike`
/// pattern, e.g. `%projects%`): a test that holds a table knows which request waits.
pub async fn statements_waiting_on_locks(
    watcher: &impl sea_orm::ConnectionTrait,
    n: i64,
    like: &str,
) -> bool {
    watcher
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DatabaseBackend::Postgres,
            "select count(*) from pg_stat_activity \
             where datname = current_database() and wait_event_type = 'Lock' \
             and query ilike $1",
            [like.into()],
        ))
        .await
        .ok()
        .flatten()
        .and_then(|row| row.try_get_by_index::<i64>(0).ok())
        .is_some_and(|waiting| waiting >= n)
}

impl TestApp {
    /// Sends `requests` while row `id` of `table` is held (`select .. for update` in a
    /// transaction of its own), lets it go once every one of them waits on it, and
    /// returns their responses in order: requests that read the row, then queue to write
    /// it, as concurrent clients would (Postgres only).
    pub async fn racing_on_row<F>(
        &self,
        table: &str,
        id: &str,
        requests: Vec<F>,
    ) -> Vec<serde_json::Value>
    where
        F: Future<Output = serde_json::Value> + Send + 'static,
    {
        use sea_orm::{ConnectionTrait as _, TransactionTrait as _};
        let db = self.db.as_ref().expect("a Postgres app");
        let blocker = db.connect().await;
        let lock = blocker.begin().await.expect("begin");
        lock.execute_unprepared(&format!(
            "select 1 from {table} where id = '{id}' for update"
        ))
        .await
        .expect("hold the row");
        let waiting = i64::try_from(requests.len()).expect("a few requests");
        let running: Vec<_> = requests.into_iter().map(tokio::spawn).collect();
        let watcher = db.connect().await;
        eventually("the requests wait on the row", || {
            waiting_on_locks(&watcher, waiting)
        })
        .await;
        lock.commit().await.expect("release the row");
        let mut responses = Vec::new();
        for request in running {
            responses.push(request.await.expect("the request ran"));
        }
        responses
    }
}
