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
//!
//! [`TokenService::verify`] remembers what it verified (`cache.rs`): a token presented
//! again costs a hash and a lookup, and its expiry is still checked on every use.

use std::{
    collections::HashMap,
    fs,
    path::Path,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime},
};

use anyhow::Context as _;
use biscuit_auth::{
    Algorithm, Authorizer, AuthorizerBuilder, AuthorizerLimits, Biscuit, BlockBuilder, KeyPair,
    PrivateKey,
    builder::{Binary, Check, CheckKind, Expression, Op, Predicate, Term, date, string},
    error::{FailedCheck, Logic, Token},
};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    Identity, Operation, Resource, Role,
    cache::{CacheKey, VerifiedTokens},
};
use crate::error::{ApiError, ApiResult};

/// Limits for every authorization. What bounds the work is [`inspect_blocks`] (our
/// tokens are a handful of facts, and holders' blocks are refused before they could
/// cost much), plus the facts and iterations here. The time limit is wall-clock time
/// and only checked between iterations, so it is kept far above any real
/// authorization (tens of microseconds): the library's 1 ms default, and the 50 ms
/// used before, failed valid tokens with `INTERNAL` whenever the process was paused
/// that long (a busy or CPU-throttled machine; `bench reads` under callgrind).
const LIMITS: AuthorizerLimits = AuthorizerLimits {
    max_facts: 1_000,
    max_iterations: 100,
    max_time: Duration::from_secs(1),
};

/// How many verified tokens a [`TokenService`] remembers unless told otherwise
/// (`FLASHFUSION_TOKEN_CACHE`).
pub const DEFAULT_TOKEN_CACHE: usize = 10_000;

/// Holds the root key pair; mints and verifies tokens, remembering the verified ones.
pub struct TokenService {
    root: KeyPair,
    default_ttl: Duration,
    verified: VerifiedTokens,
}

/// A verified token and the identity its authority block names. Cloning it is cheap
/// (one reference count): the pipeline hands it to every operation and socket.
#[derive(Clone)]
pub struct Session(Arc<Verified>);

/// What verifying a token established; never changes afterwards.
struct Verified {
    token: Biscuit,
    /// The token's revocation ids (hex), one per block, computed once: every operation's
    /// transaction checks them, and the rate limit and the subscription cohorts' keys
    /// share them.
    revocation_ids: Arc<[String]>,
    /// The authority block's revocation id (the first of them), shared: what every
    /// token derived from the same signed token has in common, so its rate-limit key.
    authority_id: Arc<str>,
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
    /// The exact moment the token's time checks start failing, when every one of them
    /// has the form `check if time($t), $t < <date>` (as the gateway and
    /// `createScopedToken` write them); `None` when some check uses the time otherwise,
    /// and liveness then needs the authorizer. Only sessions with one are cached.
    live_until: Option<DateTime<Utc>>,
    /// Where the verification cache keeps this session (`None`: caching is off).
    cache_key: Option<CacheKey>,
    /// Verdicts of [`Session::authorize`] already reached, kept only when `live_until`
    /// is known: the token's other checks do not depend on the time, so a verdict holds
    /// until then. At most [`MAX_REMEMBERED_VERDICTS`].
    verdicts: Mutex<HashMap<(Operation, Resource), bool>>,
    /// The accesses to the account's resources [`Session::authorize`] granted, kept only
    /// when `live_until` is not known: what [`Session::has_expired`] asks again. A
    /// project's are not kept: a subscription asks again for each event's project
    /// (`kit::feed::ProjectScope`) and an operation for its own. So there are at most
    /// one per operation and resource kind (14).
    grants: Mutex<Vec<(Operation, Resource)>>,
}

