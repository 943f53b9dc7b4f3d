//! GraphiQL, served entirely from the binary: the page at `/` and its vendored assets
//! (React, ReactDOM, GraphiQL, the graphql-ws client) under [`ASSETS_PATH`].
//!
//! The assets live in `api/assets/graphiql/`, pinned npm releases refreshed only by
//! `scripts/vendor-graphiql.sh` (which writes their `SHA256SUMS`); they are embedded at
//! compile time, so the page works on a machine without internet and nothing is fetched
//! at build or run time. The page must never reference another host; its
//! Content-Security-Policy has the browser refuse any.
//!
//! The page's fetcher sends queries and mutations over HTTP and subscriptions over a
//! graphql-ws client (`graphql-transport-ws`) on the same endpoint; the JSON in GraphiQL's
//! Headers tab goes with every HTTP request and is the WebSocket's `connection_init`
//! payload, so `{"Authorization": "Bearer <token>"}` authenticates both transports.
//!
//! Every response of these routes (page, scripts, assets, a 404) carries the
//! Content-Security-Policy. Whether they are served at all is `FLASHFUSION_GRAPHIQL`
//! (`Config::graphiql_enabled`: on in development, off in production unless enabled),
//! which `http` decides; when off, `/` and `/graphiql/*` are 404.
//!
//! This module knows nothing of the gateway: `http` routes to it.

use std::hash::{DefaultHasher, Hash, Hasher};

use axum::{
    Router,
    body::Bytes,
    extract::Path,
    http::{HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use tower_http::set_header::SetResponseHeaderLayer;

/// Where the assets are served: `/graphiql/<name>`.
pub const ASSETS_PATH: &str = "/graphiql";

/// The route of one vendored asset.
const ASSET_ROUTE: &str = "/graphiql/{name}";

/// The page's own script (not vendored: built from [`PAGE_SCRIPT`] for the endpoint).
const PAGE_SCRIPT_PATH: &str = "/graphiql/page.js";

/// The page's Content-Security-Policy: scripts, styles, fonts and connections from the
/// gateway only (`'self'` covers its own `ws:`/`wss:` in CSP Level 3), so a browser
/// itself refuses anything from another host. The inline style attributes GraphiQL
/// sets need `'unsafe-inline'` for styles; the fonts in its CSS are `data:` URLs.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     font-src 'self' data:; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            bytes: include_bytes!(concat!("../assets/graphiql/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Every file of `api/assets/graphiql/` (the scripts in the order the page loads them).
static ASSETS: &[Asset] = &[
    asset!("react.production.min.js", JS),
    asset!("react-dom.production.min.js", JS),
    asset!("graphiql.min.js", JS),
    asset!("graphql-ws.min.js", JS),
    asset!("graphiql.min.css", CSS),
    asset!("react.LICENSE", TEXT),
    asset!("react-dom.LICENSE", TEXT),
    asset!("graphiql.LICENSE", TEXT),
    asset!("graphql-ws.LICENSE", TEXT),
    asset!("VERSIONS", TEXT),
    asset!("SHA256SUMS", TEXT),
];

/// Assets are immutable for a given `?v=`: the page links each with a fingerprint of its
/// bytes, so a browser may keep them for a year and still never runs a stale one.
const CACHE_FOREVER: &str = "public, max-age=31536000, immutable";

/// What the editor opens with: a public query that runs without a token, and how to
/// get and present one.
const DEFAULT_QUERY: &str = r#"# Welcome to the FlashFusion Gateway.
#
# The query below is public: press the run button (or Ctrl-Enter).
#
# Most data belongs to an account. To act as yourself, get a token with
#
#   mutation { signIn(input: {email: "you@example.com", password: "..."}) { token } }
#
# (or signUp), then open the Headers tab at the bottom and enter
#
#   {"Authorization": "Bearer <token>"}
#
# Queries and mutations send it with each request; subscriptions (over the
# WebSocket on /graphql) send it in the connection_init payload, e.g.
#
#   subscription { notificationAdded { cursor notification { title } } }

query Agents {
  agents {
    slug
    name
    description
    capabilities
  }
}
"#;

/// The page's own script (served at [`PAGE_SCRIPT_PATH`]): a fetcher that sends
/// subscriptions over graphql-ws with the Headers tab as `connectionParams` (one client
/// per distinct headers; `authorization` in any case becomes the `Authorization` the
/// gateway reads from `connection_init`), everything else over HTTP, and GraphiQL
/// rendered with it.
const PAGE_SCRIPT: &str = r#"
(function () {
  var endpoint = ENDPOINT;
  var wsUrl = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + endpoint;
  var http = GraphiQL.createFetcher({ url: endpoint });
  var ws = null, wsKey = null;
  function wsClient(headers) {
    var key = JSON.stringify(headers || {});
    if (ws && key === wsKey) return ws;
    if (ws) ws.dispose();
    wsKey = key;
    var params = {};
    Object.keys(headers || {}).forEach(function (name) {
      params[name.toLowerCase() === "authorization" ? "Authorization" : name] = headers[name];
    });
    ws = graphqlWs.createClient({ url: wsUrl, connectionParams: params });
    return ws;
  }
  function isSubscription(params, opts) {
    var doc = opts && opts.documentAST;
    if (!doc) return /^\s*subscription\b/.test(params.query);
    return doc.definitions.some(function (d) {
      return d.kind === "OperationDefinition" && d.operation === "subscription" &&
        (!params.operationName || (d.name && d.name.value === params.operationName));
    });
  }
  function asError(e) {
    if (e instanceof Error) return e;
    if (e && typeof e.code === "number") return new Error("WebSocket closed: " + e.code + " " + (e.reason || ""));
    return new Error(JSON.stringify(e));
  }
  function fetcher(params, opts) {
    if (!isSubscription(params, opts)) return http(params, opts);
    var client = wsClient(opts && opts.headers);
    return { subscribe: function (sink) {
      var stop = client.subscribe(params, {
        next: function (v) { sink.next(v); },
        error: function (e) { sink.error(asError(e)); },
        complete: function () { sink.complete(); }
      });
      return { unsubscribe: stop };
    } };
  }
  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(GraphiQL, { fetcher: fetcher, defaultQuery: DEFAULT_QUERY }));
})();
"#;

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}

