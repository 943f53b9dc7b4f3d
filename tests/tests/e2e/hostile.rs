//! Hostile input over real HTTP: 10,000 generated malformed and abusive bodies (bad
//! JSON, invalid UTF-8, random bytes, huge strings and numbers, deep nesting, alias,
//! directive and fragment bombs, wrong variable types, nested arrays) sent to one
//! gateway, 8 at a time. Every one must be answered below 500 with a GraphQL response
//! (`data`, or errors that each carry `extensions.code`), no connection may fail, and the
//! gateway must serve normally afterwards. Which limit refuses what is not asserted here:
//! only that nothing breaks.

use flashfusion_tests::TestApp;
use futures_util::{StreamExt, stream};
use proptest::{
    collection::vec,
    prelude::*,
    strategy::ValueTree,
    test_runner::{Config, RngAlgorithm, TestRng, TestRunner},
};
use reqwest::Method;
use serde_json::{Value, json};

/// How many bodies are sent.
const BODIES: usize = 10_000;
/// How many are in flight at once.
const CONCURRENCY: usize = 8;

/// A JSON request body around `query` (escaped as JSON).
fn request(query: &str) -> Vec<u8> {
    json!({ "query": query }).to_string().into_bytes()
}

/// Valid-looking requests to mutate: some run, some are refused.
const SEEDS: [&str; 6] = [
    r#"{"query":"{ __typename }"}"#,
    r#"{"query":"query($n: Int) { publicProjects(first: $n) { totalCount edges { node { id name } } } }","variables":{"n":3}}"#,
    r#"{"query":"query A { me { id } } query B { __typename }","operationName":"B"}"#,
    r#"{"query":"mutation { signIn(input: {email: \"x@example.com\", password: \"correct horse\"}) { token } }"}"#,
    r#"{"query":"{ project(id: \"00000000-0000-0000-0000-000000000000\") { name } }"}"#,
    r#"{"query":"subscription { __typename }"}"#,
];

