//! The six functions every request runs stop pinning `search_path` and name everything
//! they use in full instead. Postgres never inlines a function that has a `SET` clause,
//! and runs every call of one inside a saved and restored configuration, its search
//! path recomputed both ways:
//! - `flashfusion_user_id()`, `flashfusion_app_role()` and `flashfusion_is_admin()` are
//!   what the row policies call, once or twice for every row they filter. Pinned, a call
//!   cost about 3 µs (a page of 40 of a user's projects spent 0.18 ms of its 0.26 ms in
//!   them); unpinned, the planner inlines their bodies into the policy (`EXPLAIN` shows
//!   `current_setting('app.user_id', true)` where the call was), and a filtered row
//!   costs what comparing a setting costs.
//! - `flashfusion_act_as_or_refuse`, `flashfusion_act_as` and
//!   `flashfusion_session_is_current`: three nested calls in the statement that opens
//!   every request's transaction (migrations m20261126_000010 and 000012); about 30 µs of
//!   the server's time less per opening.
//!
//! Why this keeps migration m20261125_000004's point 6 (nobody plants an object a
//! function resolves instead of ours): tables, functions and types are schema-qualified
//! (`public.`, `pg_catalog.`), so the caller's `search_path` picks none of them; what is
//! left unqualified (operators, and the `=` that `nullif` and `in` look up) resolves in
//! `pg_catalog` first, which is searched before every schema not explicitly listed
//! ahead of it (and `pg_temp` is never searched for operators); PUBLIC still may not
//! create anything in `public`. All six stay SECURITY INVOKER, with the same bodies
//! otherwise; every other function of the gateway's keeps its pinned `search_path`.
//! `down` restores the definitions as they were. Postgres only.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
create or replace function public.flashfusion_user_id() returns uuid
    language sql stable
    as $$ select nullif(pg_catalog.current_setting('app.user_id', true), '')::pg_catalog.uuid $$;

create or replace function public.flashfusion_app_role() returns text
    language sql stable
    as $$ select nullif(pg_catalog.current_setting('app.role', true), '') $$;

create or replace function public.flashfusion_is_admin() returns boolean
    language sql stable
    as $$ select coalesce(public.flashfusion_app_role() = 'admin', false) $$;

create or replace function public.flashfusion_session_is_current(
    revocation_ids jsonb, account uuid, must_be_admin boolean
) returns boolean
    language plpgsql stable security invoker
    as $$
begin
    return not exists (select from public.revoked_tokens r
                       where r.revocation_id in
                           (select pg_catalog.jsonb_array_elements_text(revocation_ids)))
       and exists (select from public.users u
                   where u.id = account and (not must_be_admin or u.role = 'admin'));
end
$$;

create or replace function public.flashfusion_act_as(
    role_name text, user_id text, app_role text, read_only boolean, revocation_ids jsonb
) returns boolean
    language plpgsql volatile security invoker
    as $$
begin
    perform pg_catalog.set_config('role', role_name, true),
            pg_catalog.set_config('app.user_id', user_id, true),
            pg_catalog.set_config('app.role', app_role, true);
    if read_only then
        -- Going to read-only is allowed at any point of a transaction.
        perform pg_catalog.set_config('transaction_read_only', 'on', true);
    end if;
    if revocation_ids is null then
        return true;
    end if;
    return public.flashfusion_session_is_current(
        revocation_ids, nullif(user_id, '')::pg_catalog.uuid, app_role = 'admin');
end
$$;

create or replace function public.flashfusion_act_as_or_refuse(
    role_name text, user_id text, app_role text, read_only boolean, revocation_ids jsonb
) returns void
    language plpgsql volatile security invoker
    as $$
begin
    if not public.flashfusion_act_as(role_name, user_id, app_role, read_only, revocation_ids) then
        raise exception 'the session may no longer act' using errcode = 'ZF001';
    end if;
end
$$;
"#;

/// The bodies as migrations m20261125_000002, m20261126_000010 and m20261126_000012
/// created them, each with the `search_path` migration m20261126_000009 pinned.
const DOWN: &str = r#"
create or replace function public.flashfusion_user_id() returns uuid
    language sql stable
    set search_path = pg_catalog, public, pg_temp
    as $$ select nullif(current_setting('app.user_id', true), '')::uuid $$;

create or replace function public.flashfusion_app_role() returns text
    language sql stable
    set search_path = pg_catalog, public, pg_temp
    as $$ select nullif(current_setting('app.role', true), '') $$;

create or replace function public.flashfusion_is_admin() returns boolean
    language sql stable
    set search_path = pg_catalog, public, pg_temp
    as $$ select coalesce(flashfusion_app_role() = 'admin', false) $$;

create or replace function public.flashfusion_session_is_current(
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

create or replace function public.flashfusion_act_as(
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

create or replace function public.flashfusion_act_as_or_refuse(
    role_name text, user_id text, app_role text, read_only boolean, revocation_ids jsonb
) returns void
    language plpgsql volatile security invoker
    set search_path = pg_catalog, public, pg_temp
    as $$
begin
    if not public.flashfusion_act_as(role_name, user_id, app_role, read_only, revocation_ids) then
        raise exception 'the session may no longer act' using errcode = 'ZF001';
    end if;
end
$$;
"#;

postgres_only!();
