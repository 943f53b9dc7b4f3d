//! Parsed GraphQL documents by query text, so an operation a dashboard repeats is parsed
//! once per replica instead of once per request; and the persisted documents a request
//! may name by hash instead of sending its text.
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
//!
//! **Persisted documents.** A request may carry Apollo's
//! `extensions.persistedQuery = {"version": 1, "sha256Hash": "<hex>"}`:
//! - with a trusted-documents allow-list (`FLASHFUSION_TRUSTED_DOCUMENTS`, loaded and
//!   checked at start-up), the hash names one of its documents; an unknown hash is
//!   `FORBIDDEN`, and nothing is ever added to the list;
//! - without one, Apollo's automatic persisted queries: a hash alone is the text a client
//!   registered earlier on this replica, or `PERSISTED_QUERY_NOT_FOUND` (so the client
//!   sends hash and text); hash and text are checked (SHA-256 of the text) and
//!   remembered, least recently used out, at most as many as the document cache holds
//!   and none longer than [`MAX_CACHED_QUERY_BYTES`] (such a client always sends both).
//!
//! What is remembered of a document is a property of its text alone (its syntax tree,
//! whether it selects `__schema`/`__type`, whether it is on the allow-list), never of the
//! caller who sent it first: who may run it is decided per request, by the pipeline, from
//! [`Prepared`]. So the cache cannot carry an admin's permission over to anyone else.

use std::{
    collections::HashMap,
    num::NonZeroUsize,
    path::Path,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use anyhow::Context as _;
use async_graphql::{
    Request, Value,
    parser::{
        parse_query,
        types::{ExecutableDocument, Selection, SelectionSet},
    },
};
use lru::LruCache;
use sha2::{Digest as _, Sha256};

use crate::{config::Config, error::ApiError, limits::DocumentLimits};

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

/// Whether any operation of `document` declares a variable.
fn declares_variables(document: &ExecutableDocument) -> bool {
    document
        .operations
        .iter()
        .any(|(_, operation)| !operation.node.variable_definitions.is_empty())
}

/// The refusal of a hash that is not on the allow-list.
const NOT_TRUSTED: ApiError =
    ApiError::Forbidden("not a trusted document: this gateway runs only its allow-list");

/// What the pipeline decides on, besides the syntax tree, for one request's document.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// It selects `__schema` or `__type` somewhere (`__typename` is not introspection).
    pub introspection: bool,
    /// Anyone may run it: there is no allow-list, or its text is on it.
    pub trusted: bool,
    /// Set once the document has passed every one of async-graphql's validation rules,
    /// shared by every request for the cached text; `None` when that could not be
    /// relied on the next time (it declares variables, whose values one rule checks, or
    /// it introspects, or it is not cached). See `schema::Validation::Proven`.
    proven: Option<Arc<AtomicBool>>,
}

impl Prepared {
    /// Whether the document has passed every validation rule before, so that only
    /// what may change from one request to the next need be validated again.
    pub fn is_proven(&self) -> bool {
        self.proven
            .as_ref()
            .is_some_and(|proven| proven.load(Ordering::Relaxed))
    }

    /// Records that the document passed every validation rule (it ran).
    pub fn prove(&self) {
        if let Some(proven) = &self.proven {
            proven.store(true, Ordering::Relaxed);
        }
    }
}

/// A parsed document and what was found out about its text.
struct Entry {
    document: ExecutableDocument,
    prepared: Prepared,
}

/// A bounded, least-recently-used map from query text to its parsed document, and the
/// persisted documents requests may name by hash.
pub struct DocumentCache {
    /// `None` when caching is off.
    entries: Option<Mutex<LruCache<String, Arc<Entry>>>>,
    /// Automatic persisted queries: text by SHA-256 (lowercase hex), as clients
    /// registered them. `None` when caching is off or an allow-list is configured.
    persisted: Option<Mutex<LruCache<String, Arc<str>>>>,
    /// The trusted documents by SHA-256 (lowercase hex); `None` when there is no list.
    trusted: Option<HashMap<String, Arc<str>>>,
    /// How many documents have been parsed (cache misses and uncacheable queries).
    parses: AtomicU64,
    /// What a document must stay within, checked before it is parsed (its tokens) and
    /// once parsed (its shape); only documents within them are kept.
    limits: DocumentLimits,
}

impl DocumentCache {
    /// A cache of at most `capacity` documents (and as many automatic persisted queries)
    /// within `limits`; `0` parses every request and remembers no persisted query.
    pub fn new(capacity: usize, limits: DocumentLimits) -> Self {
        Self {
            entries: lru(capacity),
            persisted: lru(capacity),
            trusted: None,
            parses: AtomicU64::new(0),
            limits,
        }
    }

