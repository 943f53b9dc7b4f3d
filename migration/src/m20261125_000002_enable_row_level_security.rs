//! Roles, grants and row-level security on Postgres; the `profiles` view on both backends.
//!
//! The gateway runs every request in a transaction that first switches to one of the
//! [`crate::roles`] and sets `app.user_id` and `app.role` (`anon`, `user`, `admin`,
//! `service`); the policies below read those two settings through
//! `flashfusion_user_id()` / `flashfusion_app_role()` and never query `users` to learn who
//! is admin. Every table gets ENABLE + FORCE ROW LEVEL SECURITY (FORCE so the owner is
//! bound too) and at least one policy, following "who may do what" in DESIGN §3.
//! Secrets are protected twice: by rows (RLS) and by columns (column-level SELECT grants,
//! so `user_api_keys.ciphertext/nonce` and `integrations.credentials*` are readable by
//! `flashfusion_service` only).
//!
//! SQLite has no roles or RLS (the API's own checks are the only guard there), so on
//! SQLite this migration only creates `profiles`, unfiltered.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

// The 14 tables of the first migration: every one gets row-level security. (Taken from
// that migration, not from a shared list, so later tables never change this one.)
use crate::m20261125_000001_create_tables::{TABLES, ensure_supported};
use crate::roles::{ANON, AUTHENTICATED, SERVICE};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Creates a role unless it exists. Two databases of the same cluster may migrate at the
/// same moment (parallel tests): both can see "missing" and race to CREATE ROLE, and the
/// loser gets `duplicate_object` (or `unique_violation` on `pg_authid`), which is fine.
fn create_role(role: &str) -> String {
    format!(
        "do $$
         begin
             if not exists (select from pg_catalog.pg_roles where rolname = '{role}') then
                 create role {role} nologin;
             end if;
         exception when duplicate_object or unique_violation then
             null;
         end
         $$;\n"
    )
}

const FUNCTIONS: &str = r#"
create function flashfusion_user_id() returns uuid
    language sql stable
    as $$ select nullif(current_setting('app.user_id', true), '')::uuid $$;
comment on function flashfusion_user_id() is
    'The caller''s user id (app.user_id, set per transaction by the gateway), NULL if anonymous.';

create function flashfusion_app_role() returns text
    language sql stable
    as $$ select nullif(current_setting('app.role', true), '') $$;
comment on function flashfusion_app_role() is
    'The caller''s application role (app.role): anon, user, admin or service; NULL if unset.';

create function flashfusion_is_admin() returns boolean
    language sql stable
    as $$ select coalesce(flashfusion_app_role() = 'admin', false) $$;

