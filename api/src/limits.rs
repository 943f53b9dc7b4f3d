//! Limits on hostile input, checked before any database work: the size of a query
//! (lexical tokens, counted before it is parsed), the shape of each operation
//! (aliases, directives, depth, root fields, fields once fragments are expanded), its
//! cost (async-graphql's complexity, whose connection multipliers are the
//! `page_complexity` attributes of `kit::pagination`), and how many operations one
//! token or one client address may run ([`RateLimits`]).
//!
//! The token count and the shape checks run where a document is parsed
//! ([`crate::documents::DocumentCache::prepare`]), so a cached document is not checked
//! again, and HTTP and WebSocket alike pass through them; the rate limits are counted
//! by the pipeline before anything else. The cost is known only once async-graphql
//! validates the operation, inside `Schema::execute` (`SchemaBuilder::limit_complexity`,
//! its refusal worded by [`too_costly`]): the operation's transaction opens only when a
//! resolver first needs it, after validation (`db::PendingTx`), so a refused operation
//! never reaches the database. This module never reads the database itself.

use std::{collections::HashMap, net::IpAddr, num::NonZeroU32, sync::Arc, time::Duration};

use async_graphql::{
    Positioned, ServerError,
    parser::types::{Directive, ExecutableDocument, Selection, SelectionSet, VariableDefinition},
};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock as _};

use crate::{auth::Session, client, config::Config, error::ApiError};

/// The limits on one document, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct DocumentLimits {
    /// `FLASHFUSION_MAX_TOKENS`.
    pub tokens: usize,
    /// `FLASHFUSION_MAX_ALIASES`.
    pub aliases: usize,
    /// `FLASHFUSION_MAX_DIRECTIVES`.
    pub directives: usize,
    /// `FLASHFUSION_MAX_DEPTH`.
    pub depth: usize,
    /// `FLASHFUSION_MAX_ROOT_FIELDS`.
    pub root_fields: usize,
    /// `FLASHFUSION_MAX_COST`: also bounds the fields of an operation once its
    /// fragments are expanded, each of which costs at least 1.
    pub cost: usize,
}

impl DocumentLimits {
    /// The limits `config` sets.
    pub fn of(config: &Config) -> Self {
        Self {
            tokens: config.max_tokens,
            aliases: config.max_aliases,
            directives: config.max_directives,
            depth: config.max_depth,
            root_fields: config.max_root_fields,
            cost: config.max_cost,
        }
    }

    /// Refuses `query` when it holds more than [`DocumentLimits::tokens`] lexical
    /// tokens, without parsing it.
    pub fn check_tokens(&self, query: &str) -> Result<(), ApiError> {
        if count_tokens(query, self.tokens) > self.tokens {
            return Err(ApiError::bad_input(format!(
                "query too large: more than {} tokens (FLASHFUSION_MAX_TOKENS)",
                self.tokens
            )));
        }
        Ok(())
    }

