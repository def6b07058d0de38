//! The test harness: each test gets a fresh database (created from the migrated schema), its own
//! Redis key prefix, and the real application on a random port, then talks to it over HTTP.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;

use api_actix::config::{DatabaseSettings, JwtSettings, Secret, ServeSettings};
use api_actix::startup::{Application, Stores};
use domain::ports::SystemClock;
use domain::services::{TenantPorts, TenantService};
use migration::{Migrator, MigratorTrait};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::{Value, json};

pub const JWT_KID: &str = "test-k1";

/// Settings from the environment, or from `.local/env` written by `just services`.
fn env_settings() -> HashMap<String, String> {
    let mut vars = HashMap::new();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.local/env");
    if let Ok(text) = std::fs::read_to_string(root) {
        for line in text.lines() {
            let line = line.trim().trim_start_matches("export ");
            if let Some((k, v)) = line.split_once('=') {
                vars.insert(
                    k.to_owned(),
                    v.trim_matches('\'').trim_matches('"').to_owned(),
                );
            }
        }
    }
    for key in [
        "DATABASE_URL",
        "DATABASE_OWNER_URL",
        "DATABASE_PLATFORM_URL",
        "REDIS_URL",
    ] {
        if let Ok(v) = std::env::var(key) {
            vars.insert(key.to_owned(), v);
        }
    }
    vars
}

/// One setting from the environment or `.local/env` (e.g. `AGENTIC_PG_BIN`, where `just services`
/// installed PostgreSQL).
pub fn setting(key: &str) -> Option<String> {
    std::env::var(key)
        .ok()
        .or_else(|| env_settings().remove(key))
}

fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("database URL has a path");
    format!("{base}/{db}")
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db_name: String,
    pub app_url: String,
    pub platform_url: String,
    pub owner_url: String,
    pub redis_url: String,
    pub redis_prefix: String,
    pub jwt_secret: String,
    pub platform_key: String,
}

/// A tenant made through the API, with its admin signed in.
pub struct TenantFixture {
    pub id: String,
    pub slug: String,
    pub admin_id: String,
    pub admin_email: String,
    pub admin_password: String,
    pub admin_token: String,
    pub refresh_token: String,
}

pub struct Options {
    pub jwt_kid: String,
    pub jwt_secret: String,
    pub previous_keys: Option<String>,
    pub access_ttl_secs: u64,
    pub login_attempts: u32,
    /// An OpenAI-compatible server for `openai` spaces.
    pub openai_base_url: Option<String>,
    /// Spaces registered before the server starts: (id, provider, model, dimensions).
    pub spaces: Vec<(String, String, String, u32)>,
    /// In-process ingestion workers (0: jobs stay queued).
    pub ingest_workers: usize,
    /// The JSON body limit (`AGENTIC_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// How long a document-reading child may take (`AGENTIC_EXTRACT_TIMEOUT_SECS`).
    pub extract_timeout_secs: u64,
    /// Proxies whose `X-Forwarded-For` is believed (`AGENTIC_TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Whether the OpenAI-compatible chat models take tools (`OPENAI_SUPPORTS_TOOLS`).
    pub openai_supports_tools: bool,
    /// Per-attempt wait for the OpenAI-compatible server's answer (`OPENAI_TIMEOUT_SECS`).
    pub openai_timeout_secs: u64,
    /// The keys that seal providers' API keys (`AGENTIC_SECRET_KEYS`).
    pub secret_keys: String,
    /// Runs of one tenant in progress at once (`AGENTIC_RUNS_PER_TENANT`).
    pub runs_per_tenant: usize,
}

/// The secret key ring of every test server unless a test says otherwise.
pub const SECRET_KEYS: &str = "test-1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

