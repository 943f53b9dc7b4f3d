//! `flashfusion worker --simulate` against the real gateway over HTTP: it claims a
//! queued task and walks it through its progress steps to SUCCEEDED, walks a queued
//! deployment through building and deploying to READY, retries the attempt it fails on
//! purpose, stops when asked, and gives up on a token that is not a service's.

use std::time::Duration;

use flashfusion_api::{
    auth::Role,
    worker::{self, Simulation, WorkerError},
};
use flashfusion_tests::{Client, TIMEOUT, TestApp, create_project};
use serde_json::{Value, json};
use tokio::{sync::oneshot, task::JoinHandle};

const TASK: &str = "query($id: ID!) { agentTask(id: $id) { status progress attempts output error startedAt finishedAt } }";
const DEPLOYMENT: &str = "query($id: ID!) { deployment(id: $id) { status url log finishedAt } }";

/// A worker running in the background, stopped through `stop`.
struct RunningWorker {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<Result<(), WorkerError>>,
}

impl RunningWorker {
    fn start(app: &TestApp, token: &str, step_delay: Duration, fail_every: u32) -> Self {
        let simulation = Simulation {
            endpoint: format!("{}/graphql", app.base),
            token: token.to_owned().into(),
            step_delay,
            fail_every,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(worker::run(simulation, async {
            let _ = stopped.await;
        }));
        Self { stop, handle }
    }

    /// Asks the worker to stop and waits (bounded) until it has.
    async fn stop(self) {
        let _ = self.stop.send(());
        let outcome = tokio::time::timeout(TIMEOUT, self.handle)
            .await
            .expect("the worker did not stop within the timeout")
            .expect("the worker panicked");
        assert!(outcome.is_ok(), "the worker failed: {outcome:?}");
    }
}

/// An owner with a project, a queued task and a queued deployment on it, and a service
/// token for the worker.
struct Scene {
    owner: Client,
    project: String,
    task: String,
    deployment: String,
    service_token: String,
}

impl Scene {
    async fn new(app: &TestApp) -> Self {
        let (owner, _) = app.user("owner@example.com").await;
        let project = create_project(&owner, "Demo Shop").await;
        let (_, service_id) = app.user("worker@example.com").await;
        let mut scene = Self {
            owner,
            project,
            task: String::new(),
            deployment: String::new(),
            service_token: app.mint(&service_id, Role::Service),
        };
        scene.task = scene.queue_task("Review the PR").await;
        scene.deployment = scene.queue_deployment().await;
        scene
    }

    /// The owner queues a task on the project; returns its id.
    async fn queue_task(&self, title: &str) -> String {
        let created = self
            .owner
            .graphql(
                "mutation($p: ID!, $t: String!) { createAgentTask(input: {projectId: $p, agentSlug: \"code-reviewer\", title: $t}) { task { id } } }",
                json!({ "p": self.project, "t": title }),
            )
            .await;
        id_of(&created, "/data/createAgentTask/task/id")
    }

    /// The owner queues a preview deployment of the project; returns its id.
    async fn queue_deployment(&self) -> String {
        let created = self
            .owner
            .graphql(
                "mutation($p: ID!) { createDeployment(input: {projectId: $p, environment: PREVIEW, provider: \"vercel\", commitSha: \"abc123\"}) { deployment { id } } }",
                json!({ "p": self.project }),
            )
            .await;
        id_of(&created, "/data/createDeployment/deployment/id")
    }

    async fn task(&self) -> Value {
        self.read(TASK, &self.task, "agentTask").await
    }

    async fn deployment(&self) -> Value {
        self.read(DEPLOYMENT, &self.deployment, "deployment").await
    }

    /// The row `id` as the owner reads it with `query`.
    async fn read(&self, query: &str, id: &str, field: &str) -> Value {
        let response = self.owner.graphql(query, json!({ "id": id })).await;
        response["data"][field].clone()
    }