    /// Refuses `document` when one of its operations is over a limit of its shape.
    pub fn check_document(&self, document: &ExecutableDocument) -> Result<(), ApiError> {
        let mut walk = Walk {
            document,
            fragments: HashMap::new(),
        };
        for (_, operation) in document.operations.iter() {
            let op = &operation.node;
            let mut counts = walk.selection_set(&op.selection_set.node);
            counts.directives = counts
                .directives
                .saturating_add(op.directives.len())
                .saturating_add(variable_directives(&op.variable_definitions));
            let checks = [
                (
                    counts.root_fields,
                    self.root_fields,
                    "root fields",
                    "FLASHFUSION_MAX_ROOT_FIELDS",
                ),
                (
                    counts.aliases,
                    self.aliases,
                    "aliases",
                    "FLASHFUSION_MAX_ALIASES",
                ),
                (
                    counts.directives,
                    self.directives,
                    "directives",
                    "FLASHFUSION_MAX_DIRECTIVES",
                ),
                (counts.depth, self.depth, "depth", "FLASHFUSION_MAX_DEPTH"),
                (
                    counts.fields,
                    self.cost,
                    "fields once fragments are expanded",
                    "FLASHFUSION_MAX_COST",
                ),
            ];
            for (count, limit, what, setting) in checks {
                if count > limit {
                    return Err(over(what, limit, setting));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
impl DocumentLimits {
    /// The defaults of the configuration, for unit tests.
    pub(crate) const DEFAULTS: Self = Self {
        tokens: 1_000,
        aliases: 15,
        directives: 50,
        depth: 12,
        root_fields: 10,
        cost: 5_000,
    };
}

/// The refusal of a document over `limit`.
fn over(what: &str, limit: usize, setting: &str) -> ApiError {
    ApiError::bad_input(format!(
        "query too large: more than {limit} {what} per operation ({setting})"
    ))
}

/// How async-graphql words its refusal of an operation over
/// `SchemaBuilder::limit_complexity` (`validation::check_rules`).
const TOO_COMPLEX: &str = "Query is too complex.";

/// `error` as the client reads it: async-graphql's cost refusal named after its
/// setting, `FLASHFUSION_MAX_COST` being `max_cost`; any other error unchanged.
pub fn too_costly(error: &mut ServerError, max_cost: usize) {
    if error.message == TOO_COMPLEX && error.path.is_empty() {
        *error = ApiError::bad_input(format!(
            "query too costly: over {max_cost} (FLASHFUSION_MAX_COST; a connection costs its children once per item `first` or `last` asks for)"
        ))
        .into();
    }
}

fn variable_directives(definitions: &[Positioned<VariableDefinition>]) -> usize {
    definitions
        .iter()
        .map(|d| d.node.directives.len())
        .fold(0, usize::saturating_add)
}

/// Counts GraphQL lexical tokens in `query` (the spec's lexical grammar: punctuators,
/// names, numbers and strings; whitespace, line terminators, commas, comments and the
/// byte order mark are ignored), stopping once the count is past `max`. Anything the
/// grammar does not know counts as one token per byte; the parser refuses it anyway.
pub fn count_tokens(query: &str, max: usize) -> usize {
    let bytes = query.as_bytes();
    let mut at = 0;
    let mut count = 0;
    while at < bytes.len() && count <= max {
        let rest = &bytes[at..];
        at += match rest[0] {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => 1,
            0xEF if rest.starts_with("\u{FEFF}".as_bytes()) => 3,
            b'#' => rest
                .iter()
                .position(|&b| b == b'\n' || b == b'\r')
                .unwrap_or(rest.len()),
            first => {
                count += 1;
                match first {
                    b'.' if rest.starts_with(b"...") => 3,
                    b'"' if rest.starts_with(b"\"\"\"") => block_string_len(rest),
                    b'"' => string_len(rest),
                    b'-' | b'0'..=b'9' => number_len(rest),
                    b'_' | b'a'..=b'z' | b'A'..=b'Z' => rest
                        .iter()
                        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                        .count(),
                    _ => 1,
                }
            }
        };
    }
    count
}

/// Length of the number at the start of `rest`: a `-` or digit, then digits, letters
/// and `.`, with a sign only straight after an exponent's `e` (`1.5e-3`). Any other
/// sign starts a token of its own: the parser reads `[1-1-1]` as three numbers, so a
/// list of them must count as many tokens as it has. So does a digit after a leading
/// `0` (an integer part is `0` or starts with 1–9): `[00]` is two numbers.
fn number_len(rest: &[u8]) -> usize {
    let zero = usize::from(rest[0] == b'-');
    if rest.get(zero) == Some(&b'0') && rest.get(zero + 1).is_some_and(u8::is_ascii_digit) {
        return zero + 1;
    }
    let mut at = 1;
    while let Some(&byte) = rest.get(at) {
        let exponent_sign = matches!(byte, b'+' | b'-') && matches!(rest[at - 1], b'e' | b'E');
        if !(byte.is_ascii_alphanumeric() || byte == b'.' || exponent_sign) {
            break;
        }
        at += 1;
    }
    at
}

/// Length of the string value at the start of `rest` (`"` ... `"`, with escapes);
/// an unterminated one runs to the end of its line.
fn string_len(rest: &[u8]) -> usize {
    let mut at = 1;
    while at < rest.len() {
        match rest[at] {
            b'\\' => at += 2,
            b'"' => return at + 1,
            b'\n' | b'\r' => return at,
            _ => at += 1,
        }
    }
    rest.len()
}

/// Length of the block string at the start of `rest` (`"""` ... `"""`, where `\"""`
/// is escaped).
fn block_string_len(rest: &[u8]) -> usize {
    let mut at = 3;
    while at < rest.len() {
        if rest[at..].starts_with(b"\\\"\"\"") {
            at += 4;
        } else if rest[at..].starts_with(b"\"\"\"") {
            return at + 3;
        } else {
            at += 1;
        }
    }
    // Unterminated: the parser reads `""` (an empty string) and goes on from the third
    // quote, so counting must too.
    2
}

/// What an operation's shape adds up to.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    aliases: usize,
    directives: usize,
    /// Fields selected at this level (through fragments too): an operation's root fields.
    root_fields: usize,
    /// Field nesting below this level.
    depth: usize,
    /// Fields at any level, fragments expanded where they are spread.
    fields: usize,
}

impl Counts {
    /// `other` beside this at the same level.
    fn beside(self, other: Counts) -> Counts {
        Counts {
            aliases: self.aliases.saturating_add(other.aliases),
            directives: self.directives.saturating_add(other.directives),
            root_fields: self.root_fields.saturating_add(other.root_fields),
            depth: self.depth.max(other.depth),
            fields: self.fields.saturating_add(other.fields),
        }
    }
}

/// Walks a document's selections; each fragment is counted once and its counts reused
/// wherever it is spread, so nested spreads cannot make the walk itself expensive.
struct Walk<'a> {
    document: &'a ExecutableDocument,
    /// Counts by fragment name; `None` while the fragment is being counted (a cycle,
    /// which validation refuses, counts as empty here).
    fragments: HashMap<&'a str, Option<Counts>>,
}

impl<'a> Walk<'a> {
    fn selection_set(&mut self, set: &'a SelectionSet) -> Counts {
        let mut counts = Counts::default();
        for selection in &set.items {
            let here = match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let below = self.selection_set(&field.selection_set.node);
                    // Introspection's own nesting (`ofType { ofType { .. } }`) is not
                    // the client's choice; its cost is still counted.
                    let introspection = matches!(field.name.node.as_str(), "__schema" | "__type");
                    Counts {
                        aliases: below
                            .aliases
                            .saturating_add(usize::from(field.alias.is_some())),
                        directives: below.directives.saturating_add(field.directives.len()),
                        root_fields: 1,
                        depth: if introspection {
                            0
                        } else {
                            below.depth.saturating_add(1)
                        },
                        fields: below.fields.saturating_add(1),
                    }
                }
                Selection::InlineFragment(fragment) => {
                    let inner = self.selection_set(&fragment.node.selection_set.node);
                    with_directives(inner, &fragment.node.directives)
                }
                Selection::FragmentSpread(spread) => {
                    let inner = self.fragment(spread.node.fragment_name.node.as_str());
                    with_directives(inner, &spread.node.directives)
                }
            };
            counts = counts.beside(here);
        }
        counts
    }

    fn fragment(&mut self, name: &'a str) -> Counts {
        match self.fragments.get(name) {
            Some(counted) => return counted.unwrap_or_default(),
            None => {
                self.fragments.insert(name, None);
            }
        }
        let counts = match self.document.fragments.get(name) {
            Some(fragment) => with_directives(
                self.selection_set(&fragment.node.selection_set.node),
                &fragment.node.directives,
            ),
            None => Counts::default(),
        };
        self.fragments.insert(name, Some(counts));
        counts
    }
}

fn with_directives(counts: Counts, directives: &[Positioned<Directive>]) -> Counts {
    Counts {
        directives: counts.directives.saturating_add(directives.len()),
        ..counts
    }
}

/// Operations per token, and per client address for anonymous callers: a burst, then
/// one more every refill period. Kept per replica, in memory.
pub struct RateLimits {
    /// `None` when `FLASHFUSION_RATE_LIMIT_BURST` is 0.
    limiters: Option<Limiters>,
}

struct Limiters {
    /// By the revocation id of the token's authority block (shared with its session:
    /// keying costs no allocation per operation). Every token derived from one signed
    /// token shares its bucket: a holder can append blocks offline without end, and each
    /// would otherwise bring a fresh bucket.
    tokens: DefaultKeyedRateLimiter<Arc<str>>,
    /// By client address.
    addresses: DefaultKeyedRateLimiter<IpAddr>,
}

impl RateLimits {
    /// The limits `config` sets; an error names a setting that cannot be used.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let Some(burst) = NonZeroU32::new(config.rate_limit_burst) else {
            return Ok(Self { limiters: None });
        };
        let quota = Quota::with_period(config.rate_limit_refill)
            .ok_or_else(|| anyhow::anyhow!("FLASHFUSION_RATE_LIMIT_REFILL must be positive"))?
            .allow_burst(burst);
        Ok(Self {
            limiters: Some(Limiters {
                tokens: RateLimiter::keyed(quota),
                addresses: RateLimiter::keyed(quota),
            }),
        })
    }

    /// Counts one operation of `session` (by its token) or, without one, of `client`;
    /// over the limit, how long until the next one is allowed.
    pub fn check(&self, session: Option<&Session>, client: IpAddr) -> Result<(), Duration> {
        let Some(limiters) = &self.limiters else {
            return Ok(());
        };
        match session.map(Session::authority_id) {
            Some(token) => limiters
                .tokens
                .check_key(&token)
                .map_err(|not_until| not_until.wait_time_from(limiters.tokens.clock().now())),
            None => self.check_address(client),
        }
    }

    /// Counts one operation of `client`, whoever the caller; over the limit, how long
    /// until the next one is allowed.
    pub fn check_address(&self, client: IpAddr) -> Result<(), Duration> {
        let Some(limiters) = &self.limiters else {
            return Ok(());
        };
        limiters
            .addresses
            .check_key(&client::limit_key(client))
            .map_err(|not_until| not_until.wait_time_from(limiters.addresses.clock().now()))
    }

    /// Forgets keys whose limit has fully refilled (housekeeping).
    pub fn retain_recent(&self) {
        if let Some(limiters) = &self.limiters {
            limiters.tokens.retain_recent();
            limiters.addresses.retain_recent();
        }
    }
}

