//! SQL for the catalogs. Both tables share their shape (slug, name, capabilities,
//! `is_active`), so listing and lookups are written once, generic over the entity.

use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder,
};
use uuid::Uuid;

use crate::{auth::Identity, error::ApiResult};

/// Entries of a catalog `E` that `identity` may read, by slug; inactive ones only when
/// asked for and allowed.
pub async fn list<E>(
    db: &impl ConnectionTrait,
    identity: Identity,
    (is_active, slug): (E::Column, E::Column),
    include_inactive: bool,
) -> ApiResult<Vec<E::Model>>
where
    E: EntityTrait,
{
    let mut query = E::find().filter(super::policy::readable(identity, is_active));
    if !include_inactive {
        query = query.filter(is_active.eq(true));
    }
    Ok(query.order_by_asc(slug).all(db).await?)
}

/// The entry `id` of catalog `E`, if `identity` may read it.
pub async fn find<E>(
    db: &impl ConnectionTrait,
    identity: Identity,
    (id_column, is_active): (E::Column, E::Column),
    id: Uuid,
) -> ApiResult<Option<E::Model>>
where
    E: EntityTrait,
{
    Ok(E::find()
        .filter(id_column.eq(id))
        .filter(super::policy::readable(identity, is_active))
        .one(db)
        .await?)
}

/// Inserts a new entry, returning it.
pub async fn insert<A>(
    db: &impl ConnectionTrait,
    row: A,
) -> ApiResult<<A::Entity as EntityTrait>::Model>
where
    A: ActiveModelTrait + ActiveModelBehavior + Send,
    <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
{
    Ok(row.insert(db).await?)
}

/// Saves the changed fields of an entry, returning it.
pub async fn update<A>(
    db: &impl ConnectionTrait,
    row: A,
) -> ApiResult<<A::Entity as EntityTrait>::Model>
where
    A: ActiveModelTrait + ActiveModelBehavior + Send,
    <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
{
    Ok(row.update(db).await?)
}
