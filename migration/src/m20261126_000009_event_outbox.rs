//! The outbox behind subscriptions: every change to `agent_tasks`, `deployments` and
//! `notifications` appends one `events` row in the writing transaction, whoever writes
//! (the gateway or plain SQL), and a revoked token or a changed account role appends a
//! `session` event so sockets holding that account's tokens re-check them.
//!
//! Each event carries the row as it was written (`payload`, the whole row as JSON) and
//! its kind (`CREATED`, `UPDATED`, `DELETED`).
//!
//! - Postgres: `tx_id` is the writing transaction's id (`pg_current_xact_id()`).
//!   Subscriptions read events in `(tx_id, id)` order, and only from transactions older
//!   than the oldest one still running. A later transaction can then never add an event
//!   before a cursor already handed out, even when transactions commit out of order. The
//!   trigger function runs as its owner (SECURITY DEFINER, `search_path` pinned): callers
//!   cannot insert into `events` themselves (the service's direct INSERT of
//!   m20261125_000002 is withdrawn). FORCE ROW LEVEL SECURITY binds the owner too, so
//!   the owner gets an INSERT policy of its own; `pg_temp` now comes last in every
//!   gateway function's pinned `search_path` and `events` is schema-qualified, so no
//!   temporary table can stand in for a table they read or write. `pg_notify` then wakes every replica's listener with the topic only. The
//!   service may delete events, to prune them after the retention window.
//! - SQLite: the same rows from SQLite triggers (`tx_id` 0: one writer at a time, so ids
//!   follow commit order); the gateway wakes its in-process hub after each commit.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The tables whose changes are published, with their topic.
const TOPICS: [(&str, &str); 3] = [
    ("agent_tasks", "agent_task"),
    ("deployments", "deployment"),
    ("notifications", "notification"),
];

const POSTGRES_UP: &str = r#"
alter table events
    add column kind text not null default 'UPDATED'
        constraint events_kind_check check (kind in ('CREATED', 'UPDATED', 'DELETED')),
    add column tx_id xid8 not null default pg_current_xact_id();
create index events_tx_id_id_idx on events (tx_id, id);
create index events_owner_id_tx_id_id_idx on events (owner_id, tx_id, id);
create index events_created_at_idx on events (created_at);

-- Only the triggers write events now: a direct insert (with a made-up tx_id) could
-- move every replica's feed past real events.
drop policy events_service_insert on events;
revoke insert on events from flashfusion_service;
create policy events_definer_insert on events as permissive for insert
    to current_user with check (true);
grant delete on events to flashfusion_service;
create policy events_service_delete on events as permissive for delete
    to flashfusion_service using (true);

create function flashfusion_record_event() returns trigger
    language plpgsql security definer
    set search_path = pg_catalog, public, pg_temp
    as $$
declare
    row_json jsonb;
    change text;
begin
    if tg_op = 'DELETE' then
        row_json := to_jsonb(old);
        change := 'DELETED';
    else
        row_json := to_jsonb(new);
        change := case tg_op when 'INSERT' then 'CREATED' else 'UPDATED' end;
    end if;
    insert into public.events (topic, kind, entity_id, owner_id, project_id, payload)
    values (tg_argv[0], change, (row_json->>'id')::uuid, (row_json->>'user_id')::uuid,
            (row_json->>'project_id')::uuid, row_json);
    -- A wake-up only (the row is in events): one per topic and transaction, since
    -- Postgres folds identical notifications of a transaction into one.
    perform pg_notify('flashfusion_events', tg_argv[0]);
    return null;
end $$;

create function flashfusion_record_session_event() returns trigger
    language plpgsql security definer
    set search_path = pg_catalog, public, pg_temp
    as $$
declare
    account uuid;
