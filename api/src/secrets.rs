//! Secrets at rest (DESIGN §8): provider API keys and integration credentials are sealed
//! with XChaCha20-Poly1305 under the key from configuration before they reach the
//! database, with the owner's id bound in as associated data, so a sealed value copied
//! or moved to another owner's row no longer opens.
//!
//! [`Sealer`] is built once (in `AppState`) and never prints its key; plaintext passes
//! through [`Sealer::seal`] and [`Sealer::open`] only and is never logged. Every sealed
//! value records the id of the key that sealed it ([`Sealed::key_id`]), so a rotation can
//! tell which key opens which row.

use std::{fmt, fs, path::Path};

use anyhow::Context as _;
use chacha20poly1305::{
    Key, XChaCha20Poly1305, XNonce,
    aead::{Aead, AeadCore, KeyInit, OsRng, Payload},
};
use uuid::Uuid;

use crate::{
    auth::write_private,
    error::{ApiError, ApiResult},
};

/// Length of a sealing key, in bytes.
const KEY_LEN: usize = 32;
/// Length of an XChaCha20-Poly1305 nonce, in bytes.
const NONCE_LEN: usize = 24;

/// A sealed secret, as stored: ciphertext (tag included), its random nonce and the id
/// of the key that sealed it.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub ciphertext: Vec<u8>,
    pub nonce: Vec<u8>,
    pub key_id: String,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("key_id", &self.key_id)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// Seals and opens secrets with one key. Its `Debug` shows the key id only.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    key_id: String,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// Uses `key_hex` (64 hex digits) when given; otherwise the development key in
    /// `key_file`, generated on first use, as `TokenService::load` does for the biscuit key.
    pub fn load(key_hex: Option<&str>, key_file: &Path) -> anyhow::Result<Self> {
        match key_hex {
            Some(hex) => Self::from_hex(hex).context("FLASHFUSION_SECRETS_KEY is invalid"),
            None if key_file.exists() => {
                let hex = fs::read_to_string(key_file)
                    .with_context(|| format!("cannot read {}", key_file.display()))?;
                Self::from_hex(hex.trim())
                    .with_context(|| format!("{} holds no valid key", key_file.display()))
            }
            None => {
                let key = XChaCha20Poly1305::generate_key(&mut OsRng);
                write_private(key_file, &hex::encode(key))
                    .with_context(|| format!("cannot write {}", key_file.display()))?;
                tracing::warn!(
                    path = %key_file.display(),
                    "no FLASHFUSION_SECRETS_KEY set: generated a development key for sealing API keys and credentials and kept it in this file; set the variable in production"
                );
                Ok(Self::from_key(&key))
            }
        }
    }

    /// A sealer over the key given as 64 hex digits.
    pub fn from_hex(hex: &str) -> anyhow::Result<Self> {
        let bytes = hex::decode(hex.trim()).context("not hex")?;
        let key: [u8; KEY_LEN] = bytes.try_into().map_err(|_| {
            anyhow::anyhow!(
                "a sealing key is {KEY_LEN} bytes ({} hex digits)",
                KEY_LEN * 2
            )
        })?;
        Ok(Self::from_key(&Key::from(key)))
    }

    fn from_key(key: &Key) -> Self {
        let cipher = XChaCha20Poly1305::new(key);
        let key_id = fingerprint(&cipher);
        Self { cipher, key_id }
    }

    /// The id recorded with everything this sealer seals.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Seals `plaintext` for `owner` under a fresh random nonce.
    pub fn seal(&self, owner: Uuid, plaintext: &str) -> ApiResult<Sealed> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: owner.as_bytes(),
        };
        let ciphertext = self
            .cipher
            .encrypt(&nonce, payload)
            .map_err(|_| ApiError::bug("sealing a secret failed"))?;
        Ok(Sealed {
            ciphertext,
            nonce: nonce.to_vec(),
            key_id: self.key_id.clone(),
        })
    }

    /// Opens a value sealed for `owner`. A value sealed under another key, for another
    /// owner, or changed in any way is `INTERNAL` (logged without the value): the
    /// caller did nothing wrong, the stored row is unusable.
    pub fn open(&self, owner: Uuid, sealed: &Sealed) -> ApiResult<String> {
        if sealed.key_id != self.key_id {
            return Err(ApiError::bug(
                "a secret was sealed under a key this gateway does not hold",
            ));
        }
        let nonce: [u8; NONCE_LEN] = sealed
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| ApiError::bug("a sealed secret has a malformed nonce"))?;
        let payload = Payload {
            msg: &sealed.ciphertext,
            aad: owner.as_bytes(),
        };
        let plaintext = self
            .cipher
            .decrypt(&XNonce::from(nonce), payload)
            .map_err(|_| {
                ApiError::bug("a sealed secret does not open for its owner (moved or altered)")
            })?;
        String::from_utf8(plaintext).map_err(|_| ApiError::bug("a sealed secret is not UTF-8"))
    }
}

