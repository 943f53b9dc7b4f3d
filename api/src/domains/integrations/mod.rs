//! Integrations with third-party services: `myIntegrations`, `connectIntegration`,
//! `updateIntegration`, `disconnectIntegration`.
//!
//! Credentials are sealed ([`crate::secrets`]) with the owner's id bound in and are
//! write-only: the API says only whether an integration has some. One integration per
//! provider and owner (a second is `CONFLICT`). Disconnecting deletes the row, sealed
//! credentials with it, rather than keeping a `DISCONNECTED` row that still holds them.
//! Tokens reach integrations through `resource("integrations")`, so a token narrowed to
//! one project cannot.

pub mod policy;
mod repo;

use async_graphql::{Context, Enum, ID, InputObject, Json, MaybeUndefined, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::integrations::{self, IntegrationStatus as DbStatus, Metadata};
use uuid::Uuid;

use crate::{
    auth::{Operation, Resource},
    error::{ApiError, ApiResult},
    kit::{
        RequestContext, app_state,
        authz::require_account_data,
        enums::mirror_enum,
        pagination::{Page, PageArgs, page_complexity, paginate},
        parse_id,
        payloads::DeletePayload,
    },
    secrets::Sealed,
    validate::{self, Lines},
};

/// Connection state of an integration.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum IntegrationStatus {
    Connected,
    Disconnected,
    Error,
}

mirror_enum!(IntegrationStatus <=> DbStatus { Connected, Disconnected, Error });

/// An integration as its owner sees it: never the credentials.
#[derive(SimpleObject)]
pub struct Integration {
    id: ID,
    provider: String,
    /// Non-secret settings.
    config: Json<serde_json::Value>,
    status: IntegrationStatus,
    /// Whether sealed credentials are stored (they are never shown).
    has_credentials: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Metadata> for Integration {
    fn from(i: Metadata) -> Self {
        Self {
            id: i.id.into(),
            provider: i.provider,
            config: Json(i.config),
            status: i.status.into(),
            // The key id is written with the credentials and cleared with them.
            has_credentials: i.key_id.is_some(),
            created_at: i.created_at,
            updated_at: i.updated_at,
        }
    }
}

#[derive(InputObject)]
pub struct ConnectIntegrationInput {
    /// `github`, `vercel`, ...; stored in lower case.
    provider: String,
    /// Non-secret settings, a JSON object; `{}` when omitted.
    config: Option<Json<serde_json::Value>>,
    /// Write-only; sealed before it is stored.
    credentials: Option<String>,
}

#[derive(SimpleObject)]
pub struct ConnectIntegrationPayload {
    integration: Integration,
}

/// Omitted fields stay as they are; `credentials: null` removes them.
#[derive(InputObject)]
pub struct UpdateIntegrationInput {
    id: ID,
    config: Option<Json<serde_json::Value>>,
    credentials: MaybeUndefined<String>,
}

#[derive(SimpleObject)]
pub struct UpdateIntegrationPayload {
    integration: Integration,
}

#[derive(Default)]
pub struct IntegrationQuery;

#[Object]
impl IntegrationQuery {
    /// The caller's own integrations, newest first.
    #[graphql(complexity = "page_complexity(first, last, child_complexity)")]
    async fn my_integrations(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<Page<Integration>> {
        let rc = RequestContext::of(ctx)?;
        require_account_data(rc, Operation::Read, Resource::Integrations, NO_INTEGRATIONS)?;
        paginate(
            rc.tx_ref(),
            repo::list(policy::manageable(rc.identity())),
            (integrations::Column::Id, |row: &Metadata| row.id),
            PageArgs::new(ctx, first, after, last, before),
            Integration::from,
        )
        .await
    }
}

#[derive(Default)]
pub struct IntegrationMutation;

#[Object]
impl IntegrationMutation {
    /// Connects the caller to a provider; `CONFLICT` when already connected to it.
    async fn connect_integration(
        &self,
        ctx: &Context<'_>,
        input: ConnectIntegrationInput,
    ) -> ApiResult<ConnectIntegrationPayload> {
        let rc = RequestContext::of(ctx)?;
        let owner = require_account_data(
            rc,
            Operation::Write,
            Resource::Integrations,
            NO_INTEGRATIONS,
        )?;
        let provider = validate::provider("provider", &input.provider)?;
        let config = config(input.config)?.unwrap_or_else(|| serde_json::json!({}));
        let sealed = input
            .credentials
            .as_deref()
            .map(|raw| seal(ctx, owner, raw))
            .transpose()?;
        let id = crate::db::new_id();
        let tx = rc.tx().await?;
        repo::insert(
            &*tx,
            repo::NewIntegration {
                id,
                user_id: owner,
                provider,
                config,
                sealed,
            },
        )
        .await?;
        let integration = repo::find(&*tx, policy::manageable(rc.identity()), id)
            .await?
            .ok_or(ApiError::bug("a created integration cannot be read back"))?;
        Ok(ConnectIntegrationPayload {
            integration: integration.into(),
        })
    }