/// The `RATE_LIMITED` refusal, and the whole seconds to wait (at least 1), which it
/// carries in `extensions.retryAfter`.
pub fn rate_limited(wait: Duration) -> (ApiError, u64) {
    let seconds = wait
        .as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0))
        .max(1);
    let message = format!(
        "too many operations (FLASHFUSION_RATE_LIMIT_BURST, FLASHFUSION_RATE_LIMIT_REFILL): retry in {seconds}s"
    );
    (ApiError::RateLimitedFor { message, seconds }, seconds)
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    #[test]
    fn tokens_follow_the_lexical_grammar() {
        assert_eq!(count_tokens("{ me { id } }", 100), 6);
        // Commas, comments and the byte order mark are ignored; `...` is one token,
        // so is a string (escapes included), a block string, a number, a name.
        let query = "\u{FEFF}query Q($n: Int = -1.5e3) { a(s: \"x\\\"y\", b: \"\"\"p \\\"\"\" q\"\"\") , ...F } # a comment { { {\n";
        assert_eq!(count_tokens(query, 100), 23);
        // Counting stops just past the limit.
        assert_eq!(count_tokens(&"a ".repeat(10_000), 5), 6);
        // Numbers need no separator: `1-1-1` is three of them, as the parser reads it.
        assert_eq!(count_tokens("[1-1-1]", 100), 5);
        assert_eq!(count_tokens("[1e-5 2E+3 -0.5-4]", 100), 6);
        assert_eq!(count_tokens("[00 -012 0.5 10]", 100), 8);
        // An unterminated block string is an empty string and what follows.
        assert_eq!(count_tokens(r#"[""" x" 1 1]"#, 100), 6);
        assert_eq!(
            parsed_list(r#"[""" x" 1 1]"#),
            r#"["", " x", 1, 1]"#,
            "the parser's reading"
        );
        assert_eq!(
            parsed_list("[1-1-1]"),
            "[1, -1, -1]",
            "the parser's reading"
        );
        assert_eq!(
            parsed_list("[00 -012]"),
            "[0, 0, -0.0, 12]",
            "the parser's reading"
        );
    }

    /// `list` as async-graphql's parser reads it, as an argument's value.
    fn parsed_list(list: &str) -> String {
        let document = parse_query(format!("{{ a(l: {list}) }}")).expect("parses");
        let async_graphql::parser::types::DocumentOperations::Single(operation) =
            &document.operations
        else {
            panic!("one operation");
        };
        let Selection::Field(field) = &operation.node.selection_set.node.items[0].node else {
            panic!("a field");
        };
        field.node.arguments[0].1.node.to_string()
    }

    #[test]
    fn spread_fragments_count_where_they_are_spread_and_once_to_walk() {
        let document = parse_query(
            "{ ...A ...A } fragment A on Query { x: me { id } y: me { id } ...B } fragment B on Query { z: me @include(if: true) { id } }",
        )
        .expect("parses");
        let mut walk = Walk {
            document: &document,
            fragments: HashMap::new(),
        };
        let (_, op) = document.operations.iter().next().expect("one operation");
        let counts = walk.selection_set(&op.node.selection_set.node);
        assert_eq!(counts.aliases, 6);
        assert_eq!(counts.directives, 2);
        assert_eq!(counts.root_fields, 6);
        assert_eq!(counts.depth, 2);
        assert_eq!(counts.fields, 12);
        // A cycle (refused by validation) does not loop here.
        let cycle = parse_query("{ ...A } fragment A on Query { ...A me { id } }").expect("parses");
        assert!(DocumentLimits::DEFAULTS.check_document(&cycle).is_ok());
    }

    #[test]
    fn a_fragment_bomb_is_refused_without_expanding_it() {
        let mut query = String::from("{ me { ...F0 } }");
        for i in 0..60 {
            query.push_str(&format!(
                " fragment F{i} on User {{ ...F{n} ...F{n} }}",
                n = i + 1
            ));
        }
        query.push_str(" fragment F60 on User { id }");
        let document = parse_query(&query).expect("parses");
        let refused = DocumentLimits::DEFAULTS
            .check_document(&document)
            .expect_err("refused");
        assert!(
            refused.message().contains("FLASHFUSION_MAX_COST"),
            "{}",
            refused.message()
        );
    }

    #[test]
    fn introspection_nesting_is_not_depth() {
        // GraphiQL's introspection query nests `ofType` deeper than the limit.
        let deep = format!(
            "{{ __schema {{ types {{ fields {{ type {{ {}name{} }} }} }} }} }}",
            "ofType { ".repeat(12),
            " }".repeat(12)
        );
        let document = parse_query(&deep).expect("parses");
        assert!(DocumentLimits::DEFAULTS.check_document(&document).is_ok());
        let nested = format!("{{ {}id{} }}", "me { ".repeat(13), " }".repeat(13));
        let document = parse_query(&nested).expect("parses");
        let refused = DocumentLimits::DEFAULTS
            .check_document(&document)
            .expect_err("refused");
        assert!(refused.message().contains("FLASHFUSION_MAX_DEPTH"));
    }
}