begin
    if tg_table_name = 'users' then
        account := case when tg_op = 'DELETE' then old.id else new.id end;
    else
        account := new.user_id;
    end if;
    insert into public.events (topic, kind, entity_id, owner_id, payload)
    values ('session', 'UPDATED', coalesce(account, '00000000-0000-0000-0000-000000000000'),
            account, '{}');
    perform pg_notify('flashfusion_events', 'session');
    return null;
end $$;

create trigger revoked_tokens_session_events after insert on revoked_tokens
    for each row execute function flashfusion_record_session_event();
create trigger users_session_events_update after update of role on users
    for each row when (old.role is distinct from new.role)
    execute function flashfusion_record_session_event();
create trigger users_session_events_delete after delete on users
    for each row execute function flashfusion_record_session_event();
"#;

/// Every function of the gateway's gets `pg_temp` last in its pinned `search_path`:
/// unlisted, it is searched first for tables, so a caller's temporary table could
/// stand in for one a function reads.
fn pin_search_paths(path: &str) -> String {
    format!(
        r#"
do $$
declare f regprocedure;
begin
    for f in select p.oid::regprocedure from pg_proc p
             join pg_namespace n on n.oid = p.pronamespace
             where n.nspname = 'public' and p.proname like 'flashfusion\_%'
    loop
        execute format('alter function %s set search_path = {path}', f);
    end loop;
end $$;
"#
    )
}

const POSTGRES_DOWN: &str = r#"
drop trigger if exists users_session_events_delete on users;
drop trigger if exists users_session_events_update on users;
drop trigger if exists revoked_tokens_session_events on revoked_tokens;
drop function if exists flashfusion_record_session_event();
drop function if exists flashfusion_record_event() cascade;
drop policy if exists events_service_delete on events;
revoke delete on events from flashfusion_service;
drop policy if exists events_definer_insert on events;
grant insert on events to flashfusion_service;
create policy events_service_insert on events as permissive for insert
    to flashfusion_service with check (true);
drop index if exists events_created_at_idx;
drop index if exists events_owner_id_tx_id_id_idx;
drop index if exists events_tx_id_id_idx;
alter table events drop column tx_id, drop column kind;
"#;

fn postgres_triggers() -> String {
    TOPICS
        .iter()
        .map(|(table, topic)| {
            format!(
                "create trigger {table}_events after insert or delete on {table}
                     for each row execute function flashfusion_record_event('{topic}');
                 create trigger {table}_events_update after update on {table}
                     for each row when (old.* is distinct from new.*)
                     execute function flashfusion_record_event('{topic}');\n"
            )
        })
        .collect()
}

/// How a column is turned into JSON in the SQLite triggers' payload.
#[derive(Clone, Copy)]
enum Kind {
    /// Stored as a 16-byte blob; published as its 32 hex digits.
    Uuid,
    /// Stored as JSON text; published as JSON.
    Json,
    /// Text and numbers, published as they are.
    Plain,
}

/// Every column of the published tables, for the SQLite payload (Postgres uses
/// `to_jsonb(row)`). A column added later must be added here too; the subscription
/// tests on SQLite decode every payload into the entity and fail otherwise.
fn sqlite_columns(table: &str) -> &'static [(&'static str, Kind)] {
    use Kind::*;
    match table {
        "agent_tasks" => &[
            ("id", Uuid),
            ("project_id", Uuid),
            ("user_id", Uuid),
            ("agent_id", Uuid),
            ("parent_task_id", Uuid),
            ("title", Plain),
            ("input", Json),
            ("output", Json),
            ("status", Plain),
            ("progress", Plain),
            ("priority", Plain),
            ("error", Plain),
            ("attempts", Plain),
            ("started_at", Plain),
            ("finished_at", Plain),
            ("created_at", Plain),
            ("updated_at", Plain),
        ],
        "deployments" => &[
            ("id", Uuid),
            ("project_id", Uuid),
            ("user_id", Uuid),
            ("environment", Plain),
            ("provider", Plain),
            ("status", Plain),
            ("url", Plain),
            ("commit_sha", Plain),
            ("log", Plain),
            ("finished_at", Plain),
            ("created_at", Plain),
            ("updated_at", Plain),
        ],
        _ => &[
            ("id", Uuid),
            ("user_id", Uuid),
            ("kind", Plain),
            ("title", Plain),
            ("body", Plain),
            ("data", Json),
            ("read_at", Plain),
            ("created_at", Plain),
            ("updated_at", Plain),
        ],
    }
}

