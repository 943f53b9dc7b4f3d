//! [`TestApp`]: the real gateway router on a free loopback port, and clients that talk
//! to it over HTTP ([`Client`]) and WebSocket ([`WsClient`]) the way a browser would.

use std::{sync::Arc, time::Duration};

use biscuit_auth::{Biscuit, BlockBuilder, KeyPair};
use flashfusion_api::{
    app::{AppState, router_with},
    auth::TokenService,
    config::Config,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::{
    Message,
    client::IntoClientRequest,
    http::{HeaderName, HeaderValue},
};

use migration::MigratorTrait as _;

use crate::TestDb;

/// Every wait in the tests is bounded by this.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// The route of [`TestApp::postgres_with_panic_route`] whose handler panics.
pub const PANIC_ROUTE: &str = "/test-panic";

/// A running gateway.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The root key pair the gateway trusts (for minting and forging tokens in tests).
    pub root: Arc<KeyPair>,
    /// The database it serves, kept alive as long as the app.
    pub db: Option<TestDb>,
    /// The gateway's shared state (statement counter, token service).
    pub state: Arc<AppState>,
    /// The directory of a SQLite app's database, removed with the app.
    sqlite_dir: Option<tempfile::TempDir>,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl TestApp {
    /// A gateway over a fresh Postgres database (cloned from the migrated template).
    pub async fn postgres() -> Self {
        let db = TestDb::new().await;
        let url = db.url().to_owned();
        Self::start(url, Some(db)).await
    }

    /// A gateway over a fresh SQLite file in a temporary directory, migrated as
    /// `serve` would: the resolvers are the only guard there.
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
        let conn = sea_orm::Database::connect(url.as_str())
            .await
            .expect("sqlite");
        migration::Migrator::up(&conn, None)
            .await
            .expect("migrate sqlite");
        conn.close().await.expect("close");
        let mut app = Self::start(url, None).await;
        app.sqlite_dir = Some(dir);
        app
    }

    /// A gateway over the given (migrated) database URL.
    pub async fn start(database_url: String, db: Option<TestDb>) -> Self {
        Self::start_with(database_url, db, |_| {}).await
    }

    /// Like [`TestApp::start`], with the configuration adjusted by `configure`.
    pub async fn start_with(
        database_url: String,
        db: Option<TestDb>,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        Self::start_keyed(database_url, db, Arc::new(KeyPair::new()), configure).await
    }

    /// A gateway over a fresh Postgres database with one route the binary does not have,
    /// under its middleware stack: [`PANIC_ROUTE`], whose handler panics.
    pub async fn postgres_with_panic_route() -> Self {
        let db = TestDb::new().await;
        let url = db.url().to_owned();
        let panics = axum::Router::new().route(
            PANIC_ROUTE,
            axum::routing::get(|| async {
                panic!("a handler bug");
                #[allow(unreachable_code)]
                ""
            }),
        );
        Self::start_routed(url, Some(db), Arc::new(KeyPair::new()), |_| {}, panics).await
    }

    /// A second gateway (a replica) over this one's database, trusting the same root
    /// key, so the same tokens work on both.
    pub async fn replica(&self) -> Self {
        let url = self
            .db
            .as_ref()
            .expect("a replica needs Postgres")
            .url()
            .to_owned();
        Self::start_keyed(url, None, self.root.clone(), |_| {}).await
    }

    async fn start_keyed(
        database_url: String,
        db: Option<TestDb>,
        root: Arc<KeyPair>,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        Self::start_routed(database_url, db, root, configure, axum::Router::new()).await
    }

    async fn start_routed(
        database_url: String,
        db: Option<TestDb>,
        root: Arc<KeyPair>,
        configure: impl FnOnce(&mut Config),
        extra: axum::Router,
    ) -> Self {
        let mut config = Config::defaults();
        config.database_url = database_url.into();
        config.db_max_connections = 5;
        // A fresh sealing key per app, so no test writes a development key file.
        config.secrets_key = Some(
            format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            )
            .into(),
        );
        configure(&mut config);
        let tokens =
            TokenService::from_key_pair(KeyPair::from(&root.private()), Duration::from_secs(3600));
        let state = AppState::with_tokens(config, tokens)
            .await
            .expect("gateway state");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free port");
        let address = listener.local_addr().expect("local address");
        let app = router_with(state.clone(), extra);
        let bounds = (
            state.config.request_timeout,
            flashfusion_api::app::KEEP_ALIVE_IDLE,
        );
        let server = tokio::spawn(flashfusion_api::app::serve_http(
            listener,
            app,
            bounds,
            std::future::pending(),
        ));
        Self {
            base: format!("http://{address}"),
            root,
            db,
            state,
            sqlite_dir: None,
            http: reqwest::Client::builder()
                .timeout(TIMEOUT)
                .build()
                .expect("http client"),
            server,
        }
    }

    /// `token` with `block` appended by its holder, offline: biscuit attenuation, with
    /// no gateway involved.
    pub fn appended(&self, token: &str, block: BlockBuilder) -> String {
        Biscuit::from_base64(token, self.root.public())
            .and_then(|token| token.append(block))
            .and_then(|token| token.to_base64())
            .expect("a token of this root key, with the block appended")
    }

    /// A client without a token.
    pub fn anonymous(&self) -> Client {
        Client {
            base: self.base.clone(),
            http: self.http.clone(),
            token: None,
        }
    }

    /// A client presenting `token`.
    pub fn with_token(&self, token: &str) -> Client {
        Client {
            token: Some(token.to_owned()),
            ..self.anonymous()
        }
    }

    /// Signs up a new account and returns a client holding its token, and its id.
    pub async fn user(&self, email: &str) -> (Client, String) {
        let response = self
            .anonymous()
            .graphql(
                "mutation($input: SignUpInput!) { signUp(input: $input) { token user { id } } }",
                json!({ "input": { "email": email, "password": "correct horse", "displayName": email.split('@').next() } }),
            )
            .await;
        let token = response["data"]["signUp"]["token"]
            .as_str()
            .unwrap_or_else(|| panic!("sign-up failed: {response}"));
        let id = response["data"]["signUp"]["user"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        (self.with_token(token), id)
    }

    /// Signs up an account, makes it an administrator in the database (as
    /// `flashfusion token issue --role admin` does) and returns a client with an admin
    /// token.
    pub async fn admin(&self, email: &str) -> (Client, String) {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
        let (_, id) = self.user(email).await;
        entity::users::Entity::update_many()
            .col_expr(entity::users::Column::Role, Expr::value("admin"))
            .filter(entity::users::Column::Id.eq(id.parse::<uuid::Uuid>().expect("uuid")))
            .exec(self.state.db.connection())
            .await
            .expect("promote to admin");
        let token = self.mint(&id, flashfusion_api::auth::Role::Admin);
        (self.with_token(&token), id)
    }

    /// A token minted directly with the root key, for roles sign-up does not give.
    pub fn mint(&self, user_id: &str, role: flashfusion_api::auth::Role) -> String {
        let tokens = TokenService::from_key_pair(
            KeyPair::from(&self.root.private()),
            Duration::from_secs(3600),
        );
        tokens
            .issue(user_id.parse().expect("uuid"), role, None)
            .expect("mint")
            .0
    }

    /// A graphql-transport-ws socket signed in with `token` through `connection_init`
    /// ([`bearer`]) and acknowledged.
    pub async fn socket_as(&self, token: &str) -> WsClient {
        let mut ws = self.websocket("graphql-transport-ws", bearer(token)).await;
        assert_eq!(ws.next().await.expect("ack")["type"], "connection_ack");
        ws
    }

    /// Opens a WebSocket on `/graphql` with `subprotocol` and sends `connection_init`
    /// with `payload`.
    pub async fn websocket(&self, subprotocol: &str, payload: Value) -> WsClient {
        let mut ws = self.silent_websocket(subprotocol).await;
        ws.send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        ws
    }

    /// Opens a WebSocket on `/graphql` with `subprotocol` and sends nothing.
    pub async fn silent_websocket(&self, subprotocol: &str) -> WsClient {
        WsClient::connect(&self.base, subprotocol).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// An HTTP client of the gateway, with or without a token.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Client {
    /// The token this client presents.
    pub fn token(&self) -> &str {
        self.token.as_deref().unwrap_or_default()
    }

    /// POSTs a GraphQL operation and returns the JSON body.
    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        self.post_json(json!({ "query": query, "variables": variables }))
            .await
            .1
    }

    /// POSTs any JSON body to `/graphql`; returns status and JSON body.
    pub async fn post_json(&self, body: Value) -> (u16, Value) {
        let request = self.http.post(format!("{}/graphql", self.base)).json(&body);
        self.send(request).await
    }

    /// GETs `/graphql?query=..`; returns status and JSON body.
    pub async fn get_query(&self, query: &str) -> (u16, Value) {
        let request = self
            .http
            .get(format!("{}/graphql", self.base))
            .query(&[("query", query)]);
        self.send(request).await
    }

    /// Sends a prepared request with this client's token.
    pub async fn send(&self, mut request: reqwest::RequestBuilder) -> (u16, Value) {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request to the gateway");
        let status = response.status().as_u16();
        let text = response.text().await.expect("response body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// A request builder against the gateway, for raw HTTP checks.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }
}

/// A WebSocket connection to `/graphql`.
pub struct WsClient {
    stream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

/// How a WebSocket exchange ended when no JSON message came.
#[derive(Debug)]
pub enum WsEnd {
    /// The server closed the connection with this code.
    Closed(u16),
}

impl WsClient {
    /// Opens a WebSocket on `/graphql` of the gateway at `base` (`http://…`) with
    /// `subprotocol`, and sends nothing.
    pub async fn connect(base: &str, subprotocol: &str) -> Self {
        Self::connect_with(base, subprotocol, &[]).await
    }

    /// [`WsClient::connect`] with these headers on the upgrade request too.
    pub async fn connect_with(base: &str, subprotocol: &str, headers: &[(&str, &str)]) -> Self {
        let url = format!("{}/graphql", base.replacen("http", "ws", 1));
        let mut request = url.into_client_request().expect("ws request");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(subprotocol).expect("protocol header"),
        );
        for (name, value) in headers {
            request.headers_mut().insert(
                HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
                HeaderValue::from_str(value).expect("a header value"),
            );
        }
        let (stream, _) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(request))
            .await
            .expect("ws connect timed out")
            .expect("ws connect");
        Self { stream }
    }

    /// Sends one JSON message.
    pub async fn send(&mut self, message: Value) {
        self.stream
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("ws send");
    }

    /// The next JSON message (pings skipped), or how the connection ended; bounded by
    /// [`TIMEOUT`].
    pub async fn next(&mut self) -> Result<Value, WsEnd> {
        loop {
            let message = tokio::time::timeout(TIMEOUT, self.stream.next())
                .await
                .expect("no WebSocket message within the timeout");
            match message {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).expect("JSON message");
                    if matches!(value["type"].as_str(), Some("ping" | "ka")) {
                        continue;
                    }
                    return Ok(value);
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(WsEnd::Closed(frame.map_or(1005, |f| u16::from(f.code))));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(WsEnd::Closed(1006)),
            }
        }
    }
}

/// The `connection_init` payload that signs a socket in with `token`, as a browser
/// client sends it: an `Authorization` value.
pub fn bearer(token: &str) -> Value {
    json!({ "Authorization": format!("Bearer {token}") })
}
