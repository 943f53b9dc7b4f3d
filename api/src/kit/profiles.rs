//! [`Profile`]: what anyone may see of another account (id and display name), loaded in
//! batches through the `profiles` view, which Postgres filters to the profiles the
//! caller may see (a page of 100 projects loads its owners in one statement).

use std::{collections::HashMap, sync::Arc};

use async_graphql::{ID, SimpleObject, dataloader::Loader};
use entity::{profiles, users};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use super::loaders::Loaders;
use crate::{
    db::TxRef,
    error::{ApiError, ApiResult},
};

/// What anyone may see of another account.
#[derive(SimpleObject, Clone)]
pub struct Profile {
    id: ID,
    display_name: String,
}

/// Loads [`Profile`]s by account id through the `profiles` view, which Postgres
/// filters to the profiles the caller may see.
pub struct ProfileLoader {
    pub(crate) tx: TxRef,
}

impl Loader<Uuid> for ProfileLoader {
    type Value = Profile;
    type Error = Arc<ApiError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Profile>, Self::Error> {
        let tx = self.tx.get().await.map_err(Arc::new)?;
        find_many(&*tx, keys.iter().copied())
            .await
            .map_err(Arc::new)
    }
}

/// The profiles of `ids` the caller may see, in one statement: for the loader, and for
/// lists that read their owners with their page.
pub async fn find_many(
    db: &impl ConnectionTrait,
    ids: impl IntoIterator<Item = Uuid>,
) -> ApiResult<HashMap<Uuid, Profile>> {
    let rows = profiles::Entity::find()
        .filter(profiles::Column::Id.is_in(ids))
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|p| {
            let profile = Profile {
                id: p.id.into(),
                display_name: p.display_name,
            };
            (p.id, profile)
        })
        .collect())
}

/// Registers the profile loader for a request.
pub fn register(loaders: Loaders) -> Loaders {
    loaders.register(|tx, _| ProfileLoader { tx })
}

/// Whether account `id` exists and the caller may know it (a notification's recipient,
/// a billing row's owner): only its id is read.
pub async fn account_exists(db: &impl ConnectionTrait, id: Uuid) -> ApiResult<bool> {
    let found: Option<Uuid> = users::Entity::find_by_id(id)
        .select_only()
        .column(users::Column::Id)
        .into_tuple()
        .one(db)
        .await?;
    Ok(found.is_some())
}
