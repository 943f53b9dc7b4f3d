//! [`RequestContext`]: everything a resolver may use about the running operation (the
//! caller, the token's checks, the operation's transaction), built by the pipeline only.
//!
//! Resolvers never open transactions or read headers. The token's verdicts are
//! remembered for the whole operation, so a resource is authorized at most once per
//! request however many fields and aliases ask about it.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
};

use async_graphql::Context;
use uuid::Uuid;

use crate::{
    auth::{Identity, Operation, Resource, Session},
    db::{Tx, TxRef},
    error::{ApiError, ApiResult},
    limits::RateLimits,
    state::AppState,
};

/// What one operation runs with; built by the pipeline only.
pub struct RequestContext {
    session: Option<Session>,
    tx: TxRef,
    client: IpAddr,
    /// The code of the first root mutation field that failed; later ones do not run.
    pub(crate) failed: OnceLock<String>,
    /// The token's verdict for each access asked about so far.
    verdicts: Mutex<HashMap<(Operation, Resource), ApiResult<()>>>,
    /// How many more resources may still be authorized one by one for lists
    /// (see [`super::authz`]). Held across a list's authorizations: query fields run
    /// concurrently, and a second list must wait for the first one's verdicts instead
    /// of paying for the same projects again.
    pub(super) budget: tokio::sync::Mutex<usize>,
    /// Whether the operation has hashed or verified a password (see
    /// [`RequestContext::spend_password_hash`]).
    hashed: AtomicBool,
}

impl RequestContext {
    /// The context of an operation by `session` (`None`: anonymous) from the client at
    /// `client`, running in `tx`.
    pub(crate) fn new(session: Option<Session>, tx: TxRef, client: IpAddr) -> Self {
        Self {
            session,
            tx,
            client,
            failed: OnceLock::new(),
            verdicts: Mutex::default(),
            budget: tokio::sync::Mutex::new(super::authz::AUTHORIZATION_BUDGET),
            hashed: AtomicBool::new(false),
        }
    }

    /// The context of the running operation.
    pub fn of<'a>(ctx: &Context<'a>) -> ApiResult<&'a Self> {
        ctx.data::<Self>()
            .map_err(|_| ApiError::bug("request context missing"))
    }

    /// The caller as the database sees it.
    pub fn identity(&self) -> Identity {
        self.session
            .as_ref()
            .map_or(Identity::ANONYMOUS, Session::identity)
    }

    /// The client's address ([`crate::client::address`]).
    pub fn client(&self) -> IpAddr {
        self.client
    }

    /// The verified token, if any.
    pub fn session_opt(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// The verified token, or `UNAUTHENTICATED`.
    pub fn session(&self) -> ApiResult<&Session> {
        self.session
            .as_ref()
            .ok_or(ApiError::Unauthenticated("sign in first"))
    }

    /// The signed-in account's id, or `UNAUTHENTICATED`.
    pub fn user_id(&self) -> ApiResult<Uuid> {
        self.identity()
            .user_id()
            .ok_or(ApiError::Unauthenticated("sign in first"))
    }

    /// Runs the token's checks for this access, once per operation: later asks get the
    /// remembered verdict. Anonymous callers may read; writing needs a token.
    pub fn authorize(&self, operation: Operation, resource: Resource) -> ApiResult<()> {
        let Some(session) = &self.session else {
            return match operation {
                Operation::Read => Ok(()),
                Operation::Write => Err(ApiError::Unauthenticated("sign in first")),
            };
        };
        if let Some(verdict) = self.remembered(operation, resource) {
            return verdict;
        }
        let verdict = session.authorize(operation, resource);
        self.remember(operation, resource, verdict.clone());
        verdict
    }

    /// The verdict already reached for this access, if any.
    pub(super) fn remembered(
        &self,
        operation: Operation,
        resource: Resource,
    ) -> Option<ApiResult<()>> {
        self.verdicts
            .lock()
            .ok()
            .and_then(|verdicts| verdicts.get(&(operation, resource)).cloned())
    }

    /// Keeps a verdict for the rest of the operation. Internal errors (limits hit on a
    /// busy machine) say nothing about the token and are not kept.
    pub(super) fn remember(
        &self,
        operation: Operation,
        resource: Resource,
        verdict: ApiResult<()>,
    ) {
        if matches!(verdict, Err(ApiError::Internal(_))) {
            return;
        }
        if let Ok(mut verdicts) = self.verdicts.lock() {
            verdicts.insert((operation, resource), verdict);
        }
    }

    /// Claims the operation's one argon2 hash or verification, before it is made: a
    /// hash costs tens of milliseconds of CPU and 19 MiB, so aliased `signIn`s or
    /// `signUp`s must not multiply it. The second claim is `BAD_USER_INPUT`.
    ///
    /// A token holder's operation has counted against its token's rate limit only,
    /// and each `signIn` returns a token with a limit of its own: sending each sign-in
    /// with the token the last one returned would hash without end. So the hash also
    /// counts against the client address's limit (`limits`), which an anonymous
    /// caller's operation has counted against already.
    pub fn spend_password_hash(&self, limits: &RateLimits) -> ApiResult<()> {
        if self.hashed.swap(true, Ordering::Relaxed) {
            return Err(ApiError::bad_input(
                "only one signIn or signUp may run per operation; send each in its own request",
            ));
        }
        if self.session.is_some() {
            limits
                .check_address(self.client)
                .map_err(|wait| crate::limits::rate_limited(wait).0)?;
        }
        Ok(())
    }

    /// The operation's transaction, opened by its first use ([`crate::db::PendingTx`]).
    pub async fn tx(&self) -> ApiResult<Arc<Tx>> {
        self.tx.get().await
    }

    /// The weak handle, for DataLoaders and identity switches.
    pub fn tx_ref(&self) -> &TxRef {
        &self.tx
    }
}

/// The shared services, from the schema data.
pub fn app_state<'a>(ctx: &Context<'a>) -> ApiResult<&'a Arc<AppState>> {
    ctx.data::<Arc<AppState>>()
        .map_err(|_| ApiError::bug("application state missing"))
}

/// Parses a client-supplied `ID` as a UUID, naming the field on failure.
pub fn parse_id(field: &str, id: &async_graphql::ID) -> ApiResult<Uuid> {
    Uuid::parse_str(id.as_str())
        .map_err(|_| ApiError::bad_input(format!("{field}: not a valid id")))
}

/// [`parse_id`] for an optional argument (a filter such as `projectId`).
pub fn parse_optional_id(field: &str, id: Option<&async_graphql::ID>) -> ApiResult<Option<Uuid>> {
    id.map(|id| parse_id(field, id)).transpose()
}
