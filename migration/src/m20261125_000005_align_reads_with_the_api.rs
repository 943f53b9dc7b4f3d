//! Makes the read policies of `usage_analytics` and `notifications` say what the API
//! does, so the parity test (tests/tests/e2e/parity.rs) finds the same rows through
//! both (Postgres only: SQLite has no policies):
//! - admins read everyone's usage (`usageSummary(userId: ..)` is theirs);
//! - the service appends usage but does not read it (nothing it does needs to);
//! - notifications are read by their owner only: admins and the service create them
//!   without reading them back, so the admins' SELECT policy (which only existed for
//!   INSERT .. RETURNING) goes.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "
create policy usage_analytics_admin_select on usage_analytics
    as permissive for select to flashfusion_authenticated using (flashfusion_is_admin());
drop policy usage_analytics_service_select on usage_analytics;
drop policy notifications_owner_select on notifications;
create policy notifications_owner_select on notifications
    as permissive for select to flashfusion_authenticated
    using (user_id = flashfusion_user_id());
drop policy notifications_service_all on notifications;
create policy notifications_service_insert on notifications
    as permissive for insert to flashfusion_service with check (true);
";

const DOWN: &str = "
drop policy if exists notifications_service_insert on notifications;
create policy notifications_service_all on notifications
    as permissive for all to flashfusion_service using (true) with check (true);
drop policy if exists notifications_owner_select on notifications;
create policy notifications_owner_select on notifications
    as permissive for select to flashfusion_authenticated
    using (user_id = flashfusion_user_id() or flashfusion_is_admin());
create policy usage_analytics_service_select on usage_analytics
    as permissive for select to flashfusion_service using (true);
drop policy if exists usage_analytics_admin_select on usage_analytics;
";

postgres_only!();
