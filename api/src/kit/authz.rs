//! Authorization shared by every domain: the role rules that the policies state per
//! table (who is an admin, that services never act as owners), and scoped listing:
//! narrowing a list to what the caller's token allows.
//!
//! A token whose appended blocks mention `resource` may refuse any project, so lists of
//! project-owned rows (projects, tasks, deployments, generations) authorize each distinct
//! project among their candidates. Verdicts are remembered in the [`RequestContext`], and
//! every project authorized one by one is charged against one budget per operation
//! ([`AUTHORIZATION_BUDGET`]), so aliases and nested lists cannot multiply the work.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QuerySelect, Select};
use uuid::Uuid;

use super::RequestContext;
use crate::{
    auth::{Identity, Operation, Resource, Role},
    error::{ApiError, ApiResult},
};

/// Most projects one operation may have authorized one by one for its lists, all list
/// fields and aliases together. A token with `scope_project` hints needs one per hint.
pub const AUTHORIZATION_BUDGET: usize = 500;

/// Whose rows of an account-owned table (tasks, deployments, notifications) a caller
/// reads: a domain's policy states it once, and it is rendered as a SQL condition for
/// queries and judged in memory for each subscription event, so both agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readers {
    /// Every row (admins, services).
    All,
    /// The rows of this account.
    Owner(Uuid),
    /// None.
    Nobody,
}

impl Readers {
    /// The rows readable, as a condition on the table's owner column; `key` is a
    /// column that is never null, used to select nothing.
    pub fn condition(self, owner: impl ColumnTrait, key: impl ColumnTrait) -> Condition {
        match self {
            Self::All => Condition::all(),
            Self::Owner(user) => Condition::all().add(owner.eq(user)),
            Self::Nobody => Condition::all().add(key.is_null()),
        }
    }

    /// The one account whose rows are readable, when that is the rule.
    pub fn owner(self) -> Option<Uuid> {
        match self {
            Self::Owner(user) => Some(user),
            Self::All | Self::Nobody => None,
        }
    }

    /// Whether a row owned by `owner` is readable.
    pub fn admits(self, owner: Uuid) -> bool {
        match self {
            Self::All => true,
            Self::Owner(user) => user == owner,
            Self::Nobody => false,
        }
    }
}

/// `FORBIDDEN` for service tokens: where a table's policies grant the service role no
/// write, the resolvers say so too, so SQLite (no policies) keeps the same rule.
pub fn refuse_service(rc: &RequestContext, what: &'static str) -> ApiResult<()> {
    if rc.identity().role() == Some(Role::Service) {
        return Err(ApiError::Forbidden(what));
    }
    Ok(())
}

/// `FORBIDDEN` unless the caller acts as an admin and its token allows `operation` on
/// administration (`UNAUTHENTICATED` when anonymous).
pub fn require_admin(rc: &RequestContext, operation: Operation) -> ApiResult<()> {
    rc.session()?;
    if !rc.identity().is_admin() {
        return Err(ApiError::Forbidden("only an admin may do this"));
    }
    rc.authorize(operation, Resource::Admin)
}

/// `FORBIDDEN` unless the caller acts as the service or an admin.
pub fn require_service_or_admin(rc: &RequestContext) -> ApiResult<()> {
    rc.session()?;
    match rc.identity().role() {
        Some(Role::Service | Role::Admin) => Ok(()),
        _ => Err(ApiError::Forbidden(
            "only a service or an admin may do this",
        )),
    }
}

/// The signed-in account whose own account-wide data (keys, integrations,
/// notifications) the caller reads or changes: `UNAUTHENTICATED` when anonymous,
/// `FORBIDDEN` for services (`service_refusal` says why) and for tokens that do not
/// allow `operation` on `resource`.
pub fn require_account_data(
    rc: &RequestContext,
    operation: Operation,
    resource: Resource,
    service_refusal: &'static str,
) -> ApiResult<Uuid> {
    let user = rc.user_id()?;
    refuse_service(rc, service_refusal)?;
    rc.authorize(operation, resource)?;
    Ok(user)
}

/// The rows of account-wide data `identity` owns, as a condition on the table's
/// `user_id` column: its own as a user or an admin, none for services and anonymous
/// callers (admins manage only their own keys, integrations and notifications).
pub fn own_rows(identity: Identity, user_id: impl ColumnTrait) -> Condition {
    match (identity.role(), identity.user_id()) {
        (Some(Role::User | Role::Admin), Some(user)) => Condition::all().add(user_id.eq(user)),
        _ => Condition::all().add(user_id.is_null()),
    }
}

/// `FORBIDDEN` unless the caller acts as the service (agent workers and deployers).
pub fn require_service(rc: &RequestContext) -> ApiResult<()> {
    rc.session()?;
    if rc.identity().role() != Some(Role::Service) {
        return Err(ApiError::Forbidden("only a service token may do this"));
    }
    Ok(())
}

