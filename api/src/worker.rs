//! `flashfusion worker --simulate`: a demo agent worker and deployer, so a dashboard or a
//! GraphiQL subscription shows life at once.
//!
//! It is a client of the gateway like any external worker: it holds a service token and
//! speaks GraphQL over HTTP (the operations of `schema.graphql`), never the database. It
//! claims queued agent tasks, reports their progress in steps and completes them (the
//! first attempt of every `fail_every`-th claimed task fails and is queued again, as a
//! crashed agent's would be), and walks queued deployments through building and
//! deploying to ready, with log lines and a URL. Nothing real runs.
//!
//! It sits at the top beside `cli` and imports only `config`. GraphQL errors and an
//! unreachable gateway are logged and the loop goes on; only a refused token
//! (`UNAUTHENTICATED`, `FORBIDDEN`), which waiting cannot mend, ends it.

use std::{
    fmt,
    future::Future,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::config::Secret;

/// By default the first attempt of every fifth claimed task fails (and is retried).
pub const FAIL_EVERY: u32 = 5;

/// What the simulator needs: where the gateway is, whom to act as, how fast to go.
#[derive(Debug, Clone)]
pub struct Simulation {
    /// The gateway's GraphQL endpoint, e.g. `http://127.0.0.1:8000/graphql`.
    pub endpoint: String,
    /// A service token.
    pub token: Secret,
    /// Pause between two progress steps, and between two polls of an empty queue.
    pub step_delay: Duration,
    /// The first attempt of every `fail_every`-th claimed task fails with a retry; 0:
    /// never.
    pub fail_every: u32,
}

/// Why the worker stopped before it was asked to.
#[derive(Debug)]
pub enum WorkerError {
    /// The endpoint is not a usable URL, or the HTTP client cannot be built.
    Setup(String),
    /// The gateway refused the token; a new one is needed.
    Refused(CallError),
}

impl fmt::Display for WorkerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Setup(why) => write!(f, "cannot start the worker: {why}"),
            Self::Refused(err) => write!(
                f,
                "the gateway refused the worker's token ({err}); issue a service token with \
                 `flashfusion token issue --role service --email ...`"
            ),
        }
    }
}

impl std::error::Error for WorkerError {}

/// Runs the simulator until `shutdown` resolves (then the task or deployment in hand is
/// finished first) or the gateway refuses the token.
pub async fn run(
    simulation: Simulation,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkerError> {
    let gateway = Gateway::new(&simulation)?;
    let worker = Worker {
        gateway,
        step_delay: simulation.step_delay,
        fail_every: simulation.fail_every,
        claims: AtomicU32::new(0),
    };
    let (stop_tx, stop) = watch::channel(false);
    tracing::info!(endpoint = %simulation.endpoint, "worker started (simulating)");
    let work = async {
        tokio::try_join!(
            worker.run_tasks(stop.clone()),
            worker.run_deployments(stop.clone())
        )
    };
    tokio::pin!(work);
    let outcome = tokio::select! {
        outcome = &mut work => outcome,
        () = shutdown => {
            tracing::info!("stopping: finishing the work in hand");
            let _ = stop_tx.send(true);
            work.await
        }
    };
    tracing::info!("worker stopped");
    outcome.map(|_| ()).map_err(WorkerError::Refused)
}

/// Why one GraphQL call failed.
#[derive(Debug)]
pub enum CallError {
    /// No usable answer: the gateway is unreachable, or answered something else than a
    /// GraphQL response.
    Transport(String),
    /// The gateway answered with an error: its `extensions.code` and message.
    Graphql { code: String, message: String },
}

impl CallError {
    /// Whether the token itself was refused: retrying cannot help.
    fn is_fatal(&self) -> bool {
        matches!(self, Self::Graphql { code, .. } if code == "UNAUTHENTICATED" || code == "FORBIDDEN")
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport(why) => write!(f, "gateway unreachable: {why}"),
            Self::Graphql { code, message } => write!(f, "{code}: {message}"),
        }
    }
}

/// The gateway's GraphQL endpoint, called with the service token.
struct Gateway {
    http: reqwest::Client,
    endpoint: reqwest::Url,
    token: Secret,
}

/// A GraphQL response as the gateway sends it.
#[derive(Deserialize)]
struct Response {
    data: Option<Value>,
    #[serde(default)]
    errors: Vec<ResponseError>,
}

