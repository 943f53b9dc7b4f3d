//! Agent tasks: the state machine (every step from every status, and nothing written
//! by a refused one), progress that only rises, retries up to three attempts, claim
//! order, and the checks on a new task's input.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::{Value, json};

use crate::{
    code,
    work_support::{
        CANCEL_TASK, COMPLETE, CREATE_TASK, FAIL, PROGRESS, World, claim, create_task, ok,
        plain_lists_agree, task, the_one_applied,
    },
};

on_both_backends!(
    every_step_from_every_status,
    progress_only_rises_within_bounds,
    retries_requeue_until_the_third_attempt,
    claims_take_the_highest_priority_then_the_oldest,
    a_worker_limited_to_some_projects_claims_only_their_tasks,
    new_tasks_are_checked,
    lists_answer_plain_fields_as_the_single_task_does,
);

/// Agents whose tasks the tests claim at once, and one whose tasks stay queued.
const WORKED: &str = "code-reviewer";
const IDLE: &str = "doc-writer";

/// A task of the owner's in `status` (QUEUED, RUNNING, SUCCEEDED, FAILED or CANCELLED).
async fn in_status(world: &World, status: &str) -> String {
    if status == "QUEUED" {
        return create_task(world, &world.project, IDLE, 0).await;
    }
    if status == "CANCELLED" {
        let id = create_task(world, &world.project, IDLE, 0).await;
        ok(
            world.owner(),
            CANCEL_TASK,
            json!({ "id": id }),
            "cancelAgentTask",
            "task",
        )
        .await;
        return id;
    }
    let id = create_task(world, &world.project, WORKED, 0).await;
    assert_eq!(claim(world, WORKED).await.as_deref(), Some(id.as_str()));
    let service = world.service();
    match status {
        "RUNNING" => {}
        "SUCCEEDED" => {
            ok(
                service,
                COMPLETE,
                json!({ "i": { "id": id } }),
                "completeAgentTask",
                "task",
            )
            .await;
        }
        "FAILED" => {
            let input = json!({ "i": { "id": id, "error": "broke" } });
            ok(service, FAIL, input, "failAgentTask", "task").await;
        }
        other => panic!("no such status {other}"),
    }
    id
}

async fn every_step_from_every_status(app: flashfusion_tests::TestApp) {
    let world = World::new(&app).await;
    // (step, the statuses it may start from, where it leads)
    let steps: [(&str, &[&str], &str); 5] = [
        ("cancel", &["QUEUED", "RUNNING"], "CANCELLED"),
        ("complete", &["RUNNING"], "SUCCEEDED"),
        ("fail", &["RUNNING"], "FAILED"),
        ("retry", &["RUNNING"], "QUEUED"),
        ("progress", &["RUNNING"], "RUNNING"),
    ];
    for from in ["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"] {
        for (step, legal_from, to) in steps {
            let id = in_status(&world, from).await;
            let before = task(&world, &id).await;
            assert_eq!(before["status"], from);
            let (client, query, variables) = match step {
                "cancel" => (world.owner(), CANCEL_TASK, json!({ "id": id })),
                "complete" => (world.service(), COMPLETE, json!({ "i": { "id": id } })),
                "fail" => (
                    world.service(),
                    FAIL,
                    json!({ "i": { "id": id, "error": "e" } }),
                ),
                "retry" => (
                    world.service(),
                    FAIL,
                    json!({ "i": { "id": id, "error": "e", "retry": true } }),
                ),
                _ => (
                    world.service(),
                    PROGRESS,
                    json!({ "i": { "id": id, "progress": 40 } }),
                ),
            };
            let response = client.graphql(query, variables).await;
            let after = task(&world, &id).await;
            if legal_from.contains(&from) {
                assert!(
                    response["errors"].is_null(),
                    "{step} from {from}: {response}"
                );
                assert_eq!(after["status"], to, "{step} from {from}");
                let finished = matches!(to, "SUCCEEDED" | "FAILED" | "CANCELLED");
                assert_eq!(!after["finishedAt"].is_null(), finished, "{after}");
                if to == "QUEUED" {
                    // Out of the way of the next claim of this agent.
                    let cancel = json!({ "id": id });
                    ok(
                        world.owner(),
                        CANCEL_TASK,
                        cancel,
                        "cancelAgentTask",
                        "task",
                    )
                    .await;
                }
            } else {
                assert_eq!(
                    code(&response),
                    "INVALID_TRANSITION",
                    "{step} from {from}: {response}"
                );
                assert_eq!(after, before, "{step} from {from} wrote nothing");
            }
        }
    }
}