/// One hostile body.
fn hostile_body() -> impl Strategy<Value = Vec<u8>> {
    let seed = prop::sample::select(&SEEDS[..]);
    prop_oneof![
        // Random bytes, mostly not UTF-8.
        vec(any::<u8>(), 0..2048),
        // A valid request cut short, or with a byte flipped.
        (seed.clone(), any::<prop::sample::Index>())
            .prop_map(|(s, at)| s.as_bytes()[..at.index(s.len() + 1)].to_vec()),
        (seed.clone(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(s, at, byte)| {
            let mut bytes = s.as_bytes().to_vec();
            let at = at.index(bytes.len());
            bytes[at] = byte;
            bytes
        }),
        // Invalid UTF-8 inside the query string.
        (vec(128u8..=255, 1..16), seed.clone()).prop_map(|(junk, s)| {
            let mut bytes = s.as_bytes()[..14].to_vec();
            bytes.extend_from_slice(&junk);
            bytes.extend_from_slice(&s.as_bytes()[14..]);
            bytes
        }),
        // Huge strings: as the query, a variable, an argument, an operation name.
        (1usize..60_000).prop_map(|n| request(&"a".repeat(n))),
        (1usize..60_000).prop_map(|n| json!({ "query": "query($s: String) { __typename }", "variables": { "s": "x".repeat(n) } }).to_string().into_bytes()),
        (1usize..30_000).prop_map(|n| request(&format!("{{ project(id: \"{}\") {{ id }} }}", "9".repeat(n)))),
        (1usize..30_000).prop_map(|n| json!({ "query": "{ __typename }", "operationName": "o".repeat(n) }).to_string().into_bytes()),
        // Deep nesting of selections, lists in arguments, and JSON.
        (1usize..5_000).prop_map(|n| request(&format!("{}{}", "{a".repeat(n), "}".repeat(n)))),
        (1usize..3_000).prop_map(|n| request(&format!("{{ me {}id{} }}", "{ me ".repeat(n), " }".repeat(n)))),
        (1usize..5_000).prop_map(|n| request(&format!("{{ project(id: {}1{}) {{ id }} }}", "[".repeat(n), "]".repeat(n)))),
        (1usize..5_000).prop_map(|n| format!("{{\"query\":\"{{ __typename }}\",\"variables\":{{\"v\":{}1{}}}}}", "[".repeat(n), "]".repeat(n)).into_bytes()),
        (1usize..5_000).prop_map(|n| format!("{}{}", "{\"a\":".repeat(n), "}".repeat(n)).into_bytes()),
        // Alias bombs.
        (1usize..3_000).prop_map(|n| request(&format!("{{ {} }}", (0..n).map(|i| format!("a{i}: __typename")).collect::<Vec<_>>().join(" ")))),
        (1usize..200).prop_map(|n| request(&format!("{{ {} }}", (0..n).map(|i| format!("p{i}: publicProjects(first: 100) {{ totalCount }}")).collect::<Vec<_>>().join(" ")))),
        // Directive bombs, known and unknown.
        (1usize..5_000).prop_map(|n| request(&format!("{{ __typename {} }}", "@include(if: true) ".repeat(n)))),
        (1usize..5_000).prop_map(|n| request(&format!("{{ __typename {} }}", "@x ".repeat(n)))),
        // Fragment cycles and exponential fan-out (3^n fields once expanded).
        (1usize..500).prop_map(|n| request(&format!("{{ ...F0 }} {}", (0..n).map(|i| format!("fragment F{i} on Query {{ __typename ...F{} }}", (i + 1) % n)).collect::<Vec<_>>().join(" ")))),
        (1usize..40).prop_map(|n| request(&format!("{{ ...F0 }} {} fragment F{n} on Query {{ __typename }}", (0..n).map(|i| format!("fragment F{i} on Query {{ ...F{j} ...F{j} ...F{j} }}", j = i + 1)).collect::<Vec<_>>().join(" ")))),
        // Wrong types: of the request's members and of variables.
        prop_oneof![
            Just(json!({ "query": 5 })),
            Just(json!({ "query": ["{ __typename }"] })),
            Just(json!({ "query": "{ __typename }", "variables": "x" })),
            Just(json!({ "query": "{ __typename }", "variables": [1] })),
            Just(json!({ "query": "{ __typename }", "operationName": 7 })),
            Just(json!({ "query": "{ __typename }", "extensions": "x" })),
            Just(json!({ "query": null })),
            Just(json!({})),
            Just(json!(null)),
            Just(json!(12)),
        ]
        .prop_map(|v| v.to_string().into_bytes()),
        (any::<i64>(), "[a-z\"\\\\]{0,12}", any::<f64>(), any::<bool>()).prop_map(|(i, s, f, b)| {
            let value = match i.rem_euclid(6) {
                0 => json!(s),
                1 => json!(f),
                2 => json!(b),
                3 => json!({ "n": i }),
                4 => json!([[i], [[s]]]),
                _ => json!(i),
            };
            json!({ "query": "query($n: Int!, $id: ID!) { publicProjects(first: $n) { totalCount } project(id: $id) { id } }", "variables": { "n": value, "id": value } }).to_string().into_bytes()
        }),
        // Huge numbers, as JSON and as GraphQL literals.
        (1usize..20_000).prop_map(|n| format!("{{\"query\":\"query($n: Int) {{ publicProjects(first: $n) {{ totalCount }} }}\",\"variables\":{{\"n\":{}}}}}", "9".repeat(n)).into_bytes()),
        (1usize..20_000).prop_map(|n| request(&format!("{{ publicProjects(first: {}) {{ totalCount }} }}", "9".repeat(n)))),
        prop_oneof![Just("1e400"), Just("-1e400"), Just("1e-400"), Just("18446744073709551616"), Just("-9223372036854775809"), Just("2147483648"), Just("NaN"), Just("0.5")]
            .prop_map(|n| format!("{{\"query\":\"query($n: Int) {{ publicProjects(first: $n) {{ totalCount }} }}\",\"variables\":{{\"n\":{n}}}}}").into_bytes()),
        // Arbitrary text as a query.
        "\\PC{0,200}".prop_map(|q| request(&q)),
    ]
}

/// Whether `body` is a GraphQL response: errors that each carry a code (with or
/// without data), or, with no errors, data.
fn is_graphql_response(body: &Value) -> bool {
    match body["errors"].as_array() {
        Some(errors) => {
            !errors.is_empty()
                && errors
                    .iter()
                    .all(|e| e["extensions"]["code"].as_str().is_some())
        }
        None => body["data"].is_object(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_hostile_bodies_break_nothing() {
    // One client sending 10,000 bodies as fast as it can would meet the per-address rate
    // limit (`limits.rs` tests it), which is not what this test is about: it is off here.
    let db = flashfusion_tests::TestDb::new().await;
    let url = db.url().to_owned();
    let app = TestApp::start_with(url, Some(db), |config| config.rate_limit_burst = 0).await;
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[8; 32]),
    );
    let strategy = hostile_body();
    let bodies: Vec<Vec<u8>> = (0..BODIES)
        .map(|_| {
            strategy
                .new_tree(&mut runner)
                .expect("generate a body")
                .current()
        })
        .collect();
    let client = app.anonymous();
    let failures: Vec<String> = stream::iter(bodies.into_iter().enumerate())
        .map(|(i, body)| {
            let accept = if i % 2 == 0 {
                "application/json"
            } else {
                "application/graphql-response+json"
            };
            let request = client
                .request(Method::POST, "/graphql")
                .header("content-type", "application/json")
                .header("accept", accept)
                .body(body.clone());
            async move {
                let shown = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                let response = match request.send().await {
                    Ok(response) => response,
                    Err(err) => return Some(format!("connection error {err} for {shown}")),
                };
                let status = response.status().as_u16();
                let text = match response.text().await {
                    Ok(text) => text,
                    Err(err) => return Some(format!("body error {err} for {shown}")),
                };
                let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                (status >= 500 || !is_graphql_response(&json))
                    .then(|| format!("{status} {text:.300} for {shown}"))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(|failure| async move { failure })
        .collect()
        .await;
    assert!(
        failures.is_empty(),
        "{} of {BODIES} bodies broke something, e.g.:\n{}",
        failures.len(),
        failures
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Still serving, a query with the database included.
    let after = client
        .graphql("{ __typename publicProjects { totalCount } }", json!({}))
        .await;
    assert_eq!(after["data"]["__typename"], "Query", "{after}");
    assert_eq!(after["data"]["publicProjects"]["totalCount"], 0, "{after}");
}