#[derive(Deserialize)]
struct ResponseError {
    message: String,
    #[serde(default)]
    extensions: Option<Value>,
}

impl Gateway {
    fn new(simulation: &Simulation) -> Result<Self, WorkerError> {
        let endpoint = reqwest::Url::parse(&simulation.endpoint)
            .map_err(|e| WorkerError::Setup(format!("endpoint {:?}: {e}", simulation.endpoint)))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("flashfusion-worker/", env!("CARGO_PKG_VERSION")))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| WorkerError::Setup(e.to_string()))?;
        Ok(Self {
            http,
            endpoint,
            token: simulation.token.clone(),
        })
    }

    /// Sends one operation and returns its root field `field`, deserialized.
    async fn call<T: DeserializeOwned>(
        &self,
        field: &str,
        query: &str,
        variables: Value,
    ) -> Result<T, CallError> {
        let transport = |e: reqwest::Error| CallError::Transport(with_causes(&e));
        let response = self
            .http
            .post(self.endpoint.clone())
            .bearer_auth(self.token.expose())
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let body: Response = response.json().await.map_err(|e| {
            CallError::Transport(format!("HTTP {status}, not a GraphQL response: {e}"))
        })?;
        if let Some(error) = body.errors.into_iter().next() {
            let code = error
                .extensions
                .as_ref()
                .and_then(|extensions| extensions["code"].as_str())
                .unwrap_or("UNKNOWN")
                .to_owned();
            return Err(CallError::Graphql {
                code,
                message: error.message,
            });
        }
        let value = body
            .data
            .and_then(|mut data| data.get_mut(field).map(Value::take))
            .ok_or_else(|| CallError::Transport(format!("no `{field}` in the response")))?;
        serde_json::from_value(value)
            .map_err(|e| CallError::Transport(format!("unexpected `{field}`: {e}")))
    }
}

const AGENTS: &str = "{ agents { slug } }";
const CLAIM: &str = "mutation($slugs: [String!]!) { claimAgentTask(input: {agentSlugs: $slugs}) { task { id title attempts progress agent { slug } } } }";
const PROGRESS: &str = "mutation($i: ReportAgentTaskProgressInput!) { reportAgentTaskProgress(input: $i) { task { id } } }";
const COMPLETE: &str =
    "mutation($i: CompleteAgentTaskInput!) { completeAgentTask(input: $i) { task { id } } }";
const FAIL: &str =
    "mutation($i: FailAgentTaskInput!) { failAgentTask(input: $i) { task { id status } } }";
const QUEUED_DEPLOYMENTS: &str = "{ deployments(status: QUEUED, last: 1) { nodes { id provider environment commitSha project { name } } } }";
const ADVANCE: &str =
    "mutation($i: AdvanceDeploymentInput!) { advanceDeployment(input: $i) { deployment { id } } }";

#[derive(Deserialize)]
struct Agent {
    slug: String,
}

#[derive(Deserialize)]
struct Claimed {
    task: Option<Task>,
}

#[derive(Deserialize)]
struct Task {
    id: String,
    title: String,
    attempts: i32,
    progress: i32,
    agent: Agent,
}

#[derive(Deserialize)]
struct FailedTask {
    task: TaskStatus,
}

#[derive(Deserialize)]
struct TaskStatus {
    status: String,
}

#[derive(Deserialize)]
struct Nodes<T> {
    nodes: Vec<T>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Deployment {
    id: String,
    provider: String,
    environment: String,
    commit_sha: Option<String>,
    project: Project,
}

#[derive(Deserialize)]
struct Project {
    name: String,
}

/// The progress steps of a simulated task: percentage and what the agent "did".
const STEPS: [(i32, &str); 4] = [
    (10, "reading the project"),
    (35, "planning the change"),
    (60, "making the change"),
    (85, "checking the result"),
];

/// The progress at which a failing attempt gives up, and what it says.
const FAILING_AT: i32 = 35;
const SIMULATED_FAILURE: &str = "simulated: the agent's sandbox ran out of memory";

struct Worker {
    gateway: Gateway,
    step_delay: Duration,
    fail_every: u32,
    /// Tasks claimed so far, to pick the failing ones.
    claims: AtomicU32,
}

/// How one round of a loop went.
enum Round {
    /// Something was done; look for more at once.
    Worked,
    /// Nothing was queued.
    Idle,
}

impl Worker {
    /// Claims and runs tasks until `stop`.
    async fn run_tasks(&self, stop: watch::Receiver<bool>) -> Result<(), CallError> {
        self.repeat(stop, "agent task", || self.task_round()).await
    }

