//! What tasks and deployments leave behind: a usage row when one is created or a task
//! finishes, a notification to the owner when one ends (an owner's own cancel
//! included, which the owner's role may not insert itself), all in the operation's
//! transaction, so a rolled-back operation leaves none of them.

use entity::{notifications, usage_analytics};
use flashfusion_tests::TestApp;
use sea_orm::{EntityTrait, QueryOrder};
use serde_json::{Value, json};

use crate::{
    code,
    work_support::{
        ADVANCE, CANCEL_DEPLOYMENT, CANCEL_TASK, COMPLETE, CREATE_TASK, FAIL, World, claim,
        create_deployment, create_task, ok,
    },
};

on_both_backends!(
    tasks_record_usage_and_notify_their_owner,
    deployments_record_usage_and_notify_their_owner,
    a_rolled_back_operation_leaves_no_usage,
);

/// (event type, user, metadata) of every usage row, oldest first.
async fn usage(app: &TestApp) -> Vec<(String, String, Value)> {
    usage_analytics::Entity::find()
        .order_by_asc(usage_analytics::Column::Id)
        .all(app.state.db.connection())
        .await
        .expect("usage rows")
        .into_iter()
        .map(|row| (row.event_type, row.user_id.to_string(), row.metadata))
        .collect()
}

/// (kind, user, data) of every notification, oldest first.
async fn notes(app: &TestApp) -> Vec<(String, String, Value)> {
    notifications::Entity::find()
        .order_by_asc(notifications::Column::Id)
        .all(app.state.db.connection())
        .await
        .expect("notifications")
        .into_iter()
        .map(|row| (row.kind, row.user_id.to_string(), row.data))
        .collect()
}

fn count(rows: &[(String, String, Value)], kind: &str) -> usize {
    rows.iter().filter(|(k, _, _)| k == kind).count()
}

async fn tasks_record_usage_and_notify_their_owner(app: TestApp) {
    let world = World::new(&app).await;
    let owner = world.owner_id.clone();
    let done = create_task(&world, &world.project, "code-reviewer", 0).await;
    // An admin's task on the owner's project is the owner's usage.
    let by_admin =
        json!({ "i": { "projectId": world.project, "agentSlug": "doc-writer", "title": "t" } });
    ok(
        world.client(crate::work_support::Actor::Admin),
        CREATE_TASK,
        by_admin,
        "createAgentTask",
        "task",
    )
    .await;
    let rows = usage(&app).await;
    assert_eq!(count(&rows, "agent_task.created"), 2, "{rows:?}");
    assert!(rows.iter().all(|(_, user, _)| *user == owner), "{rows:?}");
    assert!(notes(&app).await.is_empty(), "nothing ended yet");

    assert_eq!(
        claim(&world, "code-reviewer").await.as_deref(),
        Some(done.as_str())
    );
    let input = json!({ "i": { "id": done, "output": { "ok": true } } });
    ok(
        world.service(),
        COMPLETE,
        input,
        "completeAgentTask",
        "task",
    )
    .await;

    let failed = create_task(&world, &world.project, "code-reviewer", 0).await;
    claim(&world, "code-reviewer").await;
    let input = json!({ "i": { "id": failed, "error": "broke", "retry": true } });
    ok(world.service(), FAIL, input, "failAgentTask", "task").await;
    assert_eq!(
        count(&usage(&app).await, "agent_task.finished"),
        1,
        "a retried attempt has not finished the task"
    );
    claim(&world, "code-reviewer").await;
    let input = json!({ "i": { "id": failed, "error": "broke again" } });
    ok(world.service(), FAIL, input, "failAgentTask", "task").await;

    let cancelled = create_task(&world, &world.project, "doc-writer", 0).await;
    ok(
        world.owner(),
        CANCEL_TASK,
        json!({ "id": cancelled }),
        "cancelAgentTask",
        "task",
    )
    .await;

    let rows = usage(&app).await;
    assert_eq!(count(&rows, "agent_task.finished"), 2, "{rows:?}");
    let notes = notes(&app).await;
    let expected = [
        ("agent_task.succeeded", &done),
        ("agent_task.failed", &failed),
        ("agent_task.cancelled", &cancelled),
    ];
    assert_eq!(notes.len(), expected.len(), "{notes:?}");
    for ((kind, user, data), (expected_kind, task)) in notes.iter().zip(expected) {
        assert_eq!(kind, expected_kind);
        assert_eq!(*user, owner);
        assert_eq!(*data, json!({ "taskId": task, "projectId": world.project }));
    }
}

async fn deployments_record_usage_and_notify_their_owner(app: TestApp) {
    let world = World::new(&app).await;
    let live = create_deployment(&world, &world.project).await;
    let cancelled = create_deployment(&world, &world.project).await;
    let failed = create_deployment(&world, &world.project).await;
    assert_eq!(count(&usage(&app).await, "deployment.created"), 3);
    for status in ["BUILDING", "DEPLOYING", "READY"] {
        let input = json!({ "i": { "id": live, "status": status, "url": "https://x.example" } });
        ok(
            world.service(),
            ADVANCE,
            input,
            "advanceDeployment",
            "deployment",
        )
        .await;
    }
    ok(
        world.owner(),
        CANCEL_DEPLOYMENT,
        json!({ "id": cancelled }),
        "cancelDeployment",
        "deployment",
    )
    .await;
    let input = json!({ "i": { "id": failed, "status": "FAILED", "logAppend": "no disk\n" } });
    ok(
        world.service(),
        ADVANCE,
        input,
        "advanceDeployment",
        "deployment",
    )
    .await;

    let notes = notes(&app).await;
    let expected = [
        ("deployment.ready", &live),
        ("deployment.cancelled", &cancelled),
        ("deployment.failed", &failed),
    ];
    assert_eq!(notes.len(), expected.len(), "{notes:?}");
    for ((kind, user, data), (expected_kind, id)) in notes.iter().zip(expected) {
        assert_eq!(kind, expected_kind);
        assert_eq!(*user, world.owner_id);
        assert_eq!(
            *data,
            json!({ "deploymentId": id, "projectId": world.project })
        );
    }
}

async fn a_rolled_back_operation_leaves_no_usage(app: TestApp) {
    let world = World::new(&app).await;
    let both = "mutation($good: CreateAgentTaskInput!, $bad: CreateAgentTaskInput!) { \
        a: createAgentTask(input: $good) { task { id } } \
        b: createAgentTask(input: $bad) { task { id } } }";
    let good = json!({ "projectId": world.project, "agentSlug": "code-reviewer", "title": "t" });
    let bad = json!({ "projectId": world.project, "agentSlug": "no-such-agent", "title": "t" });
    let response = world
        .owner()
        .graphql(both, json!({ "good": good, "bad": bad }))
        .await;
    assert_eq!(code(&response), "BAD_USER_INPUT", "{response}");
    assert_eq!(response["data"], Value::Null);
    assert!(
        usage(&app).await.is_empty(),
        "the first task's usage rolled back too"
    );
    let tasks = world
        .owner()
        .graphql("{ agentTasks { totalCount } }", json!({}))
        .await;
    assert_eq!(tasks["data"]["agentTasks"]["totalCount"], 0);
}