    /// The cache `config` describes: `FLASHFUSION_DOCUMENT_CACHE` entries and, with
    /// `FLASHFUSION_TRUSTED_DOCUMENTS`, its allow-list, which must load completely (every
    /// key the SHA-256 of its text, every text a parsable document) or the gateway does
    /// not start.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let cache = Self::new(config.document_cache, DocumentLimits::of(config));
        match &config.trusted_documents {
            Some(path) => Ok(cache.with_trusted(load_trusted(path)?)),
            None => Ok(cache),
        }
    }

    /// This cache with an allow-list of `documents` (by SHA-256, lowercase hex), which
    /// replaces automatic persisted queries.
    fn with_trusted(self, documents: HashMap<String, Arc<str>>) -> Self {
        Self {
            persisted: None,
            trusted: Some(documents),
            ..self
        }
    }

    /// Gives `request` its query text when it names a persisted document, and the parsed
    /// document of that text: the cached one, or parsed now (and cached when the query is
    /// small enough). A query that does not parse is `BAD_USER_INPUT` with the parser's
    /// message, one over a limit of [`DocumentLimits`] is `BAD_USER_INPUT` naming the
    /// limit, and one with too many tokens is refused before the parser allocates
    /// anything; for persisted documents see the module's header.
    pub fn prepare(&self, request: &mut Request) -> Result<Prepared, ApiError> {
        self.resolve_persisted(request)?;
        let cached = self
            .lock()
            .and_then(|mut entries| entries.get(request.query.as_str()).cloned());
        let (document, prepared) = match cached {
            Some(entry) => (entry.document.clone(), entry.prepared.clone()),
            None => {
                check_nesting(&request.query)?;
                self.limits.check_tokens(&request.query)?;
                self.parses.fetch_add(1, Ordering::Relaxed);
                let document =
                    parse_query(&request.query).map_err(|e| ApiError::bad_input(e.to_string()))?;
                self.limits.check_document(&document)?;
                let introspection = introspects(&document);
                let cached = request.query.len() <= MAX_CACHED_QUERY_BYTES;
                let prepared = Prepared {
                    introspection,
                    trusted: self.is_trusted(&request.query),
                    proven: (cached && !introspection && !declares_variables(&document))
                        .then(Arc::default),
                };
                if cached && let Some(mut entries) = self.lock() {
                    let entry = Entry {
                        document: document.clone(),
                        prepared: prepared.clone(),
                    };
                    entries.put(request.query.clone(), Arc::new(entry));
                }
                (document, prepared)
            }
        };
        request.set_parsed_query(document);
        Ok(prepared)
    }

    /// How many documents this cache has parsed since it was made (for tests and
    /// diagnostics): a request served from the cache adds nothing.
    pub fn parses(&self) -> u64 {
        self.parses.load(Ordering::Relaxed)
    }

    /// Replaces a persisted document's hash by its text (see the module's header).
    fn resolve_persisted(&self, request: &mut Request) -> Result<(), ApiError> {
        let Some(hash) = persisted_hash(request)? else {
            return Ok(());
        };
        if let Some(trusted) = &self.trusted {
            let text = trusted.get(&hash).ok_or(NOT_TRUSTED)?;
            if !request.query.is_empty() && request.query != **text {
                return Err(hash_mismatch());
            }
            request.query = text.to_string();
            return Ok(());
        }
        if request.query.is_empty() {
            let text = lock(&self.persisted)
                .and_then(|mut persisted| persisted.get(&hash).cloned())
                .ok_or(ApiError::PersistedQueryNotFound)?;
            request.query = text.to_string();
            return Ok(());
        }
        if document_hash(&request.query) != hash {
            return Err(hash_mismatch());
        }
        if request.query.len() <= MAX_CACHED_QUERY_BYTES
            && let Some(mut persisted) = lock(&self.persisted)
        {
            persisted.put(hash, Arc::from(request.query.as_str()));
        }
        Ok(())
    }

    /// Whether `query` may run for anyone: no allow-list, or its text is on it (sent as
    /// text or by hash, the same document).
    fn is_trusted(&self, query: &str) -> bool {
        self.trusted
            .as_ref()
            .is_none_or(|trusted| trusted.contains_key(&document_hash(query)))
    }

    /// The map, locked.
    fn lock(&self) -> Option<MutexGuard<'_, LruCache<String, Arc<Entry>>>> {
        lock(&self.entries)
    }
}

/// A least-recently-used map of at most `capacity` entries; `None` for `0`.
fn lru<V>(capacity: usize) -> Option<Mutex<LruCache<String, V>>> {
    NonZeroUsize::new(capacity).map(|cap| Mutex::new(LruCache::new(cap)))
}

