//! [`Profile`]: what anyone may see of another account (id and display name), loaded in
//! batches through the `profiles` view, which Postgres filters to the profiles the
//! caller may see (a page of 100 projects loads its owners in one statement).

use std::{collections::HashMap, sync::Arc};

use async_graphql::{ID, SimpleObject, dataloader::Loader};
use entity::profiles;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::loaders::Loaders;
use crate::{db::TxRef, error::ApiError};

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
        let tx = self.tx.get().map_err(Arc::new)?;
        let rows = profiles::Entity::find()
            .filter(profiles::Column::Id.is_in(keys.iter().copied()))
            .all(&*tx)
            .await
            .map_err(|e| Arc::new(ApiError::from(e)))?;
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
}

/// Registers the profile loader for a request.
pub fn register(loaders: Loaders) -> Loaders {
    loaders.register(|tx, _| ProfileLoader { tx })
}
