//! Projects: ownership enforced by the resolvers and, on Postgres, by the policies
//! themselves; visibility for anonymous callers and admins; pagination.

use flashfusion_api::auth::Role;
use flashfusion_tests::{TestApp, create_visible_project};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement, TransactionTrait};
use serde_json::{Value, json};

use crate::code;

on_both_backends!(
    owner_creates_updates_and_deletes,
    bad_project_input_is_refused_with_codes,
    a_stranger_cannot_read_update_or_delete_a_private_project,
    anonymous_reads_public_only_and_admin_reads_all,
    cursors_walk_forwards_and_backwards_without_gaps,
    service_tokens_read_but_do_not_change_projects,
    failed_mutations_stop_and_roll_back_whole,
    concurrent_writers_all_succeed,
    a_list_answers_plain_fields_as_the_single_project_does,
);

const CREATE: &str = "mutation($i: CreateProjectInput!) { createProject(input: $i) { project { id name visibility status owner { id displayName } } } }";
const GET: &str = "query($id: ID!) { project(id: $id) { id name owner { displayName } } }";
const UPDATE: &str = "mutation($i: UpdateProjectInput!) { updateProject(input: $i) { project { id name status visibility } } }";
const DELETE: &str = "mutation($id: ID!) { deleteProject(id: $id) { deletedId } }";

/// A list's projects answer a selection of plain fields without resolving each
/// (`kit::plain`): the same values as the resolved single project, and as the list
/// gives when a resolved field (`owner`) is asked for beside them.
async fn a_list_answers_plain_fields_as_the_single_project_does(app: TestApp) {
    let (ada, _) = app.user("ada@example.com").await;
    ada.graphql(
        CREATE,
        json!({ "i": { "name": "Site \"β\"", "description": "a\nsite", "framework": "next", "visibility": "PUBLIC" } }),
    )
    .await;
    create_visible_project(&ada, "bare", "PRIVATE").await;
    const FIELDS: &str =
        "__typename id name description visibility framework status createdAt updatedAt";
    let list = |extra: &str| {
        format!("{{ myProjects(first: 5) {{ edges {{ node {{ {FIELDS} n: name {extra} }} }} }} }}")
    };
    let plain = ada.graphql(&list(""), json!({})).await;
    let resolved = ada.graphql(&list("owner { id }"), json!({})).await;
    let nodes = |response: &Value| -> Vec<Value> {
        response["data"]["myProjects"]["edges"]
            .as_array()
            .unwrap_or_else(|| panic!("no edges: {response}"))
            .iter()
            .map(|edge| {
                let mut node = edge["node"].clone();
                node.as_object_mut().map(|node| node.remove("owner"));
                node
            })
            .collect()
    };
    assert_eq!(nodes(&plain).len(), 2, "{plain}");
    assert_eq!(nodes(&plain), nodes(&resolved));
    for node in nodes(&plain) {
        let single = ada
            .graphql(
                &format!("query($id: ID!) {{ project(id: $id) {{ {FIELDS} n: name }} }}"),
                json!({ "id": node["id"] }),
            )
            .await;
        assert_eq!(single["data"]["project"], node, "{single}");
    }
}

