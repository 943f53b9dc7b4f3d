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
