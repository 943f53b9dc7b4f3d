//! `flashfusion_applied_migrations()`: the names of the applied migrations, for a
//! gateway that logs in as a role with no grant on `seaql_migrations` (ARCHITECTURE.md,
//! "Production notes") and must check, before it serves, that the schema is current.
//!
//! SECURITY DEFINER, owned by the role that migrates, with a pinned `search_path`: it
//! reads one column of one table and nothing else, so the login role learns the
//! migration names and no more, and needs no grant on the table. Executable by anyone
//! (a NOINHERIT login role has no privilege of its own); the names are no secret.
//! Postgres only: on SQLite the gateway reads the table itself.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
create function flashfusion_applied_migrations() returns table (version text)
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
    as $$ select m.version::text from public.seaql_migrations m order by m.version $$;
comment on function flashfusion_applied_migrations() is
    'The applied migrations, for a login role that may not read seaql_migrations (the gateway checks its schema is current before serving).';
"#;

const DOWN: &str = r#"
drop function if exists flashfusion_applied_migrations();
"#;

postgres_only!();
