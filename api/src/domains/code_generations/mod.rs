//! Code generations: a prompt sent to an AI service for a project, and what came back.
//! `codeGeneration`, `codeGenerations`, `Project.codeGenerations` (through `edges`),
//! `createCodeGeneration` for the project's owner, and `startCodeGeneration`,
//! `completeCodeGeneration`, `failCodeGeneration` for the service.
//!
//! Who may see and do what, and the legal status moves, live in [`policy`]. Completing
//! prices the generation from the catalog exactly (in `Decimal`, rounded to whole
//! micro-dollars) and records the usage in the same transaction. Generations hang off a
//! project, so tokens reach them through `resource("project", id)`.

mod nested;
pub mod policy;
mod repo;

pub(crate) use nested::project_page;
pub use nested::register;

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::code_generations::{self, CodeGenerationStatus as DbStatus};
use rust_decimal::{Decimal, RoundingStrategy};
use uuid::Uuid;

use crate::{
    auth::{Operation, Resource},
    domains::{
        catalog::{AiService, AiServiceLoader},
        projects::{Project, load_visible, require_changeable},
        usage::{self, UsageEvent},
    },
    error::{ApiError, ApiResult},
    kit::{
        RequestContext,
        authz::{require_service, scope_to_token},
        enums::mirror_enum,
        loaders::load_one,
        money,
        pagination::{Page, PageArgs, empty_page, page_complexity, paginate},
        parse_id, parse_optional_id,
    },
    validate::{self, Lines},
};

/// Lifecycle of a code generation.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum GenerationStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
}

mirror_enum!(GenerationStatus <=> DbStatus { Pending, Running, Succeeded, Failed });

/// One prompt sent to an AI service, and its result.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct CodeGeneration {
    id: ID,
    #[graphql(skip)]
    project_id: Option<Uuid>,
    #[graphql(skip)]
    ai_service_id: Option<Uuid>,
    prompt: String,
    output: Option<String>,
    language: Option<String>,
    tokens_in: i32,
    tokens_out: i32,
    /// US dollars.
    cost: Decimal,
    status: GenerationStatus,
    error: Option<String>,
    duration_ms: Option<i64>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<code_generations::Model> for CodeGeneration {
    fn from(g: code_generations::Model) -> Self {
        Self {
            id: g.id.into(),
            project_id: g.project_id,
            ai_service_id: g.ai_service_id,
            prompt: g.prompt,
            output: g.output,
            language: g.language,
            tokens_in: g.tokens_in,
            tokens_out: g.tokens_out,
            cost: money::from_column(g.cost),
            status: g.status.into(),
            error: g.error,
            duration_ms: g.duration_ms,
            created_at: g.created_at,
            updated_at: g.updated_at,
        }
    }
}

#[async_graphql::ComplexObject]
impl CodeGeneration {
    /// The project this generation belongs to, batched across a page.
    async fn project(&self, ctx: &Context<'_>) -> ApiResult<Project> {
        let id = self.project_id.ok_or(ApiError::NotFound("project"))?;
        load_visible(ctx, id).await
    }

    /// The catalog's AI service asked, if it is still there and readable.
    async fn ai_service(&self, ctx: &Context<'_>) -> ApiResult<Option<AiService>> {
        match self.ai_service_id {
            Some(id) => load_one::<AiServiceLoader, _>(ctx, id).await,
            None => Ok(None),
        }
    }
}

#[derive(InputObject)]
pub struct CreateCodeGenerationInput {
    project_id: ID,
    ai_service_id: ID,
    prompt: String,
    language: Option<String>,
}

#[derive(SimpleObject)]
pub struct CreateCodeGenerationPayload {
    code_generation: CodeGeneration,
}

#[derive(SimpleObject)]
pub struct StartCodeGenerationPayload {
    code_generation: CodeGeneration,
}

#[derive(InputObject)]
pub struct CompleteCodeGenerationInput {
    id: ID,
    output: String,
    tokens_in: i32,
    tokens_out: i32,
    duration_ms: Option<i64>,
}

