//! Deployments: who may read, list, create, cancel and advance them, every step of the
//! state machine from every status (nothing written by a refused one), and the log and
//! URL a deployer reports.

use serde_json::{Value, json};

use crate::{
    code,
    work_support::{
        ACTORS, ADVANCE, Actor, CANCEL_DEPLOYMENT, CREATE_DEPLOYMENT, DEPLOYMENT, World,
        create_deployment, deployment, ok, plain_lists_agree, the_one_applied,
    },
};

on_both_backends!(
    each_caller_reads_and_lists_what_it_may,
    each_caller_creates_cancels_and_advances_what_it_may,
    every_step_from_every_status,
    the_deployer_reports_url_and_log,
    lists_answer_plain_fields_as_the_single_deployment_does,
);

const STATUSES: [&str; 6] = [
    "QUEUED",
    "BUILDING",
    "DEPLOYING",
    "READY",
    "FAILED",
    "CANCELLED",
];

/// What a caller gets: data, null, a total count, or an error code.
fn outcome(response: &Value, field: &str) -> String {
    if !response["errors"].is_null() {
        return code(response).to_owned();
    }
    let value = &response["data"][field];
    match value.get("totalCount") {
        Some(count) => count.to_string(),
        None if value.is_null() => "null".to_owned(),
        None => "data".to_owned(),
    }
}

async fn each_caller_reads_and_lists_what_it_may(app: flashfusion_tests::TestApp) {
    let world = World::new(&app).await;
    let id = create_deployment(&world, &world.project).await;
    create_deployment(&world, &world.other_project).await;
    let all = "{ deployments { totalCount edges { node { id project { id } } } } }";
    let of_project = "query($p: ID!) { deployments(projectId: $p, status: QUEUED) { totalCount } }";
    #[rustfmt::skip]
    let table = [
        (Actor::Anonymous,    "null", "UNAUTHENTICATED", "UNAUTHENTICATED"),
        (Actor::Owner,        "data", "2", "1"),
        (Actor::Other,     "null", "0", "0"),
        (Actor::Admin,        "data", "2", "1"),
        (Actor::Service,      "data", "2", "1"),
        (Actor::ReadOnly,     "data", "2", "1"),
        (Actor::OtherProject, "null", "1", "0"),
    ];
    for (actor, one, list, listed) in table {
        let client = world.client(actor);
        let read = client.graphql(DEPLOYMENT, json!({ "id": id })).await;
        assert_eq!(outcome(&read, "deployment"), one, "{actor:?}: {read}");
        let response = client.graphql(all, json!({})).await;
        assert_eq!(
            outcome(&response, "deployments"),
            list,
            "{actor:?}: {response}"
        );
        let response = client
            .graphql(of_project, json!({ "p": world.project }))
            .await;
        assert_eq!(
            outcome(&response, "deployments"),
            listed,
            "{actor:?}: {response}"
        );
    }
}

async fn each_caller_creates_cancels_and_advances_what_it_may(app: flashfusion_tests::TestApp) {
    let world = World::new(&app).await;
    #[rustfmt::skip]
    let table = [
        //                     create              cancel              advance
        (Actor::Anonymous,    "UNAUTHENTICATED",  "UNAUTHENTICATED",  "UNAUTHENTICATED"),
        (Actor::Owner,        "data",             "data",             "FORBIDDEN"),
        (Actor::Other,     "NOT_FOUND",        "NOT_FOUND",        "FORBIDDEN"),
        (Actor::Admin,        "data",             "data",             "FORBIDDEN"),
        (Actor::Service,      "FORBIDDEN",        "FORBIDDEN",        "data"),
        (Actor::ReadOnly,     "FORBIDDEN",        "FORBIDDEN",        "FORBIDDEN"),
        (Actor::OtherProject, "NOT_FOUND",        "NOT_FOUND",        "FORBIDDEN"),
    ];
    for (actor, create, cancel, advance) in table {
        let client = world.client(actor);
        let input = json!({ "i": { "projectId": world.project, "environment": "PRODUCTION", "provider": "fly" } });
        let response = client.graphql(CREATE_DEPLOYMENT, input).await;
        assert_eq!(
            outcome(&response, "createDeployment"),
            create,
            "{actor:?}: {response}"
        );

        let id = create_deployment(&world, &world.project).await;
        let response = client.graphql(CANCEL_DEPLOYMENT, json!({ "id": id })).await;
        assert_eq!(
            outcome(&response, "cancelDeployment"),
            cancel,
            "{actor:?}: {response}"
        );
        let expected = if cancel == "data" {
            "CANCELLED"
        } else {
            "QUEUED"
        };
        assert_eq!(
            deployment(&world, &id).await["status"],
            expected,
            "{actor:?}"
        );

        let id = create_deployment(&world, &world.project).await;
        let input = json!({ "i": { "id": id, "status": "BUILDING" } });
        let response = client.graphql(ADVANCE, input).await;
        assert_eq!(
            outcome(&response, "advanceDeployment"),
            advance,
            "{actor:?}: {response}"
        );
        let expected = if advance == "data" {
            "BUILDING"
        } else {
            "QUEUED"
        };
        assert_eq!(
            deployment(&world, &id).await["status"],
            expected,
            "{actor:?}"
        );
    }
    let count = world
        .owner()
        .graphql("{ deployments { totalCount } }", json!({}))
        .await;
    assert_eq!(
        count["data"]["deployments"]["totalCount"],
        2 + 2 * ACTORS.len()
    );
}

