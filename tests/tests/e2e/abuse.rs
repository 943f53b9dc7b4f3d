//! Account abuse (issue 8): a guesser at one address cannot lock an account's owner out
//! elsewhere, one password sprayed over many emails is limited per address, many
//! addresses together lock an email for new addresses only, sign-up does not say which
//! emails have accounts and is limited per address, and one operation hashes at most
//! one password. The gateway sits behind a trusted proxy at 127.0.0.1, so each request
//! names its client in `X-Forwarded-For`.

use flashfusion_api::config::Config;
use flashfusion_tests::{TestApp, TestDb};
use serde_json::{Value, json};

use crate::code;

const SIGN_UP: &str =
    "mutation($i: SignUpInput!) { signUp(input: $i) { token user { id email displayName } } }";
const SIGN_IN: &str = "mutation($i: SignInInput!) { signIn(input: $i) { token user { email } } }";
const PASSWORD: &str = "correct horse";

/// A gateway on Postgres that believes `X-Forwarded-For` from 127.0.0.1, configured
/// further by `configure`.
async fn behind_proxy(configure: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDb::new().await;
    let url = db.url().to_owned();
    TestApp::start_with(url, Some(db), |config| {
        config.trusted_proxies = vec!["127.0.0.1/32".parse().expect("a network")];
        configure(config);
    })
    .await
}

/// POSTs an anonymous operation as the proxy would forward it for `client`.
async fn from(app: &TestApp, client: &str, query: &str, variables: Value) -> Value {
    let anonymous = app.anonymous();
    let request = anonymous
        .request(reqwest::Method::POST, "/graphql")
        .header("x-forwarded-for", client)
        .json(&json!({ "query": query, "variables": variables }));
    anonymous.send(request).await.1
}

async fn sign_up(app: &TestApp, client: &str, email: &str, password: &str) -> Value {
    let input = json!({ "email": email, "password": password, "displayName": "Ada" });
    from(app, client, SIGN_UP, json!({ "i": input })).await
}

async fn sign_in(app: &TestApp, client: &str, email: &str, password: &str) -> Value {
    let input = json!({ "email": email, "password": password });
    from(app, client, SIGN_IN, json!({ "i": input })).await
}

fn signed_in(response: &Value) -> bool {
    response["data"]["signIn"]["token"].is_string()
}

/// An hour per cell: nothing refills while a test runs.
const NO_REFILL: std::time::Duration = std::time::Duration::from_secs(3600);

#[tokio::test]
async fn a_guesser_at_one_address_does_not_lock_the_owner_out_elsewhere() {
    let app = behind_proxy(|config| {
        config.signin_burst = 3;
        config.signin_refill = NO_REFILL;
    })
    .await;
    let up = sign_up(&app, "192.0.2.10", "ada@example.com", PASSWORD).await;
    assert!(up["errors"].is_null(), "{up}");

    for _ in 0..3 {
        let wrong = sign_in(&app, "203.0.113.66", "ada@example.com", "guess").await;
        assert_eq!(code(&wrong), "UNAUTHENTICATED", "{wrong}");
    }
    let locked = sign_in(&app, "203.0.113.66", "ADA@example.com", "guess").await;
    assert_eq!(code(&locked), "RATE_LIMITED", "{locked}");
    // The lock is the guesser's address and this email: even the right password is
    // refused there (a household behind the same address shares it; see ARCHITECTURE.md).
    let there = sign_in(&app, "203.0.113.66", "ada@example.com", PASSWORD).await;
    assert_eq!(code(&there), "RATE_LIMITED", "{there}");

    // Ada, at her own address or a new one, is not locked out by someone else's guesses.
    for address in ["192.0.2.10", "198.51.100.7"] {
        let ada = sign_in(&app, address, "ada@example.com", PASSWORD).await;
        assert!(signed_in(&ada), "Ada from {address}: {ada}");
    }
    // And the guesser may still fail on other emails: that lock was per email.
    let other = sign_in(&app, "203.0.113.66", "bob@example.com", "guess").await;
    assert_eq!(code(&other), "UNAUTHENTICATED", "{other}");
}