    /// Polls the row `id` (bounded by [`TIMEOUT`]) until its status is one of
    /// `statuses`.
    async fn until(&self, query: &str, id: &str, field: &str, statuses: &[&str]) -> Value {
        tokio::time::timeout(TIMEOUT, async {
            loop {
                let row = self.read(query, id, field).await;
                if statuses.iter().any(|status| row["status"] == *status) {
                    return row;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{field} {id} did not reach {statuses:?} in time"))
    }

    /// Polls the task (every few milliseconds, bounded by [`TIMEOUT`]) until it is
    /// SUCCEEDED; returns it and every progress value seen on the way.
    async fn task_succeeded(&self) -> (Value, Vec<i64>) {
        let mut seen = Vec::new();
        let task = tokio::time::timeout(TIMEOUT, async {
            loop {
                let task = self.task().await;
                let progress = task["progress"].as_i64().expect("progress");
                if seen.last() != Some(&progress) {
                    seen.push(progress);
                }
                if task["status"] == "SUCCEEDED" {
                    return task;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the task did not succeed in time; progress seen: {seen:?}"));
        (task, seen)
    }

    /// Polls the deployment (bounded by [`TIMEOUT`]) until it is READY.
    async fn deployment_ready(&self) -> Value {
        self.until(DEPLOYMENT, &self.deployment, "deployment", &["READY"])
            .await
    }
}

fn id_of(response: &Value, pointer: &str) -> String {
    response
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no {pointer} in {response}"))
        .to_owned()
}

#[tokio::test]
async fn the_worker_runs_a_task_and_a_deployment_to_their_end() {
    let app = TestApp::postgres().await;
    let scene = Scene::new(&app).await;
    // Slow enough steps that polling sees progress between 0 and 100.
    let worker = RunningWorker::start(
        &app,
        &scene.service_token,
        Duration::from_millis(150),
        worker::FAIL_EVERY,
    );

    let (task, progress) = scene.task_succeeded().await;
    assert_eq!(task["progress"], 100, "{task}");
    assert_eq!(task["attempts"], 1, "claimed once, never failed: {task}");
    assert!(
        task["startedAt"].is_string() && task["finishedAt"].is_string(),
        "{task}"
    );
    assert_eq!(task["output"]["simulated"], true, "{task}");
    assert_eq!(
        task["output"]["log"].as_array().map(Vec::len),
        Some(4),
        "{task}"
    );
    assert!(
        progress.windows(2).all(|pair| pair[0] < pair[1])
            && progress
                .iter()
                .all(|p| [0, 10, 35, 60, 85, 100].contains(p)),
        "progress only rises through the simulator's steps: {progress:?}"
    );
    assert!(
        progress.iter().any(|p| (1..100).contains(p)),
        "progress was reported on the way, not only at the end: {progress:?}"
    );

    let deployment = scene.deployment_ready().await;
    let url = deployment["url"].as_str().unwrap_or_default();
    assert!(
        url.starts_with("https://demo-shop-") && url.ends_with(".vercel.app"),
        "{deployment}"
    );
    let log = deployment["log"].as_str().unwrap_or_default();
    // One line per step: the state machine allows READY only after BUILDING and
    // DEPLOYING, and each step appended its own lines.
    for line in [
        "Cloning Demo Shop at abc123",
        "Building",
        "Uploading to vercel",
        url,
    ] {
        assert!(log.contains(line), "{line:?} missing from the log: {log}");
    }
    assert!(deployment["finishedAt"].is_string(), "{deployment}");

    worker.stop().await;
}

#[tokio::test]
async fn a_failed_attempt_is_queued_again_and_the_next_one_succeeds() {
    let app = TestApp::postgres().await;
    let scene = Scene::new(&app).await;
    // Every claimed task fails its first attempt.
    let worker = RunningWorker::start(&app, &scene.service_token, Duration::from_millis(5), 1);

    let (task, _) = scene.task_succeeded().await;
    assert_eq!(task["attempts"], 2, "{task}");
    assert_eq!(task["progress"], 100, "{task}");
    assert_eq!(
        task["output"]["log"][0], "attempt 2: resuming at 35%",
        "the second attempt took over where the failed one stopped: {task}"
    );

    worker.stop().await;
}

#[tokio::test]
async fn work_its_owner_cancels_midway_is_dropped_and_the_worker_goes_on() {
    let app = TestApp::postgres().await;
    let scene = Scene::new(&app).await;
    // Steps slow enough that the owner cancels while the worker is on them.
    let worker = RunningWorker::start(&app, &scene.service_token, Duration::from_millis(400), 0);

    scene
        .until(TASK, &scene.task, "agentTask", &["RUNNING"])
        .await;
    let cancelled = scene
        .owner
        .graphql(
            "mutation($id: ID!) { cancelAgentTask(id: $id) { task { status } } }",
            json!({ "id": scene.task }),
        )
        .await;
    assert_eq!(
        cancelled["data"]["cancelAgentTask"]["task"]["status"], "CANCELLED",
        "{cancelled}"
    );
    scene
        .until(
            DEPLOYMENT,
            &scene.deployment,
            "deployment",
            &["BUILDING", "DEPLOYING"],
        )
        .await;
    let cancelled = scene
        .owner
        .graphql(
            "mutation($id: ID!) { cancelDeployment(id: $id) { deployment { status } } }",
            json!({ "id": scene.deployment }),
        )
        .await;
    assert_eq!(
        cancelled["data"]["cancelDeployment"]["deployment"]["status"], "CANCELLED",
        "{cancelled}"
    );

    // The worker drops both and takes the next ones.
    let next_task = scene.queue_task("Write the tests").await;
    let next_deployment = scene.queue_deployment().await;
    scene
        .until(TASK, &next_task, "agentTask", &["SUCCEEDED"])
        .await;
    scene
        .until(DEPLOYMENT, &next_deployment, "deployment", &["READY"])
        .await;
    assert_eq!(scene.task().await["status"], "CANCELLED");
    assert_eq!(scene.deployment().await["status"], "CANCELLED");

    worker.stop().await;
}

#[tokio::test]
async fn a_token_that_is_not_a_services_stops_the_worker() {
    let app = TestApp::postgres().await;
    let scene = Scene::new(&app).await;
    let worker = RunningWorker::start(&app, scene.owner.token(), Duration::from_millis(5), 0);

    let outcome = tokio::time::timeout(TIMEOUT, worker.handle)
        .await
        .expect("the worker kept going with a refused token")
        .expect("the worker panicked");
    assert!(
        matches!(&outcome, Err(WorkerError::Refused(_))),
        "{outcome:?}"
    );
    assert_eq!(scene.task().await["status"], "QUEUED");
    assert_eq!(scene.deployment().await["status"], "QUEUED");
}