    /// Advances deployments until `stop`.
    async fn run_deployments(&self, stop: watch::Receiver<bool>) -> Result<(), CallError> {
        self.repeat(stop, "deployment", || self.deployment_round())
            .await
    }

    /// Runs `round` until `stop`, waiting a step when it found nothing or failed; a
    /// refused token ends the loop.
    async fn repeat<F, Fut>(
        &self,
        mut stop: watch::Receiver<bool>,
        what: &str,
        mut round: F,
    ) -> Result<(), CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Round, CallError>>,
    {
        while !*stop.borrow() {
            match round().await {
                Ok(Round::Worked) => continue,
                Ok(Round::Idle) => {}
                Err(err) if err.is_fatal() => return Err(err),
                Err(err) => tracing::warn!("{what}: {err}"),
            }
            tokio::select! {
                () = tokio::time::sleep(self.step_delay) => {}
                _ = stop.changed() => {}
            }
        }
        Ok(())
    }

    /// Claims one queued task of any active agent and runs it.
    async fn task_round(&self) -> Result<Round, CallError> {
        let agents: Vec<Agent> = self.gateway.call("agents", AGENTS, json!({})).await?;
        let slugs: Vec<&str> = agents.iter().map(|agent| agent.slug.as_str()).collect();
        let claimed: Claimed = self
            .gateway
            .call("claimAgentTask", CLAIM, json!({ "slugs": slugs }))
            .await?;
        let Some(task) = claimed.task else {
            return Ok(Round::Idle);
        };
        tracing::info!(task = %task.id, agent = %task.agent.slug, attempt = task.attempts, "claimed {:?}", task.title);
        let claims = self.claims.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let fail = self.fail_every > 0 && claims.is_multiple_of(self.fail_every);
        match self.work_on(&task, fail).await {
            Ok(()) => Ok(Round::Worked),
            Err(err) if err.is_fatal() => Err(err),
            Err(err) => {
                tracing::warn!(task = %task.id, "attempt broke off: {err}");
                // Hand the task back rather than leave it RUNNING with nobody on it. This
                // is refused too when the task was cancelled meanwhile, which is fine.
                if let Err(err) = self.fail_attempt(&task, &format!("worker: {err}")).await {
                    tracing::warn!(task = %task.id, "could not hand the task back: {err}");
                }
                Ok(Round::Worked)
            }
        }
    }

    /// One attempt at a claimed task: the steps above its current progress (a retried
    /// attempt resumes where the last one stopped), then success, or the simulated
    /// failure when `fail` and this is the first attempt.
    async fn work_on(&self, task: &Task, fail: bool) -> Result<(), CallError> {
        let mut log = Vec::new();
        if task.progress > 0 {
            log.push(format!(
                "attempt {}: resuming at {}%",
                task.attempts, task.progress
            ));
        }
        for (progress, step) in STEPS {
            if progress <= task.progress {
                continue;
            }
            tokio::time::sleep(self.step_delay).await;
            log.push(format!("{}: {step}", task.agent.slug));
            self.gateway
                .call::<Value>(
                    "reportAgentTaskProgress",
                    PROGRESS,
                    json!({ "i": { "id": task.id, "progress": progress, "output": { "log": log } } }),
                )
                .await?;
            tracing::info!(task = %task.id, "{progress:>3}% {step}");
            if fail && task.attempts == 1 && progress == FAILING_AT {
                return self.fail_attempt(task, SIMULATED_FAILURE).await;
            }
        }
        tokio::time::sleep(self.step_delay).await;
        let output = json!({
            "simulated": true,
            "agent": task.agent.slug,
            "summary": format!("{} finished {:?}", task.agent.slug, task.title),
            "log": log,
        });
        self.gateway
            .call::<Value>(
                "completeAgentTask",
                COMPLETE,
                json!({ "i": { "id": task.id, "output": output } }),
            )
            .await?;
        tracing::info!(task = %task.id, "100% succeeded");
        Ok(())
    }

