//! Biscuit tokens: minting, verifying, attenuating, and authorizing an access.
//!
//! Token layout (documented for holders who attenuate offline, see ARCHITECTURE.md):
//! the authority block holds `user("<uuid>")`, `role("user"|"admin"|"service")`,
//! `expires(<date>)` and `check if time($t), $t < <date>`. Attenuation blocks add checks
//! only: `check if operation("read")` for read-only, `check if resource("project",
//! "<uuid>") or resource("account")` for one project, `check if time($t), $t < <date>`
//! for a shorter life. The authorizer supplies `time(now)`, `operation(..)` and
//! `resource(..)` for every access, so those checks bite.

use std::{collections::HashMap, fs, path::Path, time::Duration};

use anyhow::Context as _;
use biscuit_auth::{
    Algorithm, Authorizer, AuthorizerBuilder, AuthorizerLimits, Biscuit, BlockBuilder, KeyPair,
    PrivateKey, PublicKey,
    builder::{Term, date, string},
    error::{Logic, Token},
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Identity, Operation, Resource, Role};
use crate::error::{ApiError, ApiResult};

/// Limits for every authorization: the library's 1 ms default fails valid tokens on a
/// busy machine, and our tokens are a handful of facts.
const LIMITS: AuthorizerLimits = AuthorizerLimits {
    max_facts: 1_000,
    max_iterations: 100,
    max_time: Duration::from_millis(50),
};

/// Holds the root key pair; mints and verifies tokens.
pub struct TokenService {
    root: KeyPair,
    default_ttl: Duration,
}

/// A verified token and the identity its authority block names.
#[derive(Clone)]
pub struct Session {
    token: Biscuit,
    identity: Identity,
    expires_at: DateTime<Utc>,
}

impl TokenService {
    /// Uses `private_key_hex` when given; otherwise the development key in `key_file`,
    /// generated on first use.
    pub fn load(
        private_key_hex: Option<&str>,
        key_file: &Path,
        default_ttl: Duration,
    ) -> anyhow::Result<Self> {
        let root = match private_key_hex {
            Some(hex) => key_from_hex(hex).context("FLASHFUSION_BISCUIT_PRIVATE_KEY is invalid")?,
            None if key_file.exists() => {
                let hex = fs::read_to_string(key_file)
                    .with_context(|| format!("cannot read {}", key_file.display()))?;
                key_from_hex(hex.trim())
                    .with_context(|| format!("{} holds no valid key", key_file.display()))?
            }
            None => {
                let root = KeyPair::new();
                fs::write(key_file, root.private().to_bytes_hex())
                    .with_context(|| format!("cannot write {}", key_file.display()))?;
                tracing::warn!(
                    path = %key_file.display(),
                    "no FLASHFUSION_BISCUIT_PRIVATE_KEY set: generated a development key and kept it in this file; set the variable in production"
                );
                root
            }
        };
        Ok(Self { root, default_ttl })
    }

    /// A service around a given key pair (tests, embedding).
    pub fn from_key_pair(root: KeyPair, default_ttl: Duration) -> Self {
        Self { root, default_ttl }
    }

    /// The public key clients and other services verify with.
    pub fn public_key(&self) -> PublicKey {
        self.root.public()
    }

    /// The configured default lifetime.
    pub fn default_ttl(&self) -> Duration {
        self.default_ttl
    }

    /// Mints a token for `user_id` with `role`, valid for `ttl` (default lifetime when
    /// `None`).
    pub fn issue(
        &self,
        user_id: Uuid,
        role: Role,
        ttl: Option<Duration>,
    ) -> ApiResult<(String, DateTime<Utc>)> {
        let expires_at = super::expiry_after(ttl.unwrap_or(self.default_ttl));
        let expiry = date(&expires_at.into());
        let params = HashMap::from([
            ("user".to_owned(), string(&user_id.to_string())),
            ("role".to_owned(), string(role.as_str())),
            ("exp".to_owned(), expiry),
        ]);
        let token = Biscuit::builder()
            .code_with_params(
                r#"user({user}); role({role}); expires({exp});
                   check if time($t), $t < {exp};"#,
                params,
                HashMap::new(),
            )
            .and_then(|b| b.build(&self.root))
            .and_then(|t| t.to_base64())
            .map_err(|e| ApiError::internal("cannot mint token", e))?;
        Ok((token, expires_at))
    }

    /// Verifies signature, expiry and the authority block's identity. Revocation is
    /// checked by the pipeline against the database.
    pub fn verify(&self, token: &str) -> ApiResult<Session> {
        const INVALID: ApiError = ApiError::Unauthenticated("invalid or expired token");
        let token = Biscuit::from_base64(token.trim(), self.root.public()).map_err(|_| INVALID)?;
        // Run only the checks that do not depend on the operation: an expiry check
        // failing means the token is dead whatever it is used for.
        let mut authorizer = authorizer(&token, "").map_err(|_| INVALID)?;
        if let Err(Outcome::Expired | Outcome::Error) = run(&mut authorizer) {
            return Err(INVALID);
        }
        let users: Vec<(String,)> = authorizer
            .query_with_limits("data($u) <- user($u)", LIMITS)
            .map_err(|_| INVALID)?;
        let roles: Vec<(String,)> = authorizer
            .query_with_limits("data($r) <- role($r)", LIMITS)
            .map_err(|_| INVALID)?;
        let expiries: Vec<(std::time::SystemTime,)> = authorizer
            .query_with_limits("data($e) <- expires($e)", LIMITS)
            .map_err(|_| INVALID)?;
        let (Some((user,)), Some((role,)), Some((expires,))) =
            (single(users), single(roles), single(expiries))
        else {
            return Err(INVALID);
        };
        let user_id = Uuid::parse_str(&user).map_err(|_| INVALID)?;
        let role = Role::parse(&role).ok_or(INVALID)?;
        Ok(Session {
            token,
            identity: Identity::user(user_id, role),
            expires_at: expires.into(),
        })
    }
}

