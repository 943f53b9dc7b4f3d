//! Accounts: sign-up (with the account's FREE billing row), sign-in, sign-out, scoped
//! tokens, `me` and `updateMe`; for admins, the `users` directory and `setUserRole`.
//!
//! Sign-up and sign-in must read `users` before anyone is signed in, so they switch the
//! operation's transaction to the gateway's service identity for their own statements
//! and back afterwards; nothing else here widens what the caller may see.

pub mod policy;
mod repo;

use std::time::Duration;

use async_graphql::{
    ComplexObject, Context, Enum, ID, InputObject, MaybeUndefined, Object, SimpleObject,
};
use chrono::{DateTime, Utc};
use entity::users::{self, UserRole};
use uuid::Uuid;

use super::{
    billing::{self, Billing},
    projects,
};
use crate::{
    auth::{self, Email, Identity, Operation, Password, Resource, Role as TokenRole},
    error::{ApiError, ApiResult},
    kit::{
        RequestContext, app_state,
        authz::{as_service, refuse_service, require_admin},
        pagination::{Page, PageArgs, page_complexity, paginate},
        parse_id,
    },
    session,
    validate::{self, Lines},
};

pub(crate) use repo::{find_by_email, promote_to_admin};

/// The role of an account or token.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum Role {
    User,
    Admin,
    Service,
}

impl From<UserRole> for Role {
    fn from(role: UserRole) -> Self {
        match role {
            UserRole::User => Self::User,
            UserRole::Admin => Self::Admin,
        }
    }
}

impl From<TokenRole> for Role {
    fn from(role: TokenRole) -> Self {
        match role {
            TokenRole::User => Self::User,
            TokenRole::Admin => Self::Admin,
            TokenRole::Service => Self::Service,
        }
    }
}

impl From<UserRole> for TokenRole {
    fn from(role: UserRole) -> Self {
        match role {
            UserRole::User => Self::User,
            UserRole::Admin => Self::Admin,
        }
    }
}

/// An account, as its owner and admins see it.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct User {
    id: ID,
    #[graphql(skip)]
    key: Uuid,
    email: String,
    display_name: String,
    avatar_url: Option<String>,
    role: Role,
    created_at: DateTime<Utc>,
}

#[ComplexObject]
impl User {
    /// The account's plan and subscription (the account itself and admins).
    async fn billing(&self, ctx: &Context<'_>) -> ApiResult<Billing> {
        let rc = RequestContext::of(ctx)?;
        billing::of_account(ctx, rc, self.key)
            .await?
            .ok_or(ApiError::Forbidden(
                "only the account and admins see its billing",
            ))
    }
}

impl From<users::Account> for User {
    fn from(user: users::Account) -> Self {
        Self {
            id: user.id.into(),
            key: user.id,
            email: user.email,
            display_name: user.display_name,
            avatar_url: user.avatar_url,
            role: user.role.into(),
            created_at: user.created_at,
        }
    }
}

/// A token and the account it signs in.
#[derive(SimpleObject)]
pub struct AuthPayload {
    token: String,
    user: User,
}

/// A derived, weaker token.
#[derive(SimpleObject)]
pub struct ScopedTokenPayload {
    token: String,
    expires_at: DateTime<Utc>,
}

#[derive(InputObject)]
pub struct SignUpInput {
    email: String,
    password: String,
    display_name: String,
}

#[derive(InputObject)]
pub struct SignInInput {
    email: String,
    password: String,
}

/// Each field narrows the caller's token; omitted fields keep what it had.
#[derive(InputObject)]
pub struct ScopedTokenInput {
    project_id: Option<ID>,
    read_only: Option<bool>,
    ttl_seconds: Option<i32>,
}

/// Omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateMeInput {
    display_name: Option<String>,
    avatar_url: MaybeUndefined<String>,
}

#[derive(SimpleObject)]
pub struct UpdateMePayload {
    user: User,
}

#[derive(InputObject)]
pub struct SetUserRoleInput {
    user_id: ID,
    role: Role,
}

#[derive(SimpleObject)]
pub struct SetUserRolePayload {
    user: User,
}

/// An avatar's address: an `http(s)` URL of at most 2,000 characters.
fn avatar_url(raw: &str) -> ApiResult<Option<String>> {
    let url = validate::optional("avatarUrl", Some(raw), 2_000, Lines::One)?;
    if let Some(url) = &url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        return Err(ApiError::bad_input("avatarUrl: must be an http(s) URL"));
    }
    Ok(url)
}

