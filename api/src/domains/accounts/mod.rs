//! Accounts: sign-up, sign-in, sign-out, scoped tokens and `me`.
//!
//! Sign-up and sign-in must read `users` before anyone is signed in, so they switch the
//! operation's transaction to the gateway's service identity for their own statements
//! and back afterwards; nothing else here widens what the caller may see.

pub mod policy;
mod repo;

use std::time::Duration;

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use entity::users::{self, UserRole};

use super::projects;
use crate::{
    auth::{self, Email, Operation, Password, Resource, Role as TokenRole},
    error::{ApiError, ApiResult},
    kit::{RequestContext, app_state, authz::as_service, parse_id},
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
pub struct User {
    id: ID,
    email: String,
    display_name: String,
    role: Role,
    created_at: DateTime<Utc>,
}

impl From<users::Account> for User {
    fn from(user: users::Account) -> Self {
        Self {
            id: user.id.into(),
            email: user.email,
            display_name: user.display_name,
            role: user.role.into(),
            created_at: user.created_at,
        }
    }
}

impl From<users::Model> for User {
    fn from(user: users::Model) -> Self {
        Self {
            id: user.id.into(),
            email: user.email,
            display_name: user.display_name,
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
        let user = repo::find(&*rc.tx()?, rc.identity(), user_id).await?;
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
}

#[derive(Default)]
pub struct AccountMutation;

#[Object]
impl AccountMutation {
    /// Creates an account and signs it in.
    async fn sign_up(&self, ctx: &Context<'_>, input: SignUpInput) -> ApiResult<AuthPayload> {
        let rc = RequestContext::of(ctx)?;
        let email = Email::parse(&input.email)?;
        let password = Password::parse_new(input.password)?;
        let display_name = validate::required("displayName", &input.display_name, 100, Lines::One)?;
        let password_hash = auth::hash_password(password).await?;
        let user = as_service(rc, async {
            repo::insert(&*rc.tx()?, &email, &display_name, password_hash).await
        })
        .await?;
        sign_in_payload(ctx, user)
    }

    /// Signs an existing account in. Wrong email and wrong password get the same answer.
    async fn sign_in(&self, ctx: &Context<'_>, input: SignInInput) -> ApiResult<AuthPayload> {
        const WRONG: ApiError = ApiError::Unauthenticated("wrong email or password");
        let rc = RequestContext::of(ctx)?;
        let email = Email::parse(&input.email).map_err(|_| WRONG)?;
        // Every attempt counts, found or not, so the limit says nothing about accounts.
        if app_state(ctx)?
            .sign_in_limiter
            .check_key(&email.as_str().to_owned())
            .is_err()
        {
            return Err(ApiError::RateLimited);
        }
        let user = as_service(rc, async { find_by_email(&*rc.tx()?, &email).await }).await?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        if !auth::verify_password(Password::presented(input.password), stored).await? {
            return Err(WRONG);
        }
        sign_in_payload(ctx, user.ok_or(WRONG)?)
    }

    /// Revokes the presented token and every token derived from it (not the token it
    /// was itself derived from). Any live token may sign itself out, read-only and
    /// project-scoped ones included: giving up a token widens nothing.
    async fn sign_out(&self, ctx: &Context<'_>) -> ApiResult<bool> {
        let rc = RequestContext::of(ctx)?;
        let session = rc.session()?;
        session::revoke(&*rc.tx()?, session).await?;
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

fn sign_in_payload(ctx: &Context<'_>, user: users::Model) -> ApiResult<AuthPayload> {
    let (token, _) = app_state(ctx)?
        .tokens
        .issue(user.id, user.role.into(), None)?;
    Ok(AuthPayload {
        token,
        user: user.into(),
    })
}