#[tokio::test]
async fn one_password_sprayed_over_many_emails_is_limited_per_address() {
    let app = behind_proxy(|config| {
        config.signin_address_burst = 3;
        config.signin_address_refill = NO_REFILL;
    })
    .await;
    for n in 0..5 {
        let up = sign_up(
            &app,
            "192.0.2.10",
            &format!("user{n}@example.com"),
            PASSWORD,
        )
        .await;
        assert!(up["errors"].is_null(), "{up}");
    }
    // Successes do not count against the address.
    for n in 0..5 {
        let ok = sign_in(
            &app,
            "203.0.113.66",
            &format!("user{n}@example.com"),
            PASSWORD,
        )
        .await;
        assert!(signed_in(&ok), "{ok}");
    }
    for n in 0..3 {
        let email = format!("user{n}@example.com");
        let wrong = sign_in(&app, "203.0.113.66", &email, "Summer2026!").await;
        assert_eq!(code(&wrong), "UNAUTHENTICATED", "{wrong}");
    }
    let sprayed = sign_in(&app, "203.0.113.66", "user3@example.com", "Summer2026!").await;
    assert_eq!(code(&sprayed), "RATE_LIMITED", "{sprayed}");
    let unknown = sign_in(&app, "203.0.113.66", "nobody@example.com", "Summer2026!").await;
    assert_eq!(
        code(&unknown),
        "RATE_LIMITED",
        "unknown emails count alike: {unknown}"
    );
    // Another address is not affected.
    let elsewhere = sign_in(&app, "198.51.100.7", "user3@example.com", "Summer2026!").await;
    assert_eq!(code(&elsewhere), "UNAUTHENTICATED", "{elsewhere}");
    let owner = sign_in(&app, "198.51.100.7", "user3@example.com", PASSWORD).await;
    assert!(signed_in(&owner), "{owner}");
}

#[tokio::test]
async fn guesses_from_many_addresses_lock_the_email_except_where_its_owner_signed_in() {
    let app = behind_proxy(|config| {
        config.signin_account_burst = 3;
        config.signin_account_refill = NO_REFILL;
    })
    .await;
    let up = sign_up(&app, "192.0.2.10", "ada@example.com", PASSWORD).await;
    assert!(up["errors"].is_null(), "{up}");
    let home = sign_in(&app, "192.0.2.10", "ada@example.com", PASSWORD).await;
    assert!(signed_in(&home), "{home}");

    for bot in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        let wrong = sign_in(&app, bot, "ada@example.com", "guess").await;
        assert_eq!(code(&wrong), "UNAUTHENTICATED", "{wrong}");
    }
    // A fresh address, even with the right password, is refused now: a guesser with
    // many addresses would be too.
    let fresh = sign_in(&app, "203.0.113.4", "ada@example.com", PASSWORD).await;
    assert_eq!(code(&fresh), "RATE_LIMITED", "{fresh}");
    // Where Ada signed in before, the right password still works and a wrong one is
    // still checked.
    let wrong_at_home = sign_in(&app, "192.0.2.10", "ada@example.com", "typo").await;
    assert_eq!(code(&wrong_at_home), "UNAUTHENTICATED", "{wrong_at_home}");
    let again = sign_in(&app, "192.0.2.10", "ada@example.com", PASSWORD).await;
    assert!(signed_in(&again), "{again}");
    // Other emails are not locked.
    let bob = sign_in(&app, "203.0.113.4", "bob@example.com", "guess").await;
    assert_eq!(code(&bob), "UNAUTHENTICATED", "{bob}");
}

