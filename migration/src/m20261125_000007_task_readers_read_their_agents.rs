//! A task's reader can read its agent, even after the agent was deactivated, so the
//! API's non-null `AgentTask.agent` never points at a hidden row (Postgres only; the
//! resolvers say the same on SQLite, `catalog::policy::agent_readable`):
//! - the service reads every agent, since it runs every task;
//! - a user reads the agents of their own tasks, through a SECURITY DEFINER helper
//!   (a policy subquery on `agent_tasks` would need privileges anonymous callers lack).
//!   The helper runs as the owner, which FORCE ROW LEVEL SECURITY binds too, hence the
//!   owner's SELECT policy on `agent_tasks` (as `users_view_owner_select` does for the
//!   `profiles` view).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
create policy agent_tasks_definer_select on agent_tasks
    as permissive for select to current_user using (true);
create function flashfusion_agent_of_own_task(agent uuid) returns boolean
    language sql stable security definer
    set search_path = pg_catalog, public
    as $$ select exists (select 1 from agent_tasks t
                         where t.agent_id = agent and t.user_id = flashfusion_user_id()) $$;
drop policy agents_select on agents;
create policy agents_select on agents as permissive for select
    to flashfusion_anon, flashfusion_authenticated, flashfusion_service
    using (is_active or flashfusion_is_admin() or flashfusion_app_role() = 'service'
           or flashfusion_agent_of_own_task(id));
"#;

const DOWN: &str = r#"
drop policy if exists agents_select on agents;
create policy agents_select on agents as permissive for select
    to flashfusion_anon, flashfusion_authenticated, flashfusion_service
    using (is_active or flashfusion_is_admin());
drop function if exists flashfusion_agent_of_own_task(uuid);
drop policy if exists agent_tasks_definer_select on agent_tasks;
"#;

postgres_only!();
