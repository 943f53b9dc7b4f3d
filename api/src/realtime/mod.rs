//! The event path behind subscriptions, below the GraphQL layer: what an event is, its
//! cursor, the `events` table it is read from ([`store`]), the Postgres listener that
//! wakes the hub ([`listener`]) and the per-replica [`Hub`] that reads each event once
//! and fans it out to every subscriber of this process.
//!
//! The path: a write to `agent_tasks`, `deployments`, `notifications` (or a revocation or
//! a role change) → trigger appends to `events` and `pg_notify`s (migration
//! m20261126_000009) → this replica's listener wakes the hub → the hub reads the new
//! events in cursor order and broadcasts them → each subscription judges each event
//! with its domain's read rule (`kit::feed`) → the socket. On SQLite the pipeline wakes
//! the hub after every committed write instead of NOTIFY.
//!
//! Invariants: the `events` table is the source of truth and NOTIFY only a wake-up, so
//! a lost notification or a dropped listener connection delays events but never loses
//! them; cursors are handed out in `(transaction id, event id)` order and only once no
//! older transaction is still running, so no later commit lands before a cursor already
//! handed out.

mod hub;
mod listener;
mod store;

use std::{fmt, str::FromStr};

use entity::{agent_tasks, deployments, notifications};
use uuid::Uuid;

pub use hub::Hub;

use crate::error::ApiError;

/// Where an event sits in the feed: the writing transaction, then the event's id. Clients
/// see it as an opaque string and hand it back as `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cursor {
    tx: u64,
    id: i64,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.tx, self.id)
    }
}

impl FromStr for Cursor {
    type Err = ApiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || ApiError::bad_input("after: not a cursor this API handed out");
        let (tx, id) = s.split_once('-').ok_or_else(invalid)?;
        Ok(Self {
            tx: tx.parse().map_err(|_| invalid())?,
            id: id.parse().map_err(|_| invalid())?,
        })
    }
}

/// What changed about the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    Deleted,
}

/// The row an event carries, as it was written.
#[derive(Debug, Clone)]
pub enum Row {
    AgentTask(agent_tasks::Model),
    Deployment(deployments::Model),
    Notification(notifications::Model),
    /// A token of this account was revoked, or its role changed, or it was deleted:
    /// sockets holding its tokens re-check them.
    Session,
    /// A row this build could not decode (logged); it only moves the feed on.
    Unreadable,
}

/// One change, as every subscriber of this replica receives it.
#[derive(Debug, Clone)]
pub struct Event {
    pub cursor: Cursor,
    pub change: Change,
    /// The account the row belongs to (`user_id`), when it has one.
    pub owner_id: Option<Uuid>,
    pub row: Row,
}
