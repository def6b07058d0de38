//! Configuration, from the environment (or flags): twelve-factor, so `.local/env`, compose and
//! systemd units all configure the server the same way. Secrets are wrapped so they never print.

use std::fmt;
use std::time::Duration;

use clap::Args;

/// A value that must not reach logs or `Debug` output.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Where the data lives.
#[derive(Args, Clone, Debug)]
pub struct DatabaseSettings {
    /// PostgreSQL URL of the application role (tenant work, under row-level security).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,
    /// PostgreSQL URL of the platform role (BYPASSRLS: provisioning, key lookup).
    #[arg(long, env = "DATABASE_PLATFORM_URL", hide_env_values = true)]
    pub database_platform_url: Option<Secret>,
    /// PostgreSQL URL of the owner role (migrations only).
    #[arg(long, env = "DATABASE_OWNER_URL", hide_env_values = true)]
    pub database_owner_url: Option<Secret>,
    /// Connections of the application pool. On a 2-core box more connections only add context
    /// switches: 16 measured the best tail latency (docs/benchmarks.md). `agentic serve` splits
    /// them between its HTTP workers (each opens its own share), and its in-process ingestion
    /// and reaper have a pool of this size of their own.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,
}

impl DatabaseSettings {
    pub fn app_url(&self) -> anyhow::Result<&str> {
        required(self.database_url.as_ref(), "DATABASE_URL")
    }
    pub fn platform_url(&self) -> anyhow::Result<&str> {
        required(self.database_platform_url.as_ref(), "DATABASE_PLATFORM_URL")
    }
    pub fn owner_url(&self) -> anyhow::Result<&str> {
        required(self.database_owner_url.as_ref(), "DATABASE_OWNER_URL")
    }
}

fn required<'a>(value: Option<&'a Secret>, name: &str) -> anyhow::Result<&'a str> {
    value
        .map(Secret::expose)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!("{name} is not set (see .local/env, written by `just services`)")
        })
}

/// Everything `agentic serve` needs beyond the database.
#[derive(Args, Clone, Debug)]
pub struct ServeSettings {
    /// Address to listen on.
    #[arg(long, env = "AGENTIC_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Prefix of every Redis key, so several deployments can share one Redis.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "agentic:")]
    pub redis_key_prefix: String,
    #[command(flatten)]
    pub jwt: JwtSettings,
    /// Maximum size of a JSON request body, in bytes.
    #[arg(long, env = "AGENTIC_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Worker threads of the HTTP server (default: one per core).
    #[arg(long, env = "AGENTIC_WORKERS")]
    pub workers: Option<usize>,
    /// Addresses of reverse proxies whose `X-Forwarded-For` is believed (comma-separated IPs).
    /// From anyone else the header is ignored, and the client is the TCP peer.
    #[arg(long, env = "AGENTIC_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Failed logins allowed per account and client address within five minutes (ten times as
    /// many per address); an account's failures from anywhere only slow attempts on it.
    #[arg(long, env = "AGENTIC_LOGIN_ATTEMPTS", default_value_t = 10)]
    pub login_attempts: u32,
    /// Where the local models live (`just models` installs them there).
    #[arg(long, env = "AGENTIC_MODELS_DIR", default_value = ".local/models")]
    pub models_dir: String,
    /// Base URL of an OpenAI-compatible API (e.g. `https://…/v1`); spaces of provider `openai`
    /// embed through it. Without it, such spaces cannot embed here.
    #[arg(long, env = "OPENAI_BASE_URL")]
    pub openai_base_url: Option<String>,
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<Secret>,
    /// Whether the OpenAI-compatible server's chat models take tools (function calling): agents
    /// with `knowledge_search` then search through it; otherwise sources go into the prompt.
    #[arg(long, env = "OPENAI_SUPPORTS_TOOLS", default_value_t = true, action = clap::ArgAction::Set)]
    pub openai_supports_tools: bool,
    /// Tokens the OpenAI-compatible server's chat models see at once (the history budget).
    #[arg(long, env = "OPENAI_CONTEXT_WINDOW", default_value_t = 128_000)]
    pub openai_context_window: u32,
    /// Seconds to wait for an OpenAI-compatible server to start answering (per attempt).
    #[arg(long, env = "OPENAI_TIMEOUT_SECS", default_value_t = 60)]
    pub openai_timeout_secs: u64,
    /// Keys that seal tenants' provider API keys: `<id>:<base64 of 32 bytes>[,…]`, the first
    /// sealing new ones, the others still opening what they sealed (`agentic keys rotate`
    /// re-seals under the first). Without, providers cannot be created (503).
    #[arg(long, env = "AGENTIC_SECRET_KEYS", hide_env_values = true)]
    pub secret_keys: Option<Secret>,
    /// Requests that may wait for the local chat model while it answers one; beyond, 503.
    #[arg(long, env = "AGENTIC_LOCAL_CHAT_QUEUE", default_value_t = 8)]
    pub local_chat_queue: usize,
    /// Runs of one tenant in progress at once in this process; beyond, 503 `server_busy`.
    #[arg(long, env = "AGENTIC_RUNS_PER_TENANT", default_value_t = 16)]
    pub runs_per_tenant: usize,
    /// Clients that may wait on the event log at once (each holds a Redis connection); beyond,
    /// 503. Followers of a run this process executes read it from memory and hold none.
    #[arg(long, env = "AGENTIC_RUN_FOLLOWERS", default_value_t = 256)]
    pub run_followers: usize,
    /// Largest document accepted, in bytes.
    #[arg(long, env = "AGENTIC_MAX_DOCUMENT_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_document_bytes: usize,
    /// Ingestion workers run inside this process (0: leave ingestion to `agentic worker`).
    #[arg(long, env = "AGENTIC_INGEST_WORKERS", default_value_t = 1)]
    pub ingest_workers: usize,
    /// How long an idle ingestion worker waits before looking for work again, in milliseconds.
    #[arg(long, env = "AGENTIC_WORKER_POLL_MS", default_value_t = 500)]
    pub worker_poll_ms: u64,
    /// Jobs of one tenant running at once across all workers (tenants take turns for the rest).
    #[arg(long, env = "AGENTIC_TENANT_MAX_RUNNING_JOBS", default_value_t = 2)]
    pub tenant_max_running_jobs: u32,
    /// Address space of a document-reading child process, in MiB (a parser that needs more is
    /// killed: 422 `extraction_limit`).
    #[arg(long, env = "AGENTIC_EXTRACT_MEMORY_MIB", default_value_t = 1024)]
    pub extract_memory_mib: u64,
    /// Wall-clock and CPU seconds a document-reading child may take before it is killed.
    #[arg(long, env = "AGENTIC_EXTRACT_TIMEOUT_SECS", default_value_t = 60)]
    pub extract_timeout_secs: u64,
    /// Documents of one tenant read at once (more answer 503 `server_busy`); in all, one per core.
    #[arg(long, env = "AGENTIC_EXTRACT_PER_TENANT", default_value_t = 2)]
    pub extract_per_tenant: usize,
    /// The program run as the document-reading child (`<program> extract …`); default: this
    /// executable. Tests point it at the built `agentic`.
    #[arg(long, env = "AGENTIC_EXTRACT_PROGRAM", hide = true)]
    pub extract_program: Option<String>,
    /// Argon2id memory cost in KiB; unset means the OWASP default (19 MiB, 2 passes). Only the
    /// test suite lowers it.
    #[arg(long, env = "AGENTIC_ARGON2_M_KIB", hide = true)]
    pub argon2_m_kib: Option<u32>,
}