/// A deployment of the owner's advanced by the deployer through `path`.
async fn through(world: &World, path: &[&str]) -> String {
    let id = create_deployment(world, &world.project).await;
    advance(
        world,
        path.iter()
            .map(|status| json!({ "id": id, "status": status })),
    )
    .await;
    id
}

/// The deployer reports each of `steps` (`AdvanceDeploymentInput`s) in turn.
async fn advance(world: &World, steps: impl IntoIterator<Item = Value>) {
    for step in steps {
        ok(
            world.service(),
            ADVANCE,
            json!({ "i": step }),
            "advanceDeployment",
            "deployment",
        )
        .await;
    }
}

/// How to reach each status from QUEUED.
fn path_to(status: &str) -> Vec<&'static str> {
    match status {
        "QUEUED" => vec![],
        "BUILDING" => vec!["BUILDING"],
        "DEPLOYING" => vec!["BUILDING", "DEPLOYING"],
        "READY" => vec!["BUILDING", "DEPLOYING", "READY"],
        "FAILED" => vec!["BUILDING", "FAILED"],
        _ => vec!["CANCELLED"],
    }
}

async fn every_step_from_every_status(app: flashfusion_tests::TestApp) {
    let world = World::new(&app).await;
    let legal = |from: &str, to: &str| {
        matches!(
            (from, to),
            ("QUEUED", "BUILDING") | ("BUILDING", "DEPLOYING") | ("DEPLOYING", "READY")
        ) || (matches!(from, "QUEUED" | "BUILDING" | "DEPLOYING")
            && matches!(to, "FAILED" | "CANCELLED"))
    };
    for from in STATUSES {
        for to in STATUSES {
            let id = through(&world, &path_to(from)).await;
            let before = deployment(&world, &id).await;
            assert_eq!(before["status"], from);
            let input = json!({ "i": { "id": id, "status": to, "logAppend": "step\n" } });
            let response = world.service().graphql(ADVANCE, input).await;
            let after = deployment(&world, &id).await;
            if legal(from, to) {
                assert!(response["errors"].is_null(), "{from} -> {to}: {response}");
                assert_eq!(after["status"], to);
                let finished = matches!(to, "READY" | "FAILED" | "CANCELLED");
                assert_eq!(!after["finishedAt"].is_null(), finished, "{after}");
            } else {
                assert_eq!(
                    code(&response),
                    "INVALID_TRANSITION",
                    "{from} -> {to}: {response}"
                );
                assert_eq!(after, before, "{from} -> {to} wrote nothing");
            }
        }
        // The owner's cancel follows the same machine.
        let id = through(&world, &path_to(from)).await;
        let before = deployment(&world, &id).await;
        let response = world
            .owner()
            .graphql(CANCEL_DEPLOYMENT, json!({ "id": id }))
            .await;
        if legal(from, "CANCELLED") {
            assert!(
                response["errors"].is_null(),
                "cancel from {from}: {response}"
            );
        } else {
            assert_eq!(code(&response), "INVALID_TRANSITION", "{response}");
            assert_eq!(deployment(&world, &id).await, before);
        }
    }
}