async fn owner_creates_updates_and_deletes(app: TestApp) {
    let (ada, ada_id) = app.user("ada@example.com").await;
    let created = ada
        .graphql(
            CREATE,
            json!({ "i": { "name": "  Site  ", "description": "a site", "framework": "next" } }),
        )
        .await;
    let project = &created["data"]["createProject"]["project"];
    assert_eq!(project["name"], "Site", "{created}");
    assert_eq!(project["visibility"], "PRIVATE");
    assert_eq!(project["status"], "ACTIVE");
    assert_eq!(
        project["owner"],
        json!({ "id": ada_id, "displayName": "ada" })
    );
    let id = project["id"].clone();

    let updated = ada
        .graphql(UPDATE, json!({ "i": { "id": id, "name": "Renamed", "status": "ARCHIVED", "visibility": "PUBLIC" } }))
        .await;
    assert_eq!(
        updated["data"]["updateProject"]["project"],
        json!({ "id": id, "name": "Renamed", "status": "ARCHIVED", "visibility": "PUBLIC" }),
        "{updated}"
    );
    let described = "query($id: ID!) { project(id: $id) { description } }";
    assert_eq!(
        ada.graphql(described, json!({ "id": id })).await["data"]["project"]["description"],
        "a site"
    );
    ada.graphql(
        UPDATE,
        json!({ "i": { "id": id, "name": "Renamed again" } }),
    )
    .await;
    assert_eq!(
        ada.graphql(described, json!({ "id": id })).await["data"]["project"]["description"],
        "a site",
        "an omitted field stays"
    );
    let cleared = ada
        .graphql(UPDATE, json!({ "i": { "id": id, "description": null } }))
        .await;
    assert!(cleared["errors"].is_null(), "{cleared}");
    assert_eq!(
        ada.graphql(described, json!({ "id": id })).await["data"]["project"]["description"],
        Value::Null
    );

    // The id comes back canonical whatever spelling the client used.
    let braced = format!("{{{}}}", id.as_str().expect("id").to_uppercase());
    let deleted = ada.graphql(DELETE, json!({ "id": braced })).await;
    assert_eq!(
        deleted["data"]["deleteProject"]["deletedId"], id,
        "{deleted}"
    );
    assert_eq!(
        ada.graphql(GET, json!({ "id": id })).await["data"]["project"],
        Value::Null
    );
    assert_eq!(
        code(&ada.graphql(DELETE, json!({ "id": id })).await),
        "NOT_FOUND"
    );
}

async fn bad_project_input_is_refused_with_codes(app: TestApp) {
    let (ada, _) = app.user("ada@example.com").await;
    let blank = ada.graphql(CREATE, json!({ "i": { "name": "   " } })).await;
    assert_eq!(code(&blank), "BAD_USER_INPUT");
    let enum_value = ada
        .graphql(
            CREATE,
            json!({ "i": { "name": "x", "visibility": "SECRET" } }),
        )
        .await;
    assert_eq!(code(&enum_value), "BAD_USER_INPUT", "{enum_value}");
    let bad_id = ada.graphql(GET, json!({ "id": "not-a-uuid" })).await;
    assert_eq!(code(&bad_id), "BAD_USER_INPUT");
    let unknown = ada
        .graphql(
            UPDATE,
            json!({ "i": { "id": "01a21327-ad51-76d3-837c-59bff2cd56e5", "name": "x" } }),
        )
        .await;
    assert_eq!(code(&unknown), "NOT_FOUND");
    let anonymous = app
        .anonymous()
        .graphql(CREATE, json!({ "i": { "name": "x" } }))
        .await;
    assert_eq!(code(&anonymous), "UNAUTHENTICATED");
    for input in [
        json!({ "name": "nul\u{0}name" }),
        json!({ "name": "two\nlines" }),
        json!({ "name": "x", "description": "nul\u{0}" }),
        json!({ "name": "x".repeat(201) }),
    ] {
        let refused = ada.graphql(CREATE, json!({ "i": input })).await;
        assert_eq!(code(&refused), "BAD_USER_INPUT", "{input}: {refused}");
    }
    let multiline = ada
        .graphql(
            CREATE,
            json!({ "i": { "name": "x", "description": "one\ntwo" } }),
        )
        .await;
    assert!(
        multiline["errors"].is_null(),
        "descriptions may span lines: {multiline}"
    );
    let mine = ada
        .graphql("{ myProjects { totalCount } }", json!({}))
        .await;
    assert_eq!(
        mine["data"]["myProjects"]["totalCount"], 1,
        "nothing half-written"
    );
}