#[derive(SimpleObject)]
pub struct CompleteCodeGenerationPayload {
    code_generation: CodeGeneration,
}

#[derive(InputObject)]
pub struct FailCodeGenerationInput {
    id: ID,
    error: String,
    duration_ms: Option<i64>,
}

#[derive(SimpleObject)]
pub struct FailCodeGenerationPayload {
    code_generation: CodeGeneration,
}

#[derive(Default)]
pub struct CodeGenerationQuery;

#[Object]
impl CodeGenerationQuery {
    /// One generation; null when it does not exist or the caller may not see it.
    async fn code_generation(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> ApiResult<Option<CodeGeneration>> {
        let rc = RequestContext::of(ctx)?;
        let id = parse_id("id", &id)?;
        if !policy::reads_any(rc.identity()) {
            return Ok(None);
        }
        let Some(generation) =
            repo::find(&*rc.tx().await?, policy::readable(rc.identity()), id).await?
        else {
            return Ok(None);
        };
        let allowed = generation
            .project_id
            .is_some_and(|p| rc.authorize(Operation::Read, Resource::Project(p)).is_ok());
        Ok(allowed.then(|| generation.into()))
    }

    /// The generations the caller may see (its own; all for services), newest first,
    /// optionally of one project and in one status.
    #[graphql(complexity = "page_complexity(first, last, child_complexity)")]
    #[expect(
        clippy::too_many_arguments,
        reason = "a list field takes its filters and the four Relay arguments as its own"
    )]
    async fn code_generations(
        &self,
        ctx: &Context<'_>,
        project_id: Option<ID>,
        status: Option<GenerationStatus>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<Page<CodeGeneration>> {
        let rc = RequestContext::of(ctx)?;
        rc.session()?;
        let project = parse_optional_id("projectId", project_id.as_ref())?;
        let args = PageArgs::new(ctx, first, after, last, before);
        list(rc, project, status, Resource::Account, args).await
    }
}

/// One page of generations, as far as the policy and the token's checks allow.
async fn list(
    rc: &RequestContext,
    project: Option<Uuid>,
    status: Option<GenerationStatus>,
    otherwise: Resource,
    args: PageArgs,
) -> ApiResult<Page<CodeGeneration>> {
    if !policy::reads_any(rc.identity()) {
        // Anonymous callers read no generation (their role has no grant on the table).
        return Ok(empty_page());
    }
    let query = repo::listed(
        policy::readable(rc.identity()),
        project,
        status.map(Into::into),
    );
    let query = scope_to_token(rc, query, code_generations::Column::ProjectId, otherwise).await?;
    paginate(
        rc.tx_ref(),
        query,
        (
            code_generations::Column::Id,
            |g: &code_generations::Model| g.id,
        ),
        args,
        CodeGeneration::from,
    )
    .await
}

#[derive(Default)]
pub struct CodeGenerationMutation;

#[Object]
impl CodeGenerationMutation {
    /// Asks for a generation on one of the caller's own projects, with an active AI
    /// service; it starts `PENDING`, for a worker to pick up.
    async fn create_code_generation(
        &self,
        ctx: &Context<'_>,
        input: CreateCodeGenerationInput,
    ) -> ApiResult<CreateCodeGenerationPayload> {
        let rc = RequestContext::of(ctx)?;
        let user = rc.user_id()?;
        let project_id = parse_id("projectId", &input.project_id)?;
        let project = require_changeable(rc, project_id).await?;
        if !policy::may_create(rc.identity(), project.owner_id) {
            return Err(ApiError::Forbidden(
                "only the project's owner may ask for generations on it",
            ));
        }
        let prompt = validate::required("prompt", &input.prompt, PROMPT_MAX, Lines::Many)?;
        let language = validate::optional(
            "language",
            input.language.as_deref(),
            LANGUAGE_MAX,
            Lines::One,
        )?;
        let service_id = parse_id("aiServiceId", &input.ai_service_id)?;
        let tx = rc.tx().await?;
        repo::active_service(&*tx, service_id)
            .await?
            .ok_or(ApiError::NotFound("ai service"))?;
        let generation = repo::insert(
            &*tx,
            repo::NewGeneration {
                id: crate::db::new_id(),
                user_id: user,
                project_id,
                ai_service_id: service_id,
                prompt,
                language,
            },
        )
        .await?;
        Ok(CreateCodeGenerationPayload {
            code_generation: generation.into(),
        })
    }

