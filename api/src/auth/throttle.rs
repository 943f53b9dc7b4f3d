//! Account-abuse throttles, kept per replica in memory: how many failed sign-ins one
//! client address may make (password spraying), one address may make on one email
//! (guessing), and everyone together may make on one email (guessing from many
//! addresses), and how many sign-ups one address may make. ARCHITECTURE.md ("Account
//! abuse") explains what each one is for and why successes are not counted.

use std::{
    collections::HashMap,
    hash::Hash,
    net::IpAddr,
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use super::Email;
use crate::{
    client,
    error::{ApiError, ApiResult},
};

/// How long an address where an account signed in successfully stays known to let that
/// account in through its lock (see [`AccountThrottles::begin_sign_in`]).
const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// A burst, then one more every `refill`.
#[derive(Debug, Clone, Copy)]
pub struct Quota {
    pub burst: u32,
    pub refill: Duration,
}

/// One token bucket per key, as the generic cell rate algorithm keeps it: the instant
/// at which the key's bucket is full again. A missing key is a full bucket.
struct Buckets<K> {
    refill: Duration,
    /// `refill × burst`: how far ahead of now a key's full-again instant may lie.
    span: Duration,
    full_at: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq> Buckets<K> {
    fn new(quota: Quota) -> Self {
        Self {
            refill: quota.refill,
            span: quota.refill.saturating_mul(quota.burst),
            full_at: Mutex::default(),
        }
    }

    /// The map; a panic elsewhere while it was held leaves counts, not broken state.
    fn cells(&self) -> MutexGuard<'_, HashMap<K, Instant>> {
        self.full_at.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The instant `key` would be full again after one more cell.
    fn after_one(&self, cells: &HashMap<K, Instant>, key: &K, now: Instant) -> Instant {
        cells.get(key).copied().unwrap_or(now).max(now) + self.refill
    }

    /// Takes a cell if there is one.
    fn take(&self, key: K) -> bool {
        let now = Instant::now();
        let mut cells = self.cells();
        let next = self.after_one(&cells, &key, now);
        if next.duration_since(now) > self.span {
            return false;
        }
        cells.insert(key, next);
        true
    }

    /// Takes a cell even when there is none left (the bucket stays just empty).
    fn charge(&self, key: K) {
        let now = Instant::now();
        let mut cells = self.cells();
        let next = self.after_one(&cells, &key, now).min(now + self.span);
        cells.insert(key, next);
    }

    /// Puts back a cell taken by [`Buckets::take`].
    fn give_back(&self, key: &K) {
        let now = Instant::now();
        let mut cells = self.cells();
        if let Some(full_at) = cells.get_mut(key) {
            *full_at = full_at.checked_sub(self.refill).unwrap_or(now);
            if *full_at <= now {
                cells.remove(key);
            }
        }
    }

    /// Forgets keys whose bucket is full again: they count nothing.
    fn retain_recent(&self) {
        let now = Instant::now();
        self.cells().retain(|_, full_at| *full_at > now);
    }
}

/// The refusal of every throttle: it says nothing about which one, or about the account.
fn limited() -> ApiError {
    ApiError::RateLimited("too many attempts; try again later".to_owned())
}

/// The throttles of sign-in and sign-up.
pub struct AccountThrottles {
    /// Failed sign-ins per address, whatever the email: password spraying.
    sign_in_address: Buckets<IpAddr>,
    /// Failed sign-ins per address and email: guessing one account's password.
    sign_in_pair: Buckets<(IpAddr, String)>,
    /// Failed sign-ins per email from every address: guessing from many addresses.
    sign_in_account: Buckets<String>,
    /// When each email last signed in successfully from each address.
    known: Mutex<HashMap<(IpAddr, String), Instant>>,
    /// Sign-ups per address, successful or not.
    sign_up_address: Buckets<IpAddr>,
}

impl AccountThrottles {
    /// Throttles with these quotas.
    pub fn new(
        sign_in_address: Quota,
        sign_in_pair: Quota,
        sign_in_account: Quota,
        sign_up_address: Quota,
    ) -> Self {
        Self {
            sign_in_address: Buckets::new(sign_in_address),
            sign_in_pair: Buckets::new(sign_in_pair),
            sign_in_account: Buckets::new(sign_in_account),
            known: Mutex::default(),
            sign_up_address: Buckets::new(sign_up_address),
        }
    }

    /// Admits a sign-in attempt from `client` on `email` before its password is
    /// checked, or refuses it `RATE_LIMITED` without spending a hash. The attempt
    /// holds a cell of its address's and its address+email's buckets until it is told
    /// how it ended: a success gives them back, so only failures count.
    ///
    /// The per-email lock (every address's failures on the email together) is what
    /// a guesser with many addresses runs into, and what would let anyone lock an
    /// owner out. So it is not checked for an address the account signed in from
    /// successfully within [`KNOWN_FOR`]: there the owner still gets in with the right
    /// password (and is still limited per address+email like anyone else).
    ///
    /// From an address that is not known, the attempt takes its cell of the email's
    /// bucket too, before the password is checked: attempts on one email in flight at
    /// once (each a hash long) then count against the lock together, instead of all
    /// passing it before the first one fails.
    pub fn begin_sign_in(&self, client: IpAddr, email: &Email) -> ApiResult<SignInAttempt<'_>> {
        let address = client::limit_key(client);
        let email = email.as_str().to_owned();
        let pair = (address, email);
        let holds_email_cell = !self.is_known(&pair);
        if holds_email_cell && !self.sign_in_account.take(pair.1.clone()) {
            return Err(limited());
        }
        // From here on, dropping the attempt gives the email's cell back.
        let attempt = SignInAttempt {
            throttles: self,
            pair,
            holds_email_cell,
        };
        if !self.sign_in_address.take(address) {
            return Err(limited());
        }
        if !self.sign_in_pair.take(attempt.pair.clone()) {
            self.sign_in_address.give_back(&address);
            return Err(limited());
        }
        Ok(attempt)
    }

    /// Admits a sign-up from `client`, or refuses it `RATE_LIMITED`. Every admitted
    /// sign-up counts, taken email or not: that is what bounds probing for accounts.
    pub fn sign_up(&self, client: IpAddr) -> ApiResult<()> {
        if self.sign_up_address.take(client::limit_key(client)) {
            Ok(())
        } else {
            Err(limited())
        }
    }

    /// Forgets what counts nothing any more: full buckets and addresses not used for
    /// longer than [`KNOWN_FOR`].
    pub fn retain_recent(&self) {
        self.sign_in_address.retain_recent();
        self.sign_in_pair.retain_recent();
        self.sign_in_account.retain_recent();
        self.sign_up_address.retain_recent();
        self.known_addresses()
            .retain(|_, at| at.elapsed() < KNOWN_FOR);
    }

    fn known_addresses(&self) -> MutexGuard<'_, HashMap<(IpAddr, String), Instant>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_known(&self, pair: &(IpAddr, String)) -> bool {
        self.known_addresses()
            .get(pair)
            .is_some_and(|at| at.elapsed() < KNOWN_FOR)
    }
}