#[derive(Args, Clone, Debug)]
pub struct JwtSettings {
    /// The signing secret (at least 32 bytes), under the key id `JWT_KID`.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,
    /// Key id of `JWT_SECRET`, written into each token's header.
    #[arg(long, env = "JWT_KID", default_value = "k1")]
    pub jwt_kid: String,
    /// Older keys still accepted for verification during a rotation: `kid=secret,kid=secret`.
    #[arg(long, env = "JWT_PREVIOUS_KEYS", hide_env_values = true)]
    pub jwt_previous_keys: Option<Secret>,
    #[arg(long, env = "JWT_ISSUER", default_value = "agentic-platform")]
    pub jwt_issuer: String,
    #[arg(long, env = "JWT_AUDIENCE", default_value = "agentic-api")]
    pub jwt_audience: String,
    /// Lifetime of access tokens, in seconds.
    #[arg(long, env = "JWT_ACCESS_TTL_SECS", default_value_t = 900)]
    pub access_ttl_secs: u64,
    /// Lifetime of refresh tokens, in seconds.
    #[arg(long, env = "JWT_REFRESH_TTL_SECS", default_value_t = 7 * 24 * 3600)]
    pub refresh_ttl_secs: u64,
    /// Development mode: a missing secret is replaced by a random one (tokens die at restart).
    #[arg(long, env = "AGENTIC_DEV", default_value_t = false)]
    pub dev: bool,
}

impl JwtSettings {
    /// The verification keys, the signing one first. Refuses missing or short secrets unless in
    /// development mode.
    pub fn keys(&self) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        let signing = match &self.jwt_secret {
            Some(secret) if !secret.expose().is_empty() => secret.expose().as_bytes().to_vec(),
            _ if self.dev => {
                tracing::warn!("JWT_SECRET is not set: development mode uses a random secret");
                let mut bytes = uuid::Uuid::new_v4().as_bytes().to_vec();
                bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
                bytes
            }
            _ => anyhow::bail!(
                "JWT_SECRET is not set; set a secret of at least 32 bytes (or AGENTIC_DEV=true)"
            ),
        };
        let mut keys = vec![(self.jwt_kid.clone(), signing)];
        if let Some(previous) = &self.jwt_previous_keys {
            for pair in previous
                .expose()
                .split(',')
                .filter(|p| !p.trim().is_empty())
            {
                let (kid, secret) = pair
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("JWT_PREVIOUS_KEYS entries are kid=secret"))?;
                keys.push((kid.trim().to_owned(), secret.trim().as_bytes().to_vec()));
            }
        }
        for (kid, secret) in &keys {
            anyhow::ensure!(
                secret.len() >= 32,
                "the JWT secret of key id {kid:?} is shorter than 32 bytes"
            );
        }
        Ok(keys)
    }

    pub fn access_ttl(&self) -> Duration {
        Duration::from_secs(self.access_ttl_secs)
    }

    pub fn refresh_ttl(&self) -> Duration {
        Duration::from_secs(self.refresh_ttl_secs)
    }
}