    /// Changes the settings or replaces (or, with `null`, removes) the credentials of
    /// one of the caller's integrations.
    async fn update_integration(
        &self,
        ctx: &Context<'_>,
        input: UpdateIntegrationInput,
    ) -> ApiResult<UpdateIntegrationPayload> {
        let rc = RequestContext::of(ctx)?;
        let owner = require_account_data(
            rc,
            Operation::Write,
            Resource::Integrations,
            NO_INTEGRATIONS,
        )?;
        let id = parse_id("id", &input.id)?;
        let tx = rc.tx().await?;
        let visible = policy::manageable(rc.identity());
        repo::find(&*tx, visible.clone(), id)
            .await?
            .ok_or(ApiError::NotFound("integration"))?;
        let sealed = match &input.credentials {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(raw) => Some(Some(seal(ctx, owner, raw)?)),
        };
        let changes = repo::Changes {
            config: config(input.config)?,
            sealed,
        };
        repo::update(&*tx, visible.clone(), id, changes).await?;
        let integration = repo::find(&*tx, visible, id)
            .await?
            .ok_or(ApiError::NotFound("integration"))?;
        Ok(UpdateIntegrationPayload {
            integration: integration.into(),
        })
    }

    /// Disconnects one of the caller's integrations by deleting it, credentials
    /// included.
    async fn disconnect_integration(&self, ctx: &Context<'_>, id: ID) -> ApiResult<DeletePayload> {
        let rc = RequestContext::of(ctx)?;
        require_account_data(
            rc,
            Operation::Write,
            Resource::Integrations,
            NO_INTEGRATIONS,
        )?;
        let id = parse_id("id", &id)?;
        let tx = rc.tx().await?;
        let visible = policy::manageable(rc.identity());
        repo::find(&*tx, visible.clone(), id)
            .await?
            .ok_or(ApiError::NotFound("integration"))?;
        repo::delete(&*tx, visible, id).await?;
        Ok(DeletePayload::new(id))
    }
}

/// Validated credentials, sealed for `owner`.
fn seal(ctx: &Context<'_>, owner: Uuid, raw: &str) -> ApiResult<Sealed> {
    let credentials = validate::required("credentials", raw, CREDENTIALS_MAX, Lines::Many)?;
    app_state(ctx)?.sealer.seal(owner, &credentials)
}

/// Settings must be a JSON object of bounded size.
fn config(raw: Option<Json<serde_json::Value>>) -> ApiResult<Option<serde_json::Value>> {
    let Some(Json(value)) = raw else {
        return Ok(None);
    };
    validate::json_object("config", &value)?;
    if value.to_string().len() > CONFIG_MAX_BYTES {
        return Err(ApiError::bad_input(format!(
            "config: at most {CONFIG_MAX_BYTES} bytes"
        )));
    }
    Ok(Some(value))
}

/// Longest credentials accepted, in characters.
const CREDENTIALS_MAX: usize = 16_384;
/// Largest settings object, serialized.
const CONFIG_MAX_BYTES: usize = 16_384;

/// Why a service token is refused: services hold no account-wide data of their own.
const NO_INTEGRATIONS: &str = "service tokens have no integrations of their own";
