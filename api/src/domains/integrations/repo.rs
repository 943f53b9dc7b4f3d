//! SQL for integrations. The owner's role may not read `credentials`, so every read
//! selects [`Metadata`] and writes run without `RETURNING`.

use chrono::Utc;
use entity::integrations::{self, IntegrationStatus, Metadata};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, Select,
    sea_query::Expr,
};
use uuid::Uuid;

use crate::{error::ApiResult, secrets::Sealed};

/// The owner's integrations that `visible` allows (paged newest first by
/// `kit::pagination::paginate`).
pub fn list(visible: Condition) -> Select<integrations::Entity> {
    integrations::Entity::find().filter(visible)
}

/// The integration `id` if `visible` allows it.
pub async fn find(
    db: &impl ConnectionTrait,
    visible: Condition,
    id: Uuid,
) -> ApiResult<Option<Metadata>> {
    Ok(integrations::Entity::find_by_id(id)
        .filter(visible)
        .into_partial_model::<Metadata>()
        .one(db)
        .await?)
}

/// A validated new integration, credentials already sealed.
pub struct NewIntegration {
    pub id: Uuid,
    pub user_id: Uuid,
    pub provider: String,
    pub config: serde_json::Value,
    pub sealed: Option<Sealed>,
}

/// Inserts as `connected`, without `RETURNING`.
pub async fn insert(db: &impl ConnectionTrait, new: NewIntegration) -> ApiResult<()> {
    let now = Utc::now();
    let (credentials, nonce, key_id) = split(new.sealed);
    let row = integrations::ActiveModel {
        id: Set(new.id),
        user_id: Set(new.user_id),
        provider: Set(new.provider),
        config: Set(new.config),
        credentials: Set(credentials),
        credentials_nonce: Set(nonce),
        key_id: Set(key_id),
        status: Set(IntegrationStatus::Connected),
        created_at: Set(now),
        updated_at: Set(now),
    };
    integrations::Entity::insert(row)
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Validated changes; `None` leaves a field as it is.
pub struct Changes {
    pub config: Option<serde_json::Value>,
    /// `Some(None)` removes the credentials.
    pub sealed: Option<Option<Sealed>>,
}

/// Applies `changes` to the integration `id` if `visible` allows it, naming only the
/// changed columns.
pub async fn update(
    db: &impl ConnectionTrait,
    visible: Condition,
    id: Uuid,
    changes: Changes,
) -> ApiResult<()> {
    let mut update = integrations::Entity::update_many()
        .col_expr(integrations::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(integrations::Column::Id.eq(id))
        .filter(visible);
    if let Some(config) = changes.config {
        update = update.col_expr(integrations::Column::Config, Expr::value(config));
    }
    if let Some(sealed) = changes.sealed {
        let (credentials, nonce, key_id) = split(sealed);
        update = update
            .col_expr(integrations::Column::Credentials, Expr::value(credentials))
            .col_expr(integrations::Column::CredentialsNonce, Expr::value(nonce))
            .col_expr(integrations::Column::KeyId, Expr::value(key_id));
    }
    update.exec(db).await?;
    Ok(())
}

/// Deletes the integration `id` if `visible` allows it.
pub async fn delete(db: &impl ConnectionTrait, visible: Condition, id: Uuid) -> ApiResult<()> {
    integrations::Entity::delete_by_id(id)
        .filter(visible)
        .exec(db)
        .await?;
    Ok(())
}

type Columns = (Option<Vec<u8>>, Option<Vec<u8>>, Option<String>);

fn split(sealed: Option<Sealed>) -> Columns {
    match sealed {
        Some(s) => (Some(s.ciphertext), Some(s.nonce), Some(s.key_id)),
        None => (None, None, None),
    }
}
