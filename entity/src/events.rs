//! `events` (internal): the outbox behind subscriptions.
//!
//! Each row is one change (`topic`, the changed row's id, its owner and project, a JSON
//! payload); its `id` is the cursor subscriptions resume `after`. NOTIFY only wakes
//! listeners up; this table is the source of truth. Rows are never updated.

use sea_orm::entity::prelude::*;

/// One row of `events`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    /// Monotonic cursor (`bigint` identity on Postgres, `INTEGER PRIMARY KEY AUTOINCREMENT`
    /// on SQLite).
    #[sea_orm(primary_key)]
    pub id: i64,
    /// `agent_task.updated`, `deployment.updated`, `notification.added`, ...
    pub topic: String,
    /// Id of the changed row (no foreign key: the row may be gone).
    pub entity_id: Uuid,
    pub owner_id: Option<Uuid>,
    pub project_id: Option<Uuid>,
    #[sea_orm(column_type = "JsonBinary")]
    pub payload: Json,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
