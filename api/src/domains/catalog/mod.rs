//! The catalogs: the AI services (models and their prices) and the agents the platform
//! runs. Everyone reads active entries; admins read inactive ones and write
//! (`createAiService`, `updateAiService`, `createAgent`, `updateAgent`). Who may do what
//! is in [`policy`]; other domains show entries through [`AiServiceLoader`] and
//! [`AgentLoader`].
//!
//! Catalog reads are public data, like the schema: they run no token resource check, so
//! a dashboard holding a one-project token still names the agent of its tasks.

pub mod policy;
mod repo;

use async_graphql::{Context, ID, InputObject, Json, Object, SimpleObject};
use chrono::Utc;
use entity::{agents, ai_services};
use rust_decimal::Decimal;
use sea_orm::ActiveValue::{NotSet, Set};
use serde_json::Value;
use uuid::Uuid;

use crate::{
    auth::Operation,
    db::new_id,
    error::{ApiError, ApiResult},
    kit::{
        RequestContext,
        authz::require_admin,
        loaders::{ById, Loaders},
        money, parse_id,
    },
    validate::{self, Lines},
};

/// An AI model the platform can call, with its prices in US dollars per 1,000 tokens.
#[derive(SimpleObject, Clone)]
pub struct AiService {
    id: ID,
    slug: String,
    name: String,
    provider: String,
    model: String,
    capabilities: Vec<String>,
    #[graphql(name = "inputPricePer1k")]
    input_price_per_1k: Decimal,
    #[graphql(name = "outputPricePer1k")]
    output_price_per_1k: Decimal,
    is_active: bool,
}

impl From<ai_services::Model> for AiService {
    fn from(s: ai_services::Model) -> Self {
        Self {
            id: s.id.into(),
            slug: s.slug,
            name: s.name,
            provider: s.provider,
            model: s.model,
            capabilities: string_list(s.capabilities),
            input_price_per_1k: money::from_column(s.input_price_per_1k),
            output_price_per_1k: money::from_column(s.output_price_per_1k),
            is_active: s.is_active,
        }
    }
}

/// An agent that runs tasks, with its configuration.
#[derive(SimpleObject, Clone)]
pub struct Agent {
    id: ID,
    slug: String,
    name: String,
    description: Option<String>,
    capabilities: Vec<String>,
    config: Json<Value>,
    is_active: bool,
}

impl From<agents::Model> for Agent {
    fn from(a: agents::Model) -> Self {
        Self {
            id: a.id.into(),
            slug: a.slug,
            name: a.name,
            description: a.description,
            capabilities: string_list(a.capabilities),
            config: Json(a.config),
            is_active: a.is_active,
        }
    }
}

/// The capability names of a catalog entry (a JSON array of strings in the table).
fn string_list(value: Value) -> Vec<String> {
    serde_json::from_value(value).unwrap_or_default()
}

/// Loads AI services by id, as far as the caller may read them.
pub type AiServiceLoader = ById<ai_services::Entity, AiService>;
/// Loads agents by id, as far as the caller may read them.
pub type AgentLoader = ById<agents::Entity, Agent>;

/// Registers the catalogs' loaders for a request.
pub fn register(loaders: Loaders) -> Loaders {
    loaders
        .register(|tx, identity| {
            AiServiceLoader::new(
                tx,
                policy::ai_service_readable(identity),
                ai_services::Column::Id,
                |row| (row.id, row.into()),
            )
        })
        .register(|tx, identity| {
            AgentLoader::new(
                tx,
                policy::agent_readable(identity),
                agents::Column::Id,
                |row| (row.id, row.into()),
            )
        })
}

#[derive(Default)]
pub struct CatalogQuery;

#[Object]
impl CatalogQuery {
    /// The AI services, by slug. Inactive ones only for admins.
    async fn ai_services(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = false)] include_inactive: bool,
    ) -> ApiResult<Vec<AiService>> {
        let rc = RequestContext::of(ctx)?;
        let rows = repo::list::<ai_services::Entity>(
            &*rc.tx().await?,
            rc.identity(),
            (ai_services::Column::IsActive, ai_services::Column::Slug),
            inactive_allowed(rc, include_inactive)?,
        )
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// The agents, by slug. Inactive ones only for admins.
    async fn agents(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = false)] include_inactive: bool,
    ) -> ApiResult<Vec<Agent>> {
        let rc = RequestContext::of(ctx)?;
        let rows = repo::list::<agents::Entity>(
            &*rc.tx().await?,
            rc.identity(),
            (agents::Column::IsActive, agents::Column::Slug),
            inactive_allowed(rc, include_inactive)?,
        )
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}

