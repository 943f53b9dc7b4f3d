//! [`Actors`]: the cast every access test runs through — anonymous, the owner, another
//! user, an admin, a service, the owner's read-only token, and the owner's token scoped
//! to another project of theirs — with the owner's project that their data hangs off.

use flashfusion_api::auth::Role;
use serde_json::{Value, json};

use crate::{Client, TestApp};

/// Who calls, for tables of expected outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Anonymous,
    Owner,
    Other,
    Admin,
    Service,
    /// The owner's token narrowed with `readOnly: true`.
    ReadOnly,
    /// The owner's token narrowed to another project of the owner's.
    OtherProject,
}

impl Actor {
    /// Every actor, in table order.
    pub const ALL: [Actor; 7] = [
        Actor::Anonymous,
        Actor::Owner,
        Actor::Other,
        Actor::Admin,
        Actor::Service,
        Actor::ReadOnly,
        Actor::OtherProject,
    ];
}

/// The cast of one test.
pub struct Actors {
    pub anonymous: Client,
    pub owner: Client,
    pub owner_id: String,
    pub other: Client,
    pub other_id: String,
    pub admin: Client,
    pub admin_id: String,
    pub service: Client,
    /// The account the service token was minted for.
    pub service_id: String,
    pub read_only: Client,
    pub other_project: Client,
    /// The owner's project that test data hangs off.
    pub project_id: String,
    /// The owner's other project, the one `other_project` is scoped to.
    pub side_project_id: String,
}

impl Actors {
    /// Signs everyone up and derives the owner's narrowed tokens.
    pub async fn new(app: &TestApp) -> Self {
        let (owner, owner_id) = app.user("owner@example.com").await;
        let (other, other_id) = app.user("other@example.com").await;
        let (admin, admin_id) = app.admin("admin@example.com").await;
        let (_, service_id) = app.user("worker@example.com").await;
        let service = app.with_token(&app.mint(&service_id, Role::Service));
        let project_id = create_project(&owner, "main").await;
        let side_project_id = create_project(&owner, "side").await;
        let read_only = app.with_token(&scoped(&owner, json!({ "readOnly": true })).await);
        let other_project =
            app.with_token(&scoped(&owner, json!({ "projectId": side_project_id })).await);
        Self {
            anonymous: app.anonymous(),
            owner,
            owner_id,
            other,
            other_id,
            admin,
            admin_id,
            service,
            service_id,
            read_only,
            other_project,
            project_id,
            side_project_id,
        }
    }

    /// The client of `actor`.
    pub fn client(&self, actor: Actor) -> &Client {
        match actor {
            Actor::Anonymous => &self.anonymous,
            Actor::Owner => &self.owner,
            Actor::Other => &self.other,
            Actor::Admin => &self.admin,
            Actor::Service => &self.service,
            Actor::ReadOnly => &self.read_only,
            Actor::OtherProject => &self.other_project,
        }
    }
}

/// Creates a private project owned by `client`; returns its id.
pub async fn create_project(client: &Client, name: &str) -> String {
    create_project_from(client, json!({ "name": name })).await
}

/// Creates a project `visibility` (`PUBLIC` or `PRIVATE`) as `client` and returns its id.
pub async fn create_visible_project(client: &Client, name: &str, visibility: &str) -> String {
    create_project_from(client, json!({ "name": name, "visibility": visibility })).await
}

async fn create_project_from(client: &Client, input: Value) -> String {
    let created = client
        .graphql(
            "mutation($i: CreateProjectInput!) { createProject(input: $i) { project { id } } }",
            json!({ "i": input }),
        )
        .await;
    created["data"]["createProject"]["project"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("createProject failed: {created}"))
        .to_owned()
}

/// A token derived from `client`'s with `createScopedToken(input: ..)`.
pub async fn scoped(client: &Client, input: Value) -> String {
    let payload = client
        .graphql(
            "mutation($i: ScopedTokenInput!) { createScopedToken(input: $i) { token } }",
            json!({ "i": input }),
        )
        .await;
    payload["data"]["createScopedToken"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("createScopedToken failed: {payload}"))
        .to_owned()
}

/// One row of an access matrix: an operation (its root field and a document over the
/// matrix's variables) and the outcome per actor, in [`Actor::ALL`] order: `"data"`,
/// `"null"`, or an `extensions.code`.
pub struct Case {
    pub field: &'static str,
    pub query: &'static str,
    pub expected: [&'static str; 7],
}

/// Runs every case as every actor (skipping the pairs `skip` names, which a test runs
/// itself, e.g. a delete that must come last) and asserts each outcome.
pub async fn run_matrix(
    cast: &Actors,
    cases: &[Case],
    variables: &Value,
    skip: impl Fn(&str, Actor) -> bool,
) {
    for case in cases {
        for (actor, expected) in Actor::ALL.into_iter().zip(case.expected) {
            if skip(case.field, actor) {
                continue;
            }
            let response = cast
                .client(actor)
                .graphql(case.query, variables.clone())
                .await;
            assert_eq!(
                outcome(&response, case.field),
                expected,
                "{} as {actor:?}: {response}",
                case.field
            );
        }
    }
}

/// The outcome of a response, for tables: `"data"` when the field answered without
/// error, `"null"` when it answered null without error, otherwise the first error's
/// `extensions.code`.
pub fn outcome(response: &Value, field: &str) -> String {
    if let Some(code) = response["errors"][0]["extensions"]["code"].as_str() {
        return code.to_owned();
    }
    if response["data"][field].is_null() {
        "null".to_owned()
    } else {
        "data".to_owned()
    }
}

impl Actors {
    /// Runs `sql` on Postgres as `actor`'s database identity (role and `app.*` settings,
    /// as the gateway sets them) in a transaction that is rolled back, and returns the
    /// first column of each row as text. Token narrowing is the gateway's alone, so the
    /// owner's narrowed tokens act as the owner here.
    pub async fn sql_as(
        &self,
        app: &TestApp,
        actor: Actor,
        sql: &str,
    ) -> Result<Vec<String>, sea_orm::DbErr> {
        use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, TransactionTrait};
        let (role, user_id, app_role) = match actor {
            Actor::Anonymous => ("flashfusion_anon", "", "anon"),
            Actor::Owner | Actor::ReadOnly | Actor::OtherProject => {
                ("flashfusion_authenticated", self.owner_id.as_str(), "user")
            }
            Actor::Other => ("flashfusion_authenticated", self.other_id.as_str(), "user"),
            Actor::Admin => ("flashfusion_authenticated", self.admin_id.as_str(), "admin"),
            Actor::Service => ("flashfusion_service", self.service_id.as_str(), "service"),
        };
        let conn = app.db.as_ref().expect("a Postgres app").connect().await;
        let tx = conn.begin().await?;
        tx.execute_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "select set_config('role', $1, true), set_config('app.user_id', $2, true), \
             set_config('app.role', $3, true)",
            [role.into(), user_id.into(), app_role.into()],
        ))
        .await?;
        let rows = tx
            .query_all_raw(Statement::from_string(DatabaseBackend::Postgres, sql))
            .await;
        tx.rollback().await?;
        Ok(rows?
            .iter()
            .map(|row| row.try_get_by_index::<String>(0).unwrap_or_default())
            .collect())
    }
}
