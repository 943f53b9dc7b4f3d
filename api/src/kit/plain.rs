//! The fast read path for list items and subscription events' rows: an object whose
//! selection asks only for plain fields (values it holds, with no arguments, no
//! database and no error) is answered in one pass over its selection, without
//! async-graphql's machinery per field (a boxed future, its context, a join and a map
//! insertion each; BENCHMARKS.md, "Plain fields"). Any other selection (a field that is
//! not plain, a fragment, a directive) goes through the type's own resolver, unchanged.
//!
//! A type opts in by implementing [`PlainFields`] and being listed as [`Plain<T>`]; the
//! schema does not change (`Plain<T>` is `T` to async-graphql's registry).

use std::{
    borrow::Cow,
    ops::{Deref, DerefMut},
};

use async_graphql::{
    ContextSelectionSet, EnumType, Json, OutputType, Positioned, ScalarType, ServerResult, Value,
    indexmap::IndexMap, parser::types::Field, parser::types::Selection, registry::Registry,
    resolver_utils::enum_value, to_value,
};

/// The plain fields of a type: what [`Plain`] answers without resolving.
pub trait PlainFields: OutputType {
    /// The value of field `name` (as the schema names it) when it is plain; `None`
    /// for any other field, which the type's resolver then answers.
    fn plain(&self, name: &str) -> Option<Value>;
}

/// `T` in a list, answered by [`PlainFields`] when its selection allows.
#[derive(Clone)]
pub struct Plain<T>(pub T);

impl<T> Deref for Plain<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Plain<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: PlainFields> OutputType for Plain<T> {
    fn type_name() -> Cow<'static, str> {
        T::type_name()
    }

    fn qualified_type_name() -> String {
        T::qualified_type_name()
    }

    fn introspection_type_name(&self) -> Cow<'static, str> {
        self.0.introspection_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        match plain_object(&self.0, ctx) {
            Some(object) => Ok(object),
            None => self.0.resolve(ctx, field).await,
        }
    }
}

/// `object` with the fields `ctx` selects, when all of them are plain fields (or
/// `__typename`) selected without a fragment or directive; `None` otherwise.
fn plain_object<T: PlainFields>(object: &T, ctx: &ContextSelectionSet<'_>) -> Option<Value> {
    let selections = &ctx.item.node.items;
    let mut fields = IndexMap::with_capacity(selections.len());
    for selection in selections {
        let Selection::Field(field) = &selection.node else {
            return None;
        };
        let field = &field.node;
        if !field.directives.is_empty() {
            return None;
        }
        let value = match field.name.node.as_str() {
            "__typename" => Value::String(object.introspection_type_name().into_owned()),
            name => object.plain(name)?,
        };
        // A key selected twice names the same field twice (validation refuses two
        // different fields under one key): the value is the same.
        fields.insert(field.response_key().node.clone(), value);
    }
    Some(Value::Object(fields))
}

/// A plain scalar field's value, as async-graphql gives it.
pub fn scalar<S: ScalarType>(value: &S) -> Value {
    value.to_value()
}

/// A plain nullable scalar field's value.
pub fn nullable<S: ScalarType>(value: Option<&S>) -> Value {
    value.map_or(Value::Null, ScalarType::to_value)
}

/// A plain `JSON` field's value, as async-graphql's `Json` resolves it.
pub fn json<T: serde::Serialize>(value: &Json<T>) -> Value {
    to_value(&value.0).unwrap_or_default()
}

/// A plain nullable `JSON` field's value.
pub fn nullable_json<T: serde::Serialize>(value: Option<&Json<T>>) -> Value {
    value.map_or(Value::Null, json)
}

/// A plain enum field's value.
pub fn enumerated<E: EnumType>(value: E) -> Value {
    enum_value(value)
}

#[cfg(test)]
mod tests {
    use async_graphql::{Enum, ID, Json, Object, Schema, SimpleObject};
    use chrono::{DateTime, TimeZone, Utc};

    use super::*;

    #[derive(Enum, Copy, Clone, Eq, PartialEq)]
    enum Colour {
        DeepRed,
    }

    /// Every kind of plain field, and one that is not.
    #[derive(SimpleObject, Clone)]
    #[graphql(complex)]
    struct Thing {
        id: ID,
        name: String,
        note: Option<String>,
        missing: Option<String>,
        colour: Colour,
        made_at: DateTime<Utc>,
        data: Json<serde_json::Value>,
        no_data: Option<Json<serde_json::Value>>,
    }

    #[async_graphql::ComplexObject]
    impl Thing {
        /// Not plain: it has an argument.
        async fn shout(&self, times: usize) -> String {
            self.name.to_uppercase().repeat(times)
        }
    }

    impl PlainFields for Thing {
        fn plain(&self, name: &str) -> Option<Value> {
            Some(match name {
                "id" => scalar(&self.id),
                "name" => scalar(&self.name),
                "note" => nullable(self.note.as_ref()),
                "missing" => nullable(self.missing.as_ref()),
                "colour" => enumerated(self.colour),
                "madeAt" => scalar(&self.made_at),
                "data" => json(&self.data),
                "noData" => nullable_json(self.no_data.as_ref()),
                _ => return None,
            })
        }
    }

    fn thing() -> Thing {
        Thing {
            id: ID::from("7"),
            name: "kettle \"one\"".into(),
            note: Some("hot".into()),
            missing: None,
            colour: Colour::DeepRed,
            made_at: Utc
                .with_ymd_and_hms(2026, 11, 26, 9, 30, 0)
                .single()
                .expect("a time"),
            data: Json(serde_json::json!({ "a": [1, "two", null], "b": { "c": true } })),
            no_data: None,
        }
    }

    struct Query;

    #[Object]
    impl Query {
        async fn resolved(&self) -> Vec<Thing> {
            vec![thing()]
        }

        async fn plain(&self) -> Vec<Plain<Thing>> {
            vec![Plain(thing())]
        }
    }

    /// The fast path answers exactly what the type's own resolver does, for every kind
    /// of field, aliases and `__typename`; and falls back where it must.
    #[tokio::test]
    async fn plain_fields_answer_as_the_resolver_does() {
        let schema = Schema::new(
            Query,
            async_graphql::EmptyMutation,
            async_graphql::EmptySubscription,
        );
        let selections = [
            "id name note missing colour madeAt data noData",
            "a: name b: name __typename id",
            "name id name",
            "name shout(times: 2)",
            "name ... on Thing { id }",
            "name note @include(if: false)",
            "name note @skip(if: false)",
        ];
        for selection in selections {
            let answer = async |list: &str| {
                let response = schema
                    .execute(format!("{{ {list} {{ {selection} }} }}"))
                    .await;
                assert!(response.is_ok(), "{selection}: {:?}", response.errors);
                let serde_json::Value::Object(mut data) = response.data.into_json().expect("JSON")
                else {
                    panic!("{selection}: no data");
                };
                data.remove(list).expect("the list")
            };
            assert_eq!(
                answer("plain").await,
                answer("resolved").await,
                "{selection}"
            );
        }
        // And the schema does not tell them apart.
        assert!(
            schema.sdl().contains("plain: [Thing!]!"),
            "{}",
            schema.sdl()
        );
    }
}