#[derive(Default)]
pub struct AccountQuery;

#[Object]
impl AccountQuery {
    /// The signed-in account; null when anonymous.
    async fn me(&self, ctx: &Context<'_>) -> ApiResult<Option<User>> {
        let rc = RequestContext::of(ctx)?;
        let Some(user_id) = rc.identity().user_id() else {
            return Ok(None);
        };
        rc.authorize(Operation::Read, Resource::Account)?;
        let user = repo::find(&*rc.tx().await?, rc.identity(), user_id).await?;
        Ok(user.map(|user| {
            let mut user = User::from(user);
            // The role the caller acts with: the token's (a user token of an admin acts
            // as a user; an admin token is only accepted while the account is an admin).
            if let Some(role) = rc.identity().role() {
                user.role = role.into();
            }
            user
        }))
    }

    /// Every account, newest first (admins).
    #[graphql(complexity = "page_complexity(first, last, child_complexity)")]
    async fn users(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> ApiResult<Page<User>> {
        let rc = RequestContext::of(ctx)?;
        require_admin(rc, Operation::Read)?;
        paginate(
            rc.tx_ref(),
            repo::all(),
            (users::Column::Id, |u: &users::Account| u.id),
            PageArgs::new(ctx, first, after, last, before),
            User::from,
        )
        .await
    }
}

#[derive(Default)]
pub struct AccountMutation;

#[Object]
impl AccountMutation {
    /// Changes the caller's own profile. An omitted field stays; `avatarUrl: null`
    /// clears the avatar.
    async fn update_me(
        &self,
        ctx: &Context<'_>,
        input: UpdateMeInput,
    ) -> ApiResult<UpdateMePayload> {
        let rc = RequestContext::of(ctx)?;
        let user_id = rc.user_id()?;
        refuse_service(rc, "service tokens have no profile to change")?;
        rc.authorize(Operation::Write, Resource::Account)?;
        let changes = repo::ProfileChanges {
            display_name: input
                .display_name
                .as_deref()
                .map(|name| validate::required("displayName", name, 100, Lines::One))
                .transpose()?,
            avatar_url: match &input.avatar_url {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(url) => Some(avatar_url(url)?),
            },
        };
        let db = rc.tx().await?;
        repo::update_profile(&*db, user_id, changes).await?;
        let user = repo::find(&*db, rc.identity(), user_id)
            .await?
            .ok_or(ApiError::NotFound("account"))?;
        Ok(UpdateMePayload { user: user.into() })
    }

    /// Makes an account a user or an admin (admins). Service identities are minted by
    /// the CLI, not stored as a role.
    async fn set_user_role(
        &self,
        ctx: &Context<'_>,
        input: SetUserRoleInput,
    ) -> ApiResult<SetUserRolePayload> {
        let rc = RequestContext::of(ctx)?;
        require_admin(rc, Operation::Write)?;
        let user_id = parse_id("userId", &input.user_id)?;
        let role = match input.role {
            Role::User => UserRole::User,
            Role::Admin => UserRole::Admin,
            Role::Service => {
                return Err(ApiError::bad_input(
                    "role: an account is a USER or an ADMIN",
                ));
            }
        };
        let db = rc.tx().await?;
        repo::set_role(&*db, user_id, role).await?;
        let user = repo::find(&*db, rc.identity(), user_id)
            .await?
            .ok_or(ApiError::NotFound("user"))?;
        Ok(SetUserRolePayload { user: user.into() })
    }

    /// Creates an account and signs it in. A malformed and a taken email get the same
    /// refusal, so sign-up does not tell which emails have accounts; sign-ups are
    /// limited per client address.
    // The taken email costs the same password hash as a new account; ARCHITECTURE.md
    // ("Account abuse") says what still leaks.
    async fn sign_up(&self, ctx: &Context<'_>, input: SignUpInput) -> ApiResult<AuthPayload> {
        let rc = RequestContext::of(ctx)?;
        let email = Email::parse(&input.email).map_err(|_| unusable_email())?;
        let password = Password::parse_new(input.password)?;
        let display_name = validate::required("displayName", &input.display_name, 100, Lines::One)?;
        let state = app_state(ctx)?;
        rc.spend_password_hash(&state.rate_limits)?;
        state.account_throttles.sign_up(rc.client())?;
        let password_hash = auth::hash_password(password).await?;
        let user = as_service(rc, async {
            let db = rc.tx().await?;
            if find_by_email(&*db, &email).await?.is_some() {
                return Err(unusable_email());
            }
            // A concurrent sign-up may take the email between the two statements.
            let user = repo::insert(&*db, &email, &display_name, password_hash)
                .await
                .map_err(|err| match err {
                    ApiError::Conflict(_) => unusable_email(),
                    err => err,
                })?;
            billing::create_for_new_account(&*db, user.id).await?;
            Ok(user)
        })
        .await?;
        sign_in_payload(ctx, user)
    }

