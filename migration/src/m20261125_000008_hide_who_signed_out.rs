//! Who signed out is nobody else's business: `revoked_tokens.user_id`
//! (m20261125_000004) was readable by every gateway role through the table-wide SELECT
//! grant. Anonymous and signed-in callers keep reading what the revocation check needs
//! (`revocation_id`, and the times), by column grants; the service, which records
//! and purges revocations, keeps the whole row. Postgres only.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "
revoke select on revoked_tokens from flashfusion_anon, flashfusion_authenticated;
grant select (revocation_id, revoked_at, expires_at) on revoked_tokens
    to flashfusion_anon, flashfusion_authenticated;
";

const DOWN: &str = "
revoke select (revocation_id, revoked_at, expires_at) on revoked_tokens
    from flashfusion_anon, flashfusion_authenticated;
grant select on revoked_tokens to flashfusion_anon, flashfusion_authenticated;
";

postgres_only!();