-- A non-admin must not change their own role. RLS cannot say it (a WITH CHECK clause does
-- not see the old row) and column grants cannot either (admins and users are both
-- flashfusion_authenticated), so a trigger checks it. It only binds the gateway's roles:
-- the owner (migrations, an operator's psql) may still promote someone.
create function flashfusion_users_guard_role() returns trigger
    language plpgsql as $$
begin
    if new.role is distinct from old.role
       and current_user in ('flashfusion_anon', 'flashfusion_authenticated', 'flashfusion_service')
       and not flashfusion_is_admin() then
        raise exception 'only an admin may change a user''s role'
            using errcode = 'insufficient_privilege';
    end if;
    return new;
end
$$;
create trigger users_guard_role before update on users
    for each row execute function flashfusion_users_guard_role();
"#;

const DROP_FUNCTIONS: &str = r#"
drop trigger if exists users_guard_role on users;
drop function if exists flashfusion_users_guard_role();
drop function if exists flashfusion_is_admin();
drop function if exists flashfusion_app_role();
drop function if exists flashfusion_user_id();
"#;

/// Table privileges per role. RLS then narrows the rows; a privilege missing here is a
/// "permission denied" whatever the policies say.
const GRANTS: &str = r#"
grant usage on schema public to flashfusion_anon, flashfusion_authenticated, flashfusion_service;

grant select, insert, update, delete on users to flashfusion_authenticated;
grant select, insert on users to flashfusion_service;

grant select on projects to flashfusion_anon, flashfusion_service;
grant select, insert, update, delete on projects to flashfusion_authenticated;

grant select on ai_services, agents to flashfusion_anon, flashfusion_authenticated, flashfusion_service;
grant insert, update, delete on ai_services, agents to flashfusion_authenticated;

-- The owner lists metadata and revokes; the secret columns are readable by the service
-- only (it decrypts the key to call the provider).
grant select (id, user_id, ai_service_id, provider, label, key_id, hint, last_used_at,
              revoked_at, created_at, updated_at)
    on user_api_keys to flashfusion_authenticated;
grant insert on user_api_keys to flashfusion_authenticated;
grant update (label, revoked_at, updated_at) on user_api_keys to flashfusion_authenticated;
grant select on user_api_keys to flashfusion_service;
grant update (last_used_at, updated_at) on user_api_keys to flashfusion_service;

grant select, insert, update, delete on code_generations to flashfusion_authenticated;
grant select, update on code_generations to flashfusion_service;

grant select, insert, update, delete on agent_tasks, deployments to flashfusion_authenticated;
grant select, update on agent_tasks, deployments to flashfusion_service;

-- Credentials are write-only for their owner.
grant select (id, user_id, provider, config, key_id, status, created_at, updated_at)
    on integrations to flashfusion_authenticated;
grant insert, update, delete on integrations to flashfusion_authenticated;
grant select, update on integrations to flashfusion_service;

grant select, insert, update, delete on billing to flashfusion_authenticated, flashfusion_service;

grant select, insert on usage_analytics to flashfusion_authenticated, flashfusion_service;

grant select, insert, update, delete on notifications to flashfusion_authenticated, flashfusion_service;

grant select on events to flashfusion_authenticated;
grant select, insert on events to flashfusion_service;
grant usage on all sequences in schema public to flashfusion_service;

grant select on revoked_tokens to flashfusion_anon, flashfusion_authenticated, flashfusion_service;
grant insert on revoked_tokens to flashfusion_authenticated, flashfusion_service;
grant delete on revoked_tokens to flashfusion_service;
"#;

const REVOKES: &str = r#"
revoke all on all tables in schema public
    from flashfusion_anon, flashfusion_authenticated, flashfusion_service;
revoke all on all sequences in schema public
    from flashfusion_anon, flashfusion_authenticated, flashfusion_service;
revoke usage on schema public
    from flashfusion_anon, flashfusion_authenticated, flashfusion_service;
"#;

/// One RLS policy. All policies are permissive: a row is allowed when any policy for the
/// caller's role and command allows it.
struct Policy {
    table: &'static str,
    name: &'static str,
    /// `select`, `insert`, `update`, `delete` or `all`.
    command: &'static str,
    /// Comma-separated role list, as in `TO ...`.
    to: &'static str,
    using: Option<&'static str>,
    check: Option<&'static str>,
}

const fn policy(
    table: &'static str,
    name: &'static str,
    command: &'static str,
    to: &'static str,
    using: Option<&'static str>,
    check: Option<&'static str>,
) -> Policy {
    Policy {
        table,
        name,
        command,
        to,
        using,
        check,
    }
}

const ALL: &str = "flashfusion_anon, flashfusion_authenticated, flashfusion_service";
const AUTH: &str = "flashfusion_authenticated";
const SERV: &str = "flashfusion_service";
const AUTH_SERV: &str = "flashfusion_authenticated, flashfusion_service";

const OWN_OR_ADMIN: &str = "user_id = flashfusion_user_id() or flashfusion_is_admin()";
const OWN: &str = "user_id = flashfusion_user_id()";
const ADMIN: &str = "flashfusion_is_admin()";
const ANY: &str = "true";
/// For rows that hang off a project: the caller owns that project too.
const OWN_WITH_OWN_PROJECT: &str = "(user_id = flashfusion_user_id()
     and exists (select 1 from projects p
                 where p.id = project_id and p.owner_id = flashfusion_user_id()))
    or flashfusion_is_admin()";
const OWN_WITH_OWN_OPTIONAL_PROJECT: &str = "user_id = flashfusion_user_id()
    and (project_id is null
         or exists (select 1 from projects p
                    where p.id = project_id and p.owner_id = flashfusion_user_id()))";

