//! A project's agent tasks as a child list (`Project.tasks`), first pages batched under
//! a page of projects by [`crate::kit::nested`], with the agents of every task on them
//! read in one more statement (hundreds of `agent` fields resolve at once, which a
//! DataLoader's time window may split).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use async_graphql::Context;
use entity::agent_tasks::{self, AgentTaskStatus as DbStatus};
use sea_orm::Select;
use uuid::Uuid;

use super::{AgentTask, AgentTaskStatus, repo};
use crate::{
    auth::Identity,
    db::Tx,
    domains::catalog::Agent,
    error::ApiResult,
    kit::{
        loaders::Loaders,
        nested::{self, ChildList},
        pagination::{Page, PageArgs},
        plain::Plain,
    },
};

/// The agent tasks of a project, optionally in one status.
pub struct ProjectTasks;

impl ChildList for ProjectTasks {
    type Entity = agent_tasks::Entity;
    type Filter = Option<DbStatus>;
    type Node = Plain<AgentTask>;

    const PARENT: agent_tasks::Column = agent_tasks::Column::ProjectId;
    const ID: agent_tasks::Column = agent_tasks::Column::Id;

    fn readable(identity: Identity, status: Self::Filter) -> Select<agent_tasks::Entity> {
        repo::readable(identity, None, status)
    }

    fn parent_and_key(row: &agent_tasks::Model) -> (Uuid, Uuid) {
        (row.project_id, row.id)
    }

    async fn nodes(
        db: &Tx,
        identity: Identity,
        rows: Vec<agent_tasks::Model>,
    ) -> ApiResult<Vec<Plain<AgentTask>>> {
        let ids: HashSet<Uuid> = rows.iter().map(|row| row.agent_id).collect();
        let agents: HashMap<Uuid, Agent> = repo::agents_by_id(db, identity, ids)
            .await?
            .into_iter()
            .map(|agent| (agent.id, Agent::from(agent)))
            .collect();
        Ok(rows
            .into_iter()
            .map(|row| {
                let agent = agents.get(&row.agent_id).cloned();
                Plain(AgentTask::from(row).with_agent(agent))
            })
            .collect())
    }
}

/// Registers the child list for a request.
pub fn register(loaders: Loaders) -> Loaders {
    nested::register::<ProjectTasks>(loaders)
}

/// One page of the agent tasks of `project` that the caller may read.
pub(crate) async fn project_page(
    ctx: &Context<'_>,
    project: Uuid,
    siblings: &Arc<[Uuid]>,
    status: Option<AgentTaskStatus>,
    args: PageArgs,
) -> ApiResult<Page<Plain<AgentTask>>> {
    let status = status.map(DbStatus::from);
    nested::child_page::<ProjectTasks>(ctx, project, siblings, status, args).await
}