/// A fingerprint of `bytes` for `?v=`: it changes when they do (and perhaps with the
/// compiler, which costs a browser one download, nothing more).
fn fingerprint(bytes: &[u8]) -> String {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// The link to a vendored asset, fingerprinted.
fn link(name: &str) -> String {
    let bytes = find(name).map_or(&[][..], |asset| asset.bytes);
    format!("{ASSETS_PATH}/{name}?v={}", fingerprint(bytes))
}

/// The page's own script for `endpoint` (the GraphQL path, for HTTP and WebSocket).
fn page_script(endpoint: &str) -> String {
    // JSON strings are valid JavaScript literals.
    PAGE_SCRIPT
        .replace("ENDPOINT", &serde_json::Value::from(endpoint).to_string())
        .replace(
            "DEFAULT_QUERY",
            &serde_json::Value::from(DEFAULT_QUERY).to_string(),
        )
}

/// The page, loading the vendored scripts and then its own from `script_link`.
fn render(script_link: &str) -> String {
    let scripts: String = ASSETS
        .iter()
        .filter(|asset| asset.content_type == JS)
        .map(|asset| link(asset.name))
        .chain([script_link.to_owned()])
        .map(|src| format!("<script src=\"{src}\"></script>\n"))
        .collect();
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>FlashFusion Gateway</title>
<link rel="stylesheet" href="{css}">
<style>body {{ margin: 0; }} #graphiql {{ height: 100vh; }}</style>
</head>
<body>
<div id="graphiql">Loading GraphiQL&hellip;</div>
{scripts}</body>
</html>
"#,
        css = link("graphiql.min.css"),
    )
}

/// The routes: the page at `/`, its own script, and the vendored assets, for `endpoint`
/// (the GraphQL path, for HTTP and WebSocket alike), each response with [`POLICY`].
/// Page and script are built once.
pub fn routes<S: Clone + Send + Sync + 'static>(endpoint: &str) -> Router<S> {
    let script = Bytes::from(page_script(endpoint));
    let page = Bytes::from(render(&format!(
        "{PAGE_SCRIPT_PATH}?v={}",
        fingerprint(&script)
    )));
    Router::new()
        .route(
            "/",
            get(move || async move { ([(header::CACHE_CONTROL, "no-cache")], Html(page)) }),
        )
        .route(
            PAGE_SCRIPT_PATH,
            get(move || async move { (asset_headers(JS), script) }),
        )
        .route(ASSET_ROUTE, get(asset))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(POLICY),
        ))
}

fn asset_headers(content_type: &'static str) -> [(header::HeaderName, &'static str); 3] {
    [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, CACHE_FOREVER),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ]
}

/// `GET /graphiql/<name>`: a vendored asset with its content type and a long cache
/// lifetime, or 404.
async fn asset(Path(name): Path<String>) -> Response {
    match find(&name) {
        Some(asset) => (asset_headers(asset.content_type), asset.bytes).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, TEXT)],
            "not found",
        )
            .into_response(),
    }
}
#[cfg(test)]
mod tests {
    use std::{collections::BTreeSet, path::PathBuf, process::Command};

    use super::*;

    fn dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/graphiql")
    }

    /// The embedded files are these files (`include_bytes!` tracks them), so checking the
    /// directory against `SHA256SUMS` checks what the binary serves.
    #[test]
    fn the_vendored_files_match_their_checksums() {
        let output = Command::new("sha256sum")
            .args(["--check", "--strict", "SHA256SUMS"])
            .current_dir(dir())
            .output()
            .expect("run sha256sum");
        assert!(
            output.status.success(),
            "api/assets/graphiql does not match its SHA256SUMS (rerun scripts/vendor-graphiql.sh):\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    #[test]
    fn every_vendored_file_is_embedded_and_checksummed() {
        let on_disk: BTreeSet<String> = std::fs::read_dir(dir())
            .expect("read the assets directory")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        let embedded: BTreeSet<String> = ASSETS.iter().map(|a| a.name.to_owned()).collect();
        assert_eq!(on_disk, embedded);
        let sums = std::fs::read_to_string(dir().join("SHA256SUMS")).expect("SHA256SUMS");
        let summed: BTreeSet<String> = sums
            .lines()
            .filter_map(|line| line.split_whitespace().nth(1))
            .map(str::to_owned)
            .chain(["SHA256SUMS".to_owned()])
            .collect();
        assert_eq!(summed, embedded);
    }

    #[test]
    fn the_page_links_only_its_own_assets() {
        let script = page_script("/graphql");
        let page = render("/graphiql/page.js?v=1");
        for text in [&page, &script] {
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{text}"
            );
        }
        for asset in ASSETS.iter().filter(|a| a.content_type != TEXT) {
            assert!(page.contains(&link(asset.name)), "{} is linked", asset.name);
        }
        assert!(page.contains(r#"<script src="/graphiql/page.js?v=1"></script>"#));
        assert!(!page.contains("<script>"), "no inline script: {page}");
        assert!(script.contains(r#"var endpoint = "/graphql";"#));
        assert!(script.contains("query Agents"), "the example query");
        assert!(script.contains("Bearer <token>"), "how to present a token");
    }
}