fn sqlite_up() -> String {
    let mut sql = String::from(
        "alter table events add column kind text not null default 'UPDATED';
         alter table events add column tx_id integer not null default 0;
         create index events_tx_id_id_idx on events (tx_id, id);
         create index events_owner_id_tx_id_id_idx on events (owner_id, tx_id, id);
         create index events_created_at_idx on events (created_at);\n",
    );
    for (table, topic) in TOPICS {
        let has_project = table != "notifications";
        for (op, row, kind) in [
            ("insert", "new", "CREATED"),
            ("update", "new", "UPDATED"),
            ("delete", "old", "DELETED"),
        ] {
            let payload = sqlite_columns(table)
                .iter()
                .map(|(column, kind)| {
                    let value = match kind {
                        Kind::Uuid => format!(
                            "case typeof({row}.{column}) when 'blob' then lower(hex({row}.{column})) \
                             else {row}.{column} end"
                        ),
                        Kind::Json => format!("json({row}.{column})"),
                        Kind::Plain => format!("{row}.{column}"),
                    };
                    format!("'{column}', {value}")
                })
                .collect::<Vec<_>>()
                .join(", ");
            let project = if has_project {
                format!("{row}.project_id")
            } else {
                "null".to_owned()
            };
            sql.push_str(&format!(
                "create trigger {table}_events_{op} after {op} on {table} for each row begin
                     insert into events (topic, kind, entity_id, owner_id, project_id, payload)
                     values ('{topic}', '{kind}', {row}.id, {row}.user_id, {project},
                             json_object({payload}));
                 end;\n"
            ));
        }
    }
    sql.push_str(
        "create trigger revoked_tokens_session_events after insert on revoked_tokens
             for each row begin
                 insert into events (topic, kind, entity_id, owner_id)
                 values ('session', 'UPDATED', coalesce(new.user_id, zeroblob(16)), new.user_id);
             end;
         create trigger users_session_events_update after update of role on users
             for each row when old.role is not new.role begin
                 insert into events (topic, kind, entity_id, owner_id)
                 values ('session', 'UPDATED', new.id, new.id);
             end;
         create trigger users_session_events_delete after delete on users
             for each row begin
                 insert into events (topic, kind, entity_id, owner_id)
                 values ('session', 'UPDATED', old.id, old.id);
             end;\n",
    );
    sql
}

fn sqlite_down() -> String {
    let mut sql = String::new();
    for (table, _) in TOPICS {
        for op in ["insert", "update", "delete"] {
            sql.push_str(&format!("drop trigger if exists {table}_events_{op};\n"));
        }
    }
    sql.push_str(
        "drop trigger if exists revoked_tokens_session_events;
         drop trigger if exists users_session_events_update;
         drop trigger if exists users_session_events_delete;
         drop index if exists events_created_at_idx;
         drop index if exists events_owner_id_tx_id_id_idx;
         drop index if exists events_tx_id_id_idx;
         alter table events drop column tx_id;
         alter table events drop column kind;\n",
    );
    sql
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = match manager.get_database_backend() {
            DbBackend::Postgres => format!(
                "{POSTGRES_UP}{}{}",
                postgres_triggers(),
                pin_search_paths("pg_catalog, public, pg_temp")
            ),
            _ => sqlite_up(),
        };
        manager.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = match manager.get_database_backend() {
            DbBackend::Postgres => {
                format!("{}{POSTGRES_DOWN}", pin_search_paths("pg_catalog, public"))
            }
            _ => sqlite_down(),
        };
        manager.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }
}