#[tokio::test]
async fn forwarded_addresses_from_an_untrusted_peer_are_ignored() {
    let db = TestDb::new().await;
    let url = db.url().to_owned();
    // No trusted proxies: the peer (127.0.0.1) is the client whatever it forwards.
    let app = TestApp::start_with(url, Some(db), |config| {
        config.signin_address_burst = 2;
        config.signin_address_refill = NO_REFILL;
    })
    .await;
    for (n, forged) in ["203.0.113.1", "203.0.113.2"].into_iter().enumerate() {
        let email = format!("user{n}@example.com");
        let wrong = sign_in(&app, forged, &email, "guess").await;
        assert_eq!(code(&wrong), "UNAUTHENTICATED", "{wrong}");
    }
    let limited = sign_in(&app, "203.0.113.3", "user9@example.com", "guess").await;
    assert_eq!(code(&limited), "RATE_LIMITED", "{limited}");
}

#[tokio::test]
async fn sign_up_for_a_taken_email_answers_as_for_a_malformed_one() {
    let app = behind_proxy(|_| {}).await;
    let up = sign_up(&app, "192.0.2.10", "ada@example.com", PASSWORD).await;
    assert!(up["errors"].is_null(), "{up}");

    let taken = sign_up(&app, "198.51.100.7", " ADA@example.com", "another password").await;
    let malformed = sign_up(
        &app,
        "198.51.100.7",
        "ada-at-example.com",
        "another password",
    )
    .await;
    assert_eq!(code(&taken), "BAD_USER_INPUT", "{taken}");
    assert_eq!(
        taken, malformed,
        "the same data, code, message and path for a taken and a malformed email"
    );
    assert!(
        !taken.to_string().contains("exists"),
        "nothing says the account exists: {taken}"
    );
    // Ada's account is untouched: her password still works, the other one does not.
    assert!(signed_in(
        &sign_in(&app, "192.0.2.10", "ada@example.com", PASSWORD).await
    ));
    let other = sign_in(&app, "192.0.2.10", "ada@example.com", "another password").await;
    assert_eq!(code(&other), "UNAUTHENTICATED", "{other}");
}

#[tokio::test]
async fn sign_ups_are_limited_per_address() {
    let app = behind_proxy(|config| {
        config.signup_burst = 2;
        config.signup_refill = NO_REFILL;
    })
    .await;
    let first = sign_up(&app, "203.0.113.66", "one@example.com", PASSWORD).await;
    assert!(first["errors"].is_null(), "{first}");
    // A refused sign-up for a taken email counts too: that bounds probing for accounts.
    let taken = sign_up(&app, "203.0.113.66", "one@example.com", PASSWORD).await;
    assert_eq!(code(&taken), "BAD_USER_INPUT", "{taken}");
    let third = sign_up(&app, "203.0.113.66", "three@example.com", PASSWORD).await;
    assert_eq!(code(&third), "RATE_LIMITED", "{third}");
    // Nothing was created, and another address may sign up.
    let elsewhere = sign_up(&app, "198.51.100.7", "three@example.com", PASSWORD).await;
    assert_eq!(
        elsewhere["data"]["signUp"]["user"]["email"], "three@example.com",
        "{elsewhere}"
    );
}

