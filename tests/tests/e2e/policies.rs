//! The policies and grants of `m20261125_000004_tighten_policies`, in SQL: each test
//! switches to a gateway role inside a transaction exactly as `Database::begin` does
//! (`set_config('role' | 'app.user_id' | 'app.role', .., true)`), tries a write the
//! role must not make, and the legitimate write next to it, so a test fails when a hole
//! is open and also when the fix refuses too much.

use flashfusion_tests::TestDb;
use migration::roles::{ANON, AUTHENTICATED, SERVICE};
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, Statement, TransactionTrait,
};
use uuid::Uuid;

/// Runs `sql` as `role` with `app.user_id` / `app.role` set, in a transaction that is
/// rolled back; the rows it affected (or returned, for a SELECT).
async fn as_role(
    conn: &DatabaseConnection,
    role: &str,
    user_id: Option<Uuid>,
    app_role: &str,
    sql: &str,
) -> Result<u64, DbErr> {
    let tx = conn.begin().await?;
    tx.execute_raw(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "select set_config('role', $1, true), set_config('app.user_id', $2, true), \
         set_config('app.role', $3, true)",
        [
            role.into(),
            user_id.map(|id| id.to_string()).unwrap_or_default().into(),
            app_role.into(),
        ],
    ))
    .await?;
    let result = tx.execute_unprepared(sql).await.map(|r| r.rows_affected());
    tx.rollback().await?;
    result
}

/// `sql` as the user `id` (app.role `user`).
async fn as_user(conn: &DatabaseConnection, id: Uuid, sql: &str) -> Result<u64, DbErr> {
    as_role(conn, AUTHENTICATED, Some(id), "user", sql).await
}

/// `sql` as the admin `id` (flashfusion_authenticated, app.role `admin`).
async fn as_admin(conn: &DatabaseConnection, id: Uuid, sql: &str) -> Result<u64, DbErr> {
    as_role(conn, AUTHENTICATED, Some(id), "admin", sql).await
}

/// `sql` as the gateway's service identity (no user id, as `Identity::SERVICE`).
async fn as_service(conn: &DatabaseConnection, sql: &str) -> Result<u64, DbErr> {
    as_role(conn, SERVICE, None, "service", sql).await
}

/// Asserts that `result` is an error whose message contains `needle`.
#[track_caller]
fn refused(result: Result<u64, DbErr>, needle: &str, what: &str) {
    match result {
        Err(err) => assert!(
            err.to_string().contains(needle),
            "{what}: refused, but not by `{needle}`: {err}"
        ),
        Ok(rows) => panic!("{what}: expected refusal ({needle}), but it affected {rows} row(s)"),
    }
}

/// Asserts that `result` succeeded and affected exactly `rows` rows.
#[track_caller]
fn allowed(result: Result<u64, DbErr>, rows: u64, what: &str) {
    match result {
        Ok(n) => assert_eq!(n, rows, "{what}: rows affected"),
        Err(err) => panic!("{what}: expected to work, got {err}"),
    }
}

const RLS: &str = "row-level security";
const PRIVILEGE: &str = "permission denied";
const CHECK: &str = "check constraint";
/// The message of the `users` role guard triggers.
const GUARD: &str = "only an admin";

/// Two users, ada and bob, each with a project; ada has a task, a deployment, a code
/// generation and a notification in hers. Written by the owner (the superuser here).
struct Seed {
    ada: Uuid,
    bob: Uuid,
    ada_project: Uuid,
    bob_project: Uuid,
    task: Uuid,
    deployment: Uuid,
    generation: Uuid,
    notification: Uuid,
}

async fn seed(conn: &DatabaseConnection) -> Seed {
    let s = Seed {
        ada: Uuid::new_v4(),
        bob: Uuid::new_v4(),
        ada_project: Uuid::new_v4(),
        bob_project: Uuid::new_v4(),
        task: Uuid::new_v4(),
        deployment: Uuid::new_v4(),
        generation: Uuid::new_v4(),
        notification: Uuid::new_v4(),
    };
    let Seed {
        ada,
        bob,
        ada_project,
        bob_project,
        task,
        deployment,
        generation,
        notification,
    } = s;
    conn.execute_unprepared(&format!(
        "insert into users (id, email, display_name, password_hash) values
             ('{ada}', 'ada@example.com', 'ada', 'ada-hash'),
             ('{bob}', 'bob@example.com', 'bob', 'bob-hash');
         insert into projects (id, owner_id, name) values
             ('{ada_project}', '{ada}', 'ada''s'), ('{bob_project}', '{bob}', 'bob''s');
         insert into agent_tasks (id, project_id, user_id, agent_id, title) values
             ('{task}', '{ada_project}', '{ada}', (select id from agents order by slug limit 1), 't');
         insert into deployments (id, project_id, user_id, provider) values
             ('{deployment}', '{ada_project}', '{ada}', 'vercel');
         insert into code_generations (id, user_id, project_id, prompt) values
             ('{generation}', '{ada}', '{ada_project}', 'hello');
         insert into notifications (id, user_id, kind, title) values
             ('{notification}', '{ada}', 'info', 'hi');"
    ))
    .await
    .expect("seed");
    s
}

