//! The work queue at scale: concurrent workers never claim the same task (Postgres,
//! `FOR UPDATE SKIP LOCKED`), and a page of 100 projects with their tasks and
//! deployments costs a constant handful of statements, not one per project.

use std::collections::HashSet;

use chrono::Utc;
use entity::{agent_tasks, deployments, projects};
use flashfusion_tests::TestApp;
use sea_orm::{ActiveValue::Set, EntityTrait};
use serde_json::json;
use uuid::Uuid;

use crate::work_support::{CLAIM, World};

on_both_backends!(
    a_page_of_projects_loads_its_tasks_and_deployments_in_batches,
    anonymous_callers_see_public_projects_with_no_children,
);

/// Anonymous callers read no project-owned rows: the child lists of a public project are
/// empty for them on both backends (on Postgres their role has no grant on those
/// tables, which must not surface as an error).
async fn anonymous_callers_see_public_projects_with_no_children(app: TestApp) {
    let (ada, _) = app.user("ada@example.com").await;
    let created = ada
        .graphql(
            "mutation { createProject(input: {name: \"open\", visibility: PUBLIC}) { project { id } } }",
            json!({}),
        )
        .await;
    let project = &created["data"]["createProject"]["project"]["id"];
    let task = ada
        .graphql(
            "mutation($p: ID!) { createAgentTask(input: {projectId: $p, agentSlug: \"code-reviewer\", title: \"t\"}) { task { id } } }",
            json!({ "p": project }),
        )
        .await;
    assert!(task["errors"].is_null(), "{task}");
    const CHILDREN: &str = "{ publicProjects { edges { node { tasks { totalCount } deployments(first: 1) { totalCount } codeGenerations { totalCount } } } } }";
    let seen = app.anonymous().graphql(CHILDREN, json!({})).await;
    assert_eq!(
        seen["data"]["publicProjects"]["edges"][0]["node"],
        json!({ "tasks": { "totalCount": 0 }, "deployments": { "totalCount": 0 }, "codeGenerations": { "totalCount": 0 } }),
        "{seen}"
    );
    // Its owner sees the task through the same batched path.
    let mine = ada.graphql(CHILDREN, json!({})).await;
    assert_eq!(
        mine["data"]["publicProjects"]["edges"][0]["node"]["tasks"]["totalCount"], 1,
        "{mine}"
    );
}

/// The seeded `code-reviewer` agent (migration `m20261125_000003_seed_catalogs`).
const CODE_REVIEWER: Uuid = Uuid::from_u128(0x0193_6b2a_0000_7000_8000_0000_0001_0001);