async fn a_stranger_cannot_read_update_or_delete_a_private_project(app: TestApp) {
    let (ada, _) = app.user("ada@example.com").await;
    let (bob, _) = app.user("bob@example.com").await;
    let id = create_visible_project(&ada, "private", "PRIVATE").await;

    assert_eq!(
        bob.graphql(GET, json!({ "id": id })).await["data"]["project"],
        Value::Null
    );
    let update = bob
        .graphql(UPDATE, json!({ "i": { "id": id, "name": "mine now" } }))
        .await;
    assert_eq!(code(&update), "NOT_FOUND", "{update}");
    assert_eq!(update["data"], Value::Null);
    assert_eq!(
        code(&bob.graphql(DELETE, json!({ "id": id })).await),
        "NOT_FOUND"
    );
    let still = ada.graphql(GET, json!({ "id": id })).await;
    assert_eq!(
        still["data"]["project"]["name"], "private",
        "untouched: {still}"
    );

    // A public project is readable by Bob but still not his to change.
    let public = create_visible_project(&ada, "public", "PUBLIC").await;
    assert_eq!(
        bob.graphql(GET, json!({ "id": public })).await["data"]["project"]["name"],
        "public"
    );
    let update = bob
        .graphql(UPDATE, json!({ "i": { "id": public, "name": "x" } }))
        .await;
    assert_eq!(code(&update), "FORBIDDEN");
}

/// Runs `sql` in a transaction switched to `role` with these settings, as the gateway's
/// pipeline does, and returns the rows' first column as text (or the error).
async fn as_role(
    app: &TestApp,
    role: &str,
    user_id: &str,
    app_role: &str,
    sql: &str,
) -> Result<Vec<String>, sea_orm::DbErr> {
    let conn = app.db.as_ref().expect("postgres").connect().await;
    let tx = conn.begin().await?;
    tx.execute_raw(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "select set_config('role', $1, true), set_config('app.user_id', $2, true), set_config('app.role', $3, true)",
        [role.into(), user_id.into(), app_role.into()],
    ))
    .await?;
    let rows = tx
        .query_all_raw(Statement::from_string(DatabaseBackend::Postgres, sql))
        .await;
    tx.rollback().await?;
    Ok(rows?
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap_or_default())
        .collect())
}

#[tokio::test]
async fn the_policies_themselves_hide_a_private_project() {
    let app = TestApp::postgres().await;
    let (ada, ada_id) = app.user("ada@example.com").await;
    let (_, bob_id) = app.user("bob@example.com").await;
    let id = create_visible_project(&ada, "private", "PRIVATE").await;
    let sql = format!("select name from projects where id = '{id}'");
    let authenticated = "flashfusion_authenticated";

    let as_bob = as_role(&app, authenticated, &bob_id, "user", &sql)
        .await
        .expect("query");
    assert!(
        as_bob.is_empty(),
        "Bob must not see Ada's private project: {as_bob:?}"
    );
    let as_ada = as_role(&app, authenticated, &ada_id, "user", &sql)
        .await
        .expect("query");
    assert_eq!(as_ada, ["private"]);
    let as_anon = as_role(&app, "flashfusion_anon", "", "anon", &sql)
        .await
        .expect("query");
    assert!(as_anon.is_empty());
    let as_admin = as_role(&app, authenticated, &bob_id, "admin", &sql)
        .await
        .expect("query");
    assert_eq!(as_admin, ["private"]);

    // Bob cannot change it in SQL either: the update matches no row.
    let update = format!("update projects set name = 'stolen' where id = '{id}' returning name");
    let stolen = as_role(&app, authenticated, &bob_id, "user", &update)
        .await
        .expect("update");
    assert!(stolen.is_empty());
    // Nor insert a project in Ada's name.
    let insert = format!(
        "insert into projects (id, owner_id, name) values (gen_random_uuid(), '{ada_id}', 'forged') returning name"
    );
    let forged = as_role(&app, authenticated, &bob_id, "user", &insert).await;
    let message = forged.expect_err("the policy refuses the row").to_string();
    assert!(message.contains("row-level security"), "{message}");
}