/// Names a key without revealing it: the authentication tag of an empty message under
/// an all-zero nonce, which only the key determines (a MAC of a constant).
fn fingerprint(cipher: &XChaCha20Poly1305) -> String {
    let nonce = XNonce::default();
    let tag = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: b"",
                aad: b"flashfusion sealing key id",
            },
        )
        .unwrap_or_default();
    format!("xc20p-{}", hex::encode(tag.get(..8).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        Sealer::from_hex(&"ab".repeat(KEY_LEN)).expect("valid key")
    }

    #[test]
    fn round_trip() {
        let sealer = sealer();
        let owner = Uuid::new_v4();
        let sealed = sealer.seal(owner, "sk-live-1234").expect("seal");
        assert_eq!(sealed.nonce.len(), NONCE_LEN);
        assert_eq!(sealed.key_id, sealer.key_id());
        assert!(
            !sealed
                .ciphertext
                .windows(4)
                .any(|w| w == b"1234" || w == b"sk-l")
        );
        assert_eq!(sealer.open(owner, &sealed).expect("open"), "sk-live-1234");
        let again = sealer.seal(owner, "sk-live-1234").expect("seal");
        assert_ne!(again.nonce, sealed.nonce, "a fresh nonce each time");
    }

    #[test]
    fn another_owner_cannot_open() {
        let sealer = sealer();
        let sealed = sealer.seal(Uuid::new_v4(), "secret").expect("seal");
        let opened = sealer.open(Uuid::new_v4(), &sealed);
        assert!(matches!(opened, Err(ApiError::Internal(_))));
    }

    #[test]
    fn tampering_is_detected() {
        let sealer = sealer();
        let owner = Uuid::new_v4();
        let sealed = sealer.seal(owner, "secret").expect("seal");
        for i in 0..sealed.ciphertext.len() {
            let mut tampered = sealed.clone();
            tampered.ciphertext[i] ^= 1;
            assert!(sealer.open(owner, &tampered).is_err(), "byte {i}");
        }
        let mut nonce = sealed.clone();
        nonce.nonce[0] ^= 1;
        assert!(sealer.open(owner, &nonce).is_err());
        let mut short = sealed.clone();
        short.nonce.pop();
        assert!(sealer.open(owner, &short).is_err());
    }

    #[test]
    fn another_key_cannot_open_and_ids_differ() {
        let owner = Uuid::new_v4();
        let sealed = sealer().seal(owner, "secret").expect("seal");
        let other = Sealer::from_hex(&"cd".repeat(KEY_LEN)).expect("valid key");
        assert_ne!(other.key_id(), sealer().key_id());
        assert!(other.open(owner, &sealed).is_err());
        // Even when the stored key id is rewritten to match.
        let relabelled = Sealed {
            key_id: other.key_id().to_owned(),
            ..sealed
        };
        assert!(other.open(owner, &relabelled).is_err());
    }

    #[test]
    fn debug_never_shows_key_or_plaintext() {
        let sealer = sealer();
        let printed = format!("{sealer:?}");
        assert!(!printed.contains("abab"), "{printed}");
        let sealed = sealer.seal(Uuid::new_v4(), "hunter2").expect("seal");
        let printed = format!("{sealed:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(Sealer::from_hex("abc").is_err());
        assert!(Sealer::from_hex(&"ab".repeat(31)).is_err());
        assert!(Sealer::from_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn a_development_key_is_generated_once_and_kept() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let file = dir.path().join("secrets-key");
        let first = Sealer::load(None, &file).expect("generated");
        let second = Sealer::load(None, &file).expect("reloaded");
        assert_eq!(first.key_id(), second.key_id());
        let owner = Uuid::new_v4();
        let sealed = first.seal(owner, "kept").expect("seal");
        assert_eq!(second.open(owner, &sealed).expect("open"), "kept");
        let configured = Sealer::load(Some(&"ab".repeat(KEY_LEN)), &file).expect("configured");
        assert_eq!(configured.key_id(), sealer().key_id());
    }
}