fn task_row(project: Uuid, owner: Uuid, n: usize) -> agent_tasks::ActiveModel {
    let now = Utc::now();
    agent_tasks::ActiveModel {
        id: Set(Uuid::now_v7()),
        project_id: Set(project),
        user_id: Set(owner),
        agent_id: Set(CODE_REVIEWER),
        parent_task_id: Set(None),
        title: Set(format!("task {n}")),
        input: Set(json!({})),
        output: Set(None),
        status: Set(agent_tasks::AgentTaskStatus::Queued),
        progress: Set(0),
        priority: Set(0),
        error: Set(None),
        attempts: Set(0),
        started_at: Set(None),
        finished_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

#[tokio::test]
async fn concurrent_workers_claim_each_task_exactly_once() {
    let app = TestApp::postgres().await;
    let world = World::new(&app).await;
    let owner: Uuid = world.owner_id.parse().expect("uuid");
    let project: Uuid = world.project.parse().expect("uuid");
    agent_tasks::Entity::insert_many((0..200).map(|n| task_row(project, owner, n)))
        .exec(app.state.db.connection())
        .await
        .expect("seed 200 queued tasks");

    let workers: Vec<_> = (0..8)
        .map(|_| {
            let service = world.service().clone();
            tokio::spawn(async move {
                let mut claimed = Vec::new();
                // Bounded: there are 200 tasks in all.
                for _ in 0..=200 {
                    let response = service
                        .graphql(CLAIM, json!({ "slugs": ["code-reviewer"] }))
                        .await;
                    assert!(response["errors"].is_null(), "{response}");
                    let task = &response["data"]["claimAgentTask"]["task"];
                    let Some(id) = task["id"].as_str() else {
                        return claimed;
                    };
                    assert_eq!(task["status"], "RUNNING");
                    assert_eq!(task["attempts"], 1);
                    claimed.push(id.to_owned());
                }
                panic!("a worker claimed more tasks than exist");
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.expect("worker"));
    }
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 200, "every task claimed");
    assert_eq!(distinct.len(), 200, "no task claimed twice");
}

async fn a_page_of_projects_loads_its_tasks_and_deployments_in_batches(app: TestApp) {
    let world = World::new(&app).await;
    let owner: Uuid = world.owner_id.parse().expect("uuid");
    let db = app.state.db.connection();
    let now = Utc::now();
    let ids: Vec<Uuid> = (0..98).map(|_| Uuid::now_v7()).collect();
    projects::Entity::insert_many(ids.iter().map(|&id| projects::ActiveModel {
        id: Set(id),
        owner_id: Set(owner),
        name: Set(format!("p{id}")),
        description: Set(None),
        visibility: Set(projects::ProjectVisibility::Private),
        framework: Set(None),
        status: Set(projects::ProjectStatus::Active),
        settings: Set(json!({})),
        created_at: Set(now),
        updated_at: Set(now),
    }))
    .exec(db)
    .await
    .expect("seed projects");
    let mut all_projects = ids.clone();
    all_projects.push(world.project.parse().expect("uuid"));
    all_projects.push(world.other_project.parse().expect("uuid"));
    // Seven tasks and two deployments per project: pages of 5 are cut short.
    agent_tasks::Entity::insert_many(
        all_projects
            .iter()
            .flat_map(|&p| (0..7).map(move |n| task_row(p, owner, n))),
    )
    .exec(db)
    .await
    .expect("seed tasks");
    deployments::Entity::insert_many(all_projects.iter().flat_map(|&p| {
        (0..2).map(move |_| deployments::ActiveModel {
            id: Set(Uuid::now_v7()),
            project_id: Set(p),
            user_id: Set(owner),
            environment: Set(deployments::DeploymentEnvironment::Preview),
            provider: Set("vercel".to_owned()),
            status: Set(deployments::DeploymentStatus::Queued),
            url: Set(None),
            commit_sha: Set(None),
            log: Set(None),
            finished_at: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        })
    }))
    .exec(db)
    .await
    .expect("seed deployments");

    let counter = &app.state.db;
    let before = counter.statements_executed();
    let me = world.owner().graphql("{ me { id } }", json!({})).await;
    assert!(me["errors"].is_null(), "{me}");
    let baseline = counter.statements_executed() - before;

    let nested = "{ myProjects(first: 100) { edges { node { owner { displayName } \
        tasks(first: 5) { totalCount edges { node { title agent { name } } } } \
        deployments(first: 5) { totalCount } } } } }";
    let before = counter.statements_executed();
    let response = world.owner().graphql(nested, json!({})).await;
    let spent = counter.statements_executed() - before;
    assert!(response["errors"].is_null(), "{response}");
    let edges = response["data"]["myProjects"]["edges"]
        .as_array()
        .expect("edges");
    assert_eq!(edges.len(), 100);
    for edge in edges {
        let node = &edge["node"];
        assert_eq!(node["owner"]["displayName"], "owner");
        assert_eq!(node["tasks"]["totalCount"], 7);
        let tasks = node["tasks"]["edges"].as_array().expect("tasks");
        assert_eq!(tasks.len(), 5, "{node}");
        // Newest first: the titles count down from the newest seeded task.
        let titles: Vec<_> = tasks.iter().map(|t| t["node"]["title"].clone()).collect();
        assert_eq!(titles, ["task 6", "task 5", "task 4", "task 3", "task 2"]);
        assert_eq!(tasks[0]["node"]["agent"]["name"], "Code Reviewer");
        assert_eq!(node["deployments"]["totalCount"], 2);
    }
    assert!(
        spent <= baseline + 6,
        "the nested page ran {spent} statements, {baseline} for a trivial query"
    );

    // A cursor or `last` on a nested list takes the per-field path, and stays correct.
    let project = &world.project;
    let paged = "query($p: ID!, $after: String) { project(id: $p) { \
        tasks(first: 5, after: $after) { edges { node { title } } pageInfo { hasNextPage endCursor } } \
        oldest: tasks(last: 2) { edges { node { title } } } } }";
    let first = world
        .owner()
        .graphql(paged, json!({ "p": project, "after": null }))
        .await;
    let titles = |response: &serde_json::Value, field: &str| -> Vec<String> {
        response["data"]["project"][field]["edges"]
            .as_array()
            .map(|edges| {
                edges
                    .iter()
                    .filter_map(|e| e["node"]["title"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(titles(&first, "oldest"), ["task 1", "task 0"], "{first}");
    let cursor = first["data"]["project"]["tasks"]["pageInfo"]["endCursor"].clone();
    let second = world
        .owner()
        .graphql(paged, json!({ "p": project, "after": cursor }))
        .await;
    assert_eq!(titles(&second, "tasks"), ["task 1", "task 0"], "{second}");
    assert_eq!(
        second["data"]["project"]["tasks"]["pageInfo"]["hasNextPage"],
        false
    );
}