/// A map, locked. Nothing here panics while holding one, so a poisoned lock (a panic
/// inside the map itself) is used as it is rather than failing every request.
fn lock<T>(map: &Option<Mutex<T>>) -> Option<MutexGuard<'_, T>> {
    map.as_ref()
        .map(|map| map.lock().unwrap_or_else(PoisonError::into_inner))
}

/// The hash a client sends for a document: the lowercase hex SHA-256 of its text, as
/// Apollo's persisted queries and the allow-list's keys write it.
pub fn document_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn hash_mismatch() -> ApiError {
    ApiError::bad_input("extensions.persistedQuery: sha256Hash is not the SHA-256 of the query")
}

/// The hash of `extensions.persistedQuery` (Apollo's shape, version 1), lower case, if
/// the request has one; a malformed one is `BAD_USER_INPUT`.
fn persisted_hash(request: &Request) -> Result<Option<String>, ApiError> {
    let Some(persisted) = request.extensions.get("persistedQuery") else {
        return Ok(None);
    };
    let Value::Object(persisted) = persisted else {
        return Err(ApiError::bad_input(
            "extensions.persistedQuery: must be an object",
        ));
    };
    if let Some(version) = persisted.get("version")
        && !matches!(version, Value::Number(n) if n.as_u64() == Some(1))
    {
        return Err(ApiError::bad_input(
            "extensions.persistedQuery: unsupported version (1 is)",
        ));
    }
    match persisted.get("sha256Hash") {
        Some(Value::String(hash))
            if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Ok(Some(hash.to_ascii_lowercase()))
        }
        _ => Err(ApiError::bad_input(
            "extensions.persistedQuery: sha256Hash must be 64 hex digits",
        )),
    }
}

/// Whether `document` selects `__schema` or `__type` anywhere: in an operation, a
/// fragment, or a field's selection, whatever the alias (walked with a stack, so a deep
/// document cannot exhaust the thread's).
fn introspects(document: &ExecutableDocument) -> bool {
    let mut sets: Vec<&SelectionSet> = document
        .operations
        .iter()
        .map(|(_, op)| &op.node.selection_set.node)
        .chain(
            document
                .fragments
                .values()
                .map(|fragment| &fragment.node.selection_set.node),
        )
        .collect();
    while let Some(set) = sets.pop() {
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => {
                    if matches!(field.node.name.node.as_str(), "__schema" | "__type") {
                        return true;
                    }
                    sets.push(&field.node.selection_set.node);
                }
                Selection::InlineFragment(fragment) => {
                    sets.push(&fragment.node.selection_set.node);
                }
                Selection::FragmentSpread(_) => {}
            }
        }
    }
    false
}