async fn progress_only_rises_within_bounds(app: flashfusion_tests::TestApp) {
    let world = World::new(&app).await;
    let id = in_status(&world, "RUNNING").await;
    let report = |progress: i64, output: Value| {
        let input = json!({ "i": { "id": id, "progress": progress, "output": output } });
        world.service().graphql(PROGRESS, input)
    };
    let first = report(30, json!({ "files": 1 })).await;
    assert_eq!(
        first["data"]["reportAgentTaskProgress"]["task"]["progress"], 30,
        "{first}"
    );
    for refused in [29, 101, -1] {
        let response = report(refused, Value::Null).await;
        assert_eq!(code(&response), "BAD_USER_INPUT", "{refused}: {response}");
    }
    let same = report(30, Value::Null).await;
    assert!(same["errors"].is_null(), "staying is not falling: {same}");
    let more = report(100, json!({ "files": 2 })).await;
    assert!(more["errors"].is_null(), "{more}");
    let current = task(&world, &id).await;
    assert_eq!(current["progress"], 100);
    assert_eq!(current["output"], json!({ "files": 2 }));
    assert_eq!(
        current["status"], "RUNNING",
        "progress does not finish a task"
    );

    let done = ok(
        world.service(),
        COMPLETE,
        json!({ "i": { "id": id, "output": { "report": "fine" } } }),
        "completeAgentTask",
        "task",
    )
    .await;
    assert_eq!(done["status"], "SUCCEEDED");
    assert_eq!(done["output"], json!({ "report": "fine" }));
    assert!(!done["finishedAt"].is_null());
    let late = report(100, Value::Null).await;
    assert_eq!(code(&late), "INVALID_TRANSITION", "{late}");
}

async fn retries_requeue_until_the_third_attempt(app: flashfusion_tests::TestApp) {
    let world = World::new(&app).await;
    let id = create_task(&world, &world.project, WORKED, 0).await;
    for attempt in 1..=3 {
        assert_eq!(claim(&world, WORKED).await.as_deref(), Some(id.as_str()));
        let running = task(&world, &id).await;
        assert_eq!(running["attempts"], attempt);
        assert_eq!(running["status"], "RUNNING");
        assert!(!running["startedAt"].is_null());
        let failed = ok(
            world.service(),
            FAIL,
            json!({ "i": { "id": id, "error": format!("attempt {attempt}"), "retry": true } }),
            "failAgentTask",
            "task",
        )
        .await;
        let expected = if attempt < 3 { "QUEUED" } else { "FAILED" };
        assert_eq!(
            failed["status"], expected,
            "after attempt {attempt}: {failed}"
        );
        assert_eq!(failed["error"], format!("attempt {attempt}"));
        assert_eq!(failed["finishedAt"].is_null(), attempt < 3);
    }
    assert_eq!(
        claim(&world, WORKED).await,
        None,
        "a failed task is not claimed"
    );
}

async fn claims_take_the_highest_priority_then_the_oldest(app: flashfusion_tests::TestApp) {
    let world = World::new(&app).await;
    let low = create_task(&world, &world.project, WORKED, 0).await;
    let high_old = create_task(&world, &world.project, WORKED, 5).await;
    let other_agent = create_task(&world, &world.project, IDLE, 9).await;
    let high_new = create_task(&world, &world.other_project, WORKED, 5).await;
    let middle = create_task(&world, &world.project, WORKED, 1).await;
    let mut order = Vec::new();
    while let Some(id) = claim(&world, WORKED).await {
        order.push(id);
    }
    assert_eq!(order, [high_old, high_new, middle, low]);
    assert_eq!(task(&world, &other_agent).await["status"], "QUEUED");
    let none = world
        .service()
        .graphql(
            crate::work_support::CLAIM,
            json!({ "slugs": ["no-such-agent"] }),
        )
        .await;
    assert_eq!(
        none["data"]["claimAgentTask"]["task"],
        Value::Null,
        "{none}"
    );
    let nul = world
        .service()
        .graphql(
            crate::work_support::CLAIM,
            json!({ "slugs": ["code\u{0}reviewer"] }),
        )
        .await;
    assert_eq!(code(&nul), "BAD_USER_INPUT", "{nul}");
}

