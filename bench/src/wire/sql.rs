//! Statements as the proxy captured them, and the same statements as plain SQL text with
//! their parameters inlined as literals, so pgbench can replay them: binary parameters
//! are decoded by their declared type (the types the gateway binds; anything else is an
//! error, never a guess), text ones quoted and cast.

use anyhow::{Context as _, bail};
use chrono::NaiveDate;

/// One statement the server received.
#[derive(Debug, Clone, Default)]
pub struct Statement {
    /// Its SQL text, with `$n` placeholders when it has parameters.
    pub sql: String,
    /// The values bound to `$1`, `$2`, ...
    pub params: Vec<Param>,
    /// Whether it came in the same simple `Query` as the statement before it (one round
    /// trip for both).
    pub same_query_as_previous: bool,
}

/// One bound parameter.
#[derive(Debug, Clone)]
pub struct Param {
    /// The type the statement declared for it (0: left to the server).
    pub type_oid: u32,
    /// Binary format (else text).
    pub binary: bool,
    /// `None` for NULL.
    pub value: Option<Vec<u8>>,
}

impl Statement {
    /// The statement on one line with every `$n` replaced by its parameter as a literal.
    pub fn inlined(&self) -> anyhow::Result<String> {
        let literals = self
            .params
            .iter()
            .map(Param::literal)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut out = String::with_capacity(self.sql.len());
        let mut chars = self.sql.chars().peekable();
        let mut quote = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, '\'' | '"') => quote = Some(c),
                (Some(open), _) if c == open => quote = None,
                (None, '$') if chars.peek().is_some_and(char::is_ascii_digit) => {
                    let mut digits = String::new();
                    while let Some(d) = chars.next_if(char::is_ascii_digit) {
                        digits.push(d);
                    }
                    let n: usize = digits.parse()?;
                    let literal = n
                        .checked_sub(1)
                        .and_then(|i| literals.get(i))
                        .with_context(|| format!("${n} has no bound parameter"))?;
                    out.push_str(literal);
                    continue;
                }
                (None, '\n' | '\r' | '\t') => {
                    out.push(' ');
                    continue;
                }
                _ => {}
            }
            out.push(c);
        }
        Ok(out)
    }
}

impl Param {
    /// The parameter as a SQL literal of its declared type, e.g. `'…'::uuid`.
    fn literal(&self) -> anyhow::Result<String> {
        let type_name = type_name(self.type_oid);
        let cast = |text: String| match type_name {
            Some(name) => format!("{}::{name}", quote(&text)),
            None => quote(&text),
        };
        let Some(value) = &self.value else {
            return Ok(type_name.map_or_else(|| "NULL".to_owned(), |name| format!("NULL::{name}")));
        };
        if !self.binary {
            return Ok(cast(String::from_utf8(value.clone())?));
        }
        if let Some(element) = array_element(self.type_oid) {
            return array_literal(element, value);
        }
        Ok(cast(binary_text(self.type_oid, value)?))
    }
}

/// Splits a simple `Query`'s text at the semicolons outside quotes; empty parts dropped.
pub fn split_simple_query(sql: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quote = None;
    for c in sql.chars() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(open), _) if c == open => quote = None,
            (None, ';') => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
        .into_iter()
        .map(|part| part.trim().to_owned())
        .filter(|part| !part.is_empty())
        .collect()
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The types the gateway binds, by OID (`pg_type`).
fn type_name(oid: u32) -> Option<&'static str> {
    Some(match oid {
        16 => "bool",
        17 => "bytea",
        20 => "int8",
        21 => "int2",
        23 => "int4",
        25 => "text",
        26 => "oid",
        114 => "json",
        700 => "float4",
        701 => "float8",
        1042 => "bpchar",
        1043 => "varchar",
        1082 => "date",
        1114 => "timestamp",
        1184 => "timestamptz",
        2950 => "uuid",
        3802 => "jsonb",
        _ => return array_element(oid).and_then(array_name),
    })
}

/// The element type of an array type.
fn array_element(oid: u32) -> Option<u32> {
    Some(match oid {
        1000 => 16,
        1001 => 17,
        1016 => 20,
        1005 => 21,
        1007 => 23,
        1009 => 25,
        199 => 114,
        1021 => 700,
        1022 => 701,
        1015 => 1043,
        1115 => 1114,
        1185 => 1184,
        2951 => 2950,
        3807 => 3802,
        _ => return None,
    })
}

fn array_name(element: u32) -> Option<&'static str> {
    Some(match element {
        16 => "bool[]",
        17 => "bytea[]",
        20 => "int8[]",
        21 => "int2[]",
        23 => "int4[]",
        25 => "text[]",
        114 => "json[]",
        700 => "float4[]",
        701 => "float8[]",
        1043 => "varchar[]",
        1114 => "timestamp[]",
        1184 => "timestamptz[]",
        2950 => "uuid[]",
        3802 => "jsonb[]",
        _ => return None,
    })
}

/// A one-dimensional array in binary format as `ARRAY[...]::type[]`.
fn array_literal(element: u32, value: &[u8]) -> anyhow::Result<String> {
    let name = array_name(element).context("array of an unknown type")?;
    let mut at = Reader(value);
    let mut int = || at.i32().context("truncated array");
    let dimensions = int()?;
    let _has_nulls = int()?;
    let _element = int()?;
    if dimensions == 0 {
        return Ok(format!("'{{}}'::{name}"));
    }
    if dimensions != 1 {
        bail!("a {dimensions}-dimensional array");
    }
    let count = usize::try_from(int()?)?;
    let _lower_bound = int()?;
    let element_name = type_name(element).context("array of an unknown type")?;
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        let length = at.i32().context("truncated array")?;
        items.push(match usize::try_from(length) {
            Ok(length) => {
                let bytes = at.bytes(length).context("truncated array")?;
                format!("{}::{element_name}", quote(&binary_text(element, bytes)?))
            }
            Err(_) => "NULL".to_owned(),
        });
    }
    Ok(format!("ARRAY[{}]::{name}", items.join(", ")))
}

