//! The GraphQL schema: the root types merged from the domains, its limits and its
//! extensions. Above every domain and below the pipeline; adding a domain means adding
//! its query, mutation and subscription roots here and its loaders in `domains::register_loaders`.

use std::sync::Arc;

use async_graphql::{
    MergedObject, MergedSubscription, Schema, ServerError, ServerResult, ValidationResult, Value,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextResolve, NextValidation, ResolveInfo,
    },
};

use crate::{
    db::PendingTx,
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
pub type AppSchema = Schema<Query, Mutation, Subscription>;

/// Builds the schema. It holds no state of its own: per-request data comes from the
/// pipeline, shared services from [`AppState`] in the schema data. Its cost limit is
/// `FLASHFUSION_MAX_COST` (each field 1, a connection's children once per item its
/// `first`/`last` may return); the other limits on a document are checked before it is
/// parsed or as it is ([`crate::limits`]).
pub fn build_schema(state: Option<Arc<AppState>>) -> AppSchema {
    build(state, false)
}

/// The same schema for everyone but administrators in production: no field suggestions
/// ("Did you mean ...?") in its validation errors and no introspection. async-graphql
/// decides suggestions per schema (`SchemaBuilder::disable_suggestions`), not per
/// request, so the pipeline holds both and picks one per caller; that is cleaner than
/// editing the engine's messages afterwards. The pipeline refuses `__schema`/`__type`
/// with a clear error first; this schema not knowing them is the second lock.
pub fn build_restricted_schema(state: Arc<AppState>) -> AppSchema {
    build(Some(state), true)
}

fn build(state: Option<Arc<AppState>>, restricted: bool) -> AppSchema {
    let max_cost = state.as_ref().map(|state| state.config.max_cost);
    let mut builder = Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .extension(Hooks { max_cost });
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

/// The schema's one extension, with two hooks:
/// - **validation**: refuses an operation whose cost, as async-graphql's validation
///   computes it, is over `FLASHFUSION_MAX_COST` (what `SchemaBuilder::limit_complexity`
///   does, with a message that names the setting); then, validation passed, opens the
///   operation's transaction ([`PendingTx`], in the request's data), so a refused
///   operation does no database work. The validation hook is the last step both
///   `Schema::execute` and `Schema::execute_stream` take before running anything (a
///   subscription never reaches the `execute` hook); after it async-graphql only picks
///   the operation, which the pipeline has found already;
/// - **mutation guard** (`resolve`): stops a mutation at its first failing root field.
///   GraphQL runs the remaining root fields anyway, but the operation will be rolled
///   back, and on Postgres every statement after a failed one is refused ("transaction
///   aborted"), which would surface as `INTERNAL`. Later fields get an error naming the
///   cause instead, with the first failure's code, and run nothing.
///
/// One extension rather than one per hook: once a schema has any extension,
/// async-graphql runs every field of every operation through every extension's `resolve`
/// (`resolver_utils::container::Fields::add_set`), a boxed future each, so each
/// extension costs per field, not per operation (BENCHMARKS.md, "Instructions per
/// read").
pub(crate) struct Hooks {
    /// `FLASHFUSION_MAX_COST`; `None` for the schema built without state (its SDL).
    max_cost: Option<usize>,
}

impl ExtensionFactory for Hooks {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Hooks {
            max_cost: self.max_cost,
        })
    }
}

#[async_trait::async_trait]
impl Extension for Hooks {
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await?;
        if let Some(max_cost) = self.max_cost
            && result.complexity > max_cost
        {
            let err = ApiError::bad_input(format!(
                "query too costly: {} is over {max_cost} (FLASHFUSION_MAX_COST; a connection costs its children once per item `first` or `last` asks for)",
                result.complexity
            ));
            return Err(vec![err.into()]);
        }
        if let Some(pending) = ctx.data_opt::<Arc<PendingTx>>() {
            pending.open().await.map_err(|err| vec![err.into()])?;
        }
        Ok(result)
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        // Every field passes here: the type's name first, the data lookup (a hash) only
        // for a mutation's root fields.
        if info.parent_type != "Mutation" {
            return next.run(ctx, info).await;
        }
        let Some(rc) = ctx.data_opt::<RequestContext>() else {
            return next.run(ctx, info).await;
        };
        if let Some(code) = rc.failed.get() {
            let mut error = ServerError::new(
                "not run: an earlier field of this mutation failed, so the operation was rolled back",
                Some(info.field.name.pos),
            );
            error
                .extensions
                .get_or_insert_with(Default::default)
                .set("code", code.as_str());
            return Err(error);
        }
        let result = next.run(ctx, info).await;
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
