//! Biscuit tokens: minting, verifying, attenuating, and authorizing an access.
//!
//! Token layout (documented for holders who attenuate offline, see ARCHITECTURE.md):
//! the authority block holds `user("<uuid>")`, `role("user"|"admin"|"service")`,
//! `expires(<date>)` and `check if time($t), $t < <date>`. Attenuation blocks add checks:
//! `check if operation("read")` for read-only, `check if resource("project", "<uuid>")
//! or resource("account")` for one project (with the hint `scope_project("<uuid>")`, so
//! lists need not authorize every row), `check if time($t), $t < <date>` (with
//! `expires(<date>)`) for a shorter life. The authorizer supplies `time(now)`,
//! `operation(..)` and `resource(..)` for every access, so those checks bite. Facts of
//! appended blocks are never trusted to widen anything: identity comes from the
//! authority block, and hints and expiries only narrow.

use std::{
    collections::HashMap,
    fs,
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::Context as _;
use biscuit_auth::{
    Algorithm, Authorizer, AuthorizerBuilder, AuthorizerLimits, Biscuit, BlockBuilder, KeyPair,
    PrivateKey,
    builder::{Term, date, string},
    error::{FailedCheck, Logic, Token},
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

/// A verified token and the identity its authority block names. Cloning it is cheap
/// (one reference count): the pipeline hands it to every operation and socket.
#[derive(Clone)]
pub struct Session(Arc<Verified>);

/// What verifying a token established; never changes afterwards.
struct Verified {
    token: Biscuit,
    identity: Identity,
    /// The earliest expiry any block states (what clients are told).
    expires_at: DateTime<Utc>,
    /// The expiry the gateway signed: the token can never outlive it, whatever appended
    /// blocks claim, so a revocation may be forgotten after it.
    authority_expires_at: DateTime<Utc>,
    /// Whether an appended block refers to `resource(..)`, i.e. may restrict which
    /// projects the token reaches.
    restricts_resources: bool,
    /// Project ids appended blocks name with `scope_project(..)`.
    project_hints: Vec<Uuid>,
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
                write_private(key_file, &root.private().to_bytes_hex())
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
        let token = token.trim();
        if token.len() > MAX_TOKEN_LEN {
            return Err(ApiError::Unauthenticated(TOO_COSTLY));
        }
        let token = Biscuit::from_base64(token, self.root.public()).map_err(|_| INVALID)?;
        let restricts_resources =
            inspect_blocks(&token).ok_or(ApiError::Unauthenticated(TOO_COSTLY))?;
        // Checks that depend on the operation fail here without meaning anything; only
        // an expired check makes the token dead whatever it is used for. The queries
        // below read the world this one authorization computed.
        let mut authorizer = authorizer(&token, "", None).map_err(|_| INVALID)?;
        let result = authorizer.authorize_with_limits(LIMITS);
        match classify(&token, "", result) {
            Ok(()) | Err(Outcome::Refused) => {}
            Err(Outcome::Expired) => return Err(INVALID),
            Err(Outcome::Error) => return Err(over_limits()),
        }
        // Identity from the authority block only (`query`), never from appended blocks.
        let users: Vec<(String,)> = authorizer
            .query_with_limits("data($u) <- user($u)", LIMITS)
            .map_err(|_| INVALID)?;
        let roles: Vec<(String,)> = authorizer
            .query_with_limits("data($r) <- role($r)", LIMITS)
            .map_err(|_| INVALID)?;
        let authority_expiries: Vec<(SystemTime,)> = authorizer
            .query_with_limits("data($e) <- expires($e)", LIMITS)
            .map_err(|_| INVALID)?;
        let (Some((user,)), Some((role,)), Some((authority_expires_at,))) =
            (single(users), single(roles), single(authority_expiries))
        else {
            return Err(INVALID);
        };
        // Facts of appended blocks may only narrow what the gateway does: the earliest
        // `expires` is reported (checks enforce the real expiry), and `scope_project`
        // hints only shrink the candidates that lists then authorize row by row.
        let expiries: Vec<(SystemTime,)> = authorizer
            .query_all_with_limits("data($e) <- expires($e)", LIMITS)
            .map_err(|_| INVALID)?;
        let expires_at = expiries.into_iter().map(|(e,)| e).min().ok_or(INVALID)?;
        let hints: Vec<(String,)> = authorizer
            .query_all_with_limits("data($p) <- scope_project($p)", LIMITS)
            .map_err(|_| INVALID)?;
        Ok(Session(Arc::new(Verified {
            identity: Identity::user(
                Uuid::parse_str(&user).map_err(|_| INVALID)?,
                Role::parse(&role).ok_or(INVALID)?,
            ),
            expires_at: expires_at.into(),
            authority_expires_at: authority_expires_at.into(),
            restricts_resources,
            project_hints: hints
                .into_iter()
                .filter_map(|(id,)| Uuid::parse_str(&id).ok())
                .collect(),
            token,
        })))
    }
}

/// Writes a file only its owner may read.
/// Writes a new file readable by its owner only (development keys); refuses to overwrite.
pub(crate) fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
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

/// The authorizer every check starts from: the time (now, or `at`), one policy that
/// admits any token naming a user in its authority block, and `facts` about the access.
fn authorizer(token: &Biscuit, facts: &str, at: Option<SystemTime>) -> ApiResult<Authorizer> {
    let builder = match at {
        None => AuthorizerBuilder::new().time(),
        Some(at) => AuthorizerBuilder::new()
            .code_with_params(
                "time({at});",
                HashMap::from([("at".to_owned(), date(&at))]),
                HashMap::new(),
            )
            .map_err(|e| ApiError::internal("cannot build authorizer", e))?,
    };
    builder
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

/// The checks that failed, if the failure was one of checks or policies.
fn failed_checks(result: Result<usize, Token>) -> Result<Vec<FailedCheck>, Outcome> {
    match result {
        Ok(_) => Ok(Vec::new()),
        Err(Token::FailedLogic(
            Logic::Unauthorized { checks, .. } | Logic::NoMatchingPolicy { checks },
        )) => Ok(checks),
        Err(_) => Err(Outcome::Error),
    }
}

/// Far enough ahead that any "not before" a token states has passed.
const FAR_FUTURE: Duration = Duration::from_secs(8_000 * 365 * 24 * 3600);

/// Authorizes `token` for an access described by `facts`. A refusal counts as the token
/// being out of its validity period (`Expired`) when some failing check would pass at
/// the Unix epoch (an expiry) or far in the future (a "not before"): it fails because
/// of the time, not of what is being done. This holds however a holder writes the
/// check; only a bounded window ("valid between A and B") once past reads as a refusal.
fn check(token: &Biscuit, facts: &str) -> Result<(), Outcome> {
    let mut now = authorizer(token, facts, None).map_err(|_| Outcome::Error)?;
    classify(token, facts, now.authorize_with_limits(LIMITS))
}

/// The outcome of an authorization that ran now (see [`check`]); re-runs the failing
/// checks at other times only when one of them names `time`.
fn classify(token: &Biscuit, facts: &str, now: Result<usize, Token>) -> Result<(), Outcome> {
    let failing_now = failed_checks(now)?;
    if failing_now.is_empty() {
        return Ok(());
    }
    // Appended blocks hold no rules (`inspect_blocks`), so a check can only depend on
    // the time by naming `time` itself: a plain refusal costs one authorization.
    if !failing_now
        .iter()
        .any(|failed| failed.to_string().contains("time"))
    {
        return Err(Outcome::Refused);
    }
    for at in [SystemTime::UNIX_EPOCH, SystemTime::UNIX_EPOCH + FAR_FUTURE] {
        let mut then = authorizer(token, facts, Some(at)).map_err(|_| Outcome::Error)?;
        let failing_then = failed_checks(then.authorize_with_limits(LIMITS))?;
        if failing_now
            .iter()
            .any(|failed| !failing_then.contains(failed))
        {
            return Err(Outcome::Expired);
        }
    }
    Err(Outcome::Refused)
}

/// Why a token is refused by [`inspect_blocks`].
const TOO_COSTLY: &str = "token refused: at most 4 KB and 4 appended blocks, each with at most \
     8 facts or checks, 2 variables and no rules";

/// An authorization that hit biscuit's limits says nothing about the token (a busy
/// machine can cause it), so it is an internal error, logged, not a verdict.
fn over_limits() -> ApiError {
    ApiError::bug("a token authorization exceeded its time or size limits")
}

/// Largest token accepted, in base64 characters; ours are a few hundred.
const MAX_TOKEN_LEN: usize = 4_096;
/// Most blocks a holder may append.
const MAX_APPENDED_BLOCKS: usize = 4;
/// Most statements (facts and checks) in one appended block.
const MAX_BLOCK_STATEMENTS: usize = 8;
/// Most distinct variables in one appended block.
const MAX_BLOCK_VARIABLES: usize = 2;

/// What the gateway needs to know of the blocks a holder appended, read in one pass
/// over their printed source: `None` when they are too costly to authorize, otherwise
/// whether any of them mentions `resource` (may restrict which projects it reaches).
///
/// Datalog cost grows with facts to the power of a query's variables, and biscuit's
/// time limit is only checked between iterations, not inside one join: a 1.5 KB token
/// with four-variable checks kept a core busy for minutes. So appended blocks may hold
/// no rules, at most [`MAX_BLOCK_STATEMENTS`] statements and [`MAX_BLOCK_VARIABLES`]
/// variables (every narrowing in ARCHITECTURE.md needs one). The counts can only
/// over-count (a `;` or `$` inside a string), never under.
fn inspect_blocks(token: &Biscuit) -> Option<bool> {
    if token.block_count().saturating_sub(1) > MAX_APPENDED_BLOCKS {
        return None;
    }
    let mut restricts_resources = false;
    for block in 1..token.block_count() {
        let source = token.print_block_source(block).ok()?;
        let variables: std::collections::HashSet<&str> = source
            .split('$')
            .skip(1)
            .map(|rest| {
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                &rest[..end]
            })
            .collect();
        if source.contains("<-")
            || source.matches(';').count() > MAX_BLOCK_STATEMENTS
            || variables.len() > MAX_BLOCK_VARIABLES
        {
            return None;
        }
        restricts_resources |= source.contains("resource");
    }
    Some(restricts_resources)
}

impl Session {
    /// The identity of the authority block.
    pub fn identity(&self) -> Identity {
        self.0.identity
    }

    /// The earliest expiry the token's blocks state.
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.0.expires_at
    }

    /// The expiry of the authority block, which the gateway signed: the latest moment
    /// the token can be valid, and so how long its revocation must be kept.
    pub fn authority_expires_at(&self) -> DateTime<Utc> {
        self.0.authority_expires_at
    }

    /// Hex revocation ids of every block. A token is dead when any of them has been
    /// revoked: its own, or one of a token it was derived from.
    pub fn revocation_ids(&self) -> Vec<String> {
        self.0
            .token
            .revocation_identifiers()
            .iter()
            .map(hex::encode)
            .collect()
    }

    /// The revocation id of this token's last block. Revoking it kills this token and
    /// every token derived from it, and nothing it was derived from: a dashboard holding
    /// a derived token cannot sign its owner out. For a token that was not derived, it
    /// is its only id.
    pub fn own_revocation_id(&self) -> Vec<String> {
        self.revocation_ids().pop().into_iter().collect()
    }

    /// Whether the token may still be used at all; the pipeline asks before every
    /// WebSocket operation, so a socket opened with a token stops working when it
    /// expires.
    pub fn ensure_live(&self) -> ApiResult<()> {
        match check(&self.0.token, "") {
            Ok(()) | Err(Outcome::Refused) => Ok(()),
            Err(Outcome::Expired) => Err(ApiError::Unauthenticated("invalid or expired token")),
            Err(Outcome::Error) => Err(over_limits()),
        }
    }

    /// Whether an appended block may restrict which projects this token reaches; lists
    /// then authorize their candidates row by row.
    pub fn restricts_resources(&self) -> bool {
        self.0.restricts_resources
    }

    /// Project ids appended blocks declare with `scope_project(..)`: when there are any,
    /// the projects a restricted token may reach are among them.
    pub fn project_hints(&self) -> &[Uuid] {
        &self.0.project_hints
    }

    /// Runs the token's checks against this access: `FORBIDDEN` when an attenuation
    /// (read-only, project scope) refuses it, `UNAUTHENTICATED` when it has expired.
    pub fn authorize(&self, operation: Operation, resource: Resource) -> ApiResult<()> {
        let op = match operation {
            Operation::Read => "read",
            Operation::Write => "write",
        };
        let facts = format!("operation(\"{op}\");{}", resource.fact());
        match check(&self.0.token, &facts) {
            Ok(()) => Ok(()),
            Err(Outcome::Expired) => Err(ApiError::Unauthenticated("invalid or expired token")),
            Err(Outcome::Refused) => Err(ApiError::Forbidden(
                "this token does not allow this operation",
            )),
            Err(Outcome::Error) => Err(over_limits()),
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
        if self.0.token.block_count() > MAX_APPENDED_BLOCKS {
            return Err(ApiError::bad_input(format!(
                "this token already carries {MAX_APPENDED_BLOCKS} narrowing blocks, the most \
                 accepted; derive the new token from one with fewer"
            )));
        }
        let expires_at = ttl
            .map(super::expiry_after)
            .map_or(self.0.expires_at, |requested| {
                requested.min(self.0.expires_at)
            });
        let mut code = String::from("expires({exp}); check if time($t), $t < {exp};");
        let mut params: HashMap<String, Term> =
            HashMap::from([("exp".to_owned(), date(&expires_at.into()))]);
        if read_only {
            code.push_str(r#"check if operation("read");"#);
        }
        if let Some(project) = project_id {
            code.push_str(
                r#"scope_project({project});
                   check if resource("project", {project}) or resource("account");"#,
            );
            params.insert("project".to_owned(), string(&project.to_string()));
        }
        let token = BlockBuilder::new()
            .code_with_params(code, params, HashMap::new())
            .and_then(|block| self.0.token.append(block))
            .and_then(|t| t.to_base64())
            .map_err(|e| ApiError::internal("cannot attenuate token", e))?;
        Ok((token, expires_at))
    }
}