/// `includeInactive: true` is for admins only.
fn inactive_allowed(rc: &RequestContext, include_inactive: bool) -> ApiResult<bool> {
    if include_inactive && !policy::sees_inactive(rc.identity()) {
        return Err(ApiError::Forbidden(
            "only an admin may list inactive entries",
        ));
    }
    Ok(include_inactive)
}

#[derive(InputObject)]
pub struct CreateAiServiceInput {
    slug: String,
    name: String,
    provider: String,
    model: String,
    #[graphql(default)]
    capabilities: Vec<String>,
    #[graphql(name = "inputPricePer1k")]
    input_price_per_1k: Decimal,
    #[graphql(name = "outputPricePer1k")]
    output_price_per_1k: Decimal,
    #[graphql(default = true)]
    is_active: bool,
}

/// Omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateAiServiceInput {
    id: ID,
    name: Option<String>,
    provider: Option<String>,
    model: Option<String>,
    capabilities: Option<Vec<String>>,
    #[graphql(name = "inputPricePer1k")]
    input_price_per_1k: Option<Decimal>,
    #[graphql(name = "outputPricePer1k")]
    output_price_per_1k: Option<Decimal>,
    is_active: Option<bool>,
}

#[derive(InputObject)]
pub struct CreateAgentInput {
    slug: String,
    name: String,
    description: Option<String>,
    #[graphql(default)]
    capabilities: Vec<String>,
    config: Option<Json<Value>>,
    #[graphql(default = true)]
    is_active: bool,
}

/// Omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateAgentInput {
    id: ID,
    name: Option<String>,
    description: Option<String>,
    capabilities: Option<Vec<String>>,
    config: Option<Json<Value>>,
    is_active: Option<bool>,
}

#[derive(SimpleObject)]
pub struct CreateAiServicePayload {
    ai_service: AiService,
}

#[derive(SimpleObject)]
pub struct UpdateAiServicePayload {
    ai_service: AiService,
}

#[derive(SimpleObject)]
pub struct CreateAgentPayload {
    agent: Agent,
}

#[derive(SimpleObject)]
pub struct UpdateAgentPayload {
    agent: Agent,
}

#[derive(Default)]
pub struct CatalogMutation;

