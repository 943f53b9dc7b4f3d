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
