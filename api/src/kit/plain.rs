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
use chrono::{DateTime, Datelike as _, Timelike as _, Utc};

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

/// A plain `DateTime` field's value, as async-graphql's `to_value` gives it
/// (`DateTime::to_rfc3339`: `2026-11-26T09:30:00.123456+00:00`, the fraction in 0, 3, 6
/// or 9 digits), written straight into one string: chrono's general formatter cost
/// about 850 instructions a timestamp, 4% of a read of 20 projects (BENCHMARKS.md,
/// "Timestamps written directly"). Years outside 0–9999 and leap seconds, which no
/// database row here holds, are left to chrono.
pub fn timestamp(value: &DateTime<Utc>) -> Value {
    Value::String(rfc3339(value))
}

/// A plain nullable `DateTime` field's value.
pub fn nullable_timestamp(value: Option<&DateTime<Utc>>) -> Value {
    value.map_or(Value::Null, timestamp)
}

fn rfc3339(value: &DateTime<Utc>) -> String {
    // `DateTime`'s own accessors convert to local time on every call; UTC's is this.
    let naive = value.naive_utc();
    let (date, time) = (naive.date(), naive.time());
    let nanos = time.nanosecond();
    let Ok(year @ 0..=9999) = u32::try_from(date.year()) else {
        return value.to_rfc3339();
    };
    if nanos >= 1_000_000_000 {
        return value.to_rfc3339();
    }
    let seconds = time.num_seconds_from_midnight();
    let mut out = Vec::with_capacity(35);
    // Each of these is below 100.
    let two = |out: &mut Vec<u8>, n: u32| {
        out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
    };
    two(&mut out, year / 100);
    two(&mut out, year % 100);
    out.push(b'-');
    two(&mut out, date.month());
    out.push(b'-');
    two(&mut out, date.day());
    out.push(b'T');
    two(&mut out, seconds / 3600);
    out.push(b':');
    two(&mut out, seconds / 60 % 60);
    out.push(b':');
    two(&mut out, seconds % 60);
    if nanos != 0 {
        let (mut fraction, width) = if nanos % 1_000_000 == 0 {
            (nanos / 1_000_000, 3)
        } else if nanos % 1_000 == 0 {
            (nanos / 1_000, 6)
        } else {
            (nanos, 9)
        };
        out.push(b'.');
        let start = out.len();
        out.resize(start + width, b'0');
        for digit in out[start..].iter_mut().rev() {
            *digit = b'0' + (fraction % 10) as u8;
            fraction /= 10;
        }
    }
    out.extend_from_slice(b"+00:00");
    // Only ASCII digits and punctuation were written.
    String::from_utf8(out).unwrap_or_else(|_| value.to_rfc3339())
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
    use chrono::{NaiveDate, TimeZone};

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
                "madeAt" => timestamp(&self.made_at),
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

    /// Timestamps are written exactly as chrono's `to_rfc3339` writes them, whatever
    /// their fraction, across the years a row may hold, and beyond them (chrono's).
    #[test]
    fn timestamps_are_written_as_chrono_writes_them() {
        let fractions = [
            0,
            1,
            999,
            1_000,
            123_000,
            999_999,
            1_000_000,
            120_000_000,
            999_999_999,
            500_000_001,
        ];
        // Every 10,000,007th second from the start of year 0 to the end of 9999.
        for seconds in (-62_167_219_200_i64..253_402_300_800).step_by(10_000_007) {
            for &nanos in &fractions {
                let at = DateTime::from_timestamp(seconds, nanos).expect("in range");
                assert_eq!(rfc3339(&at), at.to_rfc3339(), "{seconds} s {nanos} ns");
            }
        }
        let outside = [
            Utc.with_ymd_and_hms(-1, 1, 1, 0, 0, 0).single(),
            Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).single(),
            NaiveDate::from_ymd_opt(2016, 12, 31)
                .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
                .map(|t| t.and_utc()),
        ];
        for at in outside.into_iter().map(|at| at.expect("a time")) {
            assert_eq!(rfc3339(&at), at.to_rfc3339());
        }
        assert_eq!(
            timestamp(&thing().made_at),
            Value::String("2026-11-26T09:30:00+00:00".into())
        );
        assert_eq!(nullable_timestamp(None), Value::Null);
    }
}
