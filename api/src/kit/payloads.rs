//! Payloads every domain shares, defined once so the schema has one type of each name.

use async_graphql::{ID, SimpleObject};
use uuid::Uuid;

/// What a delete mutation returns: the id of the row that is gone.
#[derive(SimpleObject)]
pub struct DeletePayload {
    deleted_id: ID,
}

impl DeletePayload {
    /// The payload for the deleted row `id`.
    pub fn new(id: Uuid) -> Self {
        Self {
            deleted_id: id.into(),
        }
    }
}
