//! A plain GraphQL-over-HTTP client of the gateway, for set-up and probes (the load of
//! the `reads` run has its own, leaner loop).

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use uuid::Uuid;

const SIGN_UP: &str = "mutation($i: SignUpInput!) { signUp(input: $i) { user { id } } }";

/// The GraphQL endpoint over HTTP.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    url: String,
}

impl Api {
    /// A client of the gateway at `base` (`http://host:port`); every request is bounded
    /// by `timeout`.
    pub fn new(base: &str, timeout: std::time::Duration) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder().timeout(timeout).build()?,
            url: format!("{base}/graphql"),
        })
    }

    /// POSTs an operation; the `data` of the answer, or an error with its `errors`.
    pub async fn post(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .post(&self.url)
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let body: Value = request.send().await?.json().await?;
        if body.get("errors").is_some_and(|e| !e.is_null()) {
            bail!("the gateway answered with errors: {}", body["errors"]);
        }
        Ok(body["data"].clone())
    }

    /// Signs up an account; its id.
    pub async fn sign_up(&self, email: &str) -> anyhow::Result<Uuid> {
        let data = self
            .post(
                None,
                SIGN_UP,
                json!({ "i": { "email": email, "password": "bench password 1", "displayName": "bench" } }),
            )
            .await?;
        data["signUp"]["user"]["id"]
            .as_str()
            .context("signUp returned no id")?
            .parse()
            .context("signUp returned a malformed id")
    }
}