/// The policies, one per (table, command, roles); `up` creates and `down` drops them.
#[rustfmt::skip]
const POLICIES: &[Policy] = &[
    // users: self reads and updates; admin all; the service looks users up and signs
    // them up. anon has no grant at all.
    policy("users", "users_self_select", "select", AUTH,
        Some("id = flashfusion_user_id() or flashfusion_is_admin()"), None),
    policy("users", "users_self_update", "update", AUTH,
        Some("id = flashfusion_user_id() or flashfusion_is_admin()"), Some("id = flashfusion_user_id() or flashfusion_is_admin()")),
    policy("users", "users_admin_insert", "insert", AUTH,
        None, Some(ADMIN)),
    policy("users", "users_admin_delete", "delete", AUTH,
        Some(ADMIN), None),
    policy("users", "users_service_select", "select", SERV,
        Some(ANY), None),
    policy("users", "users_service_insert", "insert", SERV,
        None, Some(ANY)),
    // The `profiles` view reads users (and projects) with its owner's rights. With FORCE
    // RLS the owner is subject to policies like anyone else, so without this the view
    // would be empty whenever the owner is not a superuser. CURRENT_USER is the role
    // running this migration, i.e. the owner; the gateway must not log in as it.
    policy("users", "users_view_owner_select", "select", "current_user",
        Some(ANY), None),
    // projects: anyone reads public ones; the owner (or an admin) does everything; the
    // service reads all.
    policy("projects", "projects_anon_select", "select", "flashfusion_anon",
        Some("visibility = 'public'"), None),
    policy("projects", "projects_authenticated_select", "select", AUTH,
        Some("visibility = 'public' or owner_id = flashfusion_user_id() or flashfusion_is_admin()"), None),
    policy("projects", "projects_service_select", "select", SERV,
        Some(ANY), None),
    policy("projects", "projects_owner_insert", "insert", AUTH,
        None, Some("owner_id = flashfusion_user_id() or flashfusion_is_admin()")),
    policy("projects", "projects_owner_update", "update", AUTH,
        Some("owner_id = flashfusion_user_id() or flashfusion_is_admin()"), Some("owner_id = flashfusion_user_id() or flashfusion_is_admin()")),
    policy("projects", "projects_owner_delete", "delete", AUTH,
        Some("owner_id = flashfusion_user_id() or flashfusion_is_admin()"), None),
    // See users_view_owner_select: the view's "owns a public project" test reads projects.
    policy("projects", "projects_view_owner_select", "select", "current_user",
        Some(ANY), None),
    // Catalogs: everyone reads active entries, admins read all and write.
    policy("ai_services", "ai_services_select", "select", ALL,
        Some("is_active or flashfusion_is_admin()"), None),
    policy("ai_services", "ai_services_admin_insert", "insert", AUTH,
        None, Some(ADMIN)),
    policy("ai_services", "ai_services_admin_update", "update", AUTH,
        Some(ADMIN), Some(ADMIN)),
    policy("ai_services", "ai_services_admin_delete", "delete", AUTH,
        Some(ADMIN), None),
    policy("agents", "agents_select", "select", ALL,
        Some("is_active or flashfusion_is_admin()"), None),
    policy("agents", "agents_admin_insert", "insert", AUTH,
        None, Some(ADMIN)),
    policy("agents", "agents_admin_update", "update", AUTH,
        Some(ADMIN), Some(ADMIN)),
    policy("agents", "agents_admin_delete", "delete", AUTH,
        Some(ADMIN), None),
    // user_api_keys: the owner creates, lists (metadata, by column grants) and revokes;
    // the service reads the secret and stamps last_used_at. Admins get nothing.
    policy("user_api_keys", "user_api_keys_owner_select", "select", AUTH,
        Some(OWN), None),
    policy("user_api_keys", "user_api_keys_owner_insert", "insert", AUTH,
        None, Some(OWN)),
    policy("user_api_keys", "user_api_keys_owner_update", "update", AUTH,
        Some(OWN), Some(OWN)),
    policy("user_api_keys", "user_api_keys_service_select", "select", SERV,
        Some(ANY), None),
    policy("user_api_keys", "user_api_keys_service_update", "update", SERV,
        Some(ANY), Some(ANY)),
    // code_generations: the owner does everything (within their own projects); the
    // service completes them.
    policy("code_generations", "code_generations_owner_all", "all", AUTH,
        Some(OWN), Some(OWN_WITH_OWN_OPTIONAL_PROJECT)),
    policy("code_generations", "code_generations_service_select", "select", SERV,
        Some(ANY), None),
    policy("code_generations", "code_generations_service_update", "update", SERV,
        Some(ANY), Some(ANY)),
    // agent_tasks and deployments: the owner creates (on their own project), reads and
    // cancels; the service claims and advances; admins do everything.
    policy("agent_tasks", "agent_tasks_owner_select", "select", AUTH,
        Some(OWN_OR_ADMIN), None),
    policy("agent_tasks", "agent_tasks_owner_insert", "insert", AUTH,
        None, Some(OWN_WITH_OWN_PROJECT)),
    // The new row must still hang off a project the caller owns: an update may not
    // move a task into someone else's project.
    policy("agent_tasks", "agent_tasks_owner_update", "update", AUTH,
        Some(OWN_OR_ADMIN), Some(OWN_WITH_OWN_PROJECT)),
    policy("agent_tasks", "agent_tasks_admin_delete", "delete", AUTH,
        Some(ADMIN), None),
    policy("agent_tasks", "agent_tasks_service_select", "select", SERV,
        Some(ANY), None),
    policy("agent_tasks", "agent_tasks_service_update", "update", SERV,
        Some(ANY), Some(ANY)),
    policy("deployments", "deployments_owner_select", "select", AUTH,
        Some(OWN_OR_ADMIN), None),
    policy("deployments", "deployments_owner_insert", "insert", AUTH,
        None, Some(OWN_WITH_OWN_PROJECT)),
    policy("deployments", "deployments_owner_update", "update", AUTH,
        Some(OWN_OR_ADMIN), Some(OWN_WITH_OWN_PROJECT)),
    policy("deployments", "deployments_admin_delete", "delete", AUTH,
        Some(ADMIN), None),
    policy("deployments", "deployments_service_select", "select", SERV,
        Some(ANY), None),
    policy("deployments", "deployments_service_update", "update", SERV,
        Some(ANY), Some(ANY)),
    // integrations: the owner does everything (credentials write-only, by column grants);
    // the service reads credentials to call the provider and records the status.
    policy("integrations", "integrations_owner_all", "all", AUTH,
        Some(OWN), Some(OWN)),
    policy("integrations", "integrations_service_select", "select", SERV,
        Some(ANY), None),
    policy("integrations", "integrations_service_update", "update", SERV,
        Some(ANY), Some(ANY)),
    // billing: the owner reads; the service (payment webhooks) and admins write.
    policy("billing", "billing_owner_select", "select", AUTH,
        Some(OWN_OR_ADMIN), None),
    policy("billing", "billing_admin_insert", "insert", AUTH,
        None, Some(ADMIN)),
    policy("billing", "billing_admin_update", "update", AUTH,
        Some(ADMIN), Some(ADMIN)),
    policy("billing", "billing_admin_delete", "delete", AUTH,
        Some(ADMIN), None),
    policy("billing", "billing_service_all", "all", SERV,
        Some(ANY), Some(ANY)),
    // usage_analytics: the owner reads their own; the gateway (as the user) and the
    // service append.
    policy("usage_analytics", "usage_analytics_owner_select", "select", AUTH,
        Some(OWN), None),
    policy("usage_analytics", "usage_analytics_owner_insert", "insert", AUTH,
        None, Some(OWN)),
    policy("usage_analytics", "usage_analytics_service_select", "select", SERV,
        Some(ANY), None),
    policy("usage_analytics", "usage_analytics_service_insert", "insert", SERV,
        None, Some(ANY)),
    // notifications: the owner reads, marks read and deletes; the service and admins
    // create. Admins also read, because INSERT ... RETURNING must pass a SELECT policy.
    policy("notifications", "notifications_owner_select", "select", AUTH,
        Some(OWN_OR_ADMIN), None),
    policy("notifications", "notifications_owner_update", "update", AUTH,
        Some(OWN), Some(OWN)),
    policy("notifications", "notifications_owner_delete", "delete", AUTH,
        Some(OWN), None),
    policy("notifications", "notifications_admin_insert", "insert", AUTH,
        None, Some(ADMIN)),
    policy("notifications", "notifications_service_all", "all", SERV,
        Some(ANY), Some(ANY)),
    // events: a user reads the events about their own rows, admins and the service all.
    policy("events", "events_owner_select", "select", AUTH,
        Some("owner_id = flashfusion_user_id() or flashfusion_is_admin()"), None),
    policy("events", "events_service_select", "select", SERV,
        Some(ANY), None),
    // Only the service appends directly; a user could otherwise forge events into
    // someone else's feed. The triggers of the subscription feed will write as a
    // definer, not as the invoker.
    policy("events", "events_service_insert", "insert", SERV,
        None, Some(ANY)),
    // revoked_tokens: every request checks its token against it; sign-out appends; the
    // service purges rows whose token has expired anyway.
    policy("revoked_tokens", "revoked_tokens_select", "select", ALL,
        Some(ANY), None),
    policy("revoked_tokens", "revoked_tokens_insert", "insert", AUTH_SERV,
        None, Some(ANY)),
    policy("revoked_tokens", "revoked_tokens_service_delete", "delete", SERV,
        Some("expires_at is not null and expires_at < now()"), None),
];