/// Exactly one answer, or none.
fn single<T>(mut rows: Vec<T>) -> Option<T> {
    (rows.len() == 1).then(|| rows.pop()).flatten()
}

fn key_from_hex(hex: &str) -> anyhow::Result<KeyPair> {
    let private =
        PrivateKey::from_bytes_hex(hex, Algorithm::Ed25519).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(KeyPair::from(&private))
}

/// The authorizer every check starts from: the current time and one policy that
/// admits any token naming a user in its authority block, plus `facts` about the access.
fn authorizer(token: &Biscuit, facts: &str) -> ApiResult<Authorizer> {
    AuthorizerBuilder::new()
        .time()
        .set_limits(LIMITS)
        .code(format!("{facts} allow if user($u);"))
        .and_then(|builder| builder.build(token))
        .map_err(|e| ApiError::internal("cannot build authorizer", e))
}

/// Why an authorization did not pass.
enum Outcome {
    /// A `time` check failed: the token (or one of its blocks) has expired.
    Expired,
    /// Another check or no policy: the token does not allow this access.
    Refused,
    /// The authorizer could not run (limits exceeded, malformed rules).
    Error,
}

/// Runs the authorizer. Expiry is told apart from other refusals by the failing check's
/// text: every expiry check of our token layout (and of offline attenuation, see the
/// module header) is a `time(..)` check, and no other check mentions `time`.
fn run(authorizer: &mut Authorizer) -> Result<(), Outcome> {
    match authorizer.authorize_with_limits(LIMITS) {
        Ok(_) => Ok(()),
        Err(Token::FailedLogic(
            Logic::Unauthorized { checks, .. } | Logic::NoMatchingPolicy { checks },
        )) => {
            if checks.iter().any(|c| c.to_string().contains("time(")) {
                Err(Outcome::Expired)
            } else {
                Err(Outcome::Refused)
            }
        }
        Err(_) => Err(Outcome::Error),
    }
}

impl Session {
    /// The identity of the authority block.
    pub fn identity(&self) -> Identity {
        self.identity
    }

    /// When the token (authority block) expires.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }

    /// Hex revocation ids of every block; storing them all revokes this token and
    /// every token derived from it.
    pub fn revocation_ids(&self) -> Vec<String> {
        self.token
            .revocation_identifiers()
            .iter()
            .map(hex::encode)
            .collect()
    }

    /// Runs the token's checks against this access: `FORBIDDEN` when an attenuation
    /// (read-only, project scope) refuses it, `UNAUTHENTICATED` when it has expired.
    pub fn authorize(&self, operation: Operation, resource: Resource) -> ApiResult<()> {
        let op = match operation {
            Operation::Read => "read",
            Operation::Write => "write",
        };
        let mut code = format!("operation(\"{op}\");");
        match resource {
            Resource::Account => code.push_str("resource(\"account\");"),
            Resource::Project(id) => code.push_str(&format!("resource(\"project\", \"{id}\");")),
        }
        let mut authorizer = authorizer(&self.token, &code)?;
        match run(&mut authorizer) {
            Ok(()) => Ok(()),
            Err(Outcome::Expired) => Err(ApiError::Unauthenticated("invalid or expired token")),
            Err(Outcome::Refused | Outcome::Error) => Err(ApiError::Forbidden(
                "this token does not allow this operation",
            )),
        }
    }

    /// Derives a weaker token: read-only, limited to one project, and/or expiring
    /// sooner. The expiry can only shorten.
    pub fn attenuate(
        &self,
        project_id: Option<Uuid>,
        read_only: bool,
        ttl: Option<Duration>,
    ) -> ApiResult<(String, DateTime<Utc>)> {
        let expires_at = ttl
            .map(super::expiry_after)
            .map_or(self.expires_at, |requested| requested.min(self.expires_at));
        let mut code = String::from("check if time($t), $t < {exp};");
        let mut params: HashMap<String, Term> =
            HashMap::from([("exp".to_owned(), date(&expires_at.into()))]);
        if read_only {
            code.push_str(r#"check if operation("read");"#);
        }
        if let Some(project) = project_id {
            code.push_str(r#"check if resource("project", {project}) or resource("account");"#);
            params.insert("project".to_owned(), string(&project.to_string()));
        }
        let token = BlockBuilder::new()
            .code_with_params(code, params, HashMap::new())
            .and_then(|block| self.token.append(block))
            .and_then(|t| t.to_base64())
            .map_err(|e| ApiError::internal("cannot attenuate token", e))?;
        Ok((token, expires_at))
    }
}
