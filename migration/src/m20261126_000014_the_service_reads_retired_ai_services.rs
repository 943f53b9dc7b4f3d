//! The service reads every AI service, retired ones included, as it reads every agent
//! (m20261125_000007): it completes a generation that started before its AI service was
//! deactivated, and pricing it reads that service's row. Everyone else still reads the
//! active entries, admins all (Postgres only; `catalog::policy::ai_service_readable`
//! says the same for the resolvers, which on SQLite have no policy under them).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = r#"
drop policy ai_services_select on ai_services;
create policy ai_services_select on ai_services as permissive for select
    to flashfusion_anon, flashfusion_authenticated, flashfusion_service
    using (is_active or flashfusion_is_admin() or flashfusion_app_role() = 'service');
"#;

const DOWN: &str = r#"
drop policy if exists ai_services_select on ai_services;
create policy ai_services_select on ai_services as permissive for select
    to flashfusion_anon, flashfusion_authenticated, flashfusion_service
    using (is_active or flashfusion_is_admin());
"#;

postgres_only!();