async fn setup() -> (TestDb, DatabaseConnection, Seed) {
    let db = TestDb::new().await;
    let conn = db.connect().await;
    let s = seed(&conn).await;
    (db, conn, s)
}

fn usage(user: Uuid, project: Option<Uuid>, quantity: i64, tokens: i64, cost: f64) -> String {
    let project = project.map_or("null".to_owned(), |p| format!("'{p}'"));
    format!(
        "insert into usage_analytics (id, user_id, project_id, event_type, quantity, tokens, cost) \
         values ('{}', '{user}', {project}, 'generation', {quantity}, {tokens}, {cost})",
        Uuid::new_v4()
    )
}

#[tokio::test]
async fn usage_goes_only_to_own_projects_and_is_never_negative() {
    let (_db, conn, s) = setup().await;
    refused(
        as_user(&conn, s.ada, &usage(s.ada, Some(s.bob_project), 1, 0, 0.0)).await,
        RLS,
        "ada adds usage to bob's project",
    );
    refused(
        as_user(&conn, s.ada, &usage(s.bob, Some(s.bob_project), 1, 0, 0.0)).await,
        RLS,
        "ada adds usage in bob's name",
    );
    allowed(
        as_user(&conn, s.ada, &usage(s.ada, Some(s.ada_project), 1, 10, 0.5)).await,
        1,
        "ada adds usage to her own project",
    );
    allowed(
        as_user(&conn, s.ada, &usage(s.ada, None, 1, 10, 0.5)).await,
        1,
        "ada adds usage to no project",
    );
    for (quantity, tokens, cost, what) in [
        (-1, 0, 0.0, "negative quantity"),
        (1, -5, 0.0, "negative tokens"),
        (1, 0, -0.01, "negative cost"),
    ] {
        refused(
            as_user(&conn, s.ada, &usage(s.ada, None, quantity, tokens, cost)).await,
            CHECK,
            what,
        );
        refused(
            as_service(&conn, &usage(s.ada, None, quantity, tokens, cost)).await,
            CHECK,
            &format!("the service records {what}"),
        );
    }
    allowed(
        as_service(&conn, &usage(s.bob, Some(s.bob_project), 0, 0, 0.0)).await,
        1,
        "the service records zero usage for anyone",
    );
}

fn new_user(role: &str) -> String {
    let id = Uuid::new_v4();
    format!(
        "insert into users (id, email, display_name, role, password_hash) \
         values ('{id}', '{id}@example.com', 'x', '{role}', 'hash')"
    )
}

#[tokio::test]
async fn only_admins_and_the_owner_create_admins() {
    let (_db, conn, s) = setup().await;
    refused(
        as_service(&conn, &new_user("admin")).await,
        GUARD,
        "the service signs up an admin",
    );
    allowed(
        as_service(&conn, &new_user("user")).await,
        1,
        "the service signs up a user",
    );
    // The trigger runs before the policy's WITH CHECK; either refuses a user.
    refused(
        as_user(&conn, s.ada, &new_user("admin")).await,
        GUARD,
        "a user creates an admin",
    );
    refused(
        as_user(&conn, s.ada, &new_user("user")).await,
        RLS,
        "a user creates a user",
    );
    allowed(
        as_admin(&conn, s.ada, &new_user("admin")).await,
        1,
        "an admin creates an admin",
    );
    // The owner (migrations, an operator, the test harness) still may.
    allowed(
        conn.execute_unprepared(&new_user("admin"))
            .await
            .map(|r| r.rows_affected()),
        1,
        "the owner inserts an admin",
    );
    allowed(
        conn.execute_unprepared(&format!(
            "update users set role = 'admin' where id = '{}'",
            s.bob
        ))
        .await
        .map(|r| r.rows_affected()),
        1,
        "the owner promotes bob",
    );
}