impl Default for Options {
    fn default() -> Self {
        Self {
            jwt_kid: JWT_KID.into(),
            jwt_secret: format!("test-secret-{}", uuid::Uuid::new_v4().simple()),
            previous_keys: None,
            access_ttl_secs: 900,
            login_attempts: 5,
            openai_base_url: None,
            spaces: Vec::new(),
            ingest_workers: 1,
            max_body_bytes: 64 * 1024,
            extract_timeout_secs: 30,
            trusted_proxies: Vec::new(),
            openai_supports_tools: true,
            openai_timeout_secs: 10,
            secret_keys: SECRET_KEYS.into(),
            runs_per_tenant: 16,
        }
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(options: Options) -> Self {
        let vars = env_settings();
        let get = |k: &str| {
            vars.get(k)
                .cloned()
                .unwrap_or_else(|| panic!("{k} is not set: run `just services` first"))
        };
        let db_name = format!("agentic_test_{}", uuid::Uuid::new_v4().simple());
        let owner_admin = store_postgres::connect(&get("DATABASE_OWNER_URL"), &Default::default())
            .await
            .expect("owner connects (is PostgreSQL up? run `just services`)");
        owner_admin
            .execute_unprepared(&format!("CREATE DATABASE {db_name}"))
            .await
            .expect("create test database");
        owner_admin.close().await.ok();
        let owner_url = with_database(&get("DATABASE_OWNER_URL"), &db_name);
        let owner = store_postgres::connect(&owner_url, &Default::default())
            .await
            .expect("owner connects to test db");
        Migrator::up(&owner, None).await.expect("migrations apply");
        for (id, provider, model, dimensions) in &options.spaces {
            owner
                .execute_unprepared(&format!(
                    "INSERT INTO embedding_spaces (id, provider, model, dimensions, normalized)
                     VALUES ('{id}', '{provider}', '{model}', {dimensions}, true)"
                ))
                .await
                .expect("space registered");
        }
        owner.close().await.ok();
        // As `agentic migrate up` does: the server itself builds no index (it holds no owner rights).
        store_postgres::ensure_space_indexes(&owner_url)
            .await
            .expect("vector indexes built by the owner");
        let app = Self {
            address: String::new(),
            client: reqwest::Client::new(),
            app_url: with_database(&get("DATABASE_URL"), &db_name),
            platform_url: with_database(&get("DATABASE_PLATFORM_URL"), &db_name),
            owner_url,
            db_name,
            redis_url: get("REDIS_URL"),
            redis_prefix: format!("test:{}:", uuid::Uuid::new_v4().simple()),
            jwt_secret: options.jwt_secret.clone(),
            platform_key: String::new(),
        };
        app.start(options).await
    }

    /// Another server on the same database and Redis namespace, configured differently (e.g. a
    /// rotated JWT key).
    pub async fn sibling(&self, options: Options) -> Self {
        let twin = Self {
            address: String::new(),
            client: reqwest::Client::new(),
            db_name: self.db_name.clone(),
            app_url: self.app_url.clone(),
            platform_url: self.platform_url.clone(),
            owner_url: self.owner_url.clone(),
            redis_url: self.redis_url.clone(),
            redis_prefix: self.redis_prefix.clone(),
            jwt_secret: options.jwt_secret.clone(),
            platform_key: self.platform_key.clone(),
        };
        let mut started = twin.start(options).await;
        started.platform_key = self.platform_key.clone();
        started
    }

    pub fn db_settings(&self) -> DatabaseSettings {
        DatabaseSettings {
            database_url: Some(Secret::new(self.app_url.clone())),
            database_platform_url: Some(Secret::new(self.platform_url.clone())),
            database_owner_url: Some(Secret::new(self.owner_url.clone())),
            database_max_connections: 4,
        }
    }

    /// The server settings of this test's app (its Redis namespace and JWT secret), with
    /// default options and no ingestion workers.
    pub fn serve_settings(&self) -> ServeSettings {
        self.serve_settings_for(Options {
            jwt_secret: self.jwt_secret.clone(),
            ingest_workers: 0,
            ..Default::default()
        })
    }

    fn serve_settings_for(&self, options: Options) -> ServeSettings {
        ServeSettings {
            bind: "127.0.0.1:0".into(),
            redis_url: self.redis_url.clone(),
            redis_key_prefix: self.redis_prefix.clone(),
            jwt: JwtSettings {
                jwt_secret: Some(Secret::new(options.jwt_secret)),
                jwt_kid: options.jwt_kid,
                jwt_previous_keys: options.previous_keys.map(Secret::new),
                jwt_issuer: "agentic-platform".into(),
                jwt_audience: "agentic-api".into(),
                access_ttl_secs: options.access_ttl_secs,
                refresh_ttl_secs: 3600,
                dev: false,
            },
            max_body_bytes: options.max_body_bytes,
            workers: Some(1),
            trusted_proxies: options.trusted_proxies.clone(),
            login_attempts: options.login_attempts,
            argon2_m_kib: Some(64),
            models_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../../.local/models").into(),
            openai_base_url: options.openai_base_url.clone(),
            openai_api_key: Some(Secret::new("test-key")),
            openai_supports_tools: options.openai_supports_tools,
            openai_context_window: 128_000,
            openai_timeout_secs: options.openai_timeout_secs,
            secret_keys: Some(Secret::new(options.secret_keys.clone())),
            local_chat_queue: 8,
            runs_per_tenant: options.runs_per_tenant,
            run_followers: 64,
            max_document_bytes: 512 * 1024,
            ingest_workers: options.ingest_workers,
            worker_poll_ms: 50,
            tenant_max_running_jobs: 2,
            extract_memory_mib: 1024,
            extract_timeout_secs: options.extract_timeout_secs,
            extract_per_tenant: 2,
            extract_program: Some(env!("CARGO_BIN_EXE_agentic").to_owned()),
        }
    }

    async fn start(mut self, options: Options) -> Self {
        let serve = self.serve_settings_for(options);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a random port");
        let db = self.db_settings();
        let mut application = Application::build(&db, &serve, listener)
            .await
            .expect("application builds");
        // Options::ingest_workers of them (none when a test wants jobs left queued).
        application.spawn_ingest_workers();
        application.spawn_run_reaper();
        self.address = format!("http://127.0.0.1:{}", application.port());
        tokio::spawn(application.run_until_stopped());
        if self.platform_key.is_empty() {
            let stores = Stores::connect(&db).await.expect("stores connect");
            let sessions =
                cache_redis::RedisCache::connect(&self.redis_url, self.redis_prefix.clone())
                    .expect("redis");
            let tenants = TenantService::new(TenantPorts {
                store: stores.store.clone(),
                platform: stores.platform.clone(),
                hasher: api_actix::startup::password_hasher(Some(&serve)).expect("hasher"),
                secrets: Arc::new(auth_crypto::RandomSecrets),
                sessions: Arc::new(sessions),
                clock: Arc::new(SystemClock),
            });
            let (_, key) = tenants
                .create_platform_key("tests", None)
                .await
                .expect("platform key");
            self.platform_key = key;
        }
        self
    }

    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.address));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.request(Method::GET, path, Some(token))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Response {
        self.request(Method::POST, path, Some(token))
            .json(&body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn post_empty(&self, path: &str, token: &str) -> Response {
        self.request(Method::POST, path, Some(token))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Response {
        self.request(Method::PATCH, path, Some(token))
            .json(&body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Response {
        self.request(Method::PUT, path, Some(token))
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    /// Sends a `multipart/form-data` body: a `file` part (with a name and, if given, a type) and
    /// plain text fields.
    pub async fn send_file(
        &self,
        method: Method,
        path: &str,
        token: &str,
        file: (&str, Option<&str>, &[u8]),
        fields: &[(&str, &str)],
    ) -> Response {
        let boundary = "agentic-test-boundary-7f3a";
        let mut body = Vec::new();
        for (name, value) in fields {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                    .as_bytes(),
            );
        }
        let (file_name, mime, bytes) = file;
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n")
                .as_bytes(),
        );
        if let Some(mime) = mime {
            body.extend_from_slice(format!("Content-Type: {mime}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        self.request(method, path, Some(token))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn delete(&self, path: &str, token: &str) -> Response {
        self.request(Method::DELETE, path, Some(token))
            .send()
            .await
            .expect("request sent")
    }

    /// A tenant with its admin, through `POST /v1/tenants` and a login.
    pub async fn tenant(&self, slug: &str) -> TenantFixture {
        let email = format!("admin@{slug}.test");
        let password = "correct-horse-battery".to_owned();
        let res = self
            .post(
                "/v1/tenants",
                &self.platform_key,
                json!({"name": slug.to_uppercase(), "slug": slug, "admin_email": email, "admin_password": password}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED, "tenant created");
        let made: Value = res.json().await.expect("json");
        let tokens = self.login(slug, &email, &password).await;
        TenantFixture {
            id: made["tenant"]["id"].as_str().expect("tenant id").to_owned(),
            slug: slug.to_owned(),
            admin_id: made["admin"]["id"].as_str().expect("admin id").to_owned(),
            admin_email: email,
            admin_password: password,
            admin_token: tokens["access_token"].as_str().expect("access").to_owned(),
            refresh_token: tokens["refresh_token"]
                .as_str()
                .expect("refresh")
                .to_owned(),
        }
    }

    pub async fn login(&self, tenant: &str, email: &str, password: &str) -> Value {
        let res = self
            .request(Method::POST, "/v1/auth/login", None)
            .json(&json!({"tenant": tenant, "email": email, "password": password}))
            .send()
            .await
            .expect("request sent");
        assert_eq!(res.status(), StatusCode::OK, "login of {email} succeeds");
        res.json().await.expect("json")
    }

    /// A user of the tenant with the given role, signed in; returns (user id, access token).
    pub async fn user(&self, tenant: &TenantFixture, email: &str, role: &str) -> (String, String) {
        let res = self
            .post(
                "/v1/users",
                &tenant.admin_token,
                json!({"email": email, "password": "member-password-1", "role": role}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED, "user created");
        let user: Value = res.json().await.expect("json");
        let tokens = self.login(&tenant.slug, email, "member-password-1").await;
        (
            user["id"].as_str().expect("id").to_owned(),
            tokens["access_token"].as_str().expect("token").to_owned(),
        )
    }

    /// An API key of the tenant with these scopes; returns (key id, key).
    pub async fn api_key(&self, tenant: &TenantFixture, scopes: &[&str]) -> (String, String) {
        let res = self
            .post(
                "/v1/api-keys",
                &tenant.admin_token,
                json!({"name": "test key", "scopes": scopes}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED, "api key created");
        let key: Value = res.json().await.expect("json");
        (
            key["id"].as_str().expect("id").to_owned(),
            key["key"].as_str().expect("key").to_owned(),
        )
    }

    pub async fn agent(&self, token: &str, slug: &str) -> Value {
        let res = self
            .post(
                "/v1/agents",
                token,
                json!({"name": format!("Agent {slug}"), "slug": slug, "model": {"provider": "local", "name": "smollm2"}}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED, "agent created");
        res.json().await.expect("json")
    }

    /// Creates a collection in the given space; answers its id.
    pub async fn collection_in(&self, token: &str, name: &str, space_id: &str) -> String {
        let made = json(
            self.post(
                "/v1/collections",
                token,
                json!({"name": name, "space_id": space_id}),
            )
            .await,
            StatusCode::CREATED,
        )
        .await;
        made["id"].as_str().expect("id").to_owned()
    }

    /// Creates a collection in the default space; answers its id.
    pub async fn collection(&self, token: &str, name: &str) -> String {
        let made = json(
            self.post("/v1/collections", token, json!({"name": name}))
                .await,
            StatusCode::CREATED,
        )
        .await;
        made["id"].as_str().expect("id").to_owned()
    }

    /// A connection to this test's database as the application role (RLS applies).
    pub async fn app_connection(&self) -> DatabaseConnection {
        store_postgres::connect(&self.app_url, &Default::default())
            .await
            .expect("app role connects")
    }

    /// A connection as the platform role (BYPASSRLS), to arrange states the API cannot make.
    pub async fn platform_connection(&self) -> DatabaseConnection {
        store_postgres::connect(&self.platform_url, &Default::default())
            .await
            .expect("platform role connects")
    }
}

/// Asserts the status and that the body is problem+json with the given code.
pub async fn assert_problem(res: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(res.status(), status, "status");
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    assert!(res.headers().contains_key("x-request-id"));
    let body: Value = res.json().await.expect("problem json");
    assert_eq!(body["code"], code, "problem code in {body}");
    assert_eq!(body["status"], status.as_u16());
    assert!(body["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    body
}

pub async fn json(res: Response, status: StatusCode) -> Value {
    let actual = res.status();
    let body = res.text().await.expect("body");
    assert_eq!(actual, status, "status; body: {body}");
    serde_json::from_str(&body).expect("json body")
}

impl TestApp {
    /// `/readyz`, polled until it answers `status` (the server builds missing vector indexes in
    /// the background as it starts); answers its body.
    pub async fn readiness(&self, status: StatusCode) -> Value {
        let mut last = None;
        for _ in 0..100 {
            let res = self
                .request(Method::GET, "/readyz", None)
                .send()
                .await
                .expect("request sent");
            if res.status() == status {
                return res.json().await.expect("json");
            }
            last = Some(res.status());
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("/readyz stayed {last:?}, expected {status}");
    }

    /// Waits until the job is finished (or fails the test after 60 s); answers it.
    pub async fn wait_for_job(&self, token: &str, job_id: &str) -> Value {
        for _ in 0..600 {
            let job = json(
                self.get(&format!("/v1/jobs/{job_id}"), token).await,
                StatusCode::OK,
            )
            .await;
            if ["succeeded", "failed", "cancelled"].contains(&job["state"].as_str().unwrap_or("")) {
                return job;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("job {job_id} did not finish within 60 s");
    }

    /// Uploads a text document and answers the response body (status 202 expected).
    pub async fn upload(
        &self,
        token: &str,
        collection: &str,
        title: &str,
        content: &str,
        metadata: Value,
    ) -> Value {
        let res = self
            .post(
                &format!("/v1/collections/{collection}/documents"),
                token,
                json!({"title": title, "content": content, "metadata": metadata}),
            )
            .await;
        json(res, StatusCode::ACCEPTED).await
    }
}

/// An OpenAI-compatible embeddings endpoint answering one fixed 8-dimensional vector per input,
/// with the first component set when the text mentions "rocket" (so vector search has a winner),
/// after `delay` (so a job can be caught running).
#[derive(Default)]
pub struct FakeEmbeddings {
    pub delay: std::time::Duration,
}

impl wiremock::Respond for FakeEmbeddings {
    fn respond(&self, request: &wiremock::Request) -> wiremock::ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let inputs: Vec<String> = match &body["input"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().unwrap_or_default().to_owned())
                .collect(),
            other => panic!("unexpected input {other}"),
        };
        let data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(index, text)| {
                let mut v = vec![0.1_f32; 8];
                if text.to_lowercase().contains("rocket") {
                    v[0] = 1.0;
                }
                json!({"object": "embedding", "index": index, "embedding": v})
            })
            .collect();
        wiremock::ResponseTemplate::new(200)
            .set_delay(self.delay)
            .set_body_json(json!({
                "object": "list", "data": data, "model": body["model"],
                "usage": {"prompt_tokens": 1, "total_tokens": 1}
            }))
    }
}

/// A server with an `openai-test` space (8 dimensions) embedding through `FakeEmbeddings`.
pub async fn app_with_openai_space(
    delay: std::time::Duration,
    ingest_workers: usize,
) -> (TestApp, wiremock::MockServer) {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/v1/embeddings"))
        .respond_with(FakeEmbeddings { delay })
        .mount(&server)
        .await;
    let app = TestApp::spawn_with(Options {
        openai_base_url: Some(format!("{}/v1", server.uri())),
        spaces: vec![(
            "openai-test".into(),
            "openai".into(),
            "test-embed".into(),
            8,
        )],
        ingest_workers,
        ..Default::default()
    })
    .await;
    (app, server)
}
