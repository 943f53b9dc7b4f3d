//! Closes holes that `m20261125_000002_enable_row_level_security` left in the policies
//! and grants (Postgres), and gives `revoked_tokens` the `user_id` of whoever signed out
//! (both backends).
//!
//! 1. `usage_analytics`: a user appends usage only to their own projects (or to none), and
//!    quantity, tokens and cost are never negative, whoever writes them.
//! 2. `users`: the role guard also runs on INSERT, so no gateway role but an admin creates
//!    a row whose role is not `user` (the service's sign-up policy allows any row).
//! 3. `users`: `flashfusion_authenticated` (users and admins alike) gets column grants
//!    without `password_hash`; only the service (sign-in) reads it.
//! 4. `agent_tasks`, `deployments`, `code_generations`, `notifications`: owners insert only
//!    request columns, never results, and update only what cancelling (or marking read)
//!    needs; a task or deployment is created `queued`, a generation `pending`, and an
//!    owner's update may only leave it `cancelled`. Admins are `flashfusion_authenticated`
//!    too and get the same columns, but any status. What the service does is unchanged.
//! 5. `revoked_tokens.user_id`: a user records revocations in their own name only; the
//!    service in anyone's.
//! 6. Every function pins `search_path`, and PUBLIC may not create objects in `public`,
//!    so nobody can plant an object that a function or policy would resolve instead of
//!    ours.
//!
//! On SQLite there are no roles, grants or policies (the resolvers are the only guard, see
//! `ARCHITECTURE.md`), so only the `revoked_tokens.user_id` column is added there: the
//! `entity` crate's model has it on both backends.
//!
//! The policies are spelled out here rather than shared with the earlier migration, so
//! that migration stays exactly as it shipped; `down` restores its definitions verbatim.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

use crate::m20261125_000001_create_tables::ensure_supported;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The functions of the first two migrations; `up` pins their `search_path`, `down`
/// resets it. (The function this migration adds is created with it.)
const FUNCTIONS: &[&str] = &[
    "flashfusion_set_updated_at()",
    "flashfusion_user_id()",
    "flashfusion_app_role()",
    "flashfusion_is_admin()",
    "flashfusion_users_guard_role()",
];

const SEARCH_PATH: &str = "pg_catalog, public";

const POSTGRES_UP: &str = r#"
-- 1. usage_analytics: own projects only, no negative amounts.
drop policy usage_analytics_owner_insert on usage_analytics;
create policy usage_analytics_owner_insert on usage_analytics as permissive
    for insert to flashfusion_authenticated
    with check (user_id = flashfusion_user_id()
        and (project_id is null
             or exists (select 1 from projects p
                        where p.id = project_id and p.owner_id = flashfusion_user_id())));
alter table usage_analytics
    add constraint usage_analytics_quantity_check check (quantity >= 0),
    add constraint usage_analytics_tokens_check check (tokens >= 0),
    add constraint usage_analytics_cost_check check (cost >= 0);

