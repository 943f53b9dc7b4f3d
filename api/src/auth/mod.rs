//! Who is calling and what their token lets them do.
//!
//! [`Identity`] is the caller as the database sees it (user id and role), [`Session`] a
//! verified biscuit token with that identity, and [`Session::authorize`] the one place
//! that runs the token's own checks (read-only, project scope, expiry) against the
//! operation at hand. Identity is read from the authority block only, never from blocks
//! a holder appended. [`TokenService`] remembers the tokens it verified (bounded), so a
//! token presented again skips its signatures and datalog.

mod cache;
mod credentials;
mod throttle;
mod tokens;

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use credentials::{Email, Password, hash_password, verify_password};
pub use throttle::{AccountThrottles, Quota, SignInAttempt};
pub(crate) use tokens::write_private;
pub use tokens::{DEFAULT_TOKEN_CACHE, INVALID_TOKEN, Session, TokenService};

/// The role a token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// An ordinary account.
    User,
    /// An administrator: sees and changes everything.
    Admin,
    /// A worker or deployer: the gateway's trusted machine identity.
    Service,
}

impl Role {
    /// The name used in tokens and in `app.role`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
            Self::Service => "service",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "user" => Some(Self::User),
            "admin" => Some(Self::Admin),
            "service" => Some(Self::Service),
            _ => None,
        }
    }
}

/// The caller as the database sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Identity {
    user_id: Option<Uuid>,
    role: Option<Role>,
}

impl Identity {
    /// Nobody signed in.
    pub const ANONYMOUS: Self = Self {
        user_id: None,
        role: None,
    };

    /// The gateway's own service identity, used for sign-up and sign-in.
    pub const SERVICE: Self = Self {
        user_id: None,
        role: Some(Role::Service),
    };

    /// A signed-in account.
    pub fn user(user_id: Uuid, role: Role) -> Self {
        Self {
            user_id: Some(user_id),
            role: Some(role),
        }
    }

    /// The account's id, if any.
    pub fn user_id(&self) -> Option<Uuid> {
        self.user_id
    }

    /// The role, `None` when anonymous.
    pub fn role(&self) -> Option<Role> {
        self.role
    }

    /// Whether this identity sees and changes everything.
    pub fn is_admin(&self) -> bool {
        self.role == Some(Role::Admin)
    }
}

/// What an operation does, as the token's checks see it (`operation(..)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Read,
    Write,
}

/// What an operation touches, as the token's checks see it (`resource(..)`). Each kind
/// of account-wide data has a resource of its own, so a token narrowed to one project
/// (`resource("project", P) or resource("account")`) reaches that project and the
/// caller's own profile, and nothing account-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// The caller's own profile: `me`, `updateMe`, unscoped `createScopedToken`.
    Account,
    /// One project and what hangs off it (tasks, deployments, generations), also a
    /// project being created.
    Project(Uuid),
    /// The caller's billing (`resource("billing")`).
    Billing,
    /// The caller's provider keys (`resource("api_keys")`).
    ApiKeys,
    /// The caller's integrations (`resource("integrations")`).
    Integrations,
    /// The caller's notifications (`resource("notifications")`).
    Notifications,
    /// The caller's usage figures (`resource("usage")`).
    Usage,
    /// The shared catalogs and the user directory that admins write and manage
    /// (`resource("admin")`).
    Admin,
}

impl Resource {
    /// The `resource(..)` fact the authorizer supplies for this access.
    pub(crate) fn fact(self) -> String {
        let kind = match self {
            Self::Project(id) => return format!("resource(\"project\", \"{id}\");"),
            Self::Account => "account",
            Self::Billing => "billing",
            Self::ApiKeys => "api_keys",
            Self::Integrations => "integrations",
            Self::Notifications => "notifications",
            Self::Usage => "usage",
            Self::Admin => "admin",
        };
        format!("resource(\"{kind}\");")
    }
}

/// The expiry of a token asked to live `ttl` (at least one second), rounded up to a
/// whole second: biscuit dates have no fraction, so the reported expiry is exactly the
/// enforced one, and the token lives at least as long as asked.
pub fn expiry_after(ttl: Duration) -> DateTime<Utc> {
    let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
    let expiry = Utc::now()
        .checked_add_signed(ttl.max(chrono::Duration::seconds(1)))
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let whole = expiry.timestamp() + i64::from(expiry.timestamp_subsec_nanos() > 0);
    DateTime::from_timestamp(whole, 0).unwrap_or(expiry)
}
