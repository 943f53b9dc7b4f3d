//! Creates the 14 tables, their checks, foreign keys and indexes, and (on Postgres) the
//! triggers that keep `updated_at`.
//!
//! The DDL is written once with type placeholders (`{uuid}`, `{ts}`, ...) that
//! [`render`] replaces per backend, so both schemas stay the same table for table and
//! match what sqlx encodes: on SQLite a `Uuid` is a 16-byte blob, a `DateTime<Utc>` RFC 3339
//! text, JSON text, a bool an integer. Enumerations are `text` with a CHECK constraint on
//! both backends, with exactly the values of the `entity` enums. Access control (roles,
//! grants, RLS) is the next migration's job; this one must stay free of it.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Tables with an `updated_at` column, which get the `updated_at` trigger on Postgres.
const TABLES_WITH_UPDATED_AT: &[&str] = &[
    "users",
    "projects",
    "ai_services",
    "user_api_keys",
    "code_generations",
    "agents",
    "agent_tasks",
    "deployments",
    "integrations",
    "billing",
    "notifications",
];

/// Every table, in creation order (dependencies first); `down` drops them in reverse.
pub(crate) const TABLES: &[&str] = &[
    "users",
    "projects",
    "ai_services",
    "user_api_keys",
    "code_generations",
    "agents",
    "agent_tasks",
    "deployments",
    "integrations",
    "billing",
    "usage_analytics",
    "notifications",
    "events",
    "revoked_tokens",
];

const SCHEMA: &str = r#"
create table users (
    id {uuid} primary key,
    email text not null constraint users_email_check check (email <> ''),
    display_name text not null,
    avatar_url text,
    role text not null default 'user' constraint users_role_check check (role in ('user', 'admin')),
    password_hash text not null,
    created_at {ts} not null default {now},
    updated_at {ts} not null default {now}
);
create unique index users_email_lower_key on users (lower(email));

create table projects (
    id {uuid} primary key,
    owner_id {uuid} not null references users (id) on delete cascade,
    name text not null constraint projects_name_check check (name <> ''),
    description text,
    visibility text not null default 'private'
        constraint projects_visibility_check check (visibility in ('private', 'public')),
    framework text,
    status text not null default 'active'
        constraint projects_status_check check (status in ('active', 'archived')),
    settings {json} not null default '{}',
    created_at {ts} not null default {now},
    updated_at {ts} not null default {now}
);
-- Keyset pagination of "my projects" and "public projects" walks the time-ordered UUIDv7
-- id; the leading columns also serve the RLS predicates on owner_id and visibility.
create index projects_owner_id_id_idx on projects (owner_id, id);
create index projects_visibility_id_idx on projects (visibility, id);
create index projects_status_idx on projects (status);

create table ai_services (
    id {uuid} primary key,
    slug text not null constraint ai_services_slug_key unique,
    name text not null,
    provider text not null,
    model text not null,
    capabilities {json} not null default '[]',
    input_price_per_1k {float} not null default 0
        constraint ai_services_input_price_check check (input_price_per_1k >= 0),
    output_price_per_1k {float} not null default 0
        constraint ai_services_output_price_check check (output_price_per_1k >= 0),
    is_active {bool} not null default {true},
    created_at {ts} not null default {now},
    updated_at {ts} not null default {now}
);
create index ai_services_is_active_idx on ai_services (is_active);
create index ai_services_provider_idx on ai_services (provider);

create table user_api_keys (
    id {uuid} primary key,
    user_id {uuid} not null references users (id) on delete cascade,
    ai_service_id {uuid} references ai_services (id) on delete set null,
    provider text not null,
    label text not null,
    ciphertext {bytes} not null,
    nonce {bytes} not null,
    key_id text not null,
    hint text not null,
    last_used_at {ts},
    revoked_at {ts},
    created_at {ts} not null default {now},
    updated_at {ts} not null default {now}
);
create index user_api_keys_user_id_idx on user_api_keys (user_id);
create index user_api_keys_ai_service_id_idx on user_api_keys (ai_service_id);

create table code_generations (
    id {uuid} primary key,
    user_id {uuid} not null references users (id) on delete cascade,
    project_id {uuid} references projects (id) on delete cascade,
    ai_service_id {uuid} references ai_services (id) on delete set null,
    prompt text not null,
    output text,
    language text,
    tokens_in integer not null default 0 constraint code_generations_tokens_in_check check (tokens_in >= 0),
    tokens_out integer not null default 0 constraint code_generations_tokens_out_check check (tokens_out >= 0),
    cost {float} not null default 0 constraint code_generations_cost_check check (cost >= 0),
    status text not null default 'pending'
        constraint code_generations_status_check
        check (status in ('pending', 'running', 'succeeded', 'failed')),
    error text,
    duration_ms {bigint} constraint code_generations_duration_ms_check check (duration_ms >= 0),
    created_at {ts} not null default {now},
    updated_at {ts} not null default {now}
);
create index code_generations_user_id_created_at_idx on code_generations (user_id, created_at);
create index code_generations_project_id_idx on code_generations (project_id);
create index code_generations_ai_service_id_idx on code_generations (ai_service_id);
create index code_generations_status_idx on code_generations (status);