    /// Ends a task's attempt with `error`, asking for a retry (the gateway queues it
    /// again while it has attempts left).
    async fn fail_attempt(&self, task: &Task, error: &str) -> Result<(), CallError> {
        let failed: FailedTask = self
            .gateway
            .call(
                "failAgentTask",
                FAIL,
                json!({ "i": { "id": task.id, "error": error, "retry": true } }),
            )
            .await?;
        tracing::info!(task = %task.id, status = %failed.task.status, "attempt failed: {error}");
        Ok(())
    }

    /// Takes the oldest queued deployment and walks it to ready.
    async fn deployment_round(&self) -> Result<Round, CallError> {
        let queued: Nodes<Deployment> = self
            .gateway
            .call("deployments", QUEUED_DEPLOYMENTS, json!({}))
            .await?;
        let Some(deployment) = queued.nodes.into_iter().next() else {
            return Ok(Round::Idle);
        };
        let commit = deployment.commit_sha.as_deref().unwrap_or("HEAD");
        let url = preview_url(&deployment);
        let steps = [
            (
                Some("BUILDING"),
                format!(
                    "==> Cloning {} at {commit}\n==> Installing dependencies\n",
                    deployment.project.name
                ),
                None,
            ),
            (None, "==> Building\n==> Build finished\n".to_owned(), None),
            (
                Some("DEPLOYING"),
                format!(
                    "==> Uploading to {} ({})\n",
                    deployment.provider,
                    deployment.environment.to_lowercase()
                ),
                None,
            ),
            (Some("READY"), format!("==> Live at {url}\n"), Some(&url)),
        ];
        tracing::info!(deployment = %deployment.id, provider = %deployment.provider, "deploying {:?}", deployment.project.name);
        for (index, (status, log, url)) in steps.into_iter().enumerate() {
            if index > 0 {
                tokio::time::sleep(self.step_delay).await;
            }
            let advanced = self
                .gateway
                .call::<Value>(
                    "advanceDeployment",
                    ADVANCE,
                    json!({ "i": { "id": deployment.id, "status": status, "logAppend": log, "url": url } }),
                )
                .await;
            match advanced {
                Ok(_) => {}
                // Before the first step it is not ours (another worker may have taken
                // it); a refused token cannot write anything more.
                Err(err) if index == 0 || err.is_fatal() => return Err(err),
                Err(err) => {
                    self.give_up(&deployment.id, &err).await;
                    return Ok(Round::Worked);
                }
            }
            tracing::info!(deployment = %deployment.id, "{}", log.trim_end().replace('\n', " | "));
        }
        Ok(Round::Worked)
    }

    /// Marks a deployment this worker started as FAILED after a step broke off, rather
    /// than leave it building with nobody on it (refused too when it was cancelled
    /// meanwhile, which is fine).
    async fn give_up(&self, id: &str, err: &CallError) {
        tracing::warn!(deployment = %id, "deployment broke off: {err}");
        let log = format!("==> Deployment failed: {err}\n");
        let failed = self
            .gateway
            .call::<Value>(
                "advanceDeployment",
                ADVANCE,
                json!({ "i": { "id": id, "status": "FAILED", "logAppend": log } }),
            )
            .await;
        if let Err(err) = failed {
            tracing::warn!(deployment = %id, "could not mark the deployment failed: {err}");
        }
    }
}

/// An error and its causes, `a: b: c` (reqwest's own message omits them).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// A plausible URL for a deployment: the project's name and the deployment's id on the
/// provider's domain.
fn preview_url(deployment: &Deployment) -> String {
    let name: String = deployment
        .project
        .name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = name.trim_matches('-');
    let name = if name.is_empty() { "app" } else { name };
    let short: String = deployment
        .id
        .chars()
        .rev()
        .filter(char::is_ascii_alphanumeric)
        .take(6)
        .collect();
    let domain = match deployment.provider.as_str() {
        "vercel" => "vercel.app",
        "netlify" => "netlify.app",
        "fly" => "fly.dev",
        _ => "example.app",
    };
    format!("https://{name}-{short}.{domain}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_urls_are_hostnames() {
        let deployment = Deployment {
            id: "0193-abcdef".into(),
            provider: "vercel".into(),
            environment: "PREVIEW".into(),
            commit_sha: None,
            project: Project {
                name: "My Shop!".into(),
            },
        };
        assert_eq!(
            preview_url(&deployment),
            "https://my-shop-fedcba.vercel.app"
        );
    }
}