async fn the_deployer_reports_url_and_log(app: flashfusion_tests::TestApp) {
    let world = World::new(&app).await;
    let id = create_deployment(&world, &world.project).await;
    let fresh = deployment(&world, &id).await;
    assert_eq!(fresh["log"], "");
    assert_eq!(fresh["url"], Value::Null);
    let steps = [
        json!({ "id": id, "status": "BUILDING", "logAppend": "installing\n" }),
        json!({ "id": id, "logAppend": "building\n" }),
        json!({ "id": id, "status": "DEPLOYING", "url": "https://site.example.app" }),
        json!({ "id": id, "status": "READY", "logAppend": "live\n" }),
    ];
    advance(&world, steps).await;
    let done = deployment(&world, &id).await;
    assert_eq!(done["status"], "READY");
    assert_eq!(done["log"], "installing\nbuilding\nlive\n");
    assert_eq!(done["url"], "https://site.example.app");
    assert_eq!(done["project"]["id"], world.project.as_str());
    let after_end = world
        .service()
        .graphql(ADVANCE, json!({ "i": { "id": id, "logAppend": "more" } }))
        .await;
    assert_eq!(code(&after_end), "INVALID_TRANSITION", "{after_end}");
    let bad = world
        .service()
        .graphql(
            ADVANCE,
            json!({ "i": { "id": create_deployment(&world, &world.project).await, "url": "a\nb" } }),
        )
        .await;
    assert_eq!(code(&bad), "BAD_USER_INPUT", "{bad}");
    let blank = world
        .owner()
        .graphql(
            CREATE_DEPLOYMENT,
            json!({ "i": { "projectId": world.project, "environment": "PREVIEW", "provider": " " } }),
        )
        .await;
    assert_eq!(code(&blank), "BAD_USER_INPUT", "{blank}");
}

/// Lists' deployments answer a selection of plain fields without resolving each
/// (`kit::plain`), on `deployments` and under `Project.deployments`: the same values as
/// the resolved single deployment, and as the lists give beside `project`.
async fn lists_answer_plain_fields_as_the_single_deployment_does(app: flashfusion_tests::TestApp) {
    let world = World::new(&app).await;
    through(&world, &[]).await;
    let live = create_deployment(&world, &world.project).await;
    let steps = [
        json!({ "id": live, "status": "BUILDING", "logAppend": "installing\n" }),
        json!({ "id": live, "status": "DEPLOYING", "url": "https://site.example.app" }),
        json!({ "id": live, "status": "READY" }),
    ];
    advance(&world, steps).await;
    let nodes = plain_lists_agree(
        world.owner(),
        ("deployments", "deployments", "deployment"),
        "__typename id environment provider status url commitSha log finishedAt createdAt \
         updatedAt p: provider",
        "project { id }",
    )
    .await;
    assert_eq!(nodes.len(), 2, "{nodes:?}");
    let ready = nodes.iter().find(|node| node["id"] == json!(live));
    assert_eq!(
        ready.map(|node| (&node["url"], &node["log"], node["finishedAt"].is_string())),
        Some((
            &json!("https://site.example.app"),
            &json!("installing\n"),
            true
        )),
        "{nodes:?}"
    );
}

/// Two log appends at once (a deployer retrying, say) each append to the log as they
/// read it, so the second to write would drop the first's line: it is refused instead,
/// and no line is lost.
#[tokio::test]
async fn concurrent_log_appends_lose_no_line() {
    let app = flashfusion_tests::TestApp::postgres().await;
    let world = World::new(&app).await;
    let id = create_deployment(&world, &world.project).await;
    let lines = ["a\n", "b\n"];
    let appends = lines
        .iter()
        .map(|line| {
            let step = json!({ "i": { "id": id, "logAppend": line } });
            let service = world.service().clone();
            async move { service.graphql(ADVANCE, step).await }
        })
        .collect();
    // Both read the log, then queue behind the held row to write it.
    let responses = app.racing_on_row("deployments", &id, appends).await;
    let applied = the_one_applied(&lines, &responses);
    assert_eq!(deployment(&world, &id).await["log"], applied);
}
