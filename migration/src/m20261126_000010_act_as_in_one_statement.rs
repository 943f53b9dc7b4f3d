//! One statement opens a request's context on Postgres: `flashfusion_act_as` switches
//! the transaction to the caller's role and `app.*` settings (transaction-local, as
//! `set_config(.., true)` always was), makes it read-only when asked, and, given the
//! token's revocation ids, returns whether the session may still act
//! (`flashfusion_session_is_current`).
//!
//! Why functions: in a single `select set_config('role', ..), (select .. from users)`
//! the subqueries are planned, and their privileges and policies applied, under the
//! role the statement started with, not the one `set_config` switches to. A PL/pgSQL
//! body plans each statement when it reaches it, so the checks after the switch run
//! as the caller, under the same grants and policies as the separate statements did
//! before (`revoked_tokens` by its `revocation_id` column grant, `users` by
//! `users_self_select` / `users_service_select`).
//!
//! Both are SECURITY INVOKER with a pinned `search_path`, so they do nothing the
//! calling login role could not do itself with the same privileges: `set_config`
//! still refuses a role the login role is not a member of. Executable by anyone for
//! that reason (a NOINHERIT authenticator has no privilege of its own). Postgres only.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
create function flashfusion_session_is_current(
    revocation_ids jsonb, account uuid, must_be_admin boolean
) returns boolean
    language plpgsql stable security invoker
    set search_path = pg_catalog, public, pg_temp
    as $$
begin
    return not exists (select from public.revoked_tokens r
                       where r.revocation_id in (select jsonb_array_elements_text(revocation_ids)))
       and exists (select from public.users u
                   where u.id = account and (not must_be_admin or u.role = 'admin'));
end
$$;
comment on function flashfusion_session_is_current(jsonb, uuid, boolean) is
    'Whether a token may still act: none of its revocation ids revoked, its account exists, and an admin token''s account is still an admin. Runs as the caller.';

create function flashfusion_act_as(
    role_name text, user_id text, app_role text, read_only boolean, revocation_ids jsonb
) returns boolean
    language plpgsql volatile security invoker
    set search_path = pg_catalog, public, pg_temp
    as $$
begin
    perform set_config('role', role_name, true),
            set_config('app.user_id', user_id, true),
            set_config('app.role', app_role, true);
    if read_only then
        -- Going to read-only is allowed at any point of a transaction.
        perform set_config('transaction_read_only', 'on', true);
    end if;
    if revocation_ids is null then
        return true;
    end if;
    return public.flashfusion_session_is_current(
        revocation_ids, nullif(user_id, '')::uuid, app_role = 'admin');
end
$$;
comment on function flashfusion_act_as(text, text, text, boolean, jsonb) is
    'Switches this transaction to the caller (role, app.user_id, app.role; read-only if asked), then, given revocation ids, returns whether the session is current, checked as the caller.';
"#;

const DOWN: &str = r#"
drop function if exists flashfusion_act_as(text, text, text, boolean, jsonb);
drop function if exists flashfusion_session_is_current(jsonb, uuid, boolean);
"#;

postgres_only!();