#[tokio::test]
async fn password_hashes_are_readable_by_the_service_only() {
    let (_db, conn, s) = setup().await;
    refused(
        as_admin(&conn, s.ada, "select password_hash from users").await,
        PRIVILEGE,
        "an admin reads password hashes",
    );
    refused(
        as_user(&conn, s.ada, "select * from users").await,
        PRIVILEGE,
        "a user reads her whole row",
    );
    allowed(
        as_admin(&conn, s.ada, "select email from users").await,
        2,
        "an admin reads every email",
    );
    allowed(
        as_user(
            &conn,
            s.ada,
            "select id, email, display_name, avatar_url, role, created_at, updated_at from users",
        )
        .await,
        1,
        "a user reads her own profile",
    );
    allowed(
        as_user(
            &conn,
            s.ada,
            &format!(
                "update users set display_name = 'Ada', avatar_url = 'a.png', updated_at = now() \
                 where id = '{}'",
                s.ada
            ),
        )
        .await,
        1,
        "a user updates her profile",
    );
    for column in ["password_hash = 'x'", "email = 'eve@example.com'"] {
        refused(
            as_user(
                &conn,
                s.ada,
                &format!("update users set {column} where id = '{}'", s.ada),
            )
            .await,
            PRIVILEGE,
            &format!("a user sets {column}"),
        );
    }
    allowed(
        as_service(
            &conn,
            "select password_hash from users where lower(email) = 'ada@example.com'",
        )
        .await,
        1,
        "sign-in reads the hash as the service",
    );
}

#[tokio::test]
async fn owners_only_cancel_their_agent_tasks() {
    let (_db, conn, s) = setup().await;
    let task = s.task;
    refused(
        as_user(
            &conn,
            s.ada,
            &format!("update agent_tasks set status = 'succeeded' where id = '{task}'"),
        )
        .await,
        RLS,
        "the owner marks her task succeeded",
    );
    for column in [
        "output = '{}'",
        "progress = 100",
        "error = 'x'",
        "attempts = 9",
    ] {
        refused(
            as_user(
                &conn,
                s.ada,
                &format!("update agent_tasks set {column} where id = '{task}'"),
            )
            .await,
            PRIVILEGE,
            &format!("the owner sets {column}"),
        );
    }
    allowed(
        as_user(
            &conn,
            s.ada,
            &format!(
                "update agent_tasks set status = 'cancelled', finished_at = now(), \
                 updated_at = now() where id = '{task}'"
            ),
        )
        .await,
        1,
        "the owner cancels her task",
    );
    allowed(
        as_user(
            &conn,
            s.bob,
            &format!("update agent_tasks set status = 'cancelled' where id = '{task}'"),
        )
        .await,
        0,
        "bob cancels ada's task",
    );
    allowed(
        as_admin(
            &conn,
            s.bob,
            &format!("update agent_tasks set status = 'failed' where id = '{task}'"),
        )
        .await,
        1,
        "an admin moves a task to any status",
    );
    allowed(
        as_service(
            &conn,
            &format!(
                "update agent_tasks set status = 'succeeded', output = '{{}}', progress = 100 \
                 where id = '{task}'"
            ),
        )
        .await,
        1,
        "the service finishes a task",
    );

    let insert = |columns: &str, values: &str| {
        format!(
            "insert into agent_tasks (id, project_id, user_id, agent_id, title{columns}) values \
             ('{}', '{}', '{}', (select id from agents order by slug limit 1), 'new'{values})",
            Uuid::new_v4(),
            s.ada_project,
            s.ada
        )
    };
    allowed(
        as_user(
            &conn,
            s.ada,
            &insert(
                ", parent_task_id, input, status, progress, priority, created_at, updated_at",
                &format!(", '{task}', '{{}}', 'queued', 0, 1, now(), now()"),
            ),
        )
        .await,
        1,
        "the owner queues a task",
    );
    refused(
        as_user(&conn, s.ada, &insert(", output", ", '{}'")).await,
        PRIVILEGE,
        "the owner creates a task with its output",
    );
    refused(
        as_user(&conn, s.ada, &insert(", status", ", 'succeeded'")).await,
        RLS,
        "the owner creates a succeeded task",
    );
}