#[tokio::test]
async fn strangers_read_only_id_and_display_name_of_a_public_owner() {
    let app = TestApp::postgres().await;
    let (ada, ada_id) = app.user("ada@example.com").await;
    let (bob, bob_id) = app.user("bob@example.com").await;
    create_visible_project(&ada, "public", "PUBLIC").await;
    create_visible_project(&bob, "private", "PRIVATE").await;

    let profiles = as_role(
        &app,
        "flashfusion_anon",
        "",
        "anon",
        "select display_name from profiles",
    )
    .await
    .expect("profiles");
    assert_eq!(profiles, ["ada"], "only owners of public projects");
    let emails = as_role(
        &app,
        "flashfusion_anon",
        "",
        "anon",
        "select email from users",
    )
    .await;
    assert!(
        emails.is_err() || emails.as_ref().is_ok_and(Vec::is_empty),
        "{emails:?}"
    );
    let bob_reads = as_role(
        &app,
        "flashfusion_authenticated",
        &bob_id,
        "user",
        &format!("select email from users where id = '{ada_id}'"),
    )
    .await
    .expect("query");
    assert!(bob_reads.is_empty(), "Bob must not read Ada's email");

    // Through GraphQL, owner is a Profile: no email field exists on it.
    let list = app
        .anonymous()
        .graphql(
            "{ publicProjects { edges { node { name owner { id displayName } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        list["data"]["publicProjects"]["edges"],
        json!([{ "node": { "name": "public", "owner": { "id": ada_id, "displayName": "ada" } } }]),
        "{list}"
    );
    let email = app
        .anonymous()
        .graphql(
            "{ publicProjects { edges { node { owner { email } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&email), "BAD_USER_INPUT");
}

async fn anonymous_reads_public_only_and_admin_reads_all(app: TestApp) {
    let (ada, _) = app.user("ada@example.com").await;
    let (_, carol_id) = app.user("carol@example.com").await;
    let private = create_visible_project(&ada, "private", "PRIVATE").await;
    let public = create_visible_project(&ada, "public", "PUBLIC").await;

    let anonymous = app.anonymous();
    assert_eq!(
        anonymous.graphql(GET, json!({ "id": private })).await["data"]["project"],
        Value::Null
    );
    let seen = anonymous.graphql(GET, json!({ "id": public })).await;
    assert_eq!(
        seen["data"]["project"]["owner"]["displayName"], "ada",
        "{seen}"
    );
    let mine = anonymous
        .graphql("{ myProjects { totalCount } }", json!({}))
        .await;
    assert_eq!(code(&mine), "UNAUTHENTICATED");

    // An admin token for an account that is not (or no longer) an admin is refused.
    let pretender = app.with_token(&app.mint(&carol_id, Role::Admin));
    assert_eq!(
        code(&pretender.graphql(GET, json!({ "id": private })).await),
        "UNAUTHENTICATED"
    );
    let (admin, _) = app.admin("root@example.com").await;
    let seen = admin.graphql(GET, json!({ "id": private })).await;
    assert_eq!(seen["data"]["project"]["name"], "private", "{seen}");
    assert_eq!(seen["data"]["project"]["owner"]["displayName"], "ada");
    let renamed = admin
        .graphql(
            UPDATE,
            json!({ "i": { "id": private, "name": "moderated" } }),
        )
        .await;
    assert_eq!(
        renamed["data"]["updateProject"]["project"]["name"], "moderated",
        "{renamed}"
    );
}

const PAGE: &str = "query($first: Int, $after: String, $last: Int, $before: String) {
  myProjects(first: $first, after: $after, last: $last, before: $before) {
    totalCount
    edges { cursor node { name owner { displayName } } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}";

async fn cursors_walk_forwards_and_backwards_without_gaps(app: TestApp) {
    let (ada, _) = app.user("ada@example.com").await;
    let (bob, _) = app.user("bob@example.com").await;
    for i in 0..45 {
        create_visible_project(
            &ada,
            &format!("p{i:02}"),
            if i % 2 == 0 { "PUBLIC" } else { "PRIVATE" },
        )
        .await;
    }
    create_visible_project(&bob, "bob's", "PUBLIC").await;
    let newest_first: Vec<String> = (0..45).rev().map(|i| format!("p{i:02}")).collect();

    let mut forwards = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = ada
            .graphql(PAGE, json!({ "first": 10, "after": after }))
            .await;
        let connection = &page["data"]["myProjects"];
        assert_eq!(connection["totalCount"], 45, "{page}");
        for edge in connection["edges"].as_array().expect("edges") {
            forwards.push(edge["node"]["name"].as_str().expect("name").to_owned());
            assert_eq!(edge["node"]["owner"]["displayName"], "ada");
        }
        if connection["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = connection["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(forwards, newest_first);

    let mut backwards = Vec::new();
    let mut before = Value::Null;
    loop {
        let page = ada
            .graphql(PAGE, json!({ "last": 7, "before": before }))
            .await;
        let connection = &page["data"]["myProjects"];
        let names: Vec<String> = connection["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .map(|e| e["node"]["name"].as_str().expect("name").to_owned())
            .collect();
        backwards.splice(0..0, names);
        if connection["pageInfo"]["hasPreviousPage"] != true {
            break;
        }
        before = connection["pageInfo"]["startCursor"].clone();
    }
    assert_eq!(backwards, newest_first);

    // Both cursors bound the window whichever end the page is taken from.
    let names = |page: &Value| -> Vec<String> {
        page["data"]["myProjects"]["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .map(|e| e["node"]["name"].as_str().expect("name").to_owned())
            .collect()
    };
    let cursor_of = |name: &str, page: &Value| -> Value {
        page["data"]["myProjects"]["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .find(|e| e["node"]["name"] == name)
            .map(|e| e["cursor"].clone())
            .expect("cursor")
    };
    let all = ada.graphql(PAGE, json!({ "first": 100 })).await;
    let (p30, p20) = (cursor_of("p30", &all), cursor_of("p20", &all));
    let window = ada
        .graphql(PAGE, json!({ "last": 3, "after": p30, "before": p20 }))
        .await;
    assert_eq!(names(&window), ["p23", "p22", "p21"], "{window}");
    let window = ada
        .graphql(PAGE, json!({ "first": 3, "after": p30, "before": p20 }))
        .await;
    assert_eq!(names(&window), ["p29", "p28", "p27"], "{window}");
    let oldest = ada.graphql(PAGE, json!({ "last": 2, "after": p30 })).await;
    assert_eq!(names(&oldest), ["p01", "p00"]);
    assert_eq!(
        oldest["data"]["myProjects"]["pageInfo"]["hasPreviousPage"],
        true
    );
    let public_tail = app
        .anonymous()
        .graphql(
            "{ publicProjects(last: 2) { edges { node { name } } pageInfo { hasPreviousPage } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        public_tail["data"]["publicProjects"]["edges"],
        json!([{ "node": { "name": "p02" } }, { "node": { "name": "p00" } }]),
        "{public_tail}"
    );

    let first_page = ada.graphql(PAGE, json!({})).await;
    assert_eq!(
        first_page["data"]["myProjects"]["edges"]
            .as_array()
            .map(Vec::len),
        Some(20),
        "default page size"
    );
    let both = ada.graphql(PAGE, json!({ "first": 1, "last": 1 })).await;
    assert_eq!(code(&both), "BAD_USER_INPUT");
    let cursor = ada.graphql(PAGE, json!({ "after": "nonsense" })).await;
    assert_eq!(code(&cursor), "BAD_USER_INPUT");
    let negative = ada.graphql(PAGE, json!({ "first": -1 })).await;
    assert_eq!(code(&negative), "BAD_USER_INPUT");
    let public = app
        .anonymous()
        .graphql("{ publicProjects(first: 100) { totalCount } }", json!({}))
        .await;
    assert_eq!(
        public["data"]["publicProjects"]["totalCount"], 24,
        "23 of Ada's and Bob's one"
    );
}

#[tokio::test]
async fn first_is_capped_at_one_hundred() {
    let app = TestApp::postgres().await;
    let (ada, ada_id) = app.user("ada@example.com").await;
    let conn = app.db.as_ref().expect("postgres").connect().await;
    conn.execute_unprepared(&format!(
        "insert into projects (id, owner_id, name) select gen_random_uuid(), '{ada_id}', 'p' || n from generate_series(1, 105) n"
    ))
    .await
    .expect("bulk insert");
    let page = ada.graphql(PAGE, json!({ "first": 1000 })).await;
    let connection = &page["data"]["myProjects"];
    assert_eq!(
        connection["edges"].as_array().map(Vec::len),
        Some(100),
        "{page}"
    );
    assert_eq!(connection["totalCount"], 105);
    assert_eq!(connection["pageInfo"]["hasNextPage"], true);
}

#[tokio::test]
async fn owners_of_a_page_are_loaded_in_one_batch() {
    let app = TestApp::postgres().await;
    for i in 0..30 {
        let (client, _) = app.user(&format!("user{i}@example.com")).await;
        create_visible_project(&client, &format!("p{i}"), "PUBLIC").await;
    }
    let before = app.state.db.statements_executed();
    let page = app
        .anonymous()
        .graphql(
            "{ publicProjects(first: 30) { edges { node { name owner { displayName } } } } }",
            json!({}),
        )
        .await;
    let statements = app.state.db.statements_executed() - before;
    let edges = page["data"]["publicProjects"]["edges"]
        .as_array()
        .expect("edges");
    assert_eq!(edges.len(), 30);
    assert!(
        edges
            .iter()
            .all(|e| e["node"]["owner"]["displayName"].is_string()),
        "{page}"
    );
    // set_config, the page, the owners: not one statement per owner.
    assert!(
        statements <= 4,
        "30 projects with owners took {statements} statements"
    );
}

#[tokio::test]
async fn queries_run_in_read_only_transactions() {
    let app = TestApp::postgres().await;
    let (_, ada_id) = app.user("ada@example.com").await;
    let identity = flashfusion_api::auth::Identity::user(ada_id.parse().expect("uuid"), Role::User);
    let tx = app.state.db.begin(&identity, true).await.expect("begin");
    let write = tx
        .conn()
        .execute_unprepared(&format!(
            "insert into projects (id, owner_id, name) values (gen_random_uuid(), '{ada_id}', 'x')"
        ))
        .await;
    let message = write
        .expect_err("a read-only transaction refuses writes")
        .to_string();
    assert!(message.contains("read-only"), "{message}");
    tx.finish(false).await.expect("rollback");
    let tx = app.state.db.begin(&identity, false).await.expect("begin");
    let role = tx
        .conn()
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Postgres,
            "select current_user::text, current_setting('app.user_id'), current_setting('app.role')",
        ))
        .await
        .expect("query")
        .expect("row");
    let got: (String, String, String) = (
        role.try_get_by_index(0).expect("user"),
        role.try_get_by_index(1).expect("id"),
        role.try_get_by_index(2).expect("role"),
    );
    assert_eq!(
        got,
        ("flashfusion_authenticated".into(), ada_id, "user".into())
    );
    tx.finish(true).await.expect("commit");
}

async fn service_tokens_read_but_do_not_change_projects(app: TestApp) {
    let (ada, ada_id) = app.user("ada@example.com").await;
    let id = create_visible_project(&ada, "private", "PRIVATE").await;
    let service = app.with_token(&app.mint(&ada_id, Role::Service));
    let me = service.graphql("{ me { role } }", json!({})).await;
    assert_eq!(me["data"]["me"]["role"], "SERVICE", "{me}");
    let seen = service.graphql(GET, json!({ "id": id })).await;
    assert_eq!(
        seen["data"]["project"]["name"], "private",
        "services read every project"
    );
    let created = service
        .graphql(CREATE, json!({ "i": { "name": "x" } }))
        .await;
    assert_eq!(code(&created), "FORBIDDEN", "{created}");
    let updated = service
        .graphql(UPDATE, json!({ "i": { "id": id, "name": "x" } }))
        .await;
    assert_eq!(code(&updated), "FORBIDDEN", "{updated}");
    assert_eq!(
        code(&service.graphql(DELETE, json!({ "id": id })).await),
        "FORBIDDEN"
    );
}

async fn failed_mutations_stop_and_roll_back_whole(app: TestApp) {
    let (ada, _) = app.user("ada@example.com").await;
    let response = ada
        .graphql(
            r#"mutation {
                first: createProject(input: {name: "kept?"}) { project { id } }
                taken: signUp(input: {email: "ada@example.com", password: "correct horse", displayName: "x"}) { token }
                after: createProject(input: {name: "after"}) { project { id } }
            }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        response["data"],
        Value::Null,
        "no field claims a rolled-back write: {response}"
    );
    let codes: Vec<&str> = response["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["extensions"]["code"].as_str().unwrap_or_default())
        .collect();
    // A taken email is refused as a malformed one is (sign-up does not reveal accounts).
    assert_eq!(codes, ["BAD_USER_INPUT", "BAD_USER_INPUT"], "{response}");
    let mine = ada
        .graphql("{ myProjects { totalCount } }", json!({}))
        .await;
    assert_eq!(
        mine["data"]["myProjects"]["totalCount"], 0,
        "the first field was rolled back"
    );
}

async fn concurrent_writers_all_succeed(app: TestApp) {
    let (ada, _) = app.user("ada@example.com").await;
    let writes = (0..24).map(|i| {
        let ada = ada.clone();
        async move {
            ada.graphql(CREATE, json!({ "i": { "name": format!("c{i}") } }))
                .await
        }
    });
    for response in futures_util::future::join_all(writes).await {
        assert!(response["errors"].is_null(), "{response}");
    }
    let mine = ada
        .graphql("{ myProjects { totalCount } }", json!({}))
        .await;
    assert_eq!(mine["data"]["myProjects"]["totalCount"], 24);
}

#[tokio::test]
async fn many_large_pages_exceed_the_complexity_budget() {
    let app = TestApp::postgres().await;
    // Ten pages of 100 projects (within the root-field and alias limits), each project
    // costing 5: 10 × 501 = 5,010, over FLASHFUSION_MAX_COST (5,000).
    let fields: String = (0..10)
        .map(|i| format!("p{i}: publicProjects(first: 100) {{ edges {{ node {{ name owner {{ displayName }} }} }} }} "))
        .collect();
    let response = app
        .anonymous()
        .graphql(&format!("{{ {fields} }}"), json!({}))
        .await;
    assert_eq!(code(&response), "BAD_USER_INPUT", "{response}");
    assert!(
        response["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("FLASHFUSION_MAX_COST"),
        "{response}"
    );
}

#[tokio::test]
async fn users_cannot_forge_events_or_move_tasks_into_foreign_projects() {
    let app = TestApp::postgres().await;
    let (ada, ada_id) = app.user("ada@example.com").await;
    let (bob, bob_id) = app.user("bob@example.com").await;
    let ada_project = create_visible_project(&ada, "ada's", "PRIVATE").await;
    let bob_project = create_visible_project(&bob, "bob's", "PRIVATE").await;
    let task = uuid::Uuid::new_v4();
    let conn = app.db.as_ref().expect("postgres").connect().await;
    conn.execute_unprepared(&format!(
        "insert into agent_tasks (id, project_id, user_id, agent_id, title) \
         select '{task}', '{ada_project}', '{ada_id}', id, 'review' from agents limit 1"
    ))
    .await
    .expect("a task of Ada's");
    let authenticated = "flashfusion_authenticated";

    let moved = as_role(
        &app,
        authenticated,
        &ada_id,
        "user",
        &format!("update agent_tasks set project_id = '{bob_project}' where id = '{task}' returning title"),
    )
    .await;
    let message = moved.expect_err("the move is refused").to_string();
    assert!(message.contains("permission denied"), "{message}");
    // Owners change only what the column grants let them: cancelling is allowed, within her own
    // project.
    let cancelled = as_role(
        &app,
        authenticated,
        &ada_id,
        "user",
        &format!("update agent_tasks set status = 'cancelled' where id = '{task}' returning title"),
    )
    .await
    .expect("cancelling her own task");
    assert_eq!(cancelled, ["review"]);

    let forged = as_role(
        &app,
        authenticated,
        &ada_id,
        "user",
        &format!(
            "insert into events (topic, entity_id, owner_id, payload) \
             values ('notification', '{task}', '{bob_id}', '{{}}') returning topic"
        ),
    )
    .await;
    let message = forged
        .expect_err("users cannot write into anyone's event feed")
        .to_string();
    assert!(message.contains("permission denied"), "{message}");
}
