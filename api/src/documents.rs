//! Parsed GraphQL documents by query text, so an operation a dashboard repeats is parsed
//! once per replica instead of once per request.
//!
//! The pipeline gives each HTTP request its document from here before it looks at the
//! operation type, and `ws` each WebSocket operation before it counts it against the
//! socket's limits, and async-graphql executes a request's parsed document as it is
//! (`Request::set_parsed_query`), so a repeated query is parsed zero times: a lookup and
//! a copy of the syntax tree. Validation is not cached: it depends on the variables
//! (argument coercion, the complexity of `first: $n`) and on the operation chosen, and
//! it runs on every request as before. Only documents that parsed are kept; a query
//! longer than [`MAX_CACHED_QUERY_BYTES`] is parsed every time, so the cache's memory
//! stays bounded by its entries. Nothing here knows the schema.

use std::{
    collections::HashMap,
    num::NonZeroUsize,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use async_graphql::{
    Request,
    parser::{
        parse_query,
        types::{DocumentOperations, ExecutableDocument, Selection, SelectionSet},
    },
};
use lru::LruCache;

use crate::error::ApiError;

/// Longest query text whose document is cached, in bytes; dashboards' operations are a
/// few hundred.
pub const MAX_CACHED_QUERY_BYTES: usize = 8 * 1024;

/// Deepest nesting of `{`, `[` and `(` a query may have before it is parsed. The parser
/// and the validation recurse once per level, so a query nested thousands deep (a few
/// KiB of `{a{a{a...`) would overflow a worker thread's stack and abort the process;
/// real operations are nested a dozen levels (the depth limit) plus a few list levels.
const MAX_NESTING: usize = 64;

/// Refuses a query nested deeper than [`MAX_NESTING`], counting brackets outside
/// strings, block strings and comments, in one pass without parsing.
fn check_nesting(query: &str) -> Result<(), ApiError> {
    let bytes = query.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(ApiError::bad_input(format!(
                        "query: nested more than {MAX_NESTING} levels deep"
                    )));
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            b'#' => {
                while bytes.get(i).is_some_and(|&b| b != b'\n' && b != b'\r') {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i..].starts_with(b"\\\"\"\"") {
                        4
                    } else {
                        1
                    };
                }
                i += 2;
            }
            b'"' => {
                i += 1;
                while bytes.get(i).is_some_and(|&b| b != b'"' && b != b'\n') {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Most fields an operation may select once its fragment spreads are expanded. A
/// document of a few hundred bytes whose fragments each spread the next one twice
/// selects 2^n fields, and validation expands them all without yielding: at n = 24 one
/// request held a worker thread for over a minute, beyond the request timeout's reach.
const MAX_EXPANDED_FIELDS: usize = 10_000;
/// Most levels of fields and fragment spreads followed while counting.
const MAX_EXPANSION_DEPTH: usize = 256;

/// Refuses a document whose operations select more than [`MAX_EXPANDED_FIELDS`] fields
/// once fragments are expanded, counting each fragment once (memoized), so the count
/// itself stays linear in the document. Cycles and unknown fragments count nothing here:
/// validation refuses them.
fn check_expansion(document: &ExecutableDocument) -> Result<(), ApiError> {
    let operations: Vec<&SelectionSet> = match &document.operations {
        DocumentOperations::Single(op) => vec![&op.node.selection_set.node],
        DocumentOperations::Multiple(ops) => {
            ops.values().map(|op| &op.node.selection_set.node).collect()
        }
    };
    let mut sizes = HashMap::new();
    for set in operations {
        if expanded_size(set, document, &mut sizes, 0) > MAX_EXPANDED_FIELDS {
            return Err(ApiError::bad_input(format!(
                "query: selects more than {MAX_EXPANDED_FIELDS} fields once its fragments are \
                 expanded (or nests fragments more than {MAX_EXPANSION_DEPTH} deep)"
            )));
        }
    }
    Ok(())
}

/// The number of fields `set` selects with its fragments expanded; `sizes` holds each
/// fragment's, `None` while it is being counted (a cycle).
fn expanded_size<'a>(
    set: &'a SelectionSet,
    document: &'a ExecutableDocument,
    sizes: &mut HashMap<&'a str, Option<usize>>,
    depth: usize,
) -> usize {
    if depth > MAX_EXPANSION_DEPTH {
        return usize::MAX;
    }
    let mut total = 0usize;
    for item in &set.items {
        let size = match &item.node {
            Selection::Field(field) => 1usize.saturating_add(expanded_size(
                &field.node.selection_set.node,
                document,
                sizes,
                depth + 1,
            )),
            Selection::InlineFragment(inline) => {
                expanded_size(&inline.node.selection_set.node, document, sizes, depth + 1)
            }
            Selection::FragmentSpread(spread) => {
                let name = spread.node.fragment_name.node.as_str();
                match (sizes.get(name), document.fragments.get(name)) {
                    (Some(known), _) => known.unwrap_or(0),
                    (None, None) => 0,
                    (None, Some(fragment)) => {
                        sizes.insert(name, None);
                        let size = expanded_size(
                            &fragment.node.selection_set.node,
                            document,
                            sizes,
                            depth + 1,
                        );
                        sizes.insert(name, Some(size));
                        size
                    }
                }
            }
        };
        total = total.saturating_add(size);
    }
    total
}

/// A bounded, least-recently-used map from query text to its parsed document.
pub struct DocumentCache {
    /// `None` when caching is off.
    entries: Option<Mutex<LruCache<String, Arc<ExecutableDocument>>>>,
    /// How many documents have been parsed (cache misses and uncacheable queries).
    parses: AtomicU64,
}

impl DocumentCache {
    /// A cache of at most `capacity` documents; `0` parses every request.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: NonZeroUsize::new(capacity).map(|cap| Mutex::new(LruCache::new(cap))),
            parses: AtomicU64::new(0),
        }
    }

    /// Gives `request` the parsed document of its query: the cached one, or parsed now
    /// (and cached when the query is small enough). A query that does not parse is
    /// `BAD_USER_INPUT` with the parser's message.
    pub fn prepare(&self, request: &mut Request) -> Result<(), ApiError> {
        let cached = self
            .lock()
            .and_then(|mut entries| entries.get(request.query.as_str()).cloned());
        let document = match cached {
            Some(document) => ExecutableDocument::clone(&document),
            None => {
                self.parses.fetch_add(1, Ordering::Relaxed);
                check_nesting(&request.query)?;
                let document =
                    parse_query(&request.query).map_err(|e| ApiError::bad_input(e.to_string()))?;
                check_expansion(&document)?;
                if request.query.len() <= MAX_CACHED_QUERY_BYTES
                    && let Some(mut entries) = self.lock()
                {
                    entries.put(request.query.clone(), Arc::new(document.clone()));
                }
                document
            }
        };
        request.set_parsed_query(document);
        Ok(())
    }

    /// How many documents this cache has parsed since it was made (for tests and
    /// diagnostics): a request served from the cache adds nothing.
    pub fn parses(&self) -> u64 {
        self.parses.load(Ordering::Relaxed)
    }

    /// The map, locked. Nothing here panics while holding it, so a poisoned lock (a
    /// panic inside the map itself) is used as it is rather than failing every request.
    fn lock(&self) -> Option<MutexGuard<'_, LruCache<String, Arc<ExecutableDocument>>>> {
        self.entries
            .as_ref()
            .map(|entries| entries.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::types::DocumentOperations;

    use super::*;

    const QUERY: &str =
        "query A { me { id } } query B($first: Int) { myProjects(first: $first) { totalCount } }";

    fn operations(request: &mut Request) -> Vec<String> {
        let document = request.parsed_query().expect("parsed");
        match &document.operations {
            DocumentOperations::Single(_) => vec![String::new()],
            DocumentOperations::Multiple(ops) => {
                let mut names: Vec<_> = ops.keys().map(ToString::to_string).collect();
                names.sort();
                names
            }
        }
    }

    #[test]
    fn a_repeated_query_is_parsed_once() {
        let cache = DocumentCache::new(10);
        let mut first = Request::new(QUERY).operation_name("A");
        cache.prepare(&mut first).expect("parses");
        assert_eq!(cache.parses(), 1);
        let mut second = Request::new(QUERY).operation_name("B");
        cache.prepare(&mut second).expect("cached");
        assert_eq!(cache.parses(), 1, "the second request was parsed again");
        // The request keeps its own operation name; the document is the whole one.
        assert_eq!(second.operation_name.as_deref(), Some("B"));
        assert_eq!(operations(&mut second), ["A", "B"]);
    }

    #[test]
    fn bad_and_large_queries_are_not_kept() {
        let cache = DocumentCache::new(10);
        for _ in 0..2 {
            assert!(cache.prepare(&mut Request::new("{ me { id }")).is_err());
        }
        assert_eq!(cache.parses(), 2);
        let large = format!("{{ me {{ id }} }} # {}", "x".repeat(MAX_CACHED_QUERY_BYTES));
        for _ in 0..2 {
            cache
                .prepare(&mut Request::new(large.as_str()))
                .expect("parses");
        }
        assert_eq!(cache.parses(), 4);
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let cache = DocumentCache::new(10);
        let nested = |n: usize| format!("{}{}", "{a".repeat(n), "}".repeat(n));
        assert!(
            cache
                .prepare(&mut Request::new(nested(MAX_NESTING)))
                .is_ok()
        );
        let deep = cache.prepare(&mut Request::new(nested(100_000)));
        assert!(deep.is_err_and(|e| e.message().contains("nested")));
        // Brackets in strings, block strings and comments do not count.
        let quoted = format!(
            "{{ a(s: \"{0}\\\"{0}\", t: \"\"\"{0}\\\"\"\"{0}\"\"\") # {0}\n }}",
            "{[(".repeat(100)
        );
        assert!(cache.prepare(&mut Request::new(quoted)).is_ok());
    }

    #[test]
    fn an_exponential_fragment_fan_out_is_refused_before_validation() {
        let cache = DocumentCache::new(10);
        let fan_out = |n: usize| {
            let fragments: String = (0..n)
                .map(|i| format!("fragment F{i} on Query {{ ...F{j} ...F{j} }} ", j = i + 1))
                .collect();
            format!("{{ ...F0 }} {fragments} fragment F{n} on Query {{ __typename }}")
        };
        assert!(
            cache.prepare(&mut Request::new(fan_out(13))).is_ok(),
            "2^13 fields"
        );
        let bomb = cache.prepare(&mut Request::new(fan_out(40)));
        assert!(bomb.is_err_and(|e| e.message().contains("fragments")));
        let cycle = "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }";
        assert!(
            cache.prepare(&mut Request::new(cycle)).is_ok(),
            "left to validation"
        );
        let chain: String = (0..300)
            .map(|i| format!("fragment F{i} on Query {{ ...F{} }} ", i + 1))
            .collect();
        let chain = format!("{{ ...F0 }} {chain}");
        assert!(cache.prepare(&mut Request::new(chain)).is_err(), "too deep");
    }

    #[test]
    fn the_cache_is_bounded_and_can_be_off() {
        let cache = DocumentCache::new(2);
        for query in ["{ a }", "{ b }", "{ c }", "{ a }"] {
            cache.prepare(&mut Request::new(query)).expect("parses");
        }
        // `{ a }` was the least recently used when `{ c }` came in.
        assert_eq!(cache.parses(), 4);
        assert!(cache.lock().is_some_and(|entries| entries.len() == 2));
        let off = DocumentCache::new(0);
        for _ in 0..2 {
            off.prepare(&mut Request::new("{ a }")).expect("parses");
        }
        assert_eq!(off.parses(), 2);
    }
}
