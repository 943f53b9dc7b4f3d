//! [`mirror_enum!`]: an API enum and its entity twin mapped both ways in one place, so
//! adding a variant to one without the other fails to compile.

/// `mirror_enum!(Api <=> Db { A, B })` implements `From<Db> for Api` and
/// `From<Api> for Db`, variant by variant.
macro_rules! mirror_enum {
    ($api:ident <=> $db:path { $($variant:ident),+ $(,)? }) => {
        impl From<$db> for $api {
            fn from(value: $db) -> Self {
                use $db as Db;
                match value { $(Db::$variant => Self::$variant),+ }
            }
        }
        impl From<$api> for $db {
            fn from(value: $api) -> Self {
                match value { $($api::$variant => Self::$variant),+ }
            }
        }
    };
}
pub(crate) use mirror_enum;
