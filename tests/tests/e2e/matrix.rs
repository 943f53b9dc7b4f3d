//! The access matrix: every query and mutation of the schema has a row, in this file or
//! in its domain's test file, saying what each of the seven actors gets. Adding an
//! operation without a row fails [`every_operation_has_a_matrix_row`].
//!
//! This file holds the rows of the skeleton's domains (accounts, projects) and the
//! catalogs; the other domains keep theirs beside their own tests.

use flashfusion_tests::{Actor, Actors, Case, TestApp, create_project, run_matrix};
use serde_json::json;

on_both_backends!(accounts_projects_and_catalogs);

const U: &str = "UNAUTHENTICATED";
const F: &str = "FORBIDDEN";
const N: &str = "NOT_FOUND";
const D: &str = "data";
const NULL: &str = "null";

/// Rows over the variables of [`accounts_projects_and_catalogs`].
#[rustfmt::skip]
const CASES: [Case; 18] = [
    //                                     anon owner other admin service readOnly otherProject
    Case { field: "me", query: "{ me { id } }",
           expected: [NULL, D, D, D, D, D, D] },
    Case { field: "signUp", query: "mutation { signUp(input: {email: \"new@example.com\", password: \"correct horse\", displayName: \"New\"}) { token } }",
           expected: [D, D, D, D, D, D, D] },
    Case { field: "signIn", query: "mutation { signIn(input: {email: \"owner@example.com\", password: \"wrong horse\"}) { token } }",
           expected: [U, U, U, U, U, U, U] },
    Case { field: "createScopedToken", query: "mutation { createScopedToken(input: {readOnly: true}) { token } }",
           expected: [U, D, D, D, D, D, D] },
    Case { field: "createScopedToken", query: "mutation($project: ID!) { createScopedToken(input: {projectId: $project}) { token } }",
           expected: [U, D, N, D, D, D, N] },
    Case { field: "project", query: "query($project: ID!) { project(id: $project) { id } }",
           expected: [NULL, D, NULL, D, D, D, NULL] },
    Case { field: "myProjects", query: "{ myProjects { totalCount } }",
           expected: [U, D, D, D, D, D, D] },
    Case { field: "publicProjects", query: "{ publicProjects { totalCount } }",
           expected: [D, D, D, D, D, D, D] },
    Case { field: "createProject", query: "mutation { createProject(input: {name: \"n\"}) { project { id } } }",
           expected: [U, D, D, D, F, F, F] },
    Case { field: "updateProject", query: "mutation($project: ID!) { updateProject(input: {id: $project, name: \"m\"}) { project { id } } }",
           expected: [N, D, N, D, F, F, N] },
    Case { field: "deleteProject", query: "mutation($doomed: ID!) { deleteProject(id: $doomed) { deletedId } }",
           expected: [N, D, N, D, F, F, N] },
    Case { field: "aiServices", query: "{ aiServices { id } }",
           expected: [D, D, D, D, D, D, D] },
    Case { field: "agents", query: "{ agents { id } }",
           expected: [D, D, D, D, D, D, D] },
    Case { field: "aiServices", query: "{ aiServices(includeInactive: true) { id } }",
           expected: [F, F, F, D, F, F, F] },
    Case { field: "createAiService", query: "mutation { createAiService(input: {slug: \"s\", name: \"S\", provider: \"p\", model: \"m\", inputPricePer1k: \"1\", outputPricePer1k: \"1\"}) { aiService { id } } }",
           expected: [U, F, F, D, F, F, F] },
    Case { field: "updateAiService", query: "mutation($service: ID!) { updateAiService(input: {id: $service, name: \"S\"}) { aiService { id } } }",
           expected: [U, F, F, D, F, F, F] },
    Case { field: "createAgent", query: "mutation { createAgent(input: {slug: \"a\", name: \"A\"}) { agent { id } } }",
           expected: [U, F, F, D, F, F, F] },
    Case { field: "updateAgent", query: "mutation($agent: ID!) { updateAgent(input: {id: $agent, name: \"A\"}) { agent { id } } }",
           expected: [U, F, F, D, F, F, F] },
];

/// Run after [`CASES`]: the owner's sign-out also kills the tokens derived from theirs.
#[rustfmt::skip]
const LAST: [Case; 1] = [
    Case { field: "signOut", query: "mutation { signOut }",
           expected: [U, D, D, D, D, U, U] },
];

async fn accounts_projects_and_catalogs(app: TestApp) {
    let cast = Actors::new(&app).await;
    let doomed = create_project(&cast.owner, "doomed").await;
    let ids = cast
        .anonymous
        .graphql("{ aiServices { id } agents { id } }", json!({}))
        .await;
    let vars = json!({
        "project": cast.project_id, "doomed": doomed,
        "service": ids["data"]["aiServices"][0]["id"], "agent": ids["data"]["agents"][0]["id"],
    });
    run_matrix(&cast, &CASES, &vars, |field, actor| match field {
        // One account per email: only the first caller signs up.
        "signUp" => actor != Actor::Anonymous,
        // A deleted project is gone for whoever comes next: the owner's and the
        // admin's deletes run below, after everyone else was refused.
        "deleteProject" => matches!(actor, Actor::Owner | Actor::Admin),
        _ => false,
    })
    .await;
    let other = create_project(&cast.owner, "other").await;
    for (client, project) in [(&cast.owner, &doomed), (&cast.admin, &other)] {
        let deleted = client
            .graphql(
                "mutation($p: ID!) { deleteProject(id: $p) { deletedId } }",
                json!({ "p": project }),
            )
            .await;
        assert_eq!(
            deleted["data"]["deleteProject"]["deletedId"], *project,
            "{deleted}"
        );
    }
    run_matrix(&cast, &LAST, &vars, |_, _| false).await;
}

/// The root fields of the live schema's `type <name> { .. }` block.
fn root_fields(sdl: &str, name: &str) -> Vec<String> {
    let start = format!("type {name} {{");
    let Some(block) = sdl
        .split(&start)
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
    else {
        return Vec::new();
    };
    let mut in_doc = false;
    let mut fields = Vec::new();
    for line in block.lines().map(str::trim) {
        if line.starts_with("\"\"\"") {
            // A one-line doc opens and closes on the same line.
            if !(line.len() > 3 && line.ends_with("\"\"\"")) {
                in_doc = !in_doc;
            }
            continue;
        }
        if in_doc || line.is_empty() {
            continue;
        }
        let name: String = line
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            fields.push(name);
        }
    }
    fields
}

/// Every matrix's rows, across the domains' test files.
fn every_case() -> Vec<&'static Case> {
    CASES
        .iter()
        .chain(LAST.iter())
        .chain(crate::account_data::CASES.iter())
        .chain(crate::work_matrix::CASES.iter())
        .chain(crate::secrets_matrix::CASES.iter())
        .collect()
}

#[test]
fn every_operation_has_a_matrix_row() {
    let sdl = flashfusion_api::schema::sdl();
    let covered: Vec<&str> = every_case().iter().map(|case| case.field).collect();
    let mut missing = Vec::new();
    for root in ["Query", "Mutation"] {
        let fields = root_fields(&sdl, root);
        assert!(!fields.is_empty(), "no {root} fields found in the SDL");
        missing.extend(
            fields
                .into_iter()
                .filter(|field| !covered.contains(&field.as_str()))
                .map(|field| format!("{root}.{field}")),
        );
    }
    assert!(
        missing.is_empty(),
        "operations without an access-matrix row: {missing:?}"
    );
}
