//! The GraphQL schema: root types merged from the domain modules, and the per-request
//! context resolvers read (identity, token checks, the operation's transaction).
//!
//! Resolvers never open transactions or read headers; they get everything from
//! [`RequestContext`], which only the pipeline builds.

use std::sync::{Arc, OnceLock};

use async_graphql::{Context, EmptySubscription, MergedObject, Schema};
use sea_orm::DatabaseTransaction;
use uuid::Uuid;

use crate::{
    accounts::{AccountMutation, AccountQuery},
    auth::{Identity, Operation, Resource, Session},
    db::TxRef,
    error::{ApiError, ApiResult},
    projects::{ProjectMutation, ProjectQuery},
};

/// Every query field, merged from the domains.
#[derive(MergedObject, Default)]
pub struct Query(AccountQuery, ProjectQuery);

/// Every mutation field, merged from the domains.
#[derive(MergedObject, Default)]
pub struct Mutation(AccountMutation, ProjectMutation);

/// The gateway's schema type.
pub type AppSchema = Schema<Query, Mutation, EmptySubscription>;

/// Deepest selection accepted.
const MAX_DEPTH: usize = 16;
/// Largest complexity accepted (each field 1, connections multiply by `first`).
const MAX_COMPLEXITY: usize = 5_000;

/// Builds the schema. It holds no state of its own: per-request data comes from the
/// pipeline, shared services from [`crate::app::AppState`] in the schema data.
pub fn build_schema(state: Option<Arc<crate::app::AppState>>) -> AppSchema {
    let builder = Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .extension(crate::pipeline::MutationGuard);
    match state {
        Some(state) => builder.data(state).finish(),
        None => builder.finish(),
    }
}

/// The SDL of the live schema, as checked in at `schema.graphql`.
pub fn sdl() -> String {
    build_schema(None).sdl()
}

/// What one operation runs with; built by the pipeline only.
pub struct RequestContext {
    pub(crate) session: Option<Session>,
    pub(crate) tx: TxRef,
    /// The code of the first root mutation field that failed; later ones do not run.
    pub(crate) failed: OnceLock<String>,
}

impl RequestContext {
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

    /// Runs the token's checks for this access. Anonymous callers may read; writing
    /// needs a token.
    pub fn authorize(&self, operation: Operation, resource: Resource) -> ApiResult<()> {
        match (&self.session, operation) {
            (Some(session), _) => session.authorize(operation, resource),
            (None, Operation::Read) => Ok(()),
            (None, Operation::Write) => Err(ApiError::Unauthenticated("sign in first")),
        }
    }

    /// The operation's transaction.
    pub fn tx(&self) -> ApiResult<Arc<DatabaseTransaction>> {
        self.tx.get()
    }

    /// The weak handle, for DataLoaders and identity switches.
    pub fn tx_ref(&self) -> &TxRef {
        &self.tx
    }
}

/// The shared services, from the schema data.
pub fn app_state<'a>(ctx: &Context<'a>) -> ApiResult<&'a Arc<crate::app::AppState>> {
    ctx.data::<Arc<crate::app::AppState>>()
        .map_err(|_| ApiError::bug("application state missing"))
}

/// Parses a client-supplied `ID` as a UUID, naming the field on failure.
pub fn parse_id(field: &str, id: &async_graphql::ID) -> ApiResult<Uuid> {
    Uuid::parse_str(id.as_str())
        .map_err(|_| ApiError::bad_input(format!("{field}: not a valid id")))
}
