//! Who may read and write the catalogs (`ai_services`, `agents`): the one statement of
//! their policies. Everyone (anonymous and scoped tokens included) reads active
//! entries, admins read all and write. One by one, services read every agent and every
//! AI service (pricing a generation whose service was retired meanwhile reads it as the
//! service, whatever its state: [`ai_service_readable`], migration m20261126_000014),
//! and users the agents of their own tasks ([`agent_readable`]); the lists stay the
//! catalog.

use entity::{agent_tasks, agents, ai_services};
use sea_orm::{ColumnTrait, Condition, sea_query::Query};

use crate::auth::{Identity, Role};

/// The entries `identity` may read, as a condition on the table's `is_active` column.
pub fn readable(identity: Identity, is_active: impl ColumnTrait) -> Condition {
    if identity.is_admin() {
        Condition::all()
    } else {
        Condition::all().add(is_active.eq(true))
    }
}

/// The agents `identity` may read one by one (a task's `agent`): active ones, every one
/// for admins and services (the service runs every task), and for a user also the
/// agents of their own tasks, so a task never points at an agent its reader cannot see
/// after the agent was deactivated. Migration m20261125_000007 says the same in SQL.
pub fn agent_readable(identity: Identity) -> Condition {
    match (identity.role(), identity.user_id()) {
        (Some(Role::Admin | Role::Service), _) => Condition::all(),
        (Some(Role::User), Some(user)) => {
            Condition::any().add(agents::Column::IsActive.eq(true)).add(
                agents::Column::Id.in_subquery(
                    Query::select()
                        .column(agent_tasks::Column::AgentId)
                        .from(agent_tasks::Entity)
                        .and_where(agent_tasks::Column::UserId.eq(user))
                        .to_owned(),
                ),
            )
        }
        _ => Condition::all().add(agents::Column::IsActive.eq(true)),
    }
}

/// The AI services `identity` may read one by one (a generation's `aiService`): active
/// ones, and every one for admins and services (the service prices every generation,
/// whatever became of its AI service). Migration m20261126_000014 says the same in SQL.
pub fn ai_service_readable(identity: Identity) -> Condition {
    match identity.role() {
        Some(Role::Admin | Role::Service) => Condition::all(),
        _ => Condition::all().add(ai_services::Column::IsActive.eq(true)),
    }
}

/// Whether `identity` may see inactive entries (what `includeInactive` asks for).
pub fn sees_inactive(identity: Identity) -> bool {
    identity.is_admin()
}