/// A sign-in attempt admitted by [`AccountThrottles::begin_sign_in`]. Dropped without
/// an outcome (an internal error), it keeps its address's cells: it counts as a failure
/// for the address, not for the email.
pub struct SignInAttempt<'a> {
    throttles: &'a AccountThrottles,
    pair: (IpAddr, String),
    /// Whether it holds a cell of the email's bucket, which its drop gives back
    /// unless it failed.
    holds_email_cell: bool,
}

impl SignInAttempt<'_> {
    /// The password was right: the attempt counts nowhere, and the address becomes
    /// known for the account.
    pub fn succeeded(self) {
        let throttles = self.throttles;
        throttles.sign_in_address.give_back(&self.pair.0);
        throttles.sign_in_pair.give_back(&self.pair);
        throttles
            .known_addresses()
            .insert(self.pair.clone(), Instant::now());
    }

    /// The email or the password was wrong: it counts for the email too.
    pub fn failed(mut self) {
        if !std::mem::take(&mut self.holds_email_cell) {
            self.throttles.sign_in_account.charge(self.pair.1.clone());
        }
    }
}

impl Drop for SignInAttempt<'_> {
    fn drop(&mut self) {
        if self.holds_email_cell {
            self.throttles.sign_in_account.give_back(&self.pair.1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(burst: u32) -> Quota {
        Quota {
            burst,
            refill: Duration::from_secs(3600),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn a_bucket_allows_its_burst_and_gets_back_what_is_given_back() {
        let buckets = Buckets::new(quota(2));
        assert!(buckets.take("k"));
        assert!(buckets.take("k"));
        assert!(!buckets.take("k"));
        assert!(buckets.take("other"));
        buckets.give_back(&"k");
        assert!(buckets.take("k"));
        assert!(!buckets.take("k"));
        buckets.give_back(&"k");
        assert!(buckets.take("k"));
        buckets.charge("k");
        buckets.charge("k");
        buckets.give_back(&"k");
        assert!(buckets.take("k"), "charging saturates at empty");
    }

    #[test]
    fn attempts_in_flight_on_one_email_count_against_its_lock_together() {
        let throttles = AccountThrottles::new(quota(100), quota(100), quota(1), quota(1));
        let ada = Email::parse("ada@example.com").expect("email");
        let first = throttles
            .begin_sign_in(ip("203.0.113.1"), &ada)
            .expect("admitted");
        assert!(
            throttles.begin_sign_in(ip("203.0.113.2"), &ada).is_err(),
            "the email's only cell is held by the attempt in flight"
        );
        // A success, or an attempt ended by an internal error, gives the cell back.
        first.succeeded();
        drop(
            throttles
                .begin_sign_in(ip("203.0.113.2"), &ada)
                .expect("admitted again"),
        );
        throttles
            .begin_sign_in(ip("203.0.113.3"), &ada)
            .expect("admitted again")
            .failed();
        assert!(
            throttles.begin_sign_in(ip("203.0.113.4"), &ada).is_err(),
            "a failure keeps it"
        );
    }

    #[test]
    fn only_failures_count_and_a_known_address_passes_the_email_lock() {
        let throttles = AccountThrottles::new(quota(100), quota(2), quota(3), quota(1));
        let ada = Email::parse("ada@example.com").expect("email");
        let (home, attacker) = (ip("192.0.2.1"), ip("203.0.113.5"));
        for _ in 0..5 {
            throttles
                .begin_sign_in(home, &ada)
                .expect("successes count nothing")
                .succeeded();
        }
        for _ in 0..2 {
            throttles
                .begin_sign_in(attacker, &ada)
                .expect("admitted")
                .failed();
        }
        assert!(
            throttles.begin_sign_in(attacker, &ada).is_err(),
            "pair lock"
        );
        throttles
            .begin_sign_in(ip("203.0.113.6"), &ada)
            .expect("admitted")
            .failed();
        assert!(
            throttles.begin_sign_in(ip("198.51.100.1"), &ada).is_err(),
            "the email is locked for new addresses"
        );
        assert!(
            throttles.begin_sign_in(home, &ada).is_ok(),
            "but not where the account signed in before"
        );
    }
}
