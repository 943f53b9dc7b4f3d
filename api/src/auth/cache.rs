//! The verification cache: sessions already verified, by token, so a token presented
//! again skips its signatures and datalog (the bulk of a request's CPU before it reaches
//! the database).
//!
//! It owns only the bounded map. The rules for when an entry may be used live in
//! `tokens.rs`: an entry is served only while its token is live (expiry is a comparison
//! with the exact expiry its checks enforce, and an expired entry is evicted), and
//! revocation and the account's role are not cached at all: the pipeline checks them
//! against the database on every operation, and evicts what it refuses.
//!
//! The key is SHA-256 over the root public key and the token's bytes: a token that
//! differs in one byte is another key, so it is verified from scratch, and a
//! collision would need a second preimage of SHA-256.

use std::{
    num::NonZeroUsize,
    sync::{Mutex, MutexGuard, PoisonError},
};

use biscuit_auth::PublicKey;
use lru::LruCache;
use sha2::{Digest as _, Sha256};

use super::Session;

/// What identifies a token in the cache: SHA-256 of the root key and the token.
pub(super) type CacheKey = [u8; 32];

/// A bounded, least-recently-used map from token to verified session; empty and
/// inert when its capacity is zero.
pub(super) struct VerifiedTokens {
    /// `None` when caching is off.
    entries: Option<Mutex<LruCache<CacheKey, Session>>>,
    /// SHA-256 state that has already absorbed the root public key.
    seed: Sha256,
}

impl VerifiedTokens {
    /// A cache of at most `capacity` sessions for tokens signed by `root`; `0` turns
    /// caching off.
    pub(super) fn new(root: &PublicKey, capacity: usize) -> Self {
        Self {
            entries: NonZeroUsize::new(capacity).map(|cap| Mutex::new(LruCache::new(cap))),
            seed: Sha256::new().chain_update(root.to_bytes()),
        }
    }

    /// The key of `token`, or `None` when caching is off (nothing to hash for).
    pub(super) fn key(&self, token: &str) -> Option<CacheKey> {
        self.entries.as_ref()?;
        Some(
            self.seed
                .clone()
                .chain_update(token.as_bytes())
                .finalize()
                .into(),
        )
    }

    /// The session cached under `key`, marked as recently used.
    pub(super) fn get(&self, key: &CacheKey) -> Option<Session> {
        self.lock()?.get(key).cloned()
    }

    /// Caches `session` under `key`, evicting the least recently used entry when full.
    pub(super) fn insert(&self, key: CacheKey, session: Session) {
        if let Some(mut entries) = self.lock() {
            entries.put(key, session);
        }
    }

    /// Forgets the session cached under `key`, if any.
    pub(super) fn remove(&self, key: &CacheKey) {
        if let Some(mut entries) = self.lock() {
            entries.pop(key);
        }
    }

    /// Whether a session is cached under `key`.
    pub(super) fn contains(&self, key: &CacheKey) -> bool {
        self.lock().is_some_and(|entries| entries.contains(key))
    }

    /// How many sessions are cached.
    pub(super) fn len(&self) -> usize {
        self.lock().map_or(0, |entries| entries.len())
    }

    /// The map, locked. Nothing here panics while holding it, so a poisoned lock (a
    /// panic inside the map itself) is used as it is rather than failing every request.
    fn lock(&self) -> Option<MutexGuard<'_, LruCache<CacheKey, Session>>> {
        self.entries
            .as_ref()
            .map(|entries| entries.lock().unwrap_or_else(PoisonError::into_inner))
    }
}