/// The owner's public face. `security_barrier` keeps a caller's own predicates (which
/// could leak through errors or side effects) from running before the view's filter.
const PROFILES_POSTGRES: &str = r#"
create view profiles with (security_barrier) as
    select u.id, u.display_name
    from users u
    where u.id = flashfusion_user_id()
       or flashfusion_app_role() in ('admin', 'service')
       or exists (select 1 from projects p
                  where p.owner_id = u.id and p.visibility = 'public');
grant select on profiles to flashfusion_anon, flashfusion_authenticated, flashfusion_service;
"#;

const PROFILES_SQLITE: &str = "create view profiles as select id, display_name from users;";

fn postgres_up() -> String {
    let mut sql = String::new();
    // Roles are cluster-wide and shared by every database (parallel test databases
    // included), so they are created here if missing but never dropped by `down`.
    for role in [ANON, AUTHENTICATED, SERVICE] {
        sql.push_str(&create_role(role));
    }
    sql.push_str(FUNCTIONS);
    sql.push_str(GRANTS);
    for table in TABLES {
        sql.push_str(&format!(
            "alter table {table} enable row level security;\n\
             alter table {table} force row level security;\n"
        ));
    }
    for p in POLICIES {
        sql.push_str(&format!(
            "create policy {} on {} as permissive for {} to {}",
            p.name, p.table, p.command, p.to
        ));
        if let Some(using) = p.using {
            sql.push_str(&format!(" using ({using})"));
        }
        if let Some(check) = p.check {
            sql.push_str(&format!(" with check ({check})"));
        }
        sql.push_str(";\n");
    }
    sql.push_str(PROFILES_POSTGRES);
    sql
}

