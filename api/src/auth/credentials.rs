//! Validated credentials at the edge: an [`Email`] is well-formed and normalised, a
//! [`Password`] long enough and never printed; argon2id hashing lives here too.

use std::{
    fmt,
    num::NonZeroUsize,
    sync::{Arc, LazyLock},
};

use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};

use tokio::sync::Semaphore;

use crate::error::{ApiError, ApiResult};

/// A syntactically valid email address, trimmed and lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Validates `raw`: one `@`, a non-empty local part, a dotted domain, no spaces,
    /// at most 254 characters.
    pub fn parse(raw: &str) -> ApiResult<Self> {
        let email = raw.trim().to_lowercase();
        let valid = email.len() <= 254
            && !email.chars().any(|c| c.is_whitespace() || c.is_control())
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.split('.').count() >= 2
                    && domain.split('.').all(|label| !label.is_empty())
            });
        if valid {
            Ok(Self(email))
        } else {
            Err(ApiError::bad_input("email: not a valid email address"))
        }
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password of at least [`Password::MIN_LEN`] characters; its `Debug` hides it.
pub struct Password(String);

impl Password {
    /// The shortest accepted password, in characters.
    pub const MIN_LEN: usize = 8;
    /// The longest accepted password, so hashing cost stays bounded.
    pub const MAX_LEN: usize = 1024;

    /// Validates the length of a new password.
    pub fn parse_new(raw: String) -> ApiResult<Self> {
        let len = raw.chars().count();
        if len < Self::MIN_LEN {
            return Err(ApiError::bad_input(format!(
                "password: must be at least {} characters",
                Self::MIN_LEN
            )));
        }
        if len > Self::MAX_LEN {
            return Err(ApiError::bad_input(format!(
                "password: must be at most {} characters",
                Self::MAX_LEN
            )));
        }
        Ok(Self(raw))
    }

    /// A password presented at sign-in; not length-checked beyond the maximum, so a
    /// wrong password gets the same answer whatever its length.
    pub fn presented(raw: String) -> Self {
        Self(raw.chars().take(Self::MAX_LEN).collect())
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Hashes and verifications running at once, one per core: each takes 19 MiB while
/// it runs, and the blocking pool would otherwise run up to 512 of them. The rest wait
/// for a turn as futures, which a request's timeout drops; a hash that has started
/// holds its turn until it ends, even if its request has gone.
static HASHING: LazyLock<Arc<Semaphore>> = LazyLock::new(|| {
    Arc::new(Semaphore::new(
        std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
    ))
});

/// Runs `work` on the blocking pool once a turn of [`HASHING`] is free.
async fn hashing<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    let turn = HASHING
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| ApiError::internal("password hashing closed", e))?;
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        work()
    })
    .await
    .map_err(|e| ApiError::internal(what, e))?
}

/// Hashes with argon2id and a fresh salt, off the async executor.
pub async fn hash_password(password: Password) -> ApiResult<String> {
    hashing("hashing task failed", move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.0.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| ApiError::internal("argon2 hashing failed", anyhow::anyhow!("{e}")))
    })
    .await
}

/// Verifies against a stored hash; `None` stands for "no such account" and still
/// spends the time of one verification so timing does not tell which part was wrong.
pub async fn verify_password(password: Password, stored: Option<String>) -> ApiResult<bool> {
    hashing("verification task failed", move || {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| DUMMY_HASH.clone());
        let hash = PasswordHash::new(&stored)
            .map_err(|e| ApiError::internal("stored hash unreadable", anyhow::anyhow!("{e}")))?;
        let matches = Argon2::default()
            .verify_password(password.0.as_bytes(), &hash)
            .is_ok();
        Ok(known && matches)
    })
    .await
}

/// An argon2id hash (default parameters) of a random string nobody knows, made once.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(salt.as_str().as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .unwrap_or_default()
});

#[cfg(test)]
mod tests {
    use futures_util::FutureExt as _;

    use super::*;

    #[tokio::test]
    async fn a_hash_waits_for_a_free_turn() {
        let all = u32::try_from(std::thread::available_parallelism().map_or(1, NonZeroUsize::get))
            .expect("few cores");
        let turns = HASHING.acquire_many(all).await.expect("every turn");
        let mut hash = Box::pin(hash_password(Password("correct horse".to_owned())));
        assert!((&mut hash).now_or_never().is_none(), "no turn, no hash");
        drop(turns);
        let hashed = hash.await.expect("hashed once a turn is free");
        assert!(hashed.starts_with("$argon2id$"), "{hashed}");
    }

    #[test]
    fn emails_are_validated_and_normalised() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").map(|e| e.0).ok(),
            Some("ada@example.com".to_owned())
        );
        for bad in [
            "", "ada", "@x.io", "ada@", "ada@io", "a b@x.io", "a@b@x.io", "a@x..io",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(Password::parse_new("1234567".into()).is_err());
        assert!(Password::parse_new("12345678".into()).is_ok());
    }
}