/// A binary value of a scalar type as the server's text form.
fn binary_text(oid: u32, value: &[u8]) -> anyhow::Result<String> {
    fn fixed<const N: usize>(value: &[u8]) -> anyhow::Result<[u8; N]> {
        value
            .try_into()
            .map_err(|_| anyhow::anyhow!("{} bytes where {N} were expected", value.len()))
    }
    let epoch = NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .context("the Postgres epoch")?;
    let timestamp = |value: &[u8]| -> anyhow::Result<chrono::NaiveDateTime> {
        let micros = i64::from_be_bytes(fixed(value)?);
        epoch
            .checked_add_signed(chrono::TimeDelta::microseconds(micros))
            .context("timestamp out of range")
    };
    Ok(match oid {
        16 => (fixed::<1>(value)?[0] != 0).to_string(),
        17 => format!(
            "\\x{}",
            value.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
        20 => i64::from_be_bytes(fixed(value)?).to_string(),
        21 => i16::from_be_bytes(fixed(value)?).to_string(),
        23 => i32::from_be_bytes(fixed(value)?).to_string(),
        26 => u32::from_be_bytes(fixed(value)?).to_string(),
        700 => f32::from_be_bytes(fixed(value)?).to_string(),
        701 => f64::from_be_bytes(fixed(value)?).to_string(),
        25 | 114 | 1042 | 1043 => String::from_utf8(value.to_vec())?,
        // Version 1, then the text.
        3802 => String::from_utf8(value.get(1..).context("empty jsonb")?.to_vec())?,
        1082 => {
            let days = i32::from_be_bytes(fixed(value)?);
            epoch
                .date()
                .checked_add_signed(chrono::TimeDelta::days(days.into()))
                .context("date out of range")?
                .to_string()
        }
        1114 => timestamp(value)?
            .format("%Y-%m-%d %H:%M:%S%.6f")
            .to_string(),
        1184 => timestamp(value)?
            .format("%Y-%m-%d %H:%M:%S%.6f+00")
            .to_string(),
        2950 => uuid::Uuid::from_bytes(fixed(value)?).to_string(),
        _ => bail!("a binary parameter of type {oid}, which the replay does not decode"),
    })
}

/// Reads big-endian fields off a message body or a binary value.
pub struct Reader<'a>(pub &'a [u8]);

impl Reader<'_> {
    pub fn bytes(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    pub fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }

    pub fn i16(&mut self) -> Option<i16> {
        self.bytes(2)?.try_into().ok().map(i16::from_be_bytes)
    }

    pub fn i32(&mut self) -> Option<i32> {
        self.bytes(4)?.try_into().ok().map(i32::from_be_bytes)
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.bytes(4)?.try_into().ok().map(u32::from_be_bytes)
    }

    /// A NUL-terminated string.
    pub fn cstr(&mut self) -> Option<String> {
        let end = self.0.iter().position(|&b| b == 0)?;
        let text = String::from_utf8_lossy(&self.0[..end]).into_owned();
        self.0 = &self.0[end + 1..];
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(type_oid: u32, value: &[u8]) -> Param {
        Param {
            type_oid,
            binary: true,
            value: Some(value.to_vec()),
        }
    }

    #[test]
    fn parameters_are_inlined_outside_quotes_only() {
        let id = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let statement = Statement {
            sql: "select '$1', \"a$2\" from t\nwhere id = $1 and n = $2 and s = $3 and x = $10"
                .to_owned(),
            params: vec![
                binary(2950, id.as_bytes()),
                binary(20, &42_i64.to_be_bytes()),
                Param {
                    type_oid: 25,
                    binary: false,
                    value: Some(b"it's".to_vec()),
                },
                binary(16, &[1]),
                binary(16, &[1]),
                binary(16, &[1]),
                binary(16, &[1]),
                binary(16, &[1]),
                binary(16, &[1]),
                Param {
                    type_oid: 25,
                    binary: true,
                    value: None,
                },
            ],
            ..Statement::default()
        };
        assert_eq!(
            statement.inlined().expect("inlines"),
            format!(
                "select '$1', \"a$2\" from t where id = '{id}'::uuid and n = '42'::int8 \
                 and s = 'it''s'::text and x = NULL::text"
            )
        );
    }

    #[test]
    fn binary_arrays_and_timestamps_decode() {
        let mut array = Vec::new();
        for int in [1_i32, 0, 25, 2, 1] {
            array.extend_from_slice(&int.to_be_bytes());
        }
        for text in ["a", "b'c"] {
            array.extend_from_slice(&i32::try_from(text.len()).expect("short").to_be_bytes());
            array.extend_from_slice(text.as_bytes());
        }
        assert_eq!(
            binary(1009, &array).literal().expect("decodes"),
            "ARRAY['a'::text, 'b''c'::text]::text[]"
        );
        // One day and one microsecond after 2000-01-01.
        let micros: i64 = 86_400_000_000 + 1;
        assert_eq!(
            binary(1184, &micros.to_be_bytes())
                .literal()
                .expect("decodes"),
            "'2000-01-02 00:00:00.000001+00'::timestamptz"
        );
        assert!(
            binary(1700, &[0, 0]).literal().is_err(),
            "numeric is not guessed"
        );
    }

    #[test]
    fn simple_queries_split_at_semicolons_outside_quotes() {
        assert_eq!(
            split_simple_query("BEGIN; select ';' ; COMMIT;  "),
            ["BEGIN", "select ';'", "COMMIT"]
        );
    }
}