/// Most access verdicts one session remembers across operations; beyond, new accesses
/// are authorized every time (a list over many projects, say).
const MAX_REMEMBERED_VERDICTS: usize = 64;

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
        Ok(Self::from_key_pair(root, default_ttl))
    }

    /// A service around a given key pair (tests, embedding), remembering up to
    /// [`DEFAULT_TOKEN_CACHE`] verified tokens.
    pub fn from_key_pair(root: KeyPair, default_ttl: Duration) -> Self {
        Self {
            verified: VerifiedTokens::new(&root.public(), DEFAULT_TOKEN_CACHE),
            root,
            default_ttl,
        }
    }

    /// The same service remembering at most `capacity` verified tokens (least recently
    /// used first out); `0` verifies every token from scratch.
    pub fn with_cache_capacity(self, capacity: usize) -> Self {
        Self {
            verified: VerifiedTokens::new(&self.root.public(), capacity),
            ..self
        }
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
    ///
    /// A token verified before is served from the cache while it is live: its
    /// signatures and identity cannot have changed, and its expiry is compared with the
    /// exact one its checks enforce. An expired one is refused and forgotten.
    pub fn verify(&self, token: &str) -> ApiResult<Session> {
        self.verify_at(token, Utc::now())
    }

    /// [`TokenService::verify`], with `now` the time a cached session's expiry is
    /// judged at (a token not cached is verified at the real time).
    fn verify_at(&self, token: &str, now: DateTime<Utc>) -> ApiResult<Session> {
        let token = token.trim();
        if token.len() > MAX_TOKEN_LEN {
            return Err(ApiError::Unauthenticated(TOO_COSTLY));
        }
        let key = self.verified.key(token);
        if let Some(key) = &key
            && let Some(session) = self.verified.get(key)
        {
            if session.0.live_until.is_some_and(|until| now < until) {
                return Ok(session);
            }
            self.verified.remove(key);
            return Err(INVALID_TOKEN);
        }
        let session = self.verify_signed(token, key)?;
        if let Some(key) = key
            && session.0.live_until.is_some()
        {
            self.verified.insert(key, session.clone());
        }
        Ok(session)
    }

    /// Forgets `session`'s token, so its next use is verified from scratch: for a token
    /// found revoked or signed out, which has no business in the cache.
    pub fn forget(&self, session: &Session) {
        if let Some(key) = &session.0.cache_key {
            self.verified.remove(key);
        }
    }

    /// Whether `token` is in the verification cache (for tests and diagnostics).
    pub fn is_cached(&self, token: &str) -> bool {
        self.verified
            .key(token.trim())
            .is_some_and(|key| self.verified.contains(&key))
    }

    /// How many verified tokens are cached (for tests and diagnostics).
    pub fn cached_tokens(&self) -> usize {
        self.verified.len()
    }

    /// The full verification: signatures, cost bounds, one authorization, identity.
    fn verify_signed(&self, token: &str, cache_key: Option<CacheKey>) -> ApiResult<Session> {
        let token = Biscuit::from_base64(token, self.root.public()).map_err(|_| INVALID_TOKEN)?;
        let restricts_resources =
            inspect_blocks(&token).ok_or(ApiError::Unauthenticated(TOO_COSTLY))?;
        // Checks that depend on the operation fail here without meaning anything; only
        // an expired check makes the token dead whatever it is used for. The queries
        // below read the world this one authorization computed.
        let mut authorizer = authorizer(&token, "", None).map_err(|_| INVALID_TOKEN)?;
        let result = authorizer.authorize_with_limits(LIMITS);
        match classify(&token, "", result) {
            Ok(()) | Err(Outcome::Refused) => {}
            Err(Outcome::Expired) => return Err(INVALID_TOKEN),
            Err(Outcome::Error) => return Err(over_limits()),
        }
        // Identity from the authority block only (`query`), never from appended blocks.
        let users: Vec<(String,)> = authorizer
            .query_with_limits("data($u) <- user($u)", LIMITS)
            .map_err(|_| INVALID_TOKEN)?;
        let roles: Vec<(String,)> = authorizer
            .query_with_limits("data($r) <- role($r)", LIMITS)
            .map_err(|_| INVALID_TOKEN)?;
        let authority_expiries: Vec<(SystemTime,)> = authorizer
            .query_with_limits("data($e) <- expires($e)", LIMITS)
            .map_err(|_| INVALID_TOKEN)?;
        let (Some((user,)), Some((role,)), Some((authority_expires_at,))) =
            (single(users), single(roles), single(authority_expiries))
        else {
            return Err(INVALID_TOKEN);
        };
        // Facts of appended blocks may only narrow what the gateway does: the earliest
        // `expires` is reported (checks enforce the real expiry), and `scope_project`
        // hints only shrink the candidates that lists then authorize row by row.
        let expiries: Vec<(SystemTime,)> = authorizer
            .query_all_with_limits("data($e) <- expires($e)", LIMITS)
            .map_err(|_| INVALID_TOKEN)?;
        let expires_at = expiries
            .into_iter()
            .map(|(e,)| e)
            .min()
            .ok_or(INVALID_TOKEN)?;
        let hints: Vec<(String,)> = authorizer
            .query_all_with_limits("data($p) <- scope_project($p)", LIMITS)
            .map_err(|_| INVALID_TOKEN)?;
        let (_, _, checks, _) = authorizer.dump();
        let revocation_ids: Arc<[String]> = token
            .revocation_identifiers()
            .iter()
            .map(hex::encode)
            .collect();
        let authority_id = Arc::from(revocation_ids.first().ok_or(INVALID_TOKEN)?.as_str());
        Ok(Session(Arc::new(Verified {
            live_until: time_limit(&checks),
            cache_key,
            verdicts: Mutex::default(),
            grants: Mutex::default(),
            identity: Identity::user(
                Uuid::parse_str(&user).map_err(|_| INVALID_TOKEN)?,
                Role::parse(&role).ok_or(INVALID_TOKEN)?,
            ),
            expires_at: expires_at.into(),
            authority_expires_at: authority_expires_at.into(),
            restricts_resources,
            project_hints: hints
                .into_iter()
                .filter_map(|(id,)| Uuid::parse_str(&id).ok())
                .collect(),
            authority_id,
            revocation_ids,
            token,
        })))
    }
}

