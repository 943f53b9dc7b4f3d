//! A project's agent tasks as a nested list (`Project.tasks`): the first page of every
//! project on a page of projects, with each one's count, in one statement, through a
//! DataLoader keyed by project, status filter and page size. Cursors and `last` fall
//! back to the per-field [`paginate`] path.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use async_graphql::{
    Context,
    dataloader::{DataLoader, Loader},
};
use entity::agent_tasks::{self, AgentTaskStatus as DbStatus};
use tokio::sync::{Mutex, OnceCell};
use uuid::Uuid;

use super::{AgentTask, AgentTaskStatus, repo};
use crate::domains::catalog::Agent;
use crate::{
    auth::Identity,
    db::TxRef,
    error::{ApiError, ApiResult},
    kit::{
        RequestContext,
        loaders::Loaders,
        pagination::{Page, PageArgs, first_page, paginate},
    },
};

/// The first page of one project's agent tasks: the newest `limit + 1` rows (the extra one
/// tells whether there is a next page), with their agents, and the count of all of them,
/// keyed by project, status filter and `limit`.
pub struct FirstPages {
    tx: TxRef,
    identity: Identity,
    /// The pages of each list of sibling projects, loaded once per (siblings, status,
    /// limit): the first field of a page to ask loads them all, the others wait for it.
    /// A DataLoader's time window alone splits a page of 100 into several statements
    /// when resolving it takes longer than the window.
    memo: Mutex<HashMap<MemoKey, Arc<OnceCell<PageMap>>>>,
}

type MemoKey = (Arc<[Uuid]>, Option<DbStatus>, usize);
type PageMap = HashMap<PageKey, <FirstPages as Loader<PageKey>>::Value>;

impl FirstPages {
    /// The first page of `project`, loaded together with those of its `siblings`.
    async fn page_among(
        &self,
        project: Uuid,
        siblings: &Arc<[Uuid]>,
        status: Option<DbStatus>,
        limit: usize,
    ) -> ApiResult<<Self as Loader<PageKey>>::Value> {
        let siblings = if siblings.contains(&project) {
            siblings.clone()
        } else {
            Arc::from([project])
        };
        let cell = self
            .memo
            .lock()
            .await
            .entry((siblings.clone(), status, limit))
            .or_default()
            .clone();
        let pages = cell
            .get_or_try_init(|| async {
                let keys: Vec<PageKey> = siblings.iter().map(|&p| (p, status, limit)).collect();
                self.load(&keys).await.map_err(|e| (*e).clone())
            })
            .await?;
        Ok(pages
            .get(&(project, status, limit))
            .cloned()
            .unwrap_or_default())
    }
}

type PageKey = (Uuid, Option<DbStatus>, usize);

impl Loader<PageKey> for FirstPages {
    type Value = (Vec<AgentTask>, u64);
    type Error = Arc<ApiError>;

    async fn load(&self, keys: &[PageKey]) -> Result<HashMap<PageKey, Self::Value>, Self::Error> {
        let tx = self.tx.get().map_err(Arc::new)?;
        // One statement per distinct (status, limit): one for a typical query.
        let mut groups: HashMap<(Option<DbStatus>, usize), Vec<Uuid>> = HashMap::new();
        for &(project, status, limit) in keys {
            groups.entry((status, limit)).or_default().push(project);
        }
        let mut pages = HashMap::new();
        for ((status, limit), projects) in groups {
            let mut rows = repo::newest_per_project(&*tx, self.identity, &projects, status, limit)
                .await
                .map_err(Arc::new)?;
            for project in projects {
                let page = rows.remove(&project).unwrap_or_default();
                pages.insert((project, status, limit), page);
            }
        }
        // The agents of every task on these pages, in one more statement: hundreds of
        // `agent` fields resolve at once, which a DataLoader's time window may split.
        let agent_ids: HashSet<Uuid> = pages
            .values()
            .flat_map(|(rows, _)| rows.iter().map(|row| row.agent_id))
            .collect();
        let agents: HashMap<Uuid, Agent> = repo::agents_by_id(&*tx, self.identity, agent_ids)
            .await
            .map_err(Arc::new)?
            .into_iter()
            .map(|agent| (agent.id, Agent::from(agent)))
            .collect();
        Ok(pages
            .into_iter()
            .map(|(key, (rows, total))| {
                let tasks = rows
                    .into_iter()
                    .map(|row| {
                        let agent = agents.get(&row.agent_id).cloned();
                        AgentTask::from(row).with_agent(agent)
                    })
                    .collect();
                (key, (tasks, total))
            })
            .collect())
    }
}

/// Registers the nested-list loaders for a request.
pub fn register(loaders: Loaders) -> Loaders {
    loaders.register(|tx, identity| FirstPages {
        tx,
        identity,
        memo: Mutex::default(),
    })
}

/// One page of the agent tasks of `project` (already readable by the caller and allowed by
/// its token) that the caller may read.
pub(crate) async fn project_page(
    ctx: &Context<'_>,
    project: Uuid,
    siblings: &Arc<[Uuid]>,
    status: Option<AgentTaskStatus>,
    args: PageArgs,
) -> ApiResult<Page<AgentTask>> {
    let status = status.map(DbStatus::from);
    if let Some(limit) = args.first_without_cursor()? {
        let (rows, total) = ctx
            .data::<DataLoader<FirstPages>>()
            .map_err(|_| ApiError::bug("a DataLoader was not registered"))?
            .loader()
            .page_among(project, siblings, status, limit)
            .await?;
        let rows = rows.into_iter().map(|row| (row.key, row)).collect();
        return Ok(first_page(
            rows,
            limit,
            Box::new(move |_| Box::pin(async move { Ok(total) })),
        ));
    }
    let rc = RequestContext::of(ctx)?;
    paginate(
        rc.tx_ref(),
        repo::readable(rc.identity(), Some(project), status),
        (agent_tasks::Column::Id, |row: &agent_tasks::Model| row.id),
        args,
        AgentTask::from,
    )
    .await
}
