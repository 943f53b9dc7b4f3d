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
    num::NonZeroUsize,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use async_graphql::{
    Request,
    parser::{parse_query, types::ExecutableDocument},
};
use lru::LruCache;

use crate::{error::ApiError, limits::DocumentLimits};

/// Longest query text whose document is cached, in bytes; dashboards' operations are a
/// few hundred.
pub const MAX_CACHED_QUERY_BYTES: usize = 8 * 1024;

/// A bounded, least-recently-used map from query text to its parsed document.
pub struct DocumentCache {
    /// `None` when caching is off.
    entries: Option<Mutex<LruCache<String, Arc<ExecutableDocument>>>>,
    /// How many documents have been parsed (cache misses and uncacheable queries).
    parses: AtomicU64,
    /// What a document must stay within, checked before it is parsed (its tokens) and
    /// once parsed (its shape); only documents within them are kept.
    limits: DocumentLimits,
}

impl DocumentCache {
    /// A cache of at most `capacity` documents within `limits`; `0` parses every
    /// request.
    pub fn new(capacity: usize, limits: DocumentLimits) -> Self {
        Self {
            entries: NonZeroUsize::new(capacity).map(|cap| Mutex::new(LruCache::new(cap))),
            parses: AtomicU64::new(0),
            limits,
        }
    }

    /// Gives `request` the parsed document of its query: the cached one, or parsed now
    /// (and cached when the query is small enough). A query that does not parse is
    /// `BAD_USER_INPUT` with the parser's message; one over a limit of
    /// [`DocumentLimits`] is `BAD_USER_INPUT` naming the limit, and one with too many
    /// tokens is refused before the parser allocates anything.
    pub fn prepare(&self, request: &mut Request) -> Result<(), ApiError> {
        let cached = self
            .lock()
            .and_then(|mut entries| entries.get(request.query.as_str()).cloned());
        let document = match cached {
            Some(document) => ExecutableDocument::clone(&document),
            None => {
                self.limits.check_tokens(&request.query)?;
                self.parses.fetch_add(1, Ordering::Relaxed);
                let document =
                    parse_query(&request.query).map_err(|e| ApiError::bad_input(e.to_string()))?;
                self.limits.check_document(&document)?;
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
        let cache = DocumentCache::new(10, DocumentLimits::DEFAULTS);
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
        let cache = DocumentCache::new(10, DocumentLimits::DEFAULTS);
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
    fn the_cache_is_bounded_and_can_be_off() {
        let cache = DocumentCache::new(2, DocumentLimits::DEFAULTS);
        for query in ["{ a }", "{ b }", "{ c }", "{ a }"] {
            cache.prepare(&mut Request::new(query)).expect("parses");
        }
        // `{ a }` was the least recently used when `{ c }` came in.
        assert_eq!(cache.parses(), 4);
        assert!(cache.lock().is_some_and(|entries| entries.len() == 2));
        let off = DocumentCache::new(0, DocumentLimits::DEFAULTS);
        for _ in 0..2 {
            off.prepare(&mut Request::new("{ a }")).expect("parses");
        }
        assert_eq!(off.parses(), 2);
    }
}