-- 2. A row inserted with another role than 'user' by a gateway role needs an admin, as
-- a role change does (users_guard_role). The owner (migrations, an operator's psql) is
-- not bound.
create function flashfusion_users_guard_insert_role() returns trigger
    language plpgsql
    set search_path = pg_catalog, public
    as $$
begin
    if new.role is distinct from 'user'
       and current_user in ('flashfusion_anon', 'flashfusion_authenticated', 'flashfusion_service')
       and not flashfusion_is_admin() then
        raise exception 'only an admin may create a user with role %', new.role
            using errcode = 'insufficient_privilege';
    end if;
    return new;
end
$$;
create trigger users_guard_role_insert before insert on users
    for each row execute function flashfusion_users_guard_insert_role();

-- 3. Users and admins never read password_hash; they update the profile and (admins,
-- guarded by users_guard_role) the role. Revoking the table privilege first matters:
-- a table-level grant would cover every column whatever the column grants say.
revoke select, update on users from flashfusion_authenticated;
grant select (id, email, display_name, avatar_url, role, created_at, updated_at)
    on users to flashfusion_authenticated;
grant update (display_name, avatar_url, role, updated_at) on users to flashfusion_authenticated;

-- 4. Owners request work and cancel it; results are the service's to write.
revoke insert, update on agent_tasks, deployments, code_generations from flashfusion_authenticated;
grant insert (id, project_id, user_id, agent_id, parent_task_id, title, input, status,
              progress, priority, created_at, updated_at)
    on agent_tasks to flashfusion_authenticated;
grant update (status, finished_at, updated_at) on agent_tasks to flashfusion_authenticated;
grant insert (id, project_id, user_id, environment, provider, status, commit_sha, log,
              created_at, updated_at)
    on deployments to flashfusion_authenticated;
grant update (status, finished_at, updated_at) on deployments to flashfusion_authenticated;
grant insert (id, user_id, project_id, ai_service_id, prompt, language, status, created_at,
              updated_at)
    on code_generations to flashfusion_authenticated;
-- Admins still create notifications (notifications_admin_insert) with every column.
revoke update on notifications from flashfusion_authenticated;
grant update (read_at, updated_at) on notifications to flashfusion_authenticated;

-- A WITH CHECK clause sees only the new row, so it cannot check a transition; it can say
-- where an owner's write may end: created queued, updated only to cancelled. Admins may
-- set any status.
drop policy agent_tasks_owner_insert on agent_tasks;
create policy agent_tasks_owner_insert on agent_tasks as permissive
    for insert to flashfusion_authenticated
    with check ((user_id = flashfusion_user_id()
                 and status = 'queued'
                 and exists (select 1 from projects p
                             where p.id = project_id and p.owner_id = flashfusion_user_id()))
                or flashfusion_is_admin());
drop policy agent_tasks_owner_update on agent_tasks;
create policy agent_tasks_owner_update on agent_tasks as permissive
    for update to flashfusion_authenticated
    using (user_id = flashfusion_user_id() or flashfusion_is_admin())
    with check ((user_id = flashfusion_user_id()
                 and status = 'cancelled'
                 and exists (select 1 from projects p
                             where p.id = project_id and p.owner_id = flashfusion_user_id()))
                or flashfusion_is_admin());
drop policy deployments_owner_insert on deployments;
create policy deployments_owner_insert on deployments as permissive
    for insert to flashfusion_authenticated
    with check ((user_id = flashfusion_user_id()
                 and status = 'queued'
                 and exists (select 1 from projects p
                             where p.id = project_id and p.owner_id = flashfusion_user_id()))
                or flashfusion_is_admin());
drop policy deployments_owner_update on deployments;
create policy deployments_owner_update on deployments as permissive
    for update to flashfusion_authenticated
    using (user_id = flashfusion_user_id() or flashfusion_is_admin())
    with check ((user_id = flashfusion_user_id()
                 and status = 'cancelled'
                 and exists (select 1 from projects p
                             where p.id = project_id and p.owner_id = flashfusion_user_id()))
                or flashfusion_is_admin());
-- code_generations: owners read, request (pending) and delete; no update grant remains.
drop policy code_generations_owner_all on code_generations;
create policy code_generations_owner_select on code_generations as permissive
    for select to flashfusion_authenticated
    using (user_id = flashfusion_user_id());
create policy code_generations_owner_insert on code_generations as permissive
    for insert to flashfusion_authenticated
    with check (user_id = flashfusion_user_id()
        and status = 'pending'
        and (project_id is null
             or exists (select 1 from projects p
                        where p.id = project_id and p.owner_id = flashfusion_user_id())));
create policy code_generations_owner_delete on code_generations as permissive
    for delete to flashfusion_authenticated
    using (user_id = flashfusion_user_id());

-- 5. Revocations carry who signed out. Nullable (older rows have none) and without a
-- foreign key: a revocation is purged once its token has expired anyway, and SQLite
-- cannot drop a column that a foreign key uses. The table-level grants cover the column.
alter table revoked_tokens add column user_id uuid;
create index revoked_tokens_user_id_idx on revoked_tokens (user_id);
drop policy revoked_tokens_insert on revoked_tokens;
create policy revoked_tokens_owner_insert on revoked_tokens as permissive
    for insert to flashfusion_authenticated
    with check (user_id = flashfusion_user_id());
create policy revoked_tokens_service_insert on revoked_tokens as permissive
    for insert to flashfusion_service
    with check (true);

-- 6. Only the schema's owner creates objects in it.
revoke create on schema public from public;
"#;

const POSTGRES_DOWN: &str = r#"
drop policy if exists revoked_tokens_service_insert on revoked_tokens;
drop policy if exists revoked_tokens_owner_insert on revoked_tokens;
create policy revoked_tokens_insert on revoked_tokens as permissive
    for insert to flashfusion_authenticated, flashfusion_service
    with check (true);
drop index if exists revoked_tokens_user_id_idx;
alter table revoked_tokens drop column if exists user_id;

drop policy if exists code_generations_owner_delete on code_generations;
drop policy if exists code_generations_owner_insert on code_generations;
drop policy if exists code_generations_owner_select on code_generations;
create policy code_generations_owner_all on code_generations as permissive
    for all to flashfusion_authenticated
    using (user_id = flashfusion_user_id())
    with check (user_id = flashfusion_user_id()
        and (project_id is null
             or exists (select 1 from projects p
                        where p.id = project_id and p.owner_id = flashfusion_user_id())));
drop policy if exists deployments_owner_update on deployments;
create policy deployments_owner_update on deployments as permissive
    for update to flashfusion_authenticated
    using (user_id = flashfusion_user_id() or flashfusion_is_admin())
    with check ((user_id = flashfusion_user_id()
     and exists (select 1 from projects p
                 where p.id = project_id and p.owner_id = flashfusion_user_id()))
    or flashfusion_is_admin());
drop policy if exists deployments_owner_insert on deployments;
create policy deployments_owner_insert on deployments as permissive
    for insert to flashfusion_authenticated
    with check ((user_id = flashfusion_user_id()
     and exists (select 1 from projects p
                 where p.id = project_id and p.owner_id = flashfusion_user_id()))
    or flashfusion_is_admin());
drop policy if exists agent_tasks_owner_update on agent_tasks;
create policy agent_tasks_owner_update on agent_tasks as permissive
    for update to flashfusion_authenticated
    using (user_id = flashfusion_user_id() or flashfusion_is_admin())
    with check ((user_id = flashfusion_user_id()
     and exists (select 1 from projects p
                 where p.id = project_id and p.owner_id = flashfusion_user_id()))
    or flashfusion_is_admin());
drop policy if exists agent_tasks_owner_insert on agent_tasks;
create policy agent_tasks_owner_insert on agent_tasks as permissive
    for insert to flashfusion_authenticated
    with check ((user_id = flashfusion_user_id()
     and exists (select 1 from projects p
                 where p.id = project_id and p.owner_id = flashfusion_user_id()))
    or flashfusion_is_admin());

-- Revoking a table privilege also revokes the column privileges of that kind.
revoke update on notifications from flashfusion_authenticated;
grant update on notifications to flashfusion_authenticated;
revoke insert, update on agent_tasks, deployments, code_generations from flashfusion_authenticated;
grant insert, update on agent_tasks, deployments, code_generations to flashfusion_authenticated;

revoke select, update on users from flashfusion_authenticated;
grant select, update on users to flashfusion_authenticated;

drop trigger if exists users_guard_role_insert on users;
drop function if exists flashfusion_users_guard_insert_role();

alter table usage_analytics
    drop constraint if exists usage_analytics_cost_check,
    drop constraint if exists usage_analytics_tokens_check,
    drop constraint if exists usage_analytics_quantity_check;
drop policy if exists usage_analytics_owner_insert on usage_analytics;
create policy usage_analytics_owner_insert on usage_analytics as permissive
    for insert to flashfusion_authenticated
    with check (user_id = flashfusion_user_id());
"#;

const SQLITE_UP: &str = "alter table revoked_tokens add column user_id blob;
create index revoked_tokens_user_id_idx on revoked_tokens (user_id);";

const SQLITE_DOWN: &str = "drop index if exists revoked_tokens_user_id_idx;
alter table revoked_tokens drop column user_id;";

fn postgres_up() -> String {
    let mut sql = String::from(POSTGRES_UP);
    for function in FUNCTIONS {
        sql.push_str(&format!(
            "alter function {function} set search_path = {SEARCH_PATH};\n"
        ));
    }
    sql
}

/// `down` does not give CREATE on `public` back to PUBLIC: since PostgreSQL 15 a new
/// database does not grant it in the first place, and where it did, handing it back
/// would reopen the hole rather than restore anything this schema needs. (The roles of
/// the earlier migration outlive `down` for a similar reason.)
fn postgres_down() -> String {
    let mut sql = String::new();
    for function in FUNCTIONS {
        sql.push_str(&format!("alter function {function} reset search_path;\n"));
    }
    sql.push_str(POSTGRES_DOWN);
    sql
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        ensure_supported(backend)?;
        let sql = match backend {
            DbBackend::Postgres => postgres_up(),
            _ => SQLITE_UP.to_owned(),
        };
        manager.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        ensure_supported(backend)?;
        let sql = match backend {
            DbBackend::Postgres => postgres_down(),
            _ => SQLITE_DOWN.to_owned(),
        };
        manager.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }
}
