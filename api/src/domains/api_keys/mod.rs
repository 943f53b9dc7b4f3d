//! Provider API keys: `myApiKeys`, `createApiKey`, `revokeApiKey`, and
//! `agentTaskCredential`, the one path by which a secret leaves the gateway.
//!
//! A key is sealed ([`crate::secrets`]) with its owner's id bound in before it is
//! stored; afterwards only its metadata and `hint` (the last four characters) are ever
//! shown, to its owner only ([`policy`]). Tokens reach keys through
//! `resource("api_keys")`, so a token narrowed to one project cannot. The plaintext goes
//! to a service token only, for a task that is running, and is never logged.

pub mod policy;
mod repo;

use async_graphql::{ComplexObject, Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::{
    agent_tasks::AgentTaskStatus,
    user_api_keys::{self, Metadata},
};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::{
    auth::{Operation, Resource},
    domains::{
        catalog::{AiService, AiServiceLoader},
        usage::{self, UsageEvent},
    },
    error::{ApiError, ApiResult},
    kit::{
        RequestContext, app_state,
        authz::{require_account_data, require_service},
        loaders::load_one,
        pagination::{Page, PageArgs, page_complexity, paginate},
        parse_id,
    },
    secrets::Sealed,
    validate::{self, Lines},
};

/// A provider API key as its owner sees it: never the secret, only its last four
/// characters.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct ApiKey {
    id: ID,
    label: String,
    provider: String,
    #[graphql(skip)]
    ai_service_id: Option<Uuid>,
    /// The last four characters of the key.
    hint: String,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl From<Metadata> for ApiKey {
    fn from(k: Metadata) -> Self {
        Self {
            id: k.id.into(),
            label: k.label,
            provider: k.provider,
            ai_service_id: k.ai_service_id,
            hint: k.hint,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
            created_at: k.created_at,
        }
    }
}

#[ComplexObject]
impl ApiKey {
    /// The catalog's AI service this key is for, if any (and still readable).
    async fn ai_service(&self, ctx: &Context<'_>) -> ApiResult<Option<AiService>> {
        match self.ai_service_id {
            Some(id) => load_one::<AiServiceLoader, _>(ctx, id).await,
            None => Ok(None),
        }
    }
}

#[derive(InputObject)]
pub struct CreateApiKeyInput {
    label: String,
    /// Provider name (`openai`, ...), stored in lower case. When `aiServiceId` is given
    /// it must be that service's provider.
    provider: String,
    ai_service_id: Option<ID>,
    /// The key itself; write-only.
    secret: String,
}

#[derive(SimpleObject)]
pub struct CreateApiKeyPayload {
    api_key: ApiKey,
}

#[derive(SimpleObject)]
pub struct RevokeApiKeyPayload {
    api_key: ApiKey,
}

#[derive(InputObject)]
pub struct AgentTaskCredentialInput {
    task_id: ID,
    provider: String,
}

/// The task owner's key for a provider, for the agent worker running the task.
#[derive(SimpleObject)]
pub struct AgentTaskCredentialPayload {
    secret: String,
}

#[derive(Default)]
pub struct ApiKeyQuery;

#[Object]
impl ApiKeyQuery {
    /// The caller's own API keys (metadata only), newest first, revoked ones included.
    #[graphql(complexity = "page_complexity(first, last, child_complexity)")]
    async fn my_api_keys(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<Page<ApiKey>> {
        let rc = RequestContext::of(ctx)?;
        require_account_data(rc, Operation::Read, Resource::ApiKeys, NO_KEYS)?;
        paginate(
            rc.tx_ref(),
            repo::list(policy::manageable(rc.identity())),
            (user_api_keys::Column::Id, |key: &Metadata| key.id),
            PageArgs::new(ctx, first, after, last, before),
            ApiKey::from,
        )
        .await
    }
}

#[derive(Default)]
pub struct ApiKeyMutation;

#[Object]
impl ApiKeyMutation {
    /// Seals and stores a provider API key for the caller. The secret is never shown
    /// again, only its `hint`.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        input: CreateApiKeyInput,
    ) -> ApiResult<CreateApiKeyPayload> {
        let rc = RequestContext::of(ctx)?;
        let owner = require_account_data(rc, Operation::Write, Resource::ApiKeys, NO_KEYS)?;
        let label = validate::required("label", &input.label, LABEL_MAX, Lines::One)?;
        let provider = validate::provider("provider", &input.provider)?;
        let secret = validate::required("secret", &input.secret, SECRET_MAX, Lines::One)?;
        if secret.chars().count() < SECRET_MIN {
            return Err(ApiError::bad_input(format!(
                "secret: at least {SECRET_MIN} characters"
            )));
        }
        let tx = rc.tx().await?;
        let ai_service_id = match &input.ai_service_id {
            Some(id) => {
                let id = parse_id("aiServiceId", id)?;
                let service_provider = repo::active_service_provider(&*tx, id)
                    .await?
                    .ok_or(ApiError::NotFound("ai service"))?;
                if service_provider != provider {
                    return Err(ApiError::bad_input(
                        "provider: must be the provider of the AI service",
                    ));
                }
                Some(id)
            }
            None => None,
        };
        let id = crate::db::new_id();
        let sealer = &app_state(ctx)?.sealer;
        let new = repo::NewKey {
            id,
            user_id: owner,
            ai_service_id,
            provider,
            label,
            sealed: sealer.seal(owner, &secret)?,
            hint: hint(&secret),
        };
        repo::insert(&*tx, new).await?;
        let api_key = repo::find(&*tx, policy::manageable(rc.identity()), id)
            .await?
            .ok_or(ApiError::bug("a created API key cannot be read back"))?;
        Ok(CreateApiKeyPayload {
            api_key: api_key.into(),
        })
    }

    /// Revokes one of the caller's keys. Revoking a revoked key changes nothing and
    /// returns it as it is (its first `revokedAt` stays).
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: ID) -> ApiResult<RevokeApiKeyPayload> {
        let rc = RequestContext::of(ctx)?;
        require_account_data(rc, Operation::Write, Resource::ApiKeys, NO_KEYS)?;
        let id = parse_id("id", &id)?;
        let tx = rc.tx().await?;
        let visible = policy::manageable(rc.identity());
        repo::find(&*tx, visible.clone(), id)
            .await?
            .ok_or(ApiError::NotFound("api key"))?;
        repo::revoke(&*tx, visible.clone(), id).await?;
        let api_key = repo::find(&*tx, visible, id)
            .await?
            .ok_or(ApiError::NotFound("api key"))?;
        Ok(RevokeApiKeyPayload {
            api_key: api_key.into(),
        })
    }

    /// The plaintext key of a running task's owner for `provider` (their newest
    /// unrevoked one), for the agent worker running it: service tokens only. A task
    /// that is not running is `INVALID_TRANSITION`; no such key is `NOT_FOUND`; a key
    /// that does not open for its owner (moved or altered in the database) is
    /// `INTERNAL`. Records the use on the key and in the owner's usage.
    async fn agent_task_credential(
        &self,
        ctx: &Context<'_>,
        input: AgentTaskCredentialInput,
    ) -> ApiResult<AgentTaskCredentialPayload> {
        let rc = RequestContext::of(ctx)?;
        require_service(rc)?;
        let task_id = parse_id("taskId", &input.task_id)?;
        let provider = validate::provider("provider", &input.provider)?;
        let tx = rc.tx().await?;
        let task = repo::find_task(&*tx, task_id)
            .await?
            .ok_or(ApiError::NotFound("task"))?;
        rc.authorize(Operation::Write, Resource::Project(task.project_id))
            .map_err(|_| ApiError::NotFound("task"))?;
        // A plaintext key is account data of the task's owner: a service token narrowed
        // to a project reaches it only if it also allows `resource("api_keys")`.
        rc.authorize(Operation::Read, Resource::ApiKeys)?;
        if task.status != AgentTaskStatus::Running {
            return Err(ApiError::InvalidTransition(
                "credentials are handed out only for a running task".to_owned(),
            ));
        }
        let key = repo::newest_usable(&*tx, task.user_id, &provider)
            .await?
            .ok_or(ApiError::NotFound("api key"))?;
        let sealed = Sealed {
            ciphertext: key.ciphertext,
            nonce: key.nonce,
            key_id: key.key_id,
        };
        let secret = app_state(ctx)?.sealer.open(key.user_id, &sealed)?;
        repo::mark_used(&*tx, key.id).await?;
        usage::record(
            &*tx,
            UsageEvent {
                user_id: task.user_id,
                project_id: Some(task.project_id),
                event_type: "api_key.used",
                quantity: 1,
                tokens: 0,
                cost: Decimal::ZERO,
                metadata: serde_json::json!({
                    "api_key_id": key.id,
                    "task_id": task.id,
                    "provider": provider,
                }),
            },
        )
        .await?;
        Ok(AgentTaskCredentialPayload { secret })
    }
}

/// The last four characters of a secret, all that is ever shown of it again.
fn hint(secret: &str) -> String {
    let count = secret.chars().count();
    secret
        .chars()
        .skip(count.saturating_sub(HINT_LEN))
        .collect()
}

/// Characters of a secret shown back as its hint.
const HINT_LEN: usize = 4;
/// Shortest secret accepted: twice the hint, so the hint never is most of it.
const SECRET_MIN: usize = 2 * HINT_LEN;
/// Longest secret accepted, in characters.
const SECRET_MAX: usize = 4_096;
/// Longest label, in characters.
const LABEL_MAX: usize = 200;

/// Why a service token is refused: services hold no account-wide data of their own.
const NO_KEYS: &str = "service tokens have no API keys of their own";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_are_the_last_four_characters() {
        assert_eq!(hint("sk-abcdefgh1234"), "1234");
        assert_eq!(hint("ééééxyzä"), "xyzä");
    }
}