create table agents (
    id {uuid} primary key,
    slug text not null constraint agents_slug_key unique,
    name text not null,
    description text,
    capabilities {json} not null default '[]',
    config {json} not null default '{}',
    is_active {bool} not null default {true},
    created_at {ts} not null default {now},
    updated_at {ts} not null default {now}
);
create index agents_is_active_idx on agents (is_active);

create table agent_tasks (
    id {uuid} primary key,
    project_id {uuid} not null references projects (id) on delete cascade,
    user_id {uuid} not null references users (id) on delete cascade,
    -- Restrict: a catalog agent with history is deactivated (is_active), not deleted.
    agent_id {uuid} not null references agents (id) on delete restrict,
    parent_task_id {uuid} references agent_tasks (id) on delete set null,
    title text not null,
    input {json} not null default '{}',
    output {json},
    status text not null default 'queued'
        constraint agent_tasks_status_check
        check (status in ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    progress integer not null default 0
        constraint agent_tasks_progress_check check (progress between 0 and 100),
    priority integer not null default 0,
    error text,
    attempts integer not null default 0 constraint agent_tasks_attempts_check check (attempts >= 0),
    started_at {ts},
    finished_at {ts},
    created_at {ts} not null default {now},
    updated_at {ts} not null default {now}
);
create index agent_tasks_project_id_created_at_idx on agent_tasks (project_id, created_at);
create index agent_tasks_user_id_idx on agent_tasks (user_id);
create index agent_tasks_agent_id_idx on agent_tasks (agent_id);
create index agent_tasks_parent_task_id_idx on agent_tasks (parent_task_id);
-- The workers' queue: queued tasks by priority, oldest first.
create index agent_tasks_status_priority_created_at_idx
    on agent_tasks (status, priority desc, created_at);

create table deployments (
    id {uuid} primary key,
    project_id {uuid} not null references projects (id) on delete cascade,
    user_id {uuid} not null references users (id) on delete cascade,
    environment text not null default 'preview'
        constraint deployments_environment_check check (environment in ('preview', 'production')),
    provider text not null,
    status text not null default 'queued'
        constraint deployments_status_check
        check (status in ('queued', 'building', 'deploying', 'ready', 'failed', 'cancelled')),
    url text,
    commit_sha text,
    log text,
    finished_at {ts},
    created_at {ts} not null default {now},
    updated_at {ts} not null default {now}
);
create index deployments_project_id_created_at_idx on deployments (project_id, created_at);
create index deployments_user_id_idx on deployments (user_id);
create index deployments_status_created_at_idx on deployments (status, created_at);

create table integrations (
    id {uuid} primary key,
    user_id {uuid} not null references users (id) on delete cascade,
    provider text not null,
    config {json} not null default '{}',
    credentials {bytes},
    credentials_nonce {bytes},
    key_id text,
    status text not null default 'disconnected'
        constraint integrations_status_check
        check (status in ('connected', 'disconnected', 'error')),
    created_at {ts} not null default {now},
    updated_at {ts} not null default {now},
    constraint integrations_credentials_check
        check ((credentials is null) = (credentials_nonce is null))
);
create index integrations_user_id_idx on integrations (user_id);
create index integrations_status_idx on integrations (status);

create table billing (
    id {uuid} primary key,
    user_id {uuid} not null constraint billing_user_id_key unique references users (id) on delete cascade,
    plan text not null default 'free'
        constraint billing_plan_check check (plan in ('free', 'pro', 'team', 'enterprise')),
    status text not null default 'active'
        constraint billing_status_check
        check (status in ('active', 'trialing', 'past_due', 'cancelled', 'incomplete')),
    external_customer_id text,
    external_subscription_id text,
    current_period_start {ts},
    current_period_end {ts},
    cancel_at_period_end {bool} not null default {false},
    created_at {ts} not null default {now},
    updated_at {ts} not null default {now}
);
create index billing_status_idx on billing (status);

create table usage_analytics (
    id {uuid} primary key,
    user_id {uuid} not null references users (id) on delete cascade,
    -- Set null: the usage history outlives the project.
    project_id {uuid} references projects (id) on delete set null,
    event_type text not null,
    quantity {bigint} not null default 1,
    tokens {bigint} not null default 0,
    cost {float} not null default 0,
    metadata {json} not null default '{}',
    created_at {ts} not null default {now}
);
create index usage_analytics_user_id_created_at_idx on usage_analytics (user_id, created_at);
create index usage_analytics_project_id_idx on usage_analytics (project_id);
create index usage_analytics_event_type_idx on usage_analytics (event_type);

create table notifications (
    id {uuid} primary key,
    user_id {uuid} not null references users (id) on delete cascade,
    kind text not null,
    title text not null,
    body text,
    data {json} not null default '{}',
    read_at {ts},
    created_at {ts} not null default {now},
    updated_at {ts} not null default {now}
);
create index notifications_user_id_created_at_idx on notifications (user_id, created_at);

-- The outbox behind subscriptions. No foreign keys: an event outlives the row it names.
create table events (
    id {events_pk},
    topic text not null,
    entity_id {uuid} not null,
    owner_id {uuid},
    project_id {uuid},
    payload {json} not null default '{}',
    created_at {ts} not null default {now}
);
create index events_owner_id_id_idx on events (owner_id, id);
create index events_project_id_id_idx on events (project_id, id);
create index events_entity_id_id_idx on events (entity_id, id);
create index events_topic_id_idx on events (topic, id);

create table revoked_tokens (
    revocation_id text primary key constraint revoked_tokens_revocation_id_check check (revocation_id <> ''),
    revoked_at {ts} not null default {now},
    expires_at {ts}
);
create index revoked_tokens_expires_at_idx on revoked_tokens (expires_at);
"#;

/// Replaces the type placeholders of [`SCHEMA`] with `backend`'s types.
fn render(sql: &str, backend: DbBackend) -> String {
    let types: &[(&str, &str)] = match backend {
        DbBackend::Sqlite => &[
            ("{uuid}", "blob"),
            ("{ts}", "text"),
            // The format sqlx writes a `DateTime<Utc>` in (RFC 3339, `+00:00`), so defaults
            // and app-written values sort together.
            ("{now}", "(strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'))"),
            ("{json}", "text"),
            ("{bytes}", "blob"),
            ("{bool}", "integer"),
            ("{true}", "1"),
            ("{false}", "0"),
            ("{float}", "real"),
            ("{bigint}", "integer"),
            ("{events_pk}", "integer primary key autoincrement"),
        ],
        _ => &[
            ("{uuid}", "uuid"),
            ("{ts}", "timestamptz"),
            ("{now}", "now()"),
            ("{json}", "jsonb"),
            ("{bytes}", "bytea"),
            ("{bool}", "boolean"),
            ("{true}", "true"),
            ("{false}", "false"),
            ("{float}", "double precision"),
            ("{bigint}", "bigint"),
            (
                "{events_pk}",
                "bigint generated by default as identity primary key",
            ),
        ],
    };
    types
        .iter()
        .fold(sql.to_owned(), |sql, (from, to)| sql.replace(from, to))
}

/// The Postgres trigger function and one BEFORE UPDATE trigger per table with `updated_at`.
fn postgres_updated_at_triggers() -> String {
    let mut sql = String::from(
        "create function flashfusion_set_updated_at() returns trigger
         language plpgsql as $$
         begin
             new.updated_at := now();
             return new;
         end
         $$;\n",
    );
    for table in TABLES_WITH_UPDATED_AT {
        sql.push_str(&format!(
            "create trigger {table}_set_updated_at before update on {table}
             for each row execute function flashfusion_set_updated_at();\n"
        ));
    }
    sql
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        ensure_supported(backend)?;
        let db = manager.get_connection();
        db.execute_unprepared(&render(SCHEMA, backend)).await?;
        if backend == DbBackend::Postgres {
            db.execute_unprepared(&postgres_updated_at_triggers())
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();
        ensure_supported(backend)?;
        let mut sql = String::new();
        // Dependents first; the triggers go with their tables.
        for table in TABLES.iter().rev() {
            sql.push_str(&format!("drop table if exists {table};\n"));
        }
        if backend == DbBackend::Postgres {
            sql.push_str("drop function if exists flashfusion_set_updated_at();\n");
        }
        manager.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }
}

/// The schema is written for Postgres and SQLite only.
pub(crate) fn ensure_supported(backend: DbBackend) -> Result<(), DbErr> {
    match backend {
        DbBackend::Postgres | DbBackend::Sqlite => Ok(()),
        other => Err(DbErr::Migration(format!(
            "FlashFusion supports Postgres and SQLite, not {other:?}"
        ))),
    }
}
