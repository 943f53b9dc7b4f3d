//! `profiles`: the read-only view over `users` that exposes a user's public face.
//!
//! On Postgres the view shows the caller's own row, every row to admins and the service,
//! and otherwise only owners of at least one public project; on SQLite it shows every
//! user (no RLS there, the API's checks decide). It must never grow a column that is not
//! meant for strangers. Writes through this entity are refused before reaching SQL.

use sea_orm::entity::prelude::*;

/// One row of the `profiles` view.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "profiles")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub display_name: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

#[async_trait::async_trait]
impl ActiveModelBehavior for ActiveModel {
    async fn before_save<C>(self, _db: &C, _insert: bool) -> Result<Self, DbErr>
    where
        C: ConnectionTrait,
    {
        Err(DbErr::Custom("`profiles` is a read-only view".to_owned()))
    }

    async fn before_delete<C>(self, _db: &C) -> Result<Self, DbErr>
    where
        C: ConnectionTrait,
    {
        Err(DbErr::Custom("`profiles` is a read-only view".to_owned()))
    }
}
