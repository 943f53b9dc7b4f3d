//! Agent tasks: who may read, list, create, cancel, claim and finish them — every caller
//! against every operation, on both backends (on SQLite the resolvers alone decide).

use serde_json::{Value, json};

use crate::{
    code,
    work_support::{
        ACTORS, Actor, CANCEL_TASK, CLAIM, COMPLETE, CREATE_TASK, FAIL, PROGRESS, TASK, World,
        claim, create_task,
    },
};

on_both_backends!(
    each_caller_reads_and_lists_what_it_may,
    each_caller_creates_and_cancels_what_it_may,
    only_the_service_works_on_tasks,
);

/// What an operation gives one caller.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Data,
    Null,
    Count(u64),
    Code(&'static str),
}

use Outcome::{Code, Count, Data, Null};

fn outcome_of(response: &Value, field: &str) -> Outcome {
    if !response["errors"].is_null() {
        return Code(match code(response) {
            "UNAUTHENTICATED" => "UNAUTHENTICATED",
            "FORBIDDEN" => "FORBIDDEN",
            "NOT_FOUND" => "NOT_FOUND",
            _ => panic!("unexpected error: {response}"),
        });
    }
    let value = &response["data"][field];
    match value.get("totalCount").and_then(Value::as_u64) {
        Some(count) => Count(count),
        None if value.is_null() => Null,
        None => Data,
    }
}

async fn each_caller_reads_and_lists_what_it_may(app: flashfusion_tests::TestApp) {
    let world = World::new(&app).await;
    let id = create_task(&world, &world.project, "code-reviewer", 0).await;
    create_task(&world, &world.other_project, "test-writer", 0).await;

    let all = "{ agentTasks { totalCount edges { node { id project { id } } } } }";
    let of_project = "query($p: ID!) { agentTasks(projectId: $p) { totalCount } }";
    #[rustfmt::skip]
    let table = [
        //                     agentTask(id)  agentTasks   agentTasks(projectId)
        (Actor::Anonymous,    Null,          Code("UNAUTHENTICATED"), Code("UNAUTHENTICATED")),
        (Actor::Owner,        Data,          Count(2),    Count(1)),
        (Actor::Other,     Null,          Count(0),    Count(0)),
        (Actor::Admin,        Data,          Count(2),    Count(1)),
        (Actor::Service,      Data,          Count(2),    Count(1)),
        (Actor::ReadOnly,     Data,          Count(2),    Count(1)),
        (Actor::OtherProject, Null,          Count(1),    Count(0)),
    ];
    for (actor, one, list, listed) in table {
        let client = world.client(actor);
        let read = client.graphql(TASK, json!({ "id": id })).await;
        assert_eq!(outcome_of(&read, "agentTask"), one, "{actor:?}: {read}");
        if one == Data {
            assert_eq!(
                read["data"]["agentTask"]["project"]["id"],
                world.project.as_str()
            );
        }
        let response = client.graphql(all, json!({})).await;
        assert_eq!(
            outcome_of(&response, "agentTasks"),
            list,
            "{actor:?}: {response}"
        );
        let response = client
            .graphql(of_project, json!({ "p": world.project }))
            .await;
        assert_eq!(
            outcome_of(&response, "agentTasks"),
            listed,
            "{actor:?}: {response}"
        );
    }
}

async fn each_caller_creates_and_cancels_what_it_may(app: flashfusion_tests::TestApp) {
    let world = World::new(&app).await;
    #[rustfmt::skip]
    let table = [
        //                     createAgentTask            cancelAgentTask
        (Actor::Anonymous,    Code("UNAUTHENTICATED"),    Code("UNAUTHENTICATED")),
        (Actor::Owner,        Data,                       Data),
        (Actor::Other,     Code("NOT_FOUND"),          Code("NOT_FOUND")),
        (Actor::Admin,        Data,                       Data),
        (Actor::Service,      Code("FORBIDDEN"),          Code("FORBIDDEN")),
        (Actor::ReadOnly,     Code("FORBIDDEN"),          Code("FORBIDDEN")),
        (Actor::OtherProject, Code("NOT_FOUND"),          Code("NOT_FOUND")),
    ];
    for (actor, create, cancel) in table {
        let client = world.client(actor);
        let input = json!({ "i": { "projectId": world.project, "agentSlug": "code-reviewer", "title": "t" } });
        let response = client.graphql(CREATE_TASK, input).await;
        assert_eq!(
            outcome_of(&response, "createAgentTask"),
            create,
            "{actor:?}: {response}"
        );
        if create == Data {
            let task = &response["data"]["createAgentTask"]["task"];
            assert_eq!(task["status"], "QUEUED");
            assert_eq!(task["project"]["id"], world.project.as_str());
        }

        let id = create_task(&world, &world.project, "code-reviewer", 0).await;
        let response = client.graphql(CANCEL_TASK, json!({ "id": id })).await;
        assert_eq!(
            outcome_of(&response, "cancelAgentTask"),
            cancel,
            "{actor:?}: {response}"
        );
        let status = crate::work_support::task(&world, &id).await["status"].clone();
        let expected = if cancel == Data {
            "CANCELLED"
        } else {
            "QUEUED"
        };
        assert_eq!(status, expected, "{actor:?}");
    }
    // the owner's tasks: one per successful create, one per cancel round.
    let count = world
        .owner()
        .graphql("{ agentTasks { totalCount } }", json!({}))
        .await;
    assert_eq!(count["data"]["agentTasks"]["totalCount"], 2 + ACTORS.len());
}

async fn only_the_service_works_on_tasks(app: flashfusion_tests::TestApp) {
    let world = World::new(&app).await;
    create_task(&world, &world.project, "code-reviewer", 0).await;
    for actor in ACTORS.into_iter().filter(|a| *a != Actor::Service) {
        let expected = if actor == Actor::Anonymous {
            "UNAUTHENTICATED"
        } else {
            "FORBIDDEN"
        };
        let client = world.client(actor);
        let response = client
            .graphql(CLAIM, json!({ "slugs": ["code-reviewer"] }))
            .await;
        assert_eq!(code(&response), expected, "claim by {actor:?}: {response}");
    }
    let id = claim(&world, "code-reviewer").await.expect("a queued task");
    for actor in ACTORS.into_iter().filter(|a| *a != Actor::Service) {
        let expected = if actor == Actor::Anonymous {
            "UNAUTHENTICATED"
        } else {
            "FORBIDDEN"
        };
        let client = world.client(actor);
        for (query, input) in [
            (PROGRESS, json!({ "id": id, "progress": 50 })),
            (COMPLETE, json!({ "id": id, "output": { "ok": true } })),
            (FAIL, json!({ "id": id, "error": "no", "retry": false })),
        ] {
            let response = client.graphql(query, json!({ "i": input })).await;
            assert_eq!(code(&response), expected, "{actor:?}: {response}");
        }
    }
    let task = crate::work_support::task(&world, &id).await;
    assert_eq!(task["status"], "RUNNING", "nobody else changed it: {task}");
    assert_eq!(task["progress"], 0);
    // An unknown task is NOT_FOUND even for the service.
    let unknown = world
        .service()
        .graphql(
            PROGRESS,
            json!({ "i": { "id": "01a21327-ad51-76d3-837c-59bff2cd56e5", "progress": 1 } }),
        )
        .await;
    assert_eq!(code(&unknown), "NOT_FOUND", "{unknown}");
}
