//! The `agentic` command line: serve, migrate, and the operator's provisioning commands.

use std::net::TcpListener;

use clap::{Parser, Subcommand};
use domain::Actor;
use domain::entities::TenantStatus;
use domain::ports::SystemClock;
use domain::services::{TenantPorts, TenantService, UserDraft, UserService};
use domain::values::Slug;
use migration::{Migrator, MigratorTrait};
use serde_json::json;
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

use crate::config::{DatabaseSettings, ServeSettings};
use crate::http::dto::{TenantDto, UserDto};
use crate::startup::{
    Application, Stores, ingest_worker, load_embedders, password_hasher, run_worker,
};

#[derive(Debug, Parser)]
#[command(
    name = "agentic",
    version,
    about = "Agentic Platform: multi-tenant backend for AI agents with RAG"
)]
pub struct Cli {
    #[command(flatten)]
    pub db: DatabaseSettings,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API.
    Serve(Box<ServeSettings>),
    /// Work ingestion jobs from the queue (as many of these as you like, on any machine).
    Worker(Box<ServeSettings>),
    /// Apply or roll back schema migrations (as the owner role, DATABASE_OWNER_URL).
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Tenants.
    Tenant {
        #[command(subcommand)]
        action: TenantAction,
    },
    /// Users.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// The secret keys that seal tenants' provider API keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Embed lines of standard input; writes one JSON array per line.
    Embed {
        /// The space whose embedder to use.
        #[arg(long, default_value = crate::startup::DEFAULT_SPACE)]
        space: String,
        #[command(flatten)]
        settings: Box<ServeSettings>,
    },
    /// Embedding spaces (platform-wide).
    Space {
        #[command(subcommand)]
        action: SpaceAction,
    },
    /// Platform operator keys (for POST /v1/tenants).
    PlatformKey {
        #[command(subcommand)]
        action: PlatformKeyAction,
    },
    /// The audit log (owner operations, with DATABASE_OWNER_URL).
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Internal: read one document from stdin as a child of the server, under hard limits.
    #[command(hide = true)]
    Extract {
        #[arg(long)]
        content_type: String,
        #[arg(long)]
        memory_bytes: u64,
        #[arg(long)]
        cpu_secs: u64,
        #[arg(long)]
        max_text_bytes: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Delete every audit entry of a tenant, for good (no other role may: see docs/security.md).
    /// Prints how many were removed.
    Purge {
        /// The tenant's id.
        #[arg(long)]
        tenant: uuid::Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Roll back the last `steps` migrations (all of them with --all).
    Down {
        #[arg(long, default_value_t = 1, conflicts_with = "all")]
        steps: u32,
        #[arg(long)]
        all: bool,
    },
    /// List migrations and whether each is applied.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum TenantAction {
    /// Create a tenant with its first admin; prints JSON with the ids and the admin's password.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        slug: String,
        #[arg(long)]
        admin_email: String,
        /// Generated when omitted.
        #[arg(long, env = "AGENTIC_ADMIN_PASSWORD", hide_env_values = true)]
        admin_password: Option<String>,
    },
    /// Every tenant, newest first, as JSON lines.
    List,
    /// Suspend a tenant: its users' tokens and its API keys are refused at once (403
    /// `tenant_suspended`) until it is resumed. Needs REDIS_URL (and REDIS_KEY_PREFIX) of the servers.
    Suspend {
        /// The tenant's id.
        #[arg(long)]
        id: uuid::Uuid,
    },
    /// Let a suspended tenant in again.
    Resume {
        /// The tenant's id.
        #[arg(long)]
        id: uuid::Uuid,
    },
    /// Set a tenant's daily token quota (chat tokens and embedding calls through the API, per
    /// UTC day), or lift it with `--unlimited`.
    Quota {
        /// The tenant's id.
        #[arg(long)]
        id: uuid::Uuid,
        /// Tokens per UTC day.
        #[arg(
            long,
            conflicts_with = "unlimited",
            required_unless_present = "unlimited"
        )]
        daily_tokens: Option<u64>,
        /// No limit.
        #[arg(long)]
        unlimited: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Print a new random key as AGENTIC_SECRET_KEYS takes it (`<id>:<base64>`); put it first
    /// in the list (keeping the older ones) and run `keys rotate`.
    Generate {
        /// Its id, stored beside what it seals (e.g. the date).
        #[arg(long)]
        id: String,
    },
    /// Re-seal every provider key under the first key of AGENTIC_SECRET_KEYS; the older keys
    /// may leave the list once this reports nothing left under them.
    Rotate {
        #[arg(long, env = "AGENTIC_SECRET_KEYS", hide_env_values = true)]
        secret_keys: crate::config::Secret,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Create a user in a tenant; prints the user as JSON.
    Create {
        /// The tenant's slug.
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        #[arg(long, env = "AGENTIC_USER_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long, default_value = "member")]
        role: String,
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SpaceAction {
    /// Register an embedding space and build its vector index (as the platform role).
    Register {
        /// A slug, e.g. `openai-3-small`.
        #[arg(long)]
        id: String,
        /// `local` or `openai`.
        #[arg(long)]
        provider: String,
        #[arg(long)]
        model: String,
        #[arg(long)]
        dimensions: u32,
        /// Whether the model's vectors are unit length.
        #[arg(long, default_value_t = true)]
        normalized: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PlatformKeyAction {
    /// Mint a platform key; prints it once as JSON.
    Create {
        #[arg(long, default_value = "operator")]
        name: String,
        /// The key stops working this many days from now (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Every platform key (never the key itself), newest first, as JSON lines.
    List,
    /// Revoke a platform key; it stops working at once.
    Revoke {
        #[arg(long)]
        id: uuid::Uuid,
    },
}

/// Logs to stderr, `RUST_LOG`-filtered (default `info`), JSON when `AGENTIC_LOG_JSON` is set.
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if std::env::var_os("AGENTIC_LOG_JSON").is_some() {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

impl Cli {
    /// Runs `agentic extract` (see `text_extract::sandbox`), which must start before any runtime
    /// or logger of ours; `None` for every other command.
    #[must_use]
    pub fn run_extraction_child(&self) -> Option<std::process::ExitCode> {
        let Command::Extract {
            content_type,
            memory_bytes,
            cpu_secs,
            max_text_bytes,
        } = &self.command
        else {
            return None;
        };
        let Some(content_type) = domain::values::ContentType::from_mime(content_type) else {
            return Some(std::process::ExitCode::FAILURE);
        };
        Some(text_extract::run_child(
            content_type,
            text_extract::SandboxLimits {
                memory_bytes: *memory_bytes,
                cpu_secs: *cpu_secs,
                max_text_bytes: *max_text_bytes,
            },
        ))
    }

    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Extract { .. } => Err(anyhow::anyhow!(
                "`agentic extract` runs only as a child of the server"
            )),
            Command::Serve(serve) => {
                let listener = TcpListener::bind(&serve.bind)?;
                let mut app = Application::build(&self.db, &serve, listener).await?;
                app.spawn_ingest_workers();
                app.spawn_run_reaper();
                tracing::info!(bind = %serve.bind, "serving; docs at /docs");
                app.run_until_stopped().await?;
                Ok(())
            }
            Command::Worker(settings) => {
                let stores = Stores::connect(&self.db).await?;
                let spaces = stores.store.spaces().await?;
                let embedders = load_embedders(&settings, &spaces);
                tracing::info!("ingestion worker started");
                run_worker(
                    ingest_worker(&stores, embedders, &settings, "worker"),
                    std::time::Duration::from_millis(settings.worker_poll_ms),
                )
                .await;
                Ok(())
            }
            Command::Migrate { action } => migrate(&self.db, action).await,
            Command::Embed { space, settings } => embed(&self.db, &space, &settings).await,
            Command::Tenant { action } => tenant(&self.db, action).await,
            Command::User { action } => user(&self.db, action).await,
            Command::Keys { action } => keys(&self.db, action).await,
            Command::PlatformKey { action } => platform_key(&self.db, action).await,
            Command::Space { action } => space(&self.db, action).await,
            Command::Audit {
                action: AuditAction::Purge { tenant },
            } => {
                let removed = store_postgres::purge_audit_trail(
                    self.db.owner_url()?,
                    domain::TenantId::from_uuid(tenant),
                )
                .await?;
                println!("{}", json!({"tenant": tenant, "removed": removed}));
                Ok(())
            }
        }
    }
}

async fn migrate(db: &DatabaseSettings, action: MigrateAction) -> anyhow::Result<()> {
    let conn =
        store_postgres::connect(db.owner_url()?, &store_postgres::PoolOptions::default()).await?;
    match action {
        MigrateAction::Up => {
            Migrator::up(&conn, None).await?;
            // Indexes need the owner's rights, which only this command and `space register`
            // hold; a running server uses a new index as soon as it is valid.
            let built = store_postgres::ensure_space_indexes(db.owner_url()?).await?;
            if !built.is_empty() {
                eprintln!("built vector indexes: {}", built.join(", "));
            }
        }
        MigrateAction::Down { steps, all } => {
            Migrator::down(&conn, if all { None } else { Some(steps) }).await?;
        }
        MigrateAction::Status => {
            for m in Migrator::get_migration_with_status(&conn).await? {
                println!("{}\t{}", m.name(), m.status());
            }
        }
    }
    Ok(())
}

/// The servers' Redis, where changes to users and tenants are announced (the same variables as
/// `agentic serve`; connected lazily, so commands that announce nothing never touch it).
fn sessions() -> anyhow::Result<cache_redis::RedisCache> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = std::env::var("REDIS_KEY_PREFIX").unwrap_or_else(|_| "agentic:".into());
    Ok(cache_redis::RedisCache::connect(&url, prefix)?)
}

fn tenant_service(stores: &Stores) -> anyhow::Result<TenantService> {
    Ok(TenantService::new(TenantPorts {
        store: stores.store.clone(),
        platform: stores.platform.clone(),
        hasher: password_hasher(None)?,
        secrets: Arc::new(auth_crypto::RandomSecrets),
        sessions: Arc::new(sessions()?),
        clock: Arc::new(SystemClock),
    }))
}

async fn tenant(db: &DatabaseSettings, action: TenantAction) -> anyhow::Result<()> {
    let stores = Stores::connect(db).await?;
    let (name, slug, admin_email, admin_password) = match action {
        TenantAction::Create {
            name,
            slug,
            admin_email,
            admin_password,
        } => (name, slug, admin_email, admin_password),
        TenantAction::List => {
            let mut page = domain::page::PageRequest::default();
            loop {
                let found = stores.platform.list_tenants(page).await?;
                for tenant in found.items {
                    println!("{}", serde_json::to_string(&TenantDto::from(tenant))?);
                }
                let Some(next) = found.next else { break };
                page = domain::page::PageRequest::new(None, Some(next))
                    .map_err(|m| anyhow::anyhow!(m))?;
            }
            return Ok(());
        }
        TenantAction::Quota {
            id, daily_tokens, ..
        } => {
            let tenant = tenant_service(&stores)?
                .set_daily_token_quota(Actor::System, domain::TenantId::from_uuid(id), daily_tokens)
                .await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&TenantDto::from(tenant))?
            );
            return Ok(());
        }
        TenantAction::Suspend { id } | TenantAction::Resume { id } => {
            let status = if matches!(action, TenantAction::Suspend { .. }) {
                TenantStatus::Suspended
            } else {
                TenantStatus::Active
            };
            let tenant = tenant_service(&stores)?
                .set_status(Actor::System, domain::TenantId::from_uuid(id), status)
                .await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&TenantDto::from(tenant))?
            );
            return Ok(());
        }
    };
    let made = tenant_service(&stores)?
        .provision(
            Actor::System,
            &name,
            &slug,
            &admin_email,
            admin_password.as_deref(),
        )
        .await?;
    let out = json!({
        "tenant": TenantDto::from(made.tenant),
        "admin": UserDto::from(made.admin),
        "admin_password": made.admin_password,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

async fn keys(db: &DatabaseSettings, action: KeysAction) -> anyhow::Result<()> {
    let secret_keys = match action {
        KeysAction::Generate { id } => {
            if id.is_empty() || id.contains([',', ':']) || id.len() > 64 {
                anyhow::bail!("the id must be 1 to 64 characters without ',' or ':'");
            }
            println!("{}", auth_crypto::AesSecretBox::generate(&id));
            return Ok(());
        }
        KeysAction::Rotate { secret_keys } => secret_keys,
    };
    let sealing = auth_crypto::AesSecretBox::from_config(secret_keys.expose())?;
    let stores = Stores::connect(db).await?;
    let (resealed, stuck) =
        domain::services::rotate_secrets(&sealing, stores.secrets.as_ref()).await?;
    let out = json!({
        "key_id": domain::ports::SecretBox::current_key_id(&sealing),
        "resealed": resealed,
        // Sealed under a key no longer in the list: they stay as they are (and do not open).
        "unopenable": stuck
            .iter()
            .map(|s| json!({"tenant_id": s.tenant.to_string(), "provider_id": s.provider.to_string(), "key_id": s.sealed.key_id}))
            .collect::<Vec<_>>(),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    if !stuck.is_empty() {
        anyhow::bail!("{} provider keys could not be opened", stuck.len());
    }
    Ok(())
}

async fn user(db: &DatabaseSettings, action: UserAction) -> anyhow::Result<()> {
    let UserAction::Create {
        tenant,
        email,
        password,
        role,
        name,
    } = action;
    let stores = Stores::connect(db).await?;
    let slug = Slug::parse(&tenant).map_err(|m| anyhow::anyhow!("--tenant {m}"))?;
    let (tenant_id, _) = stores
        .platform
        .tenant_by_slug(&slug)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no tenant with slug {slug}"))?;
    // Creating a user changes no cached view of an existing one, so this Redis connection (opened
    // lazily) is never used; the service needs one all the same.
    let users = UserService::new(
        stores.store.clone(),
        password_hasher(None)?,
        Arc::new(sessions()?),
        Arc::new(SystemClock),
    );
    let draft = UserDraft {
        email,
        password,
        role,
        name,
    };
    let user = users.create_as(Actor::System, tenant_id, draft).await?;
    println!("{}", serde_json::to_string_pretty(&UserDto::from(user))?);
    Ok(())
}

async fn platform_key(db: &DatabaseSettings, action: PlatformKeyAction) -> anyhow::Result<()> {
    let stores = Stores::connect(db).await?;
    let tenants = tenant_service(&stores)?;
    let describe = |key: &domain::entities::PlatformKey| {
        json!({
            "id": key.id.as_uuid(),
            "name": key.name.as_str(),
            "prefix": key.prefix,
            "created_at": key.created_at,
            "expires_at": key.expires_at,
            "last_used_at": key.last_used_at,
            "revoked_at": key.revoked_at,
        })
    };
    match action {
        PlatformKeyAction::Create {
            name,
            expires_in_days,
        } => {
            let valid_for = expires_in_days.map(|d| chrono::Duration::days(i64::from(d)));
            let (key, plaintext) = tenants.create_platform_key(&name, valid_for).await?;
            let mut out = describe(&key);
            out["key"] = json!(plaintext);
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        PlatformKeyAction::List => {
            for key in tenants.platform_keys().await? {
                println!("{}", serde_json::to_string(&describe(&key))?);
            }
        }
        PlatformKeyAction::Revoke { id } => {
            let key = tenants
                .revoke_platform_key(domain::PlatformKeyId::from_uuid(id))
                .await?;
            println!("{}", serde_json::to_string_pretty(&describe(&key))?);
        }
    }
    Ok(())
}

async fn space(db: &DatabaseSettings, action: SpaceAction) -> anyhow::Result<()> {
    let SpaceAction::Register {
        id,
        provider,
        model,
        dimensions,
        normalized,
    } = action;
    let space = domain::entities::EmbeddingSpace {
        id,
        provider,
        model,
        dimensions,
        normalized,
    };
    store_postgres::register_space(db.owner_url()?, &space).await?;
    println!(
        "{}",
        serde_json::to_string_pretty(
            &json!({"id": space.id, "index": store_postgres::space_index_name(&space.id)})
        )?
    );
    Ok(())
}

/// Reads lines from stdin and prints each one's vector, in batches so the model works at speed.
async fn embed(db: &DatabaseSettings, space: &str, settings: &ServeSettings) -> anyhow::Result<()> {
    use std::io::{BufRead, Write};
    // Registered spaces come from the database when it is configured; the local space needs none.
    let spaces = match Stores::connect(db).await {
        Ok(stores) => stores.store.spaces().await?,
        Err(_) => Vec::new(),
    };
    // The local space needs no database: it is the one every installation starts with.
    let builtin = domain::entities::EmbeddingSpace {
        id: crate::startup::DEFAULT_SPACE.to_owned(),
        provider: "local".to_owned(),
        model: "all-MiniLM-L6-v2".to_owned(),
        dimensions: 384,
        normalized: true,
    };
    let found = spaces
        .iter()
        .find(|s| s.id == space)
        .or((space == builtin.id).then_some(&builtin))
        .ok_or_else(|| anyhow::anyhow!("no embedding space {space}"))?;
    let embedder = load_embedders(settings, &[])
        .for_space(found)
        .map_err(|reason| anyhow::anyhow!("cannot embed in space {space}: {reason}"))?;
    let stdin = std::io::stdin();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut batch: Vec<String> = Vec::with_capacity(64);
    let mut lines = stdin.lock().lines();
    loop {
        let line = lines.next().transpose()?;
        let done = line.is_none();
        batch.extend(line);
        if batch.len() == 64 || (done && !batch.is_empty()) {
            for vector in embedder.embed(&batch).await? {
                serde_json::to_writer(&mut out, &vector)?;
                out.write_all(b"\n")?;
            }
            batch.clear();
        }
        if done {
            break;
        }
    }
    out.flush()?;
    Ok(())
}
