//! The GraphQL schema: the root types merged from the domains, its cost limit and the
//! mutation guard. Above every domain and below the pipeline; adding a domain means adding
//! its query, mutation and subscription roots here and its loaders in `domains::register_loaders`.

use std::{borrow::Cow, sync::Arc};

use async_graphql::{
    ContainerType, Context, ContextSelectionSet, MergedObject, MergedSubscription, ObjectType,
    OutputType, Positioned, Schema, ServerError, ServerResult, ValidationMode, Value,
    parser::types::Field, registry::Registry, resolver_utils::resolve_container_serial,
};

use crate::{
    domains::{
        accounts::{AccountMutation, AccountQuery},
        agent_tasks::{AgentTaskMutation, AgentTaskQuery, AgentTaskSubscription},
        api_keys::{ApiKeyMutation, ApiKeyQuery},
        billing::{BillingMutation, BillingQuery},
        catalog::{CatalogMutation, CatalogQuery},
        code_generations::{CodeGenerationMutation, CodeGenerationQuery},
        deployments::{DeploymentMutation, DeploymentQuery, DeploymentSubscription},
        integrations::{IntegrationMutation, IntegrationQuery},
        notifications::{NotificationMutation, NotificationQuery, NotificationSubscription},
        projects::{ProjectMutation, ProjectQuery},
        usage::UsageQuery,
    },
    error::ApiError,
    kit::RequestContext,
    state::AppState,
};

/// Every query field, merged from the domains.
#[derive(MergedObject, Default)]
pub struct Query(
    AccountQuery,
    ProjectQuery,
    CatalogQuery,
    AgentTaskQuery,
    DeploymentQuery,
    NotificationQuery,
    BillingQuery,
    UsageQuery,
    ApiKeyQuery,
    IntegrationQuery,
    CodeGenerationQuery,
);

/// Every mutation field, merged from the domains.
#[derive(MergedObject, Default)]
pub struct Mutation(
    AccountMutation,
    ProjectMutation,
    CatalogMutation,
    AgentTaskMutation,
    DeploymentMutation,
    NotificationMutation,
    BillingMutation,
    ApiKeyMutation,
    IntegrationMutation,
    CodeGenerationMutation,
);

/// Every subscription field, merged from the domains (see `kit::feed`).
#[derive(MergedSubscription, Default)]
pub struct Subscription(
    AgentTaskSubscription,
    DeploymentSubscription,
    NotificationSubscription,
);

/// The gateway's schema type.
pub type AppSchema = Schema<Query, GuardedMutation, Subscription>;

/// Builds the schema. It holds no state of its own: per-request data comes from the
/// pipeline, shared services from [`AppState`] in the schema data. Its cost limit is
/// `FLASHFUSION_MAX_COST` (each field 1, a connection's children once per item its
/// `first`/`last` may return), checked by async-graphql's validation; the other limits
/// on a document are checked before it is parsed or as it is ([`crate::limits`]). It
/// has no extension (see [`GuardedMutation`]).
pub fn build_schema(state: Option<Arc<AppState>>) -> AppSchema {
    build(state, false, Validation::Strict)
}

/// How much of async-graphql's validation a schema runs on each operation
/// (`SchemaBuilder::validation_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    /// Every rule (`ValidationMode::Strict`).
    Strict,
    /// Only what may change from one request to the next (`ValidationMode::Fast`: the
    /// cost and depth, with the request's variables, and fragment cycles), for a
    /// document that declares no variables and has passed every rule before
    /// (`documents::Prepared::is_proven`). The rules it skips read nothing but the
    /// document and the schema, save one (argument values, which may be variables), so
    /// they would pass again. Validation is about 8% of a read's instructions
    /// (BENCHMARKS.md, "Validation once per document").
    Proven,
}

/// The schema for the pipeline: `restricted`, for everyone but administrators in
/// production, has no field suggestions ("Did you mean ...?") in its validation errors
/// and no introspection. async-graphql decides suggestions per schema
/// (`SchemaBuilder::disable_suggestions`), not per request, so the pipeline holds both
/// and picks one per caller; that is cleaner than editing the engine's messages
/// afterwards. The pipeline refuses `__schema`/`__type` with a clear error first; the
/// restricted schema not knowing them is the second lock.
pub fn build_schema_with(
    state: Arc<AppState>,
    restricted: bool,
    validation: Validation,
) -> AppSchema {
    build(Some(state), restricted, validation)
}

fn build(state: Option<Arc<AppState>>, restricted: bool, validation: Validation) -> AppSchema {
    let mut builder = Schema::build(
        Query::default(),
        GuardedMutation::default(),
        Subscription::default(),
    );
    if validation == Validation::Proven {
        builder = builder.validation_mode(ValidationMode::Fast);
    }
    if let Some(state) = &state {
        // Its refusal ("Query is too complex.") is worded by the pipeline
        // (`limits::too_costly`).
        builder = builder.limit_complexity(state.config.max_cost);
    }
    if restricted {
        builder = builder.disable_suggestions().disable_introspection();
    }
    match state {
        Some(state) => builder.data(state).finish(),
        None => builder.finish(),
    }
}

/// The SDL of the live schema, as checked in at `schema.graphql`.
pub fn sdl() -> String {
    build_schema(None).sdl()
}

/// The mutation root as async-graphql runs it: [`Mutation`]'s fields, with a guard that
/// stops a mutation at its first failing root field. GraphQL runs the remaining root
/// fields anyway, but the operation will be rolled back, and on Postgres every statement
/// after a failed one is refused ("transaction aborted"), which would surface as
/// `INTERNAL`. Later fields get an error naming the cause instead, with the first
/// failure's code, and run nothing.
///
/// A wrapper of the root, not a schema extension: once a schema has any extension,
/// async-graphql runs every field of every operation through it
/// (`resolver_utils::container::Fields::add_set`), a boxed future, a registry lookup
/// and its type's name each, which cost reads a fifth of their CPU (BENCHMARKS.md,
/// "No schema extension"). The schema has none.
#[derive(Default)]
pub struct GuardedMutation(Mutation);

impl OutputType for GuardedMutation {
    fn type_name() -> Cow<'static, str> {
        Mutation::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        Mutation::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        resolve_container_serial(ctx, self).await
    }
}

impl ContainerType for GuardedMutation {
    async fn resolve_field(&self, ctx: &Context<'_>) -> ServerResult<Option<Value>> {
        let Some(rc) = ctx.data_opt::<RequestContext>() else {
            return self.0.resolve_field(ctx).await;
        };
        if let Some(code) = rc.failed.get() {
            let mut error = ServerError::new(
                "not run: an earlier field of this mutation failed, so the operation was rolled back",
                Some(ctx.item.pos),
            );
            error
                .extensions
                .get_or_insert_with(Default::default)
                .set("code", code.as_str());
            return Err(ctx.set_error_path(error));
        }
        let result = self.0.resolve_field(ctx).await;
        if let Err(error) = &result {
            let code = error
                .extensions
                .as_ref()
                .and_then(|ext| ext.get("code"))
                .and_then(|code| match code {
                    Value::String(code) => Some(code.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| ApiError::engine_error_code().to_owned());
            let _ = rc.failed.set(code);
        }
        result
    }
}

impl ObjectType for GuardedMutation {}