#[tokio::test]
async fn owners_only_cancel_their_deployments() {
    let (_db, conn, s) = setup().await;
    let deployment = s.deployment;
    refused(
        as_user(
            &conn,
            s.ada,
            &format!("update deployments set status = 'ready' where id = '{deployment}'"),
        )
        .await,
        RLS,
        "the owner marks her deployment ready",
    );
    for column in [
        "url = 'https://evil.example'",
        "log = 'x'",
        "commit_sha = 'x'",
    ] {
        refused(
            as_user(
                &conn,
                s.ada,
                &format!("update deployments set {column} where id = '{deployment}'"),
            )
            .await,
            PRIVILEGE,
            &format!("the owner sets {column}"),
        );
    }
    allowed(
        as_user(
            &conn,
            s.ada,
            &format!(
                "update deployments set status = 'cancelled', finished_at = now(), \
                 updated_at = now() where id = '{deployment}'"
            ),
        )
        .await,
        1,
        "the owner cancels her deployment",
    );
    allowed(
        as_service(
            &conn,
            &format!(
                "update deployments set status = 'ready', url = 'https://x.example' \
                 where id = '{deployment}'"
            ),
        )
        .await,
        1,
        "the service advances a deployment",
    );
    let insert = |columns: &str, values: &str| {
        format!(
            "insert into deployments (id, project_id, user_id, provider{columns}) values \
             ('{}', '{}', '{}', 'vercel'{values})",
            Uuid::new_v4(),
            s.ada_project,
            s.ada
        )
    };
    allowed(
        as_user(
            &conn,
            s.ada,
            &insert(
                ", environment, status, commit_sha, log, created_at, updated_at",
                ", 'production', 'queued', 'abc', null, now(), now()",
            ),
        )
        .await,
        1,
        "the owner queues a deployment",
    );
    refused(
        as_user(&conn, s.ada, &insert(", url", ", 'https://x.example'")).await,
        PRIVILEGE,
        "the owner creates a deployment with its url",
    );
    refused(
        as_user(&conn, s.ada, &insert(", status", ", 'ready'")).await,
        RLS,
        "the owner creates a ready deployment",
    );
}

#[tokio::test]
async fn owners_create_and_delete_but_never_complete_code_generations() {
    let (_db, conn, s) = setup().await;
    let generation = s.generation;
    for column in [
        "output = 'x'",
        "status = 'succeeded'",
        "tokens_out = 1",
        "prompt = 'x'",
    ] {
        refused(
            as_user(
                &conn,
                s.ada,
                &format!("update code_generations set {column} where id = '{generation}'"),
            )
            .await,
            PRIVILEGE,
            &format!("the owner sets {column}"),
        );
    }
    allowed(
        as_service(
            &conn,
            &format!(
                "update code_generations set status = 'succeeded', output = 'x', tokens_out = 3 \
                 where id = '{generation}'"
            ),
        )
        .await,
        1,
        "the service completes a generation",
    );
    let insert = |columns: &str, values: &str| {
        format!(
            "insert into code_generations (id, user_id, project_id, prompt{columns}) values \
             ('{}', '{}', '{}', 'p'{values})",
            Uuid::new_v4(),
            s.ada,
            s.ada_project
        )
    };
    allowed(
        as_user(
            &conn,
            s.ada,
            &insert(
                ", ai_service_id, language, status, created_at, updated_at",
                ", (select id from ai_services order by slug limit 1), 'rust', 'pending', now(), now()",
            ),
        )
        .await,
        1,
        "the owner requests a generation",
    );
    refused(
        as_user(&conn, s.ada, &insert(", output", ", 'x'")).await,
        PRIVILEGE,
        "the owner creates a generation with its output",
    );
    refused(
        as_user(&conn, s.ada, &insert(", status", ", 'succeeded'")).await,
        RLS,
        "the owner creates a succeeded generation",
    );
    allowed(
        as_user(
            &conn,
            s.ada,
            &format!("delete from code_generations where id = '{generation}'"),
        )
        .await,
        1,
        "the owner deletes her generation",
    );
}