/// Reads the allow-list at `path`: a JSON object of SHA-256 (hex) to query text. Each
/// key must be its text's hash and each text must parse, so a typo stops the start-up
/// instead of refusing clients later.
fn load_trusted(path: &Path) -> anyhow::Result<HashMap<String, Arc<str>>> {
    let what = || format!("FLASHFUSION_TRUSTED_DOCUMENTS ({})", path.display());
    let text = std::fs::read_to_string(path).with_context(what)?;
    let documents: HashMap<String, String> = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a JSON object of hash to query", what()))?;
    documents
        .into_iter()
        .map(|(hash, query)| {
            let hash = hash.to_ascii_lowercase();
            anyhow::ensure!(
                document_hash(&query) == hash,
                "{}: {hash} is not the SHA-256 of its query",
                what()
            );
            parse_query(&query).with_context(|| format!("{}: {hash} does not parse", what()))?;
            Ok((hash, Arc::from(query)))
        })
        .collect()
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

    /// A cached document without variables is proven for every later request once one
    /// ran; one with variables (whose values a rule checks), one that introspects and
    /// one too large to cache never are.
    #[test]
    fn only_a_cached_variable_free_document_can_be_proven() {
        let cache = DocumentCache::new(10, DocumentLimits::DEFAULTS);
        let prepare = |query: &str| {
            cache
                .prepare(&mut Request::new(query))
                .expect("a valid document")
        };
        let plain = "{ me { id } }";
        assert!(!prepare(plain).is_proven(), "proven before it ran");
        prepare(plain).prove();
        assert!(prepare(plain).is_proven(), "the next request is not proven");
        let large = format!("{{ me {{ id }} }}{}", " ".repeat(MAX_CACHED_QUERY_BYTES));
        for query in [QUERY, "{ __schema { queryType { name } } }", large.as_str()] {
            prepare(query).prove();
            assert!(
                !prepare(query).is_proven(),
                "{}",
                &query[..40.min(query.len())]
            );
        }
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
    fn deep_nesting_is_refused_before_parsing() {
        let cache = DocumentCache::new(10, DocumentLimits::DEFAULTS);
        let nested = |n: usize| format!("{}{}", "{a".repeat(n), "}".repeat(n));
        // Within the nesting check (the depth limit, smaller, refuses it afterwards).
        assert!(check_nesting(&nested(MAX_NESTING)).is_ok());
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

    fn persisted(query: &str, hash: &str) -> Request {
        let mut request = Request::new(query);
        request.extensions.insert(
            "persistedQuery".to_owned(),
            Value::from_json(serde_json::json!({ "version": 1, "sha256Hash": hash }))
                .expect("value"),
        );
        request
    }

    #[test]
    fn introspection_is_found_wherever_it_hides() {
        let cache = DocumentCache::new(10, DocumentLimits::DEFAULTS);
        for (query, expected) in [
            ("{ __typename me { id } }", false),
            ("{ __schema { types { name } } }", true),
            ("{ t: __type(name: \"Query\") { name } }", true),
            (
                "query { ...F } fragment F on Query { __schema { queryType { name } } }",
                true,
            ),
            (
                "{ ... on Query { me { ... on User { id } } __type(name: \"X\") { name } } }",
                true,
            ),
        ] {
            let prepared = cache.prepare(&mut Request::new(query)).expect("parses");
            assert_eq!(prepared.introspection, expected, "{query}");
            assert!(prepared.trusted, "no allow-list: {query}");
        }
    }

    #[test]
    fn automatic_persisted_queries_are_verified_and_remembered() {
        let cache = DocumentCache::new(10, DocumentLimits::DEFAULTS);
        let query = "{ me { id } }";
        let hash = document_hash(query);
        let not_found = cache.prepare(&mut persisted("", &hash));
        assert_eq!(
            not_found.err().map(|e| e.code()),
            Some("PERSISTED_QUERY_NOT_FOUND")
        );
        let wrong = cache.prepare(&mut persisted("{ other }", &hash));
        assert_eq!(wrong.err().map(|e| e.code()), Some("BAD_USER_INPUT"));
        cache
            .prepare(&mut persisted(query, &hash))
            .expect("registered");
        let mut by_hash = persisted("", &hash.to_ascii_uppercase());
        cache.prepare(&mut by_hash).expect("found");
        assert_eq!(by_hash.query, query);
        for bad in [
            serde_json::json!({ "version": 2, "sha256Hash": hash }),
            serde_json::json!({ "version": 1, "sha256Hash": "abc" }),
            serde_json::json!("nope"),
        ] {
            let mut request = Request::new(query);
            request.extensions.insert(
                "persistedQuery".to_owned(),
                Value::from_json(bad).expect("value"),
            );
            assert!(cache.prepare(&mut request).is_err());
        }
    }

    #[test]
    fn an_allow_list_names_the_only_trusted_documents() {
        let known = "{ me { id } }";
        let hash = document_hash(known);
        let cache = DocumentCache::new(10, DocumentLimits::DEFAULTS)
            .with_trusted(HashMap::from([(hash.clone(), Arc::from(known))]));
        let mut by_hash = persisted("", &hash);
        assert_eq!(
            cache.prepare(&mut by_hash).ok().map(|p| p.trusted),
            Some(true)
        );
        assert_eq!(by_hash.query, known);
        // The same text sent in full is the same document; other text is not on the list.
        let same = cache.prepare(&mut Request::new(known)).expect("parses");
        assert!(same.trusted);
        let other = cache
            .prepare(&mut Request::new("{ me { email } }"))
            .expect("parses");
        assert!(!other.trusted);
        // Unknown hashes are refused, even with their text: nothing joins the list.
        let text = "{ me { email } }";
        let refused = cache.prepare(&mut persisted(text, &document_hash(text)));
        assert_eq!(refused.err().map(|e| e.code()), Some("FORBIDDEN"));
        let refused = cache.prepare(&mut persisted("", &document_hash(text)));
        assert_eq!(refused.err().map(|e| e.code()), Some("FORBIDDEN"));
    }

    #[test]
    fn an_allow_list_file_must_be_right_to_load() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("trusted.json");
        let good = "{ me { id } }";
        std::fs::write(
            &path,
            serde_json::json!({ document_hash(good): good }).to_string(),
        )
        .expect("write");
        assert_eq!(load_trusted(&path).expect("loads").len(), 1);
        for bad in [
            serde_json::json!({ document_hash("{ a }"): good }),
            serde_json::json!({ document_hash("{ a "): "{ a " }),
            serde_json::json!([good]),
        ] {
            std::fs::write(&path, bad.to_string()).expect("write");
            assert!(load_trusted(&path).is_err(), "{bad}");
        }
    }
}