/// Runs `work` under the gateway's service identity, then switches back to the caller:
/// for the few writes the gateway makes on a caller's behalf that the caller's own role
/// may not make (reading `users` at sign-in, creating the billing row at sign-up,
/// notifying an owner of their own task's end). Nothing else widens what a caller sees.
pub async fn as_service<T>(
    rc: &RequestContext,
    work: impl Future<Output = ApiResult<T>>,
) -> ApiResult<T> {
    rc.tx_ref().act_as(&Identity::SERVICE).await?;
    let result = work.await;
    // After a failed statement Postgres refuses everything until rollback, which the
    // pipeline does; switching back is only possible, and needed, on success.
    if result.is_ok() {
        rc.tx_ref().act_as(&rc.identity()).await?;
    }
    result
}

/// Narrows `query` to the rows whose project (`project` column) the token may read.
///
/// When no appended block mentions `resource`, every check evaluates the same for any
/// resource, so one authorization of `otherwise` decides for the whole list (a token
/// refused everything is refused the list). Otherwise the distinct projects among the
/// candidates are authorized (at most once per operation each), so pages and
/// `totalCount` count only what the token may see.
pub async fn scope_to_token<E>(
    rc: &RequestContext,
    query: Select<E>,
    project: E::Column,
    otherwise: Resource,
) -> ApiResult<Select<E>>
where
    E: EntityTrait,
{
    scope_for(rc, Operation::Read, query, project, otherwise).await
}

/// [`scope_to_token`] for `operation`: the rows whose project the token allows it on
/// (a worker claims only tasks of projects its token may write).
pub async fn scope_for<E>(
    rc: &RequestContext,
    operation: Operation,
    query: Select<E>,
    project: E::Column,
    otherwise: Resource,
) -> ApiResult<Select<E>>
where
    E: EntityTrait,
{
    let Some(session) = rc.session_opt().filter(|s| s.restricts_resources()) else {
        rc.authorize(operation, otherwise)?;
        return Ok(query);
    };
    let mut candidates = query.clone();
    if !session.project_hints().is_empty() {
        candidates = candidates.filter(project.is_in(session.project_hints().iter().copied()));
    }
    let ids: Vec<Uuid> = candidates
        .select_only()
        .column(project)
        .distinct()
        .limit(AUTHORIZATION_BUDGET as u64 + 1)
        .into_tuple()
        .all(&*rc.tx().await?)
        .await?;
    // More candidates than the budget were cut off by the limit: however many of them
    // are already judged, the rest are unknown, and a list of only some would be wrong.
    if ids.len() > AUTHORIZATION_BUDGET {
        return Err(over_budget());
    }
    let allowed = allowed_projects(rc, operation, ids).await?;
    Ok(query.filter(project.is_in(allowed)))
}

/// A list whose candidates a restricted token cannot all be authorized for.
fn over_budget() -> ApiError {
    ApiError::bad_input(format!(
        "this token restricts projects, so lists authorize each project they return, at \
         most {AUTHORIZATION_BUDGET} per operation; ask for fewer lists, or name the \
         projects with scope_project(\"<id>\") facts in the token's block"
    ))
}

/// The projects among `ids` the token allows `operation` on. Verdicts already reached
/// in this operation are reused; the rest are charged to the budget and authorized off
/// the async runtime, stopping early if the operation is dropped (client gone,
/// timeout).
async fn allowed_projects(
    rc: &RequestContext,
    operation: Operation,
    ids: Vec<Uuid>,
) -> ApiResult<Vec<Uuid>> {
    // One list at a time per operation, so a concurrent sibling reuses these verdicts.
    let mut budget = rc.budget.lock().await;
    let mut allowed = Vec::new();
    let mut unknown = Vec::new();
    for id in ids {
        match rc.remembered(operation, Resource::Project(id)) {
            Some(Ok(())) => allowed.push(id),
            Some(Err(_)) => {}
            None => unknown.push(id),
        }
    }
    if unknown.is_empty() {
        return Ok(allowed);
    }
    if unknown.len() > *budget {
        return Err(over_budget());
    }
    *budget -= unknown.len();
    let session = rc.session()?.clone();
    let cancelled = CancelOnDrop::default();
    let flag = cancelled.0.clone();
    let verdicts = tokio::task::spawn_blocking(move || {
        unknown
            .into_iter()
            .take_while(|_| !flag.load(Ordering::Relaxed))
            .map(|id| (id, session.authorize(operation, Resource::Project(id))))
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| ApiError::internal("authorizing list candidates failed", e))?;
    drop(cancelled);
    for (id, verdict) in verdicts {
        rc.remember(operation, Resource::Project(id), verdict.clone());
        match verdict {
            Ok(()) => allowed.push(id),
            Err(ApiError::Internal(err)) => return Err(ApiError::Internal(err)),
            Err(_) => {}
        }
    }
    Ok(allowed)
}

/// Raises its flag when dropped: the blocking loop stops when the operation that waits
/// for it is dropped.
#[derive(Default)]
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