#[tokio::test]
async fn owners_only_mark_notifications_read() {
    let (_db, conn, s) = setup().await;
    let notification = s.notification;
    for column in [
        "title = 'x'",
        "body = 'x'",
        "user_id = user_id",
        "kind = 'x'",
    ] {
        refused(
            as_user(
                &conn,
                s.ada,
                &format!("update notifications set {column} where id = '{notification}'"),
            )
            .await,
            PRIVILEGE,
            &format!("the owner sets {column}"),
        );
    }
    allowed(
        as_user(
            &conn,
            s.ada,
            &format!(
                "update notifications set read_at = now(), updated_at = now() \
                 where id = '{notification}'"
            ),
        )
        .await,
        1,
        "the owner marks her notification read",
    );
    allowed(
        as_user(
            &conn,
            s.ada,
            &format!("delete from notifications where id = '{notification}'"),
        )
        .await,
        1,
        "the owner deletes her notification",
    );
    allowed(
        as_admin(
            &conn,
            s.bob,
            &format!(
                "insert into notifications (id, user_id, kind, title, body, data) \
                 values ('{}', '{}', 'info', 'hello', 'b', '{{}}')",
                Uuid::new_v4(),
                s.ada
            ),
        )
        .await,
        1,
        "an admin notifies a user",
    );
}

fn revocation(user: Option<Uuid>) -> String {
    let user = user.map_or("null".to_owned(), |u| format!("'{u}'"));
    format!(
        "insert into revoked_tokens (revocation_id, user_id, expires_at) \
         values ('{}', {user}, now() + interval '1 hour')",
        Uuid::new_v4().simple()
    )
}

#[tokio::test]
async fn users_revoke_only_in_their_own_name() {
    let (_db, conn, s) = setup().await;
    refused(
        as_user(&conn, s.ada, &revocation(Some(s.bob))).await,
        RLS,
        "ada records a revocation as bob",
    );
    refused(
        as_user(&conn, s.ada, &revocation(None)).await,
        RLS,
        "ada records an unattributed revocation",
    );
    allowed(
        as_user(&conn, s.ada, &revocation(Some(s.ada))).await,
        1,
        "ada signs out",
    );
    allowed(
        as_service(&conn, &revocation(None)).await,
        1,
        "the service revokes any token",
    );
    allowed(
        as_service(&conn, &revocation(Some(s.bob))).await,
        1,
        "the service revokes bob's token",
    );
    // Every request checks its token as whatever role it runs as, anonymous included.
    allowed(
        as_role(
            &conn,
            ANON,
            None,
            "anon",
            // Not `user_id`: who signed out is the service's to read (migration 000008).
            "select revocation_id, expires_at from revoked_tokens",
        )
        .await,
        0,
        "anonymous requests read revocations",
    );
}

/// The functions every request runs, which name everything in full instead of pinning
/// `search_path` (migration m20261126_000013): a pinned function is never inlined.
const UNPINNED: [&str; 6] = [
    "flashfusion_act_as",
    "flashfusion_act_as_or_refuse",
    "flashfusion_app_role",
    "flashfusion_is_admin",
    "flashfusion_session_is_current",
    "flashfusion_user_id",
];

/// The row policies' `flashfusion_user_id()` and `flashfusion_is_admin()` are inlined
/// into the plan, not called for every row they filter.
#[tokio::test]
async fn policies_inline_who_the_caller_is() {
    let (_db, conn, s) = setup().await;
    let tx = conn.begin().await.expect("begin");
    tx.execute_raw(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "select set_config('role', $1, true), set_config('app.user_id', $2, true), \
         set_config('app.role', 'user', true)",
        [AUTHENTICATED.into(), s.ada.to_string().into()],
    ))
    .await
    .expect("act as ada");
    let plan: Vec<String> = tx
        .query_all_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "explain (costs off) select id from projects",
        ))
        .await
        .expect("explain")
        .iter()
        .map(|row| row.try_get_by_index(0).expect("a plan line"))
        .collect();
    tx.rollback().await.expect("rollback");
    let plan = plan.join("\n");
    assert!(
        plan.contains("current_setting('app.user_id'")
            && plan.contains("current_setting('app.role'"),
        "the policy reads the settings itself:\n{plan}"
    );
    assert!(
        !plan.contains("flashfusion_"),
        "a call left in the plan:\n{plan}"
    );
}