/// The refusal of a token that is not (or no longer) valid, wherever it is found so:
/// verification, expiry, revocation, a demoted account.
pub const INVALID_TOKEN: ApiError = ApiError::Unauthenticated("invalid or expired token");

/// The moment the time checks among `checks` (every block's) start failing, when each
/// is exactly `check if time($t), $t < <date>`: the earliest date. `None` when a check
/// uses the time in any other way (its verdict over time is then left to the
/// authorizer). Only `time` can make a check's verdict change with the clock: appended
/// blocks hold no rules (`inspect_blocks`) and the gateway writes none.
fn time_limit(checks: &[Check]) -> Option<DateTime<Utc>> {
    let mut limit: Option<u64> = None;
    for check in checks {
        let names_time = check
            .queries
            .iter()
            .any(|query| query.body.iter().any(|p| p.name == "time"));
        if !names_time {
            continue;
        }
        let bound = expiry_check_date(check)?;
        limit = Some(limit.map_or(bound, |limit| limit.min(bound)));
    }
    DateTime::from_timestamp(i64::try_from(limit?).ok()?, 0)
}

/// The date of a check written exactly `check if time($t), $t < <date>`.
fn expiry_check_date(check: &Check) -> Option<u64> {
    let [query] = check.queries.as_slice() else {
        return None;
    };
    let [Predicate { name, terms }] = query.body.as_slice() else {
        return None;
    };
    let ([Term::Variable(var)], [Expression { ops }]) =
        (terms.as_slice(), query.expressions.as_slice())
    else {
        return None;
    };
    if check.kind != CheckKind::One || name != "time" || !query.scopes.is_empty() {
        return None;
    }
    match ops.as_slice() {
        [
            Op::Value(Term::Variable(left)),
            Op::Value(Term::Date(date)),
            Op::Binary(Binary::LessThan),
        ] if left == var => Some(*date),
        _ => None,
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

/// The facts the authorizer is given for `operation` on `resource`.
fn access_facts(operation: Operation, resource: Resource) -> String {
    let op = match operation {
        Operation::Read => "read",
        Operation::Write => "write",
    };
    format!("operation(\"{op}\");{}", resource.fact())
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

    /// When the token stops working by the clock: the moment its time checks start
    /// failing when all of them have the gateway's form (a holder may append one without
    /// stating an `expires`), else the earliest expiry its blocks state. A socket closes
    /// then, or earlier when the authorizer finds the token expired
    /// ([`Session::ends_by_the_clock`]).
    pub fn ends_at(&self) -> DateTime<Utc> {
        self.0
            .live_until
            .map_or(self.0.expires_at, |until| until.min(self.0.expires_at))
    }

    /// The expiry of the authority block, which the gateway signed: the latest moment
    /// the token can be valid, and so how long its revocation must be kept.
    pub fn authority_expires_at(&self) -> DateTime<Utc> {
        self.0.authority_expires_at
    }

    /// Hex revocation ids of every block. A token is dead when any of them has been
    /// revoked: its own, or one of a token it was derived from.
    pub fn revocation_ids(&self) -> &[String] {
        &self.0.revocation_ids
    }

    /// The revocation id of the token's authority block, which the gateway signed: the
    /// same for every token derived from it, offline or not, so a holder cannot mint
    /// fresh rate-limit buckets by appending blocks. Shared (one reference count).
    pub fn authority_id(&self) -> Arc<str> {
        self.0.authority_id.clone()
    }

    /// [`Session::revocation_ids`], shared rather than copied (one reference count).
    pub fn shared_revocation_ids(&self) -> Arc<[String]> {
        self.0.revocation_ids.clone()
    }

    /// The revocation id of this token's last block. Revoking it kills this token and
    /// every token derived from it, and nothing it was derived from: a dashboard holding
    /// a derived token cannot sign its owner out. For a token that was not derived, it
    /// is its only id.
    pub fn own_revocation_id(&self) -> Option<&str> {
        self.0.revocation_ids.last().map(String::as_str)
    }

    /// Whether the token may still be used at all; the pipeline asks before every
    /// WebSocket operation, so a socket opened with a token stops working when it
    /// expires.
    pub fn ensure_live(&self) -> ApiResult<()> {
        match self.liveness() {
            Ok(()) => Ok(()),
            Err(Outcome::Expired) => Err(INVALID_TOKEN),
            Err(_) => Err(over_limits()),
        }
    }

    /// Whether the token no longer works for what it has been used for: its time checks
    /// fail now ([`Session::ensure_live`]), or an access [`Session::authorize`] granted
    /// it is refused now. A token's checks and the facts of an access never change, so
    /// only the clock can turn a grant into a refusal: a check that names the time
    /// together with the access (`check if operation("read"), time($t), $t < ..`) or
    /// holds only within a window. An authorization that hit biscuit's limits tells
    /// nothing, so it is not taken for an expiry.
    pub fn has_expired(&self) -> bool {
        if matches!(self.liveness(), Err(Outcome::Expired)) {
            return true;
        }
        if self.ends_by_the_clock() {
            return false;
        }
        let granted = self.grants().clone();
        granted.into_iter().any(|(operation, resource)| {
            matches!(
                check(&self.0.token, &access_facts(operation, resource)),
                Err(Outcome::Refused | Outcome::Expired)
            )
        })
    }

    /// Whether [`Session::ends_at`] is the exact moment the token stops working. It is
    /// not when a time check has another form than the gateway's: only the authorizer
    /// can tell then ([`Session::has_expired`]), so a socket holding such a token asks
    /// it at intervals, and a subscription judging projects one by one does not reuse
    /// its verdicts (`kit::feed::ProjectScope`).
    pub fn ends_by_the_clock(&self) -> bool {
        self.0.live_until.is_some()
    }

    /// `Ok` while the token's time checks pass; `Expired` once they fail.
    fn liveness(&self) -> Result<(), Outcome> {
        if let Some(until) = self.0.live_until {
            // Exactly what the checks decide: `time(now)` is whole seconds, `until` too.
            return if Utc::now() < until {
                Ok(())
            } else {
                Err(Outcome::Expired)
            };
        }
        match check(&self.0.token, "") {
            Err(Outcome::Refused) => Ok(()),
            outcome => outcome,
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
    ///
    /// A token whose exact expiry is known (`live_until`) is judged on the clock first,
    /// and then by the verdict it already got for this access, if any: its remaining
    /// checks do not depend on the time, so a session the cache hands to operation
    /// after operation runs its datalog once per access, not once per operation.
    pub fn authorize(&self, operation: Operation, resource: Resource) -> ApiResult<()> {
        const REFUSED: ApiError = ApiError::Forbidden("this token does not allow this operation");
        if self.0.live_until.is_some() {
            self.ensure_live()?;
            if let Some(allowed) = self.verdicts().get(&(operation, resource)) {
                return if *allowed { Ok(()) } else { Err(REFUSED) };
            }
        }
        let allowed = match check(&self.0.token, &access_facts(operation, resource)) {
            Ok(()) => true,
            Err(Outcome::Refused) => false,
            Err(Outcome::Expired) => return Err(INVALID_TOKEN),
            Err(Outcome::Error) => return Err(over_limits()),
        };
        if self.0.live_until.is_some() {
            let mut verdicts = self.verdicts();
            if verdicts.len() < MAX_REMEMBERED_VERDICTS {
                verdicts.insert((operation, resource), allowed);
            }
        } else if allowed && !matches!(resource, Resource::Project(_)) {
            let mut grants = self.grants();
            if !grants.contains(&(operation, resource)) {
                grants.push((operation, resource));
            }
        }
        if allowed { Ok(()) } else { Err(REFUSED) }
    }

    /// The watched grants, locked. Nothing panics while they are held, so a poisoned
    /// lock is used as it is.
    fn grants(&self) -> std::sync::MutexGuard<'_, Vec<(Operation, Resource)>> {
        self.0.grants.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The remembered verdicts, locked. Nothing panics while they are held, so a
    /// poisoned lock is used as it is.
    fn verdicts(&self) -> std::sync::MutexGuard<'_, HashMap<(Operation, Resource), bool>> {
        self.0
            .verdicts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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
            .map_err(|e| match e {
                // Sealing (`Biscuit::seal`) is its holder's choice to allow no more blocks.
                Token::AlreadySealed => ApiError::bad_input(
                    "this token is sealed, so it cannot be narrowed; derive the new token \
                     from the unsealed one",
                ),
                e => ApiError::internal("cannot attenuate token", e),
            })?;
        Ok((token, expires_at))
    }
}

#[cfg(test)]
mod tests {
    use biscuit_auth::{Biscuit, BlockBuilder, KeyPair};

    use super::*;

    fn service(capacity: usize) -> TokenService {
        TokenService::from_key_pair(KeyPair::new(), Duration::from_secs(3600))
            .with_cache_capacity(capacity)
    }

    fn mint(tokens: &TokenService) -> String {
        tokens
            .issue(Uuid::now_v7(), Role::User, None)
            .map(|(token, _)| token)
            .expect("mint")
    }

    fn verified(tokens: &TokenService, token: &str) -> Session {
        tokens
            .verify(token)
            .unwrap_or_else(|e| panic!("refused: {}", e.message()))
    }

    fn refused(result: ApiResult<Session>) -> bool {
        matches!(result, Err(ApiError::Unauthenticated(_)))
    }

    #[test]
    fn a_sealed_token_cannot_be_narrowed_and_says_so() {
        let tokens = service(10);
        let sealed = Biscuit::from_base64(mint(&tokens), tokens.root.public())
            .and_then(|token| token.seal())
            .and_then(|token| token.to_base64())
            .expect("sealed");
        let session = verified(&tokens, &sealed);
        assert!(matches!(
            session.attenuate(None, true, None),
            Err(ApiError::BadUserInput(message)) if message.contains("sealed")
        ));
    }

    #[test]
    fn a_token_presented_again_comes_from_the_cache() {
        let tokens = service(10);
        let token = mint(&tokens);
        let first = verified(&tokens, &token);
        assert!(tokens.is_cached(&token));
        assert_eq!(first.0.live_until, Some(first.expires_at()));
        let second = verified(&tokens, &format!(" {token}\n"));
        assert!(Arc::ptr_eq(&first.0, &second.0), "verified again");
    }

    #[test]
    fn a_cached_token_that_expired_is_refused_and_forgotten() {
        let tokens = service(10);
        let token = mint(&tokens);
        let session = verified(&tokens, &token);
        let just_before = session.expires_at() - chrono::Duration::seconds(1);
        assert!(tokens.verify_at(&token, just_before).is_ok());
        assert!(refused(tokens.verify_at(&token, session.expires_at())));
        assert!(!tokens.is_cached(&token));
    }

    #[test]
    fn a_tampered_token_is_refused_while_the_original_is_cached() {
        let tokens = service(10);
        let token = mint(&tokens);
        let _ = verified(&tokens, &token);
        let middle = token.len() / 2;
        for (at, byte) in [(middle, b'A'), (middle, b'B'), (token.len() - 2, b'A')] {
            let mut tampered = token.clone().into_bytes();
            tampered[at] = if tampered[at] == byte { b'C' } else { byte };
            let tampered = String::from_utf8(tampered).unwrap_or_default();
            assert!(refused(tokens.verify(&tampered)), "accepted: {tampered}");
            assert!(!tokens.is_cached(&tampered));
        }
        assert!(tokens.is_cached(&token));
    }

    #[test]
    fn the_cache_never_exceeds_its_bound() {
        let tokens = service(3);
        let minted: Vec<String> = (0..10).map(|_| mint(&tokens)).collect();
        for token in &minted {
            let _ = verified(&tokens, token);
            assert!(tokens.cached_tokens() <= 3);
        }
        assert_eq!(tokens.cached_tokens(), 3);
        // The least recently used went first; every token still verifies.
        assert!(!tokens.is_cached(&minted[0]) && tokens.is_cached(&minted[9]));
        assert!(minted.iter().all(|token| tokens.verify(token).is_ok()));
        let off = service(0);
        let token = mint(&off);
        let first = verified(&off, &token);
        let second = verified(&off, &token);
        assert!(!Arc::ptr_eq(&first.0, &second.0) && off.cached_tokens() == 0);
    }

    #[test]
    fn a_forgotten_token_is_verified_again() {
        let tokens = service(10);
        let token = mint(&tokens);
        let session = verified(&tokens, &token);
        tokens.forget(&session);
        assert!(!tokens.is_cached(&token));
        let again = verified(&tokens, &token);
        assert!(!Arc::ptr_eq(&session.0, &again.0));
    }

    #[test]
    fn a_narrowed_token_lives_until_its_earliest_expiry() {
        let tokens = service(10);
        let owner = verified(&tokens, &mint(&tokens));
        let (scoped, expires_at) = owner
            .attenuate(Some(Uuid::now_v7()), true, Some(Duration::from_secs(60)))
            .expect("attenuate");
        let session = verified(&tokens, &scoped);
        assert!(expires_at < owner.expires_at());
        assert_eq!(session.0.live_until, Some(expires_at));
        assert!(tokens.is_cached(&scoped));
    }

    #[test]
    fn verdicts_are_remembered_per_access_and_bounded() {
        let tokens = service(10);
        let owner = verified(&tokens, &mint(&tokens));
        let project = Uuid::now_v7();
        let (scoped, _) = owner
            .attenuate(Some(project), true, None)
            .expect("attenuate");
        let session = verified(&tokens, &scoped);
        for _ in 0..2 {
            assert!(
                session
                    .authorize(Operation::Read, Resource::Project(project))
                    .is_ok()
            );
            assert!(matches!(
                session.authorize(Operation::Write, Resource::Project(project)),
                Err(ApiError::Forbidden(_))
            ));
            assert!(matches!(
                session.authorize(Operation::Read, Resource::Billing),
                Err(ApiError::Forbidden(_))
            ));
        }
        assert_eq!(session.verdicts().len(), 3);
        for _ in 0..100 {
            let other = Resource::Project(Uuid::now_v7());
            assert!(session.authorize(Operation::Read, other).is_err());
        }
        assert_eq!(session.verdicts().len(), MAX_REMEMBERED_VERDICTS);
        assert!(
            session
                .authorize(Operation::Read, Resource::Project(project))
                .is_ok()
        );
    }

    #[test]
    fn a_token_using_the_time_otherwise_is_never_cached() {
        let tokens = service(10);
        let token = mint(&tokens);
        let parsed = Biscuit::from_base64(&token, tokens.root.public()).expect("parse");
        // Same meaning as an expiry, another form: only the authorizer may judge it.
        let block = BlockBuilder::new()
            .code("check if time($t), $t <= 2099-01-01T00:00:00Z;")
            .expect("block");
        let other = parsed
            .append(block)
            .and_then(|t| t.to_base64())
            .expect("append");
        let session = verified(&tokens, &other);
        assert_eq!(session.0.live_until, None);
        assert!(!tokens.is_cached(&other));
        assert!(session.ensure_live().is_ok());
        // Its grants on the account's resources are kept for the socket's watcher to
        // ask again, once each; a project's are asked again where they are used.
        for _ in 0..2 {
            for resource in [Resource::Account, Resource::Notifications] {
                assert!(session.authorize(Operation::Read, resource).is_ok());
            }
            let project = Resource::Project(Uuid::now_v7());
            assert!(session.authorize(Operation::Read, project).is_ok());
        }
        assert_eq!(
            *session.grants(),
            [
                (Operation::Read, Resource::Account),
                (Operation::Read, Resource::Notifications)
            ]
        );
        assert!(session.verdicts().is_empty(), "no verdict is reused");
        assert!(!session.has_expired());
    }
}