/// The first error's path and the codes of all errors (fields after the first failing
/// one of a mutation are reported as not run, with its code).
fn failures(response: &Value) -> (Value, Vec<&str>) {
    let codes = response["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["extensions"]["code"].as_str().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    (response["errors"][0]["path"].clone(), codes)
}

#[tokio::test]
async fn one_operation_hashes_at_most_one_password() {
    let app = behind_proxy(|config| {
        // One failure per address would show if a refused alias had been checked.
        config.signin_address_burst = 1;
        config.signin_address_refill = NO_REFILL;
    })
    .await;
    let up = sign_up(&app, "192.0.2.10", "ada@example.com", PASSWORD).await;
    assert!(up["errors"].is_null(), "{up}");

    let credentials = json!({ "email": "ada@example.com", "password": PASSWORD });
    let wrong = json!({ "email": "ada@example.com", "password": "guess" });
    let packed = from(
        &app,
        "203.0.113.66",
        "mutation($right: SignInInput!, $wrong: SignInInput!) {
            a: signIn(input: $right) { token }
            b: signIn(input: $wrong) { token }
            c: signIn(input: $wrong) { token }
        }",
        json!({ "right": credentials, "wrong": wrong }),
    )
    .await;
    assert_eq!(packed["data"], Value::Null, "{packed}");
    assert_eq!(
        failures(&packed),
        (json!(["b"]), vec!["BAD_USER_INPUT", "BAD_USER_INPUT"]),
        "{packed}"
    );
    assert!(
        packed["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("one signIn or signUp"),
        "{packed}"
    );
    // The refused aliases were never checked: the address's one failure is still free.
    let one_failure = sign_in(&app, "203.0.113.66", "ada@example.com", "guess").await;
    assert_eq!(code(&one_failure), "UNAUTHENTICATED", "{one_failure}");

    // A sign-up and a sign-in together: the second is refused and the sign-up rolled
    // back with it.
    let mixed = from(
        &app,
        "198.51.100.7",
        "mutation($up: SignUpInput!, $login: SignInInput!) {
            up: signUp(input: $up) { token }
            login: signIn(input: $login) { token }
        }",
        json!({
            "up": { "email": "bob@example.com", "password": PASSWORD, "displayName": "Bob" },
            "login": credentials,
        }),
    )
    .await;
    assert_eq!(
        failures(&mixed),
        (json!(["login"]), vec!["BAD_USER_INPUT"]),
        "{mixed}"
    );
    let bob = sign_in(&app, "198.51.100.7", "bob@example.com", PASSWORD).await;
    assert_eq!(code(&bob), "UNAUTHENTICATED", "not created: {bob}");
}

/// The round trips `query` costs from `client` (the fewest of three tries, as
/// round_trips.rs measures, so background reads of the event hub do not count), and its
/// last response.
async fn measured(app: &TestApp, client: &str, query: &str, variables: Value) -> (u64, Value) {
    let mut fewest = u64::MAX;
    let mut response = Value::Null;
    for _ in 0..3 {
        let before = app.state.db.round_trips();
        response = from(app, client, query, variables.clone()).await;
        fewest = fewest.min(app.state.db.round_trips() - before);
    }
    (fewest, response)
}

#[tokio::test]
async fn throttled_attempts_do_no_database_work() {
    let app = behind_proxy(|config| {
        config.signin_burst = 1;
        config.signin_refill = NO_REFILL;
        config.signup_burst = 1;
        config.signup_refill = NO_REFILL;
    })
    .await;
    let up = sign_up(&app, "203.0.113.66", "ada@example.com", PASSWORD).await;
    assert!(up["errors"].is_null(), "{up}");
    let wrong = sign_in(&app, "203.0.113.66", "ada@example.com", "guess").await;
    assert_eq!(code(&wrong), "UNAUTHENTICATED", "{wrong}");

    // A malformed email is refused before the resolver touches the database: the
    // pipeline's own round trips are the baseline.
    let sign_in_as = |email: &str| json!({ "i": { "email": email, "password": "guess" } });
    let (baseline, malformed) =
        measured(&app, "203.0.113.66", SIGN_IN, sign_in_as("not-an-email")).await;
    assert_eq!(code(&malformed), "UNAUTHENTICATED", "{malformed}");
    let (trips, limited) =
        measured(&app, "203.0.113.66", SIGN_IN, sign_in_as("ada@example.com")).await;
    assert_eq!(code(&limited), "RATE_LIMITED", "{limited}");
    assert_eq!(trips, baseline, "a throttled sign-in reads nothing");

    let sign_up_as = |email: &str| json!({ "i": { "email": email, "password": PASSWORD, "displayName": "Bob" } });
    let (baseline, malformed) =
        measured(&app, "203.0.113.66", SIGN_UP, sign_up_as("not-an-email")).await;
    assert_eq!(code(&malformed), "BAD_USER_INPUT", "{malformed}");
    let (trips, limited) =
        measured(&app, "203.0.113.66", SIGN_UP, sign_up_as("bob@example.com")).await;
    assert_eq!(code(&limited), "RATE_LIMITED", "{limited}");
    assert_eq!(
        trips, baseline,
        "a throttled sign-up reads and writes nothing"
    );
}