#[tokio::test]
async fn functions_pin_search_path_and_nobody_creates_in_public() {
    let (_db, conn, s) = setup().await;
    let rows = conn
        .query_all_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "select p.proname::text, coalesce(array_to_string(p.proconfig, ';'), '') \
             from pg_proc p join pg_namespace n on n.oid = p.pronamespace \
             where n.nspname = 'public' and p.proname like 'flashfusion\\_%' order by 1",
        ))
        .await
        .expect("functions");
    let functions: Vec<(String, String)> = rows
        .iter()
        .map(|row| {
            (
                row.try_get_by_index(0).expect("name"),
                row.try_get_by_index(1).expect("config"),
            )
        })
        .collect();
    for expected in [
        "flashfusion_app_role",
        "flashfusion_is_admin",
        "flashfusion_set_updated_at",
        "flashfusion_user_id",
        "flashfusion_users_guard_role",
    ] {
        assert!(
            functions.iter().any(|(name, _)| name == expected),
            "{expected} exists: {functions:?}"
        );
    }
    for (name, config) in &functions {
        if UNPINNED.contains(&name.as_str()) {
            assert_eq!(config, "", "{name} runs unpinned, its names qualified");
        } else {
            // `pg_temp` last: unlisted, it would be searched first for tables.
            assert_eq!(
                config, "search_path=pg_catalog, public, pg_temp",
                "{name} pins its search_path"
            );
        }
    }

    let public_may_create = conn
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "select has_schema_privilege('public', 'public', 'CREATE')",
        ))
        .await
        .expect("privilege")
        .expect("a row")
        .try_get_by_index::<bool>(0)
        .expect("bool");
    assert!(!public_may_create, "PUBLIC may create in schema public");
    for (role, user, app_role) in [
        (AUTHENTICATED, Some(s.ada), "admin"),
        (SERVICE, None, "service"),
        (ANON, None, "anon"),
    ] {
        refused(
            as_role(&conn, role, user, app_role, "create table planted (i int)").await,
            PRIVILEGE,
            &format!("{role} creates a table"),
        );
    }
}

/// Policies, grants, function settings, triggers, constraints, indexes and columns of
/// the `public` schema, one sorted line each.
async fn catalog(conn: &DatabaseConnection) -> Vec<String> {
    let rows = conn
        .query_all_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "select x from (
                 select format('policy %s.%s %s %s using(%s) check(%s)', tablename, policyname,
                               cmd, roles, qual, with_check) as x
                 from pg_policies where schemaname = 'public'
                 union all
                 select format('grant %s %s %s', grantee, table_name, privilege_type)
                 from information_schema.role_table_grants where grantee like 'flashfusion%'
                 union all
                 select format('column grant %s %s.%s %s', grantee, table_name, column_name,
                               privilege_type)
                 from information_schema.column_privileges where grantee like 'flashfusion%'
                 union all
                 select format('function %s %s', proname, proconfig)
                 from pg_proc where pronamespace = 'public'::regnamespace
                 union all
                 select format('trigger %s %s', tgrelid::regclass, tgname)
                 from pg_trigger where not tgisinternal
                 union all
                 select format('constraint %s %s', conrelid::regclass, pg_get_constraintdef(oid))
                 from pg_constraint where connamespace = 'public'::regnamespace
                 union all
                 select indexdef from pg_indexes where schemaname = 'public'
                 union all
                 select format('column %s.%s %s', table_name, column_name, data_type)
                 from information_schema.columns where table_schema = 'public'
             ) s order by x",
        ))
        .await
        .expect("catalog");
    rows.iter()
        .map(|row| row.try_get_by_index(0).expect("text"))
        .collect()
}

/// `down` of the tightening migration puts back exactly what the three before it made
/// (except CREATE on `public` for PUBLIC, which it deliberately does not hand back).
#[tokio::test]
async fn down_restores_the_earlier_policies_and_grants() {
    use migration::{Migrator, MigratorTrait};
    let db = TestDb::new().await;
    let conn = db.connect().await;
    let tightened = catalog(&conn).await;
    Migrator::down(&conn, None).await.expect("down");
    Migrator::up(&conn, Some(3)).await.expect("up to the seeds");
    let before = catalog(&conn).await;
    assert_ne!(before, tightened, "the migration changes the catalog");
    Migrator::up(&conn, None).await.expect("up");
    assert_eq!(catalog(&conn).await, tightened, "up again");
    // Down to the seeds again: this migration and every later one.
    let later = u32::try_from(Migrator::migrations().len() - 3).expect("few migrations");
    Migrator::down(&conn, Some(later))
        .await
        .expect("down to the seeds");
    let after = catalog(&conn).await;
    let missing: Vec<_> = before.iter().filter(|x| !after.contains(x)).collect();
    let extra: Vec<_> = after.iter().filter(|x| !before.contains(x)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "down differs from before: missing {missing:#?}, extra {extra:#?}"
    );
}