#[Object]
impl CatalogMutation {
    /// Adds an AI service to the catalog (admins).
    async fn create_ai_service(
        &self,
        ctx: &Context<'_>,
        input: CreateAiServiceInput,
    ) -> ApiResult<CreateAiServicePayload> {
        let rc = RequestContext::of(ctx)?;
        require_admin(rc, Operation::Write)?;
        let now = Utc::now();
        let row = ai_services::ActiveModel {
            id: Set(new_id()),
            slug: Set(slug(&input.slug)?),
            name: Set(text("name", &input.name)?),
            provider: Set(validate::provider("provider", &input.provider)?),
            model: Set(text("model", &input.model)?),
            capabilities: Set(capabilities(input.capabilities)?),
            input_price_per_1k: Set(money::to_column(
                "inputPricePer1k",
                input.input_price_per_1k,
            )?),
            output_price_per_1k: Set(money::to_column(
                "outputPricePer1k",
                input.output_price_per_1k,
            )?),
            is_active: Set(input.is_active),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let ai_service = repo::insert(&*rc.tx().await?, row).await?.into();
        Ok(CreateAiServicePayload { ai_service })
    }

    /// Changes an AI service, its prices and whether it is active (admins).
    async fn update_ai_service(
        &self,
        ctx: &Context<'_>,
        input: UpdateAiServiceInput,
    ) -> ApiResult<UpdateAiServicePayload> {
        let rc = RequestContext::of(ctx)?;
        require_admin(rc, Operation::Write)?;
        let id = existing::<ai_services::Entity>(
            rc,
            &input.id,
            (ai_services::Column::Id, ai_services::Column::IsActive),
            "ai service",
        )
        .await?;
        let row = ai_services::ActiveModel {
            id: Set(id),
            name: changed(input.name.as_deref().map(|v| text("name", v)))?,
            provider: changed(
                input
                    .provider
                    .as_deref()
                    .map(|v| validate::provider("provider", v)),
            )?,
            model: changed(input.model.as_deref().map(|v| text("model", v)))?,
            capabilities: changed(input.capabilities.map(capabilities))?,
            input_price_per_1k: changed(
                input
                    .input_price_per_1k
                    .map(|p| money::to_column("inputPricePer1k", p)),
            )?,
            output_price_per_1k: changed(
                input
                    .output_price_per_1k
                    .map(|p| money::to_column("outputPricePer1k", p)),
            )?,
            is_active: input.is_active.map_or(NotSet, Set),
            updated_at: Set(Utc::now()),
            ..Default::default()
        };
        let ai_service = repo::update(&*rc.tx().await?, row).await?.into();
        Ok(UpdateAiServicePayload { ai_service })
    }

    /// Adds an agent to the catalog (admins).
    async fn create_agent(
        &self,
        ctx: &Context<'_>,
        input: CreateAgentInput,
    ) -> ApiResult<CreateAgentPayload> {
        let rc = RequestContext::of(ctx)?;
        require_admin(rc, Operation::Write)?;
        let now = Utc::now();
        let row = agents::ActiveModel {
            id: Set(new_id()),
            slug: Set(slug(&input.slug)?),
            name: Set(text("name", &input.name)?),
            description: Set(description(input.description.as_deref())?),
            capabilities: Set(capabilities(input.capabilities)?),
            config: Set(config(input.config)?),
            is_active: Set(input.is_active),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let agent = repo::insert(&*rc.tx().await?, row).await?.into();
        Ok(CreateAgentPayload { agent })
    }

    /// Changes an agent, its configuration and whether it is active (admins).
    async fn update_agent(
        &self,
        ctx: &Context<'_>,
        input: UpdateAgentInput,
    ) -> ApiResult<UpdateAgentPayload> {
        let rc = RequestContext::of(ctx)?;
        require_admin(rc, Operation::Write)?;
        let id = existing::<agents::Entity>(
            rc,
            &input.id,
            (agents::Column::Id, agents::Column::IsActive),
            "agent",
        )
        .await?;
        let row = agents::ActiveModel {
            id: Set(id),
            name: changed(input.name.as_deref().map(|v| text("name", v)))?,
            description: changed(input.description.as_deref().map(|v| description(Some(v))))?,
            capabilities: changed(input.capabilities.map(capabilities))?,
            config: changed(input.config.map(|c| config(Some(c))))?,
            is_active: input.is_active.map_or(NotSet, Set),
            updated_at: Set(Utc::now()),
            ..Default::default()
        };
        let agent = repo::update(&*rc.tx().await?, row).await?.into();
        Ok(UpdateAgentPayload { agent })
    }
}

/// The id of an existing entry the caller may read, or `NOT_FOUND`.
async fn existing<E: sea_orm::EntityTrait>(
    rc: &RequestContext,
    id: &ID,
    columns: (E::Column, E::Column),
    what: &'static str,
) -> ApiResult<Uuid> {
    let id = parse_id("id", id)?;
    repo::find::<E>(&*rc.tx().await?, rc.identity(), columns, id)
        .await?
        .ok_or(ApiError::NotFound(what))?;
    Ok(id)
}

/// A field to set when the client gave it, validated.
fn changed<T: Into<sea_orm::Value>>(
    value: Option<ApiResult<T>>,
) -> ApiResult<sea_orm::ActiveValue<T>> {
    Ok(match value.transpose()? {
        Some(value) => Set(value),
        None => NotSet,
    })
}

/// A slug: 1 to 64 lowercase letters, digits and dashes.
fn slug(raw: &str) -> ApiResult<String> {
    let slug = validate::required("slug", raw, 64, Lines::One)?;
    if !slug
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(ApiError::bad_input(
            "slug: only lowercase letters, digits and dashes",
        ));
    }
    Ok(slug)
}

fn text(field: &str, raw: &str) -> ApiResult<String> {
    validate::required(field, raw, 200, Lines::One)
}

fn description(raw: Option<&str>) -> ApiResult<Option<String>> {
    validate::optional("description", raw, 2_000, Lines::Many)
}

/// Capability names, each a short name, at most 32 of them.
fn capabilities(names: Vec<String>) -> ApiResult<Value> {
    if names.len() > 32 {
        return Err(ApiError::bad_input("capabilities: at most 32"));
    }
    let names = names
        .iter()
        .map(|name| validate::required("capabilities", name, 64, Lines::One))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Value::from(names))
}

/// An agent's configuration: a JSON object (default `{}`).
fn config(value: Option<Json<Value>>) -> ApiResult<Value> {
    match value.map(|Json(v)| v) {
        None => Ok(Value::Object(Default::default())),
        Some(object) => validate::json_object("config", &object).map(|()| object),
    }
}