fn postgres_down() -> String {
    let mut sql = String::from("drop view if exists profiles;\n");
    for p in POLICIES.iter().rev() {
        sql.push_str(&format!(
            "drop policy if exists {} on {};\n",
            p.name, p.table
        ));
    }
    for table in TABLES {
        sql.push_str(&format!(
            "alter table {table} no force row level security;\n\
             alter table {table} disable row level security;\n"
        ));
    }
    sql.push_str(REVOKES);
    sql.push_str(DROP_FUNCTIONS);
    // The roles stay: they are cluster-wide, and other databases of the cluster (parallel
    // tests, a template) may still use them.
    sql
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        ensure_supported(backend)?;
        let sql = match backend {
            DbBackend::Postgres => postgres_up(),
            _ => PROFILES_SQLITE.to_owned(),
        };
        manager.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        ensure_supported(backend)?;
        let sql = match backend {
            DbBackend::Postgres => postgres_down(),
            _ => "drop view if exists profiles;".to_owned(),
        };
        manager.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every table has at least one policy, and every policy names a table we secure.
    #[test]
    fn every_table_has_a_policy() {
        for table in TABLES {
            assert!(
                POLICIES.iter().any(|p| p.table == *table),
                "no policy on {table}"
            );
        }
        for p in POLICIES {
            assert!(
                TABLES.contains(&p.table),
                "{} is on an unknown table",
                p.name
            );
            assert!(
                p.using.is_some() || p.check.is_some(),
                "{} has neither USING nor WITH CHECK",
                p.name
            );
        }
    }
}