/// A worker whose token may write only some projects (reading all) claims the next
/// task among those, not a higher one elsewhere it could never claim.
async fn a_worker_limited_to_some_projects_claims_only_their_tasks(
    app: flashfusion_tests::TestApp,
) {
    let world = World::new(&app).await;
    let elsewhere = create_task(&world, &world.other_project, WORKED, 9).await;
    let mine = create_task(&world, &world.project, WORKED, 0).await;
    let limited = app.appended(
        world.service().token(),
        biscuit_auth::BlockBuilder::new()
            .code_with_params(
                r#"check if operation("read") or resource("project", {project});"#,
                std::collections::HashMap::from([(
                    "project".to_owned(),
                    world.project.clone().into(),
                )]),
                std::collections::HashMap::new(),
            )
            .expect("block"),
    );
    let claimed = app
        .with_token(&limited)
        .graphql(crate::work_support::CLAIM, json!({ "slugs": [WORKED] }))
        .await;
    assert_eq!(
        claimed["data"]["claimAgentTask"]["task"]["id"], mine,
        "{claimed}"
    );
    assert_eq!(task(&world, &elsewhere).await["status"], "QUEUED");
}

async fn new_tasks_are_checked(app: flashfusion_tests::TestApp) {
    let world = World::new(&app).await;
    entity::agents::Entity::update_many()
        .col_expr(entity::agents::Column::IsActive, Expr::value(false))
        .filter(entity::agents::Column::Slug.eq("refactorer"))
        .exec(app.state.db.connection())
        .await
        .expect("deactivate an agent");
    let elsewhere = create_task(&world, &world.other_project, IDLE, 0).await;
    let base = json!({ "projectId": world.project, "agentSlug": WORKED, "title": "t" });
    let with = |extra: Value| {
        let mut input = base.clone();
        if let (Some(input), Some(extra)) = (input.as_object_mut(), extra.as_object()) {
            input.extend(extra.clone());
        }
        json!({ "i": input })
    };
    for refused in [
        json!({ "agentSlug": "refactorer" }),
        json!({ "agentSlug": "no-such-agent" }),
        json!({ "title": "  " }),
        json!({ "title": "two\nlines" }),
        json!({ "input": [1, 2] }),
        // Postgres cannot store NUL; refused alike on both backends.
        json!({ "input": { "a": "nul\u{0}" } }),
        json!({ "agentSlug": "code\u{0}reviewer" }),
        json!({ "parentTaskId": elsewhere }),
        json!({ "parentTaskId": "not-an-id" }),
    ] {
        let response = world
            .owner()
            .graphql(CREATE_TASK, with(refused.clone()))
            .await;
        assert_eq!(code(&response), "BAD_USER_INPUT", "{refused}: {response}");
    }
    let parent = create_task(&world, &world.project, IDLE, 0).await;
    let child = ok(
        world.owner(),
        CREATE_TASK,
        with(json!({ "parentTaskId": parent, "input": { "path": "src" }, "priority": 7 })),
        "createAgentTask",
        "task",
    )
    .await;
    assert_eq!(child["parentTask"]["id"], parent.as_str());
    assert_eq!(child["agent"]["slug"], WORKED);
    assert_eq!(child["input"], json!({ "path": "src" }));
    assert_eq!(child["priority"], 7);
    assert_eq!(child["progress"], 0);
    assert_eq!(child["attempts"], 0);
    let defaults = ok(
        world.owner(),
        CREATE_TASK,
        with(json!({})),
        "createAgentTask",
        "task",
    )
    .await;
    assert_eq!(defaults["input"], json!({}));
    assert_eq!(defaults["parentTask"], Value::Null);
}