    /// Signs an existing account in. Wrong email and wrong password get the same answer.
    /// Failed attempts are limited per client address, per address and email, and per
    /// email.
    // Why only failures count, and who passes the per-email lock:
    // `auth::AccountThrottles::begin_sign_in`.
    async fn sign_in(&self, ctx: &Context<'_>, input: SignInInput) -> ApiResult<AuthPayload> {
        const WRONG: ApiError = ApiError::Unauthenticated("wrong email or password");
        let rc = RequestContext::of(ctx)?;
        let email = Email::parse(&input.email).map_err(|_| WRONG)?;
        let state = app_state(ctx)?;
        rc.spend_password_hash(&state.rate_limits)?;
        // Found or not, the email is throttled the same, so a refusal says nothing about
        // accounts.
        let attempt = state.account_throttles.begin_sign_in(rc.client(), &email)?;
        // Read in a short transaction of its own, ended before the password waits for
        // its turn to be verified: the operation's would hold a pooled connection (on
        // SQLite, a mutation's write lock) through the wait and the verification.
        let lookup = state.db.begin(&Identity::SERVICE, true).await?;
        let user = find_by_email(lookup.conn(), &email).await;
        lookup.finish(user.is_ok()).await?;
        let user = user?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        // Verified whether the account exists or not, so timing does not tell.
        let verified = auth::verify_password(Password::presented(input.password), stored).await?;
        match user.filter(|_| verified) {
            Some(user) => {
                attempt.succeeded();
                sign_in_payload(ctx, user)
            }
            None => {
                attempt.failed();
                Err(WRONG)
            }
        }
    }

    /// Revokes the presented token and every token derived from it (not the token it
    /// was itself derived from). Any live token may sign itself out, read-only and
    /// project-scoped ones included: giving up a token widens nothing.
    async fn sign_out(&self, ctx: &Context<'_>) -> ApiResult<bool> {
        let rc = RequestContext::of(ctx)?;
        let session = rc.session()?;
        session::revoke(&*rc.tx().await?, session).await?;
        app_state(ctx)?.tokens.forget(session);
        Ok(true)
    }

    /// Derives a weaker token from the caller's: read-only, one project, shorter life.
    async fn create_scoped_token(
        &self,
        ctx: &Context<'_>,
        input: ScopedTokenInput,
    ) -> ApiResult<ScopedTokenPayload> {
        let rc = RequestContext::of(ctx)?;
        let session = rc.session()?;
        let ttl = match input.ttl_seconds {
            None => None,
            Some(secs) if secs > 0 => Some(Duration::from_secs(u64::from(secs.unsigned_abs()))),
            Some(_) => return Err(ApiError::bad_input("ttlSeconds: must be positive")),
        };
        let project_id = match &input.project_id {
            Some(id) => {
                let id = parse_id("projectId", id)?;
                projects::require_visible(rc, id).await?;
                Some(id)
            }
            None => None,
        };
        let resource = project_id.map_or(Resource::Account, Resource::Project);
        rc.authorize(Operation::Read, resource)?;
        let (token, expires_at) =
            session.attenuate(project_id, input.read_only.unwrap_or(false), ttl)?;
        Ok(ScopedTokenPayload { token, expires_at })
    }
}

/// The one refusal of a sign-up's email, malformed or taken alike.
fn unusable_email() -> ApiError {
    ApiError::bad_input("email: not a valid email address, or not available to sign up with")
}

fn sign_in_payload(ctx: &Context<'_>, user: users::Model) -> ApiResult<AuthPayload> {
    let (token, _) = app_state(ctx)?
        .tokens
        .issue(user.id, user.role.into(), None)?;
    Ok(AuthPayload {
        token,
        user: users::Account::from(user).into(),
    })
}
