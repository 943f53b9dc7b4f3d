//! The one error type of the gateway and its single mapping to GraphQL.
//!
//! Every resolver and service returns [`ApiError`]; [`ApiError::code`] is the only place
//! that decides the stable `extensions.code` a client sees (listed in `ERRORS.md`), and
//! the `From<ApiError> for async_graphql::Error` impl is the only place that turns it
//! into a GraphQL error. Internal errors are logged with their full chain here and reach
//! the client only as `INTERNAL`. This module never formats database text into a
//! client-visible message.

use std::sync::Arc;

use async_graphql::ErrorExtensions;
use sea_orm::{DbErr, RuntimeErr, SqlErr};

/// Result alias used across the gateway.
pub type ApiResult<T> = Result<T, ApiError>;

/// Everything that can go wrong while serving a request, sorted by what the client
/// should do about it.
///
/// It deliberately does not implement `Display`: async-graphql converts any `Display`
/// type into an error *without* a code, so without it the only way into a GraphQL
/// error is the `From` impl below, which sets the code. `Clone` is what async-graphql
/// asks of a resolver's error type.
#[derive(Debug, Clone)]
pub enum ApiError {
    /// No valid identity: missing where required, expired, tampered, revoked or signed
    /// by a foreign key. Deliberately never says which.
    Unauthenticated(&'static str),
    /// The identity is known but its token or role does not allow this.
    Forbidden(&'static str),
    /// The row does not exist or the caller may not see it (as RLS would hide it).
    NotFound(&'static str),
    /// The input is malformed; the message says which field and why.
    BadUserInput(String),
    /// A uniqueness rule would be broken.
    Conflict(&'static str),
    /// A state machine refuses the requested move.
    InvalidTransition(String),
    /// The caller is sending too much, too fast, or reading too slowly; the message
    /// says which.
    RateLimited(String),
    /// Over a rate limit that refills: `RATE_LIMITED`, with the whole seconds until the
    /// next operation is allowed in `extensions.retryAfter`.
    RateLimitedFor { message: String, seconds: u64 },
    /// Anything else: a bug or an outage. Logged in full, shown as `INTERNAL`.
    Internal(Arc<anyhow::Error>),
    /// An automatic persisted query's hash this replica does not know: the client sends
    /// the query with its hash again. Code and message are Apollo's, which its clients
    /// recognise.
    PersistedQueryNotFound,
}

impl ApiError {
    /// The stable `extensions.code` of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::NotFound(_) => "NOT_FOUND",
            Self::BadUserInput(_) => "BAD_USER_INPUT",
            Self::Conflict(_) => "CONFLICT",
            Self::InvalidTransition(_) => "INVALID_TRANSITION",
            Self::RateLimited(_) | Self::RateLimitedFor { .. } => "RATE_LIMITED",
            Self::Internal(_) => "INTERNAL",
            Self::PersistedQueryNotFound => "PERSISTED_QUERY_NOT_FOUND",
        }
    }

    /// The code of errors the GraphQL engine raises itself (syntax, validation, argument
    /// coercion), which carry none: they are the client's input.
    pub fn engine_error_code() -> &'static str {
        Self::BadUserInput(String::new()).code()
    }

    /// What the client reads in `message`.
    pub fn message(&self) -> String {
        match self {
            Self::Unauthenticated(m) | Self::Forbidden(m) | Self::Conflict(m) => (*m).to_owned(),
            Self::NotFound(what) => format!("{what} not found"),
            Self::BadUserInput(m) | Self::InvalidTransition(m) => m.clone(),
            Self::RateLimited(message) | Self::RateLimitedFor { message, .. } => message.clone(),
            Self::Internal(_) => "internal error".to_owned(),
            Self::PersistedQueryNotFound => "PersistedQueryNotFound".to_owned(),
        }
    }

    /// An internal error with a context line, logged in full when it reaches a client.
    pub fn internal(context: &'static str, err: impl Into<anyhow::Error>) -> Self {
        Self::Internal(Arc::new(err.into().context(context)))
    }

    /// An internal error from a message (an invariant the code relies on was broken).
    pub fn bug(message: &'static str) -> Self {
        Self::Internal(Arc::new(anyhow::anyhow!(message)))
    }

    /// Shorthand for a `BAD_USER_INPUT` error.
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::BadUserInput(message.into())
    }
}

/// Database errors map here and nowhere else: unique violations become `CONFLICT`
/// named by their constraint, RLS refusals become `FORBIDDEN`, text Postgres cannot
/// store (a NUL that validation did not catch) `BAD_USER_INPUT`, a row that refers to
/// one deleted since it was read (a project deleted while a task is created under it)
/// `NOT_FOUND`, the rest is internal.
impl From<DbErr> for ApiError {
    fn from(err: DbErr) -> Self {
        if let Some(SqlErr::UniqueConstraintViolation(detail)) = err.sql_err() {
            return Self::Conflict(conflict_message(&detail));
        }
        match sqlstate(&err).as_deref() {
            // insufficient_privilege, which includes "new row violates row-level
            // security policy".
            Some("42501") => Self::Forbidden("the database refused this operation for your role"),
            // character_not_in_repertoire (NUL in text), untranslatable_character (NUL
            // in jsonb): only a value a client sent can hold one.
            Some("22021" | "22P05") => Self::bad_input("a value holds the NUL character"),
            // foreign_key_violation: every write checks what it refers to first, so
            // only a concurrent delete gets here.
            Some("23503") => Self::NotFound("the row it refers to"),
            _ => Self::internal("database error", err),
        }
    }
}

/// Maps a unique-violation detail to a client message by constraint name.
fn conflict_message(detail: &str) -> &'static str {
    if detail.contains("users_email_lower_key") || detail.contains("users.email") {
        "an account with this email already exists"
    } else if detail.contains("integrations_user_id_provider_key")
        || detail.contains("integrations.user_id, integrations.provider")
    {
        "an integration with this provider is already connected"
    } else {
        "a row with these values already exists"
    }
}

/// The Postgres SQLSTATE of a statement's error, if it has one.
fn sqlstate(err: &DbErr) -> Option<String> {
    let runtime = match err {
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => e,
        _ => return None,
    };
    runtime
        .as_database_error()
        .and_then(|db| db.code())
        .map(|code| code.into_owned())
}

impl From<ApiError> for async_graphql::Error {
    fn from(err: ApiError) -> Self {
        let code = err.code();
        if let ApiError::Internal(inner) = &err {
            tracing::error!(error = ?inner, "internal error");
        }
        let retry_after = match &err {
            ApiError::RateLimitedFor { seconds, .. } => Some(*seconds),
            _ => None,
        };
        async_graphql::Error::new(err.message()).extend_with(|_, ext| {
            ext.set("code", code);
            if let Some(seconds) = retry_after {
                ext.set("retryAfter", seconds);
            }
        })
    }
}

impl From<ApiError> for async_graphql::ServerError {
    fn from(err: ApiError) -> Self {
        let message = err.message();
        let mut error = async_graphql::ServerError::new(message, None);
        error.extensions = async_graphql::Error::from(err).extensions;
        error
    }
}
