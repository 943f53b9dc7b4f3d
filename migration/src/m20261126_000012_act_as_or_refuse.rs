//! `flashfusion_act_as_or_refuse`: `flashfusion_act_as` (migration m20261126_000010)
//! that raises instead of returning false when the session may no longer act, so the
//! statement can ride in the simple query that opens a request's transaction
//! (`BEGIN; SELECT flashfusion_act_as_or_refuse(..)`), where the gateway reads no row,
//! only whether the query failed. The error has its own SQLSTATE, `ZF001` (class `ZF`
//! is unused by Postgres; classes beginning with I–Z are implementation-defined in the
//! SQL standard), so the gateway tells a refused session from any other failure.
//!
//! SECURITY INVOKER with a pinned `search_path`, like the function it wraps: it does
//! nothing the calling login role could not do itself. Executable by anyone for that
//! reason. Postgres only.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
create function flashfusion_act_as_or_refuse(
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
comment on function flashfusion_act_as_or_refuse(text, text, text, boolean, jsonb) is
    'flashfusion_act_as, raising SQLSTATE ZF001 instead of returning false when the session may no longer act.';
"#;

const DOWN: &str = r#"
drop function if exists flashfusion_act_as_or_refuse(text, text, text, boolean, jsonb);
"#;

postgres_only!();
