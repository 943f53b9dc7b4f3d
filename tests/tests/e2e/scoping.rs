//! What a narrowed token costs and reaches: list authorization is remembered per
//! operation and bounded by one budget, and any live token may sign itself out.

use std::collections::HashMap;

use biscuit_auth::{Biscuit, BlockBuilder, builder::string};
use chrono::Utc;
use flashfusion_tests::TestApp;
use sea_orm::{ActiveValue::Set, EntityTrait, QueryOrder};
use serde_json::json;
use uuid::Uuid;

use crate::code;

on_both_backends!(
    list_authorizations_are_remembered_across_aliases,
    list_authorizations_are_bounded_per_operation,
    a_read_only_token_signs_itself_out,
);

/// Gives `owner` `n` private projects straight in the database (the API would take a
/// mutation each).
async fn seed_projects(app: &TestApp, owner: &str, n: usize) {
    let owner: Uuid = owner.parse().expect("uuid");
    let now = Utc::now();
    let rows = (0..n).map(|i| entity::projects::ActiveModel {
        id: Set(Uuid::now_v7()),
        owner_id: Set(owner),
        name: Set(format!("p{i}")),
        description: Set(None),
        visibility: Set(entity::projects::ProjectVisibility::Private),
        framework: Set(None),
        status: Set(entity::projects::ProjectStatus::Active),
        settings: Set(json!({})),
        created_at: Set(now),
        updated_at: Set(now),
    });
    entity::projects::Entity::insert_many(rows)
        .exec(app.state.db.connection())
        .await
        .expect("seed projects");
}

/// `holder`'s token with an offline block that denies one (nonexistent) project: it
/// mentions `resource` and names no project, so lists authorize project by project.
fn deny_list_token(app: &TestApp, holder: &str) -> String {
    let token = Biscuit::from_base64(holder, app.root.public()).expect("parse");
    token
        .append(
            BlockBuilder::new()
                .code_with_params(
                    r#"check if resource("project", $p), $p != {other} or resource("account");"#,
                    HashMap::from([("other".to_owned(), string(&Uuid::nil().to_string()))]),
                    HashMap::new(),
                )
                .expect("block"),
        )
        .and_then(|t| t.to_base64())
        .expect("append")
}

async fn list_authorizations_are_remembered_across_aliases(app: TestApp) {
    let (ada, ada_id) = app.user("ada@example.com").await;
    seed_projects(&app, &ada_id, 300).await;
    let dashboard = app.with_token(&deny_list_token(&app, ada.token()));
    // Five lists over the same 300 projects: 1,500 authorizations if each list paid for
    // its own, over the budget of 500; 300 when verdicts are remembered.
    let aliases: String = (0..5)
        .map(|i| format!("l{i}: myProjects(first: 1) {{ totalCount }} "))
        .collect();
    let page = dashboard
        .graphql(&format!("{{ {aliases} }}"), json!({}))
        .await;
    assert!(page["errors"].is_null(), "{page}");
    for i in 0..5 {
        assert_eq!(page["data"][format!("l{i}")]["totalCount"], 300, "{page}");
    }
}

async fn list_authorizations_are_bounded_per_operation(app: TestApp) {
    let (ada, ada_id) = app.user("ada@example.com").await;
    seed_projects(&app, &ada_id, 502).await;
    let dashboard = app.with_token(&deny_list_token(&app, ada.token()));
    let page = dashboard
        .graphql("{ myProjects { totalCount } }", json!({}))
        .await;
    assert_eq!(code(&page), "BAD_USER_INPUT", "{page}");
    // A project judged earlier in the operation is not charged again, but the list's
    // candidates were cut off past the budget: refused, not a list of only some.
    let oldest = entity::projects::Entity::find()
        .order_by_asc(entity::projects::Column::Id)
        .one(app.state.db.connection())
        .await
        .expect("query")
        .expect("a project")
        .id;
    let page = dashboard
        .graphql(
            &format!(r#"{{ p: project(id: "{oldest}") {{ id }} myProjects {{ totalCount }} }}"#),
            json!({}),
        )
        .await;
    assert_eq!(code(&page), "BAD_USER_INPUT", "{page}");
    // The owner's own token restricts nothing: one authorization decides the list.
    let page = ada
        .graphql("{ myProjects { totalCount } }", json!({}))
        .await;
    assert_eq!(page["data"]["myProjects"]["totalCount"], 502, "{page}");
}

async fn a_read_only_token_signs_itself_out(app: TestApp) {
    let (ada, _) = app.user("ada@example.com").await;
    let read_only = app.appended(
        ada.token(),
        BlockBuilder::new()
            .code(r#"check if operation("read");"#)
            .expect("block"),
    );
    let dashboard = app.with_token(&read_only);
    let out = dashboard.graphql("mutation { signOut }", json!({})).await;
    assert_eq!(out["data"]["signOut"], true, "{out}");
    let after = dashboard.graphql("{ me { id } }", json!({})).await;
    assert_eq!(code(&after), "UNAUTHENTICATED", "{after}");
    // Its parent is untouched.
    let parent = ada.graphql("{ me { id } }", json!({})).await;
    assert!(parent["data"]["me"].is_object(), "{parent}");
}