/// Lists' tasks answer a selection of plain fields without resolving each
/// (`kit::plain`), on `agentTasks` and under `Project.tasks`: the same values as the
/// resolved single task, and as the lists give when a resolved field (`agent`) is asked
/// for beside them.
async fn lists_answer_plain_fields_as_the_single_task_does(app: flashfusion_tests::TestApp) {
    let world = World::new(&app).await;
    create_task(&world, &world.project, IDLE, 3).await;
    let worked = create_task(&world, &world.project, WORKED, 0).await;
    assert_eq!(
        claim(&world, WORKED).await.as_deref(),
        Some(worked.as_str())
    );
    ok(
        world.service(),
        COMPLETE,
        json!({ "i": { "id": worked, "output": { "report": "fine", "lines": [1, 2] } } }),
        "completeAgentTask",
        "task",
    )
    .await;
    const FIELDS: &str = "__typename id title input output status progress priority error \
                          attempts startedAt finishedAt createdAt updatedAt t: title";
    let nodes = plain_lists_agree(
        world.owner(),
        ("agentTasks", "tasks", "agentTask"),
        FIELDS,
        "agent { slug }",
    )
    .await;
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    let done = nodes.iter().find(|node| node["id"] == json!(worked));
    assert_eq!(
        done.map(|node| &node["output"]),
        Some(&json!({ "report": "fine", "lines": [1, 2] })),
        "{nodes:?}"
    );
}

/// A NUL that no validation caught reaches Postgres, which refuses it (SQLSTATE 22021 in
/// text, 22P05 in `jsonb`): only a client's value can hold one, so it maps to
/// `BAD_USER_INPUT`, not `INTERNAL` (`error.rs`).
#[tokio::test]
async fn text_postgres_cannot_store_is_the_client_s_error() {
    let app = flashfusion_tests::TestApp::postgres().await;
    for (sql, value) in [
        ("select $1::text", "a\u{0}b"),
        ("select $1::jsonb", r#"{"a": "\u0000"}"#),
    ] {
        let refused = sea_orm::ConnectionTrait::query_one_raw(
            app.state.db.connection(),
            sea_orm::Statement::from_sql_and_values(
                sea_orm::DatabaseBackend::Postgres,
                sql,
                [value.into()],
            ),
        )
        .await
        .expect_err("Postgres refuses it");
        assert_eq!(
            flashfusion_api::error::ApiError::from(refused).code(),
            "BAD_USER_INPUT",
            "{sql}"
        );
    }
}

/// A project deleted between a task's check of it and the task's insert: the insert's
/// foreign key finds it gone, which is `NOT_FOUND`, not `INTERNAL` (`error.rs`).
#[tokio::test]
async fn a_project_deleted_while_a_task_is_created_under_it_is_not_found() {
    use sea_orm::{ConnectionTrait as _, TransactionTrait as _};
    let app = flashfusion_tests::TestApp::postgres().await;
    let world = World::new(&app).await;
    let db = app.db.as_ref().expect("a Postgres app");
    // The delete, not yet committed: the task's insert reads the project as there,
    // then its foreign key check waits for the delete's lock on the row.
    let deleter = db.connect().await;
    let delete = deleter.begin().await.expect("begin");
    delete
        .execute_unprepared(&format!(
            "delete from projects where id = '{}'",
            world.project
        ))
        .await
        .expect("delete the project");
    let owner = world.owner().clone();
    let input =
        json!({ "i": { "projectId": world.project, "agentSlug": WORKED, "title": "late" } });
    let created = tokio::spawn(async move { owner.graphql(CREATE_TASK, input).await });
    let watcher = db.connect().await;
    flashfusion_tests::eventually("the insert waits on the delete", || {
        flashfusion_tests::waiting_on_locks(&watcher, 1)
    })
    .await;
    delete.commit().await.expect("commit the delete");
    let created = created.await.expect("the request");
    assert_eq!(code(&created), "NOT_FOUND", "{created}");
}

/// Two progress reports at once both pass the "only rises" rule against the progress
/// they read; the second to write is refused rather than lowering the first's.
#[tokio::test]
async fn concurrent_progress_reports_never_lower_progress() {
    let app = flashfusion_tests::TestApp::postgres().await;
    let world = World::new(&app).await;
    let id = in_status(&world, "RUNNING").await;
    let progresses = [90, 40];
    let reports = progresses
        .iter()
        .map(|progress| {
            let input = json!({ "i": { "id": id, "progress": progress } });
            let service = world.service().clone();
            async move { service.graphql(PROGRESS, input).await }
        })
        .collect();
    // Both read progress 0, then queue behind the held row to write theirs.
    let responses = app.racing_on_row("agent_tasks", &id, reports).await;
    let applied = the_one_applied(&progresses, &responses);
    assert_eq!(task(&world, &id).await["progress"], applied);
}