    /// A worker starts a pending generation (service only).
    async fn start_code_generation(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> ApiResult<StartCodeGenerationPayload> {
        let rc = RequestContext::of(ctx)?;
        let generation = advance(rc, &id, DbStatus::Running, repo::Outcome::default()).await?;
        Ok(StartCodeGenerationPayload {
            code_generation: generation.into(),
        })
    }

    /// A worker reports a running generation's result (service only): the cost is
    /// priced from the AI service's catalog prices and recorded as usage.
    async fn complete_code_generation(
        &self,
        ctx: &Context<'_>,
        input: CompleteCodeGenerationInput,
    ) -> ApiResult<CompleteCodeGenerationPayload> {
        let rc = RequestContext::of(ctx)?;
        require_service(rc)?;
        let tokens_in = not_negative("tokensIn", input.tokens_in)?;
        let tokens_out = not_negative("tokensOut", input.tokens_out)?;
        let duration_ms = input
            .duration_ms
            .map(|d| not_negative("durationMs", d))
            .transpose()?;
        let output = validate::optional("output", Some(&input.output), OUTPUT_MAX, Lines::Many)?
            .unwrap_or_default();
        let current = visible_to_service(rc, &input.id).await?;
        policy::transition(current.status, DbStatus::Succeeded)?;
        let service_id = current.ai_service_id.ok_or_else(|| {
            ApiError::InvalidTransition(
                "the generation's AI service is gone, so it cannot be priced; fail it".to_owned(),
            )
        })?;
        let tx = rc.tx().await?;
        let service = repo::service(&*tx, service_id).await?.ok_or_else(|| {
            ApiError::InvalidTransition(
                "the generation's AI service is not available, so it cannot be priced; fail it"
                    .to_owned(),
            )
        })?;
        let cost = cost(
            tokens_in,
            tokens_out,
            service.input_price_per_1k,
            service.output_price_per_1k,
        )
        .ok_or_else(|| ApiError::bad_input("tokensIn, tokensOut: the cost is out of range"))?;
        let outcome = repo::Outcome {
            output: Some(output),
            tokens_in: Some(tokens_in),
            tokens_out: Some(tokens_out),
            cost: Some(money::to_column("cost", cost)?),
            duration_ms,
            ..Default::default()
        };
        let generation = moved(rc, current, DbStatus::Succeeded, outcome).await?;
        usage::record(
            &*tx,
            UsageEvent {
                user_id: generation.user_id,
                project_id: generation.project_id,
                event_type: "code_generation.completed",
                quantity: 1,
                tokens: i64::from(tokens_in) + i64::from(tokens_out),
                cost,
                metadata: serde_json::json!({
                    "code_generation_id": generation.id,
                    "ai_service_id": service_id,
                }),
            },
        )
        .await?;
        Ok(CompleteCodeGenerationPayload {
            code_generation: generation.into(),
        })
    }

    /// A worker reports that a pending or running generation failed (service only).
    async fn fail_code_generation(
        &self,
        ctx: &Context<'_>,
        input: FailCodeGenerationInput,
    ) -> ApiResult<FailCodeGenerationPayload> {
        let rc = RequestContext::of(ctx)?;
        require_service(rc)?;
        let error = validate::required("error", &input.error, ERROR_MAX, Lines::Many)?;
        let duration_ms = input
            .duration_ms
            .map(|d| not_negative("durationMs", d))
            .transpose()?;
        let outcome = repo::Outcome {
            error: Some(error),
            duration_ms,
            ..Default::default()
        };
        let generation = advance(rc, &input.id, DbStatus::Failed, outcome).await?;
        Ok(FailCodeGenerationPayload {
            code_generation: generation.into(),
        })
    }
}

/// Moves the generation `id` to `to` as the service, if the state machine allows.
async fn advance(
    rc: &RequestContext,
    id: &ID,
    to: DbStatus,
    outcome: repo::Outcome,
) -> ApiResult<code_generations::Model> {
    require_service(rc)?;
    let current = visible_to_service(rc, id).await?;
    policy::transition(current.status, to)?;
    moved(rc, current, to, outcome).await
}

/// Writes a checked move; a concurrent move that got there first makes this one
/// `INVALID_TRANSITION` rather than overwrite it.
async fn moved(
    rc: &RequestContext,
    current: code_generations::Model,
    to: DbStatus,
    outcome: repo::Outcome,
) -> ApiResult<code_generations::Model> {
    let tx = rc.tx().await?;
    if !repo::advance(&*tx, current.id, current.status, to, outcome).await? {
        return Err(ApiError::InvalidTransition(
            "the generation changed meanwhile; read it again".to_owned(),
        ));
    }
    repo::find(&*tx, policy::readable(rc.identity()), current.id)
        .await?
        .ok_or(ApiError::NotFound("code generation"))
}

/// The generation `id` for a service to move: `NOT_FOUND` when missing or outside the
/// token's projects.
async fn visible_to_service(rc: &RequestContext, id: &ID) -> ApiResult<code_generations::Model> {
    const MISSING: ApiError = ApiError::NotFound("code generation");
    let id = parse_id("id", id)?;
    let generation = repo::find(&*rc.tx().await?, policy::readable(rc.identity()), id)
        .await?
        .ok_or(MISSING)?;
    let project = generation.project_id.ok_or(MISSING)?;
    rc.authorize(Operation::Write, Resource::Project(project))
        .map_err(|_| MISSING)?;
    Ok(generation)
}

/// The price of a generation in US dollars: tokens / 1000 × the price per 1,000, in
/// exact decimal arithmetic, rounded to whole micro-dollars (what the `cost` column
/// keeps exactly).
/// `None` when the amount overflows a `Decimal` (absurd prices or counts).
pub fn cost(
    tokens_in: i32,
    tokens_out: i32,
    input_per_1k: f64,
    output_per_1k: f64,
) -> Option<Decimal> {
    let thousand = Decimal::from(1000);
    let part = |tokens: i32, per_1k: f64| {
        Decimal::from(tokens)
            .checked_mul(money::from_column(per_1k))?
            .checked_div(thousand)
    };
    let total = part(tokens_in, input_per_1k)?.checked_add(part(tokens_out, output_per_1k)?)?;
    Some(
        total
            .round_dp_with_strategy(money::PLACES, RoundingStrategy::MidpointAwayFromZero)
            .normalize(),
    )
}

fn not_negative<T: Default + PartialOrd>(field: &str, value: T) -> ApiResult<T> {
    if value < T::default() {
        return Err(ApiError::bad_input(format!(
            "{field}: must not be negative"
        )));
    }
    Ok(value)
}

/// Longest prompt, in characters.
const PROMPT_MAX: usize = 100_000;
/// Longest output, in characters.
const OUTPUT_MAX: usize = 1_000_000;
/// Longest error message, in characters.
const ERROR_MAX: usize = 10_000;
/// Longest language name, in characters.
const LANGUAGE_MAX: usize = 50;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_exact() {
        let cost = |i, o, pi, po| cost(i, o, pi, po).map(|c| c.to_string());
        assert_eq!(cost(1234, 567, 0.003, 0.015).as_deref(), Some("0.012207"));
        assert_eq!(cost(0, 0, 0.003, 0.015).as_deref(), Some("0"));
        assert_eq!(cost(1_000_000, 0, 0.0025, 0.01).as_deref(), Some("2.5"));
        assert_eq!(cost(i32::MAX, 0, 7.9e28, 0.0), None);
    }
}
