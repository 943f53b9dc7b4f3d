//! Parity with RLS (Postgres): for each table, the rows each database identity sees
//! through GraphQL are the rows the same identity sees in SQL under its role and
//! settings; and a write the API refuses changes no row when tried in SQL as the same
//! identity. Token narrowing (read-only, one project) is the gateway's alone, so the
//! owner's narrowed tokens are not compared here; the access matrix covers them.

use std::collections::BTreeSet;

use flashfusion_tests::{Actor, Actors, TestApp, create_project, outcome};
use serde_json::{Value, json};

/// The database identities: the owner's narrowed tokens act as the owner in SQL.
const IDENTITIES: [Actor; 5] = [
    Actor::Anonymous,
    Actor::Owner,
    Actor::Other,
    Actor::Admin,
    Actor::Service,
];

type Ids = BTreeSet<String>;

/// Strings found at `path` (a dotted list of keys, `*` for every array element).
fn strings(value: &Value, path: &str) -> Ids {
    let mut values = vec![value];
    for key in path.split('.') {
        values = values
            .into_iter()
            .flat_map(|v| match key {
                "*" => v.as_array().map(|a| a.iter().collect()).unwrap_or_default(),
                key => vec![&v[key]],
            })
            .collect();
    }
    values
        .into_iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// What `actor` sees in SQL (`sql` selects text); a refused statement sees nothing.
async fn in_sql(app: &TestApp, cast: &Actors, actor: Actor, sql: &str) -> Ids {
    match cast.sql_as(app, actor, sql).await {
        Ok(rows) => rows.into_iter().collect(),
        // No privilege on the table: the role sees no row. Any other error is a bug in
        // the test, which must not read as "sees nothing".
        Err(err) if err.to_string().contains("permission denied") => Ids::new(),
        Err(err) => panic!("{sql} as {actor:?}: {err}"),
    }
}

/// Every row `sql` selects, read as the database owner (no policy applies).
async fn every_row(app: &TestApp, sql: &str) -> Ids {
    use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
    let conn = app.db.as_ref().expect("postgres").connect().await;
    conn.query_all_raw(Statement::from_string(DatabaseBackend::Postgres, sql))
        .await
        .expect("read as the owner")
        .iter()
        .filter_map(|row| row.try_get_by_index::<String>(0).ok())
        .collect()
}

/// Seeds rows of every kind for the owner and the other user.
async fn seed(app: &TestApp, cast: &Actors) {
    let others = create_project(&cast.other, "other's").await;
    let service = cast
        .anonymous
        .graphql("{ aiServices { id } }", json!({}))
        .await["data"]["aiServices"][0]["id"]
        .clone();
    for (client, project, secret) in [
        (&cast.owner, &cast.project_id, "sk-owner-secret-1"),
        (&cast.other, &others, "sk-other-secret-2"),
    ] {
        let made = client
            .graphql(
                "mutation($p: ID!, $s: ID!, $k: String!) {
                   createAgentTask(input: {projectId: $p, agentSlug: \"code-reviewer\", title: \"t\"}) { task { id } }
                   createDeployment(input: {projectId: $p, environment: PREVIEW, provider: \"vercel\"}) { deployment { id } }
                   createCodeGeneration(input: {projectId: $p, aiServiceId: $s, prompt: \"p\"}) { codeGeneration { id } }
                   createApiKey(input: {label: \"l\", provider: \"openai\", secret: $k}) { apiKey { id } }
                   connectIntegration(input: {provider: \"github\", credentials: $k}) { integration { id } }
                 }",
                json!({ "p": project, "s": service, "k": secret }),
            )
            .await;
        assert!(made["errors"].is_null(), "{made}");
    }
    cast.other
        .graphql(
            "mutation { createProject(input: {name: \"shown\", visibility: PUBLIC}) { project { id } } }",
            json!({}),
        )
        .await;
    for user in [&cast.owner_id, &cast.other_id] {
        let sent = cast
            .service
            .graphql(
                "mutation($u: ID!) { createNotification(input: {userId: $u, kind: \"k\", title: \"t\"}) { notificationId } }",
                json!({ "u": user }),
            )
            .await;
        assert!(sent["errors"].is_null(), "{sent}");
    }
    cast.admin
        .graphql(
            "mutation { createAgent(input: {slug: \"retired\", name: \"R\", isActive: false}) { agent { id } } }",
            json!({}),
        )
        .await;
    let conn = app.db.as_ref().expect("postgres").connect().await;
    use sea_orm::ConnectionTrait;
    conn.execute_unprepared(&format!(
        "insert into usage_analytics (id, user_id, event_type, quantity, tokens, cost, metadata)
         values (gen_random_uuid(), '{}', 'x', 1, 1, 0.1, '{{}}'),
                (gen_random_uuid(), '{}', 'x', 1, 1, 0.1, '{{}}')",
        cast.owner_id, cast.other_id
    ))
    .await
    .expect("seed usage");
}

#[tokio::test]
async fn every_identity_sees_the_same_rows_through_the_api_and_in_sql() {
    let app = TestApp::postgres().await;
    let cast = Actors::new(&app).await;
    seed(&app, &cast).await;
    let all_projects = every_row(&app, "select id::text from projects").await;
    for actor in IDENTITIES {
        let client = cast.client(actor);
        let mut seen: Vec<(&str, Ids, Ids)> = Vec::new();

        // Project-owned rows: each asked for by id.
        for (table, field) in [
            ("agent_tasks", "agentTask"),
            ("deployments", "deployment"),
            ("code_generations", "codeGeneration"),
        ] {
            let sql = format!("select id::text from {table}");
            let mut api = Ids::new();
            for id in every_row(&app, &sql).await {
                let got = client
                    .graphql(
                        &format!("query($id: ID!) {{ {field}(id: $id) {{ id }} }}"),
                        json!({ "id": id }),
                    )
                    .await;
                api.extend(strings(&got, &format!("data.{field}.id")));
            }
            seen.push((table, api, in_sql(&app, &cast, actor, &sql).await));
        }

        // Keys and integrations: the owner's own lists. The service reads every sealed
        // row in SQL (it opens keys for the tasks it runs, agentTaskCredential), which
        // the API never lists.
        if actor != Actor::Service {
            let got = client
                .graphql(
                    "{ myApiKeys { nodes { id } } myIntegrations { nodes { id } } }",
                    json!({}),
                )
                .await;
            seen.push((
                "user_api_keys",
                strings(&got, "data.myApiKeys.nodes.*.id"),
                in_sql(&app, &cast, actor, "select id::text from user_api_keys").await,
            ));
            seen.push((
                "integrations",
                strings(&got, "data.myIntegrations.nodes.*.id"),
                in_sql(&app, &cast, actor, "select id::text from integrations").await,
            ));
        }

        // projects: each row asked for by id.
        let mut api = Ids::new();
        for id in &all_projects {
            let got = client
                .graphql(
                    "query($id: ID!) { project(id: $id) { id } }",
                    json!({ "id": id }),
                )
                .await;
            api.extend(strings(&got, "data.project.id"));
        }
        seen.push((
            "projects",
            api,
            in_sql(&app, &cast, actor, "select id::text from projects").await,
        ));

        // catalogs: the lists, inactive entries included where allowed.
        let inactive = actor == Actor::Admin;
        let got = client
            .graphql(
                "query($all: Boolean!) { aiServices(includeInactive: $all) { id } agents(includeInactive: $all) { id } }",
                json!({ "all": inactive }),
            )
            .await;
        // The service reads every agent and AI service in SQL, retired ones included
        // (it runs every task and prices every generation); its catalog lists through
        // the API show the active ones.
        if actor != Actor::Service {
            seen.push((
                "ai_services",
                strings(&got, "data.aiServices.*.id"),
                in_sql(&app, &cast, actor, "select id::text from ai_services").await,
            ));
            seen.push((
                "agents",
                strings(&got, "data.agents.*.id"),
                in_sql(&app, &cast, actor, "select id::text from agents").await,
            ));
        }

        // notifications: the caller's list.
        let got = client
            .graphql(
                "{ notifications(first: 100) { edges { node { id } } } }",
                json!({}),
            )
            .await;
        seen.push((
            "notifications",
            strings(&got, "data.notifications.edges.*.node.id"),
            in_sql(&app, &cast, actor, "select id::text from notifications").await,
        ));

        // usage: whose usage the caller may sum.
        let mut api = Ids::new();
        for user in [&cast.owner_id, &cast.other_id] {
            let got = client
                .graphql(
                    "query($u: ID) { usageSummary(from: \"2000-01-01T00:00:00Z\", to: \"2100-01-01T00:00:00Z\", groupBy: EVENT_TYPE, userId: $u) { key } }",
                    json!({ "u": user }),
                )
                .await;
            if got["data"]["usageSummary"]
                .as_array()
                .is_some_and(|b| !b.is_empty())
            {
                api.insert(user.clone());
            }
        }
        seen.push((
            "usage_analytics",
            api,
            in_sql(
                &app,
                &cast,
                actor,
                "select distinct user_id::text from usage_analytics",
            )
            .await,
        ));

        // users and billing: admins see the directory, others themselves. The service
        // reads every account in SQL (sign-in, recipients of what it writes) and writes
        // every billing row (setBilling returns it), which the API has no list for.
        if actor != Actor::Service {
            let got = client
                .graphql(
                    "{ me { id billing { plan } } users(first: 100) { edges { node { id } } } }",
                    json!({}),
                )
                .await;
            let mut api = strings(&got, "data.users.edges.*.node.id");
            api.extend(strings(&got, "data.me.id"));
            seen.push((
                "users",
                api.clone(),
                in_sql(&app, &cast, actor, "select id::text from users").await,
            ));
            seen.push((
                "billing",
                api,
                in_sql(&app, &cast, actor, "select user_id::text from billing").await,
            ));
        }

        for (table, api, sql) in seen {
            assert_eq!(
                api, sql,
                "{table} as {actor:?}: the API (left) and RLS (right) differ"
            );
        }
    }
}

/// A write the API refused, then the same write in SQL as the same identity: it must
/// fail or change no row.
async fn refused_everywhere(
    app: &TestApp,
    cast: &Actors,
    actor: Actor,
    (field, query, variables): (&str, &str, Value),
    sql: &str,
) {
    let response = cast.client(actor).graphql(query, variables).await;
    let code = outcome(&response, field);
    assert!(
        ["FORBIDDEN", "NOT_FOUND"].contains(&code.as_str()),
        "{field} as {actor:?} should be refused: {response}"
    );
    // Refused means a privilege, policy or guard said no, or no row qualified; any
    // other error (a typo in the SQL) would make this pass for nothing.
    let changed = match cast.sql_as(app, actor, sql).await {
        Ok(rows) => rows,
        Err(err) => {
            let message = err.to_string();
            assert!(
                ["permission denied", "row-level security", "only an admin"]
                    .iter()
                    .any(|refusal| message.contains(refusal)),
                "{field} as {actor:?}: SQL failed for another reason: {message}"
            );
            Vec::new()
        }
    };
    assert!(
        changed.is_empty(),
        "{field} as {actor:?}: SQL changed {changed:?}"
    );
}

#[tokio::test]
async fn a_write_the_api_refuses_changes_no_row_in_sql() {
    let app = TestApp::postgres().await;
    let cast = Actors::new(&app).await;
    seed(&app, &cast).await;
    let project = &cast.project_id;
    let owners_notification = in_sql(
        &app,
        &cast,
        Actor::Owner,
        "select id::text from notifications",
    )
    .await
    .into_iter()
    .next()
    .expect("a notification of the owner's");
    let owned = |table: &'static str| {
        let sql = format!(
            "select id::text from {table} where user_id = '{}'",
            cast.owner_id
        );
        let app = &app;
        async move {
            every_row(app, &sql)
                .await
                .into_iter()
                .next()
                .expect("an owner's row")
        }
    };
    let task = owned("agent_tasks").await;
    let deployment = owned("deployments").await;
    let key = owned("user_api_keys").await;
    let rename =
        "mutation($p: ID!) { updateProject(input: {id: $p, name: \"x\"}) { project { id } } }";
    let mut cases: Vec<(Actor, (&str, &str, Value), String)> = vec![
        (Actor::Other, ("updateProject", rename, json!({ "p": project })),
         format!("update projects set name = 'x' where id = '{project}' returning id::text")),
        (Actor::Service, ("updateProject", rename, json!({ "p": project })),
         format!("update projects set name = 'x' where id = '{project}' returning id::text")),
        (Actor::Other, ("deleteProject", "mutation($p: ID!) { deleteProject(id: $p) { deletedId } }", json!({ "p": project })),
         format!("delete from projects where id = '{project}' returning id::text")),
        (Actor::Owner, ("setBilling", "mutation($u: ID!) { setBilling(input: {userId: $u, plan: PRO}) { billing { plan } } }", json!({ "u": cast.owner_id })),
         format!("update billing set plan = 'pro' where user_id = '{}' returning id::text", cast.owner_id)),
        (Actor::Admin, ("markNotificationRead", "mutation($n: ID!) { markNotificationRead(id: $n) { notification { id } } }", json!({ "n": owners_notification })),
         format!("update notifications set read_at = now() where id = '{owners_notification}' returning id::text")),
        (Actor::Other, ("deleteNotification", "mutation($n: ID!) { deleteNotification(id: $n) { deletedId } }", json!({ "n": owners_notification })),
         format!("delete from notifications where id = '{owners_notification}' returning id::text")),
        (Actor::Owner, ("createNotification", "mutation($u: ID!) { createNotification(input: {userId: $u, kind: \"k\", title: \"t\"}) { notificationId } }", json!({ "u": cast.other_id })),
         format!("insert into notifications (id, user_id, kind, title) values (gen_random_uuid(), '{}', 'k', 't') returning id::text", cast.other_id)),
        (Actor::Owner, ("createAgent", "mutation { createAgent(input: {slug: \"mine\", name: \"M\"}) { agent { id } } }", json!({})),
         "insert into agents (id, slug, name) values (gen_random_uuid(), 'mine', 'M') returning id::text".to_owned()),
        (Actor::Other, ("setUserRole", "mutation($u: ID!) { setUserRole(input: {userId: $u, role: ADMIN}) { user { id } } }", json!({ "u": cast.other_id })),
         format!("update users set role = 'admin' where id = '{}' returning id::text", cast.other_id)),
        (Actor::Service, ("createProject", "mutation { createProject(input: {name: \"s\"}) { project { id } } }", json!({})),
         format!("insert into projects (id, owner_id, name) values (gen_random_uuid(), '{}', 's') returning id::text", cast.service_id)),
    ];
    cases.extend([
        (Actor::Owner, ("completeAgentTask", "mutation($t: ID!) { completeAgentTask(input: {id: $t}) { task { id } } }", json!({ "t": task })),
         format!("update agent_tasks set status = 'succeeded' where id = '{task}' returning id::text")),
        (Actor::Other, ("cancelAgentTask", "mutation($t: ID!) { cancelAgentTask(id: $t) { task { id } } }", json!({ "t": task })),
         format!("update agent_tasks set status = 'cancelled' where id = '{task}' returning id::text")),
        (Actor::Owner, ("advanceDeployment", "mutation($d: ID!) { advanceDeployment(input: {id: $d, status: BUILDING}) { deployment { id } } }", json!({ "d": deployment })),
         format!("update deployments set status = 'building' where id = '{deployment}' returning id::text")),
        (Actor::Other, ("revokeApiKey", "mutation($k: ID!) { revokeApiKey(id: $k) { apiKey { id } } }", json!({ "k": key })),
         format!("update user_api_keys set revoked_at = now() where id = '{key}' returning id::text")),
    ]);
    for (actor, api, sql) in cases {
        refused_everywhere(&app, &cast, actor, api, &sql).await;
    }
}
