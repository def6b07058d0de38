//! Wiring: adapters into services, services into the HTTP server.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::{Compress, from_fn};
use actix_web::{App, HttpResponse, HttpServer, web};
use auth_crypto::{AesSecretBox, Argon2Hasher, JwtCodec, JwtConfig, RandomSecrets};
use cache_redis::{RedisCache, RedisRunEvents};
use chat_candle::LocalChatOptions;
use domain::entities::EmbeddingSpace;
use domain::ports::{
    Clock, Embedder, EmbedderFactory, EmbedderUnavailable, JobQueue, PasswordHasher, PlatformStore,
    RunLeases, SecretBox, Secrets, Store, SystemClock, TextExtractor, Tool,
};
use domain::services::{
    AgentService, ApiKeyService, AuditService, AuthPolicy, AuthPorts, AuthService,
    CollectionService, ConversationService, DocumentService, Embedders, EmbeddingService,
    ExecutionPolicy, ExecutionPorts, Executor, IngestPolicy, IngestWorker, KnowledgeSearch,
    ProviderService, SearchService, TenantPorts, TenantService, UsageService, UserService,
};
use embed_candle::{CandleEmbedder, EmbedderOptions};
use llm_openai::{OpenAiEmbedder, OpenAiEmbeddingConfig, SecretString};
use store_postgres::{PgPlatformStore, PgStore, PoolOptions};
use text_extract::{SandboxConfig, SandboxLimits, SandboxedExtractor, TokenChunker};
use utoipa_swagger_ui::SwaggerUi;

use crate::chat_models::{OpenAiChatSettings, ServerChatModels};
use crate::config::{DatabaseSettings, Secret, ServeSettings};
use crate::http::error::ApiError;
use crate::http::extract::{BodyLimit, TrustedProxies, path_error, query_error};
use crate::http::{request_id, routes};
use crate::state::AppState;

/// The space of collections created without one: the local model needs no network.
pub const DEFAULT_SPACE: &str = "local-minilm-l6-v2";

/// Connections of the platform pool (credential lookups): a few, whatever the application's.
fn platform_pool_size(db: &DatabaseSettings) -> u32 {
    db.database_max_connections.clamp(2, 8)
}

/// The storage ports, connected.
pub struct Stores {
    pub store: Arc<dyn Store>,
    pub platform: Arc<dyn PlatformStore>,
    pub queue: Arc<dyn JobQueue>,
    /// Ends runs whose process died (on the queue's connections: the same kind of work).
    pub leases: Arc<dyn RunLeases>,
    /// Every tenant's sealed provider keys, for their rotation.
    pub secrets: Arc<dyn domain::ports::SecretStore>,
}

impl Stores {
    pub async fn connect(db: &DatabaseSettings) -> anyhow::Result<Self> {
        let options = PoolOptions {
            max_connections: db.database_max_connections,
            ..PoolOptions::default()
        };
        let platform_options = PoolOptions {
            max_connections: platform_pool_size(db),
            ..PoolOptions::default()
        };
        let app = store_postgres::connect(db.app_url()?, &options).await?;
        let platform = store_postgres::connect(db.platform_url()?, &platform_options).await?;
        // Least privilege is checked, not assumed: an installation made before the owner
        // membership was taken back (an old Docker volume, say) would otherwise serve with it.
        for (pool, variable) in [(&app, "DATABASE_URL"), (&platform, "DATABASE_PLATFORM_URL")] {
            if store_postgres::acts_as_owner(pool).await? {
                anyhow::bail!(
                    "the role of {variable} can act as the owner of the schema; the server must \
                     hold no owner rights: run deploy/compose/init.sql again (it revokes \
                     agentic_owner from agentic_platform) or give {variable} another role"
                );
            }
        }
        // The queue has connections of its own: a flood of credential lookups on the platform
        // pool cannot keep workers from claiming jobs, nor the other way round.
        let queue_options = PoolOptions {
            max_connections: 2,
            min_connections: 1,
            ..PoolOptions::default()
        };
        let queue = Arc::new(PgPlatformStore::new(
            store_postgres::connect(db.platform_url()?, &queue_options).await?,
        ));
        Ok(Self {
            store: Arc::new(PgStore::new(app)),
            platform: Arc::new(PgPlatformStore::new(platform)),
            queue: queue.clone(),
            leases: queue.clone(),
            secrets: queue,
        })
    }

    /// Stores on application and platform pools of their own, opened by the caller's runtime,
    /// each with a share (one of `of`) of the configured connections; the queue's are shared.
    ///
    /// # Errors
    /// When the database cannot be reached.
    pub async fn for_worker(&self, db: &DatabaseSettings, of: usize) -> anyhow::Result<Self> {
        let of = u32::try_from(of.max(1)).unwrap_or(u32::MAX);
        let app = PoolOptions {
            max_connections: db.database_max_connections.div_ceil(of).max(2),
            ..PoolOptions::default()
        };
        let platform = PoolOptions {
            max_connections: platform_pool_size(db).div_ceil(of).max(2),
            min_connections: 1,
            ..PoolOptions::default()
        };
        Ok(Self {
            store: Arc::new(PgStore::new(
                store_postgres::connect(db.app_url()?, &app).await?,
            )),
            platform: Arc::new(PgPlatformStore::new(
                store_postgres::connect(db.platform_url()?, &platform).await?,
            )),
            queue: self.queue.clone(),
            leases: self.leases.clone(),
            secrets: self.secrets.clone(),
        })
    }
}

/// The password hasher of this deployment (argon2id; cheaper parameters only when configured,
/// which the test suite does to stay fast).
pub fn password_hasher(serve: Option<&ServeSettings>) -> anyhow::Result<Arc<dyn PasswordHasher>> {
    match serve.and_then(|s| s.argon2_m_kib) {
        Some(m) => Ok(Arc::new(Argon2Hasher::with_params(m, 1, 1)?)),
        None => Ok(Arc::new(Argon2Hasher::new())),
    }
}

/// Builds embedders for registered spaces: `local` spaces from the model of that name in the
/// models directory (e.g. `all-MiniLM-L6-v2`), `openai` spaces through the configured
/// OpenAI-compatible API.
struct ServerEmbedderFactory {
    models_dir: std::path::PathBuf,
    openai_base_url: Option<String>,
    openai_api_key: String,
}

impl EmbedderFactory for ServerEmbedderFactory {
    fn build(&self, space: &EmbeddingSpace) -> Result<Arc<dyn Embedder>, EmbedderUnavailable> {
        match space.provider.as_str() {
            "local" => {
                // A model name is a directory name, never a path.
                if space.model.contains(['/', '\\']) || space.model.starts_with('.') {
                    return Err(EmbedderUnavailable::Setup(format!(
                        "{:?} is not a model name",
                        space.model
                    )));
                }
                let dir = self.models_dir.join(&space.model);
                let embedder = CandleEmbedder::load(&dir, EmbedderOptions::default())
                    .map_err(|e| EmbedderUnavailable::Setup(format!("{e} (run `just models`)")))?;
                // Tells an operator why one machine embeds at twice the speed of another.
                let products = if embedder.uses_amx() {
                    "AMX tiles (bf16 in three terms)"
                } else {
                    "f32"
                };
                tracing::info!(space = %space.id, model = %space.model, products, "local embedder loaded");
                Ok(Arc::new(embedder) as Arc<dyn Embedder>)
            }
            "openai" => {
                let base_url = self.openai_base_url.clone().ok_or_else(|| {
                    EmbedderUnavailable::Setup("OPENAI_BASE_URL is not set".into())
                })?;
                let mut config = OpenAiEmbeddingConfig::new(
                    base_url,
                    SecretString::from(self.openai_api_key.clone()),
                );
                config.model.clone_from(&space.model);
                config.dimensions = Some(space.dimensions);
                OpenAiEmbedder::new(config)
                    .map(|e| Arc::new(e) as Arc<dyn Embedder>)
                    .map_err(|e| EmbedderUnavailable::Setup(e.to_string()))
            }
            other => Err(EmbedderUnavailable::UnknownProvider(other.to_owned())),
        }
    }
}

/// The embedders of this server. Every registered space's is built now so that a missing model
/// or API shows in the log at start; none is fatal (the server answers everything else, and
/// searches or ingestion in that space report it). A space registered later is built on first
/// use.
pub fn load_embedders(serve: &ServeSettings, spaces: &[EmbeddingSpace]) -> Embedders {
    let embedders = Embedders::with_factory(Arc::new(ServerEmbedderFactory {
        models_dir: std::path::PathBuf::from(&serve.models_dir),
        openai_base_url: serve.openai_base_url.clone(),
        openai_api_key: serve
            .openai_api_key
            .as_ref()
            .map_or(String::new(), |k| k.expose().to_owned()),
    }));
    for space in spaces {
        if let Err(reason) = embedders.for_space(space) {
            tracing::warn!(space = %space.id, %reason, "this space cannot embed here");
        }
    }
    embedders
}

/// Reads uploads in child processes of this program under hard limits (`text_extract::sandbox`),
/// so a hostile document is killed rather than waited for and its memory is never the server's.
pub fn sandboxed_extractor(serve: &ServeSettings) -> anyhow::Result<SandboxedExtractor> {
    let program = match &serve.extract_program {
        Some(program) => std::path::PathBuf::from(program),
        None => std::env::current_exe()?,
    };
    let mut config = SandboxConfig::new(program, vec!["extract".to_owned()]);
    config.limits = SandboxLimits {
        memory_bytes: serve.extract_memory_mib.saturating_mul(1024 * 1024),
        cpu_secs: serve.extract_timeout_secs,
        ..SandboxLimits::default()
    };
    config.wall = std::time::Duration::from_secs(serve.extract_timeout_secs);
    config.max_per_tenant = serve.extract_per_tenant;
    Ok(SandboxedExtractor::new(config))
}

/// An ingestion worker on the given stores.
pub fn ingest_worker(
    stores: &Stores,
    embedders: Embedders,
    serve: &ServeSettings,
    name: &str,
) -> IngestWorker {
    IngestWorker::new(
        stores.store.clone(),
        stores.queue.clone(),
        Arc::new(TokenChunker),
        embedders,
        Arc::new(SystemClock),
        format!(
            "{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ),
        IngestPolicy {
            max_running_per_tenant: serve.tenant_max_running_jobs,
            ..IngestPolicy::default()
        },
    )
}

/// Works jobs until the process ends; sleeps `poll` when the queue is empty or failing.
pub async fn run_worker(worker: IngestWorker, poll: std::time::Duration) {
    loop {
        match worker.run_once().await {
            Ok(true) => {}
            Ok(false) => tokio::time::sleep(poll).await,
            Err(e) => {
                tracing::error!(error = %e, "ingestion worker failed; retrying");
                tokio::time::sleep(poll).await;
            }
        }
    }
}

/// Ingestion workers built but not started: nothing runs until [`IngestWorkers::spawn`].
pub struct IngestWorkers {
    workers: Vec<IngestWorker>,
    poll: std::time::Duration,
}

impl IngestWorkers {
    /// Starts each worker on the runtime; they work jobs until the process ends.
    pub fn spawn(self) {
        for worker in self.workers {
            tokio::spawn(run_worker(worker, self.poll));
        }
    }
}

/// The chat models agents may name, as configured.
pub fn chat_models(serve: &ServeSettings) -> Arc<ServerChatModels> {
    let openai = serve
        .openai_base_url
        .clone()
        .map(|base_url| OpenAiChatSettings {
            base_url,
            api_key: serve
                .openai_api_key
                .as_ref()
                .map_or(String::new(), |k| k.expose().to_owned()),
            supports_tools: serve.openai_supports_tools,
            context_window: serve.openai_context_window,
            timeout: std::time::Duration::from_secs(serve.openai_timeout_secs.max(1)),
            max_retries: None,
        });
    Arc::new(
        ServerChatModels::new(
            std::path::PathBuf::from(&serve.models_dir),
            openai,
            LocalChatOptions {
                queue_capacity: serve.local_chat_queue,
                ..LocalChatOptions::default()
            },
        )
        .with_provider_defaults(
            serve.openai_context_window,
            std::time::Duration::from_secs(serve.openai_timeout_secs.max(1)),
        ),
    )
}

/// Ends the runs whose process died, every few seconds, until the process ends.
pub async fn run_reaper(executor: Arc<Executor>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        match executor.reap().await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                runs = n,
                "runs whose process stopped were ended as incomplete"
            ),
            Err(e) => tracing::error!(error = %e, "ending runs whose process stopped failed"),
        }
    }
}

/// What the services of every HTTP worker share, built once: embedders and chat models (one
/// copy of each model in memory), keys, the runs executing in this process; and the process's
/// own connections, on which the ingestion workers and the reaper work.
#[derive(Clone)]
pub struct Shared {
    db: DatabaseSettings,
    serve: ServeSettings,
    stores: Arc<Stores>,
    embedders: Embedders,
    extractor: Arc<dyn TextExtractor>,
    codec: Arc<JwtCodec>,
    chat_models: Arc<ServerChatModels>,
    sealing: Arc<dyn SecretBox>,
    hasher: Arc<dyn PasswordHasher>,
    runs_here: domain::services::RunsHere,
}

impl Shared {
    /// Connects the process's stores and loads what the workers share.
    ///
    /// # Errors
    /// When the database cannot be reached or a setting is invalid.
    pub async fn build(db: &DatabaseSettings, serve: &ServeSettings) -> anyhow::Result<Self> {
        let stores = Stores::connect(db).await?;
        let spaces = stores.store.spaces().await?;
        // The serving process holds no owner rights, so it builds no index: `agentic migrate up`
        // and `agentic space register` do, with the owner's URL. Until then `/readyz` says so.
        for problem in stores.store.vector_index_problems().await? {
            tracing::warn!(%problem, "searches there scan every chunk until `agentic migrate up` builds it");
        }
        let embedders = load_embedders(serve, &spaces);
        Ok(Self {
            db: db.clone(),
            serve: serve.clone(),
            stores: Arc::new(stores),
            embedders,
            extractor: Arc::new(sandboxed_extractor(serve)?),
            codec: Arc::new(JwtCodec::new(JwtConfig {
                issuer: serve.jwt.jwt_issuer.clone(),
                audience: serve.jwt.jwt_audience.clone(),
                signing_kid: serve.jwt.jwt_kid.clone(),
                keys: serve.jwt.keys()?,
            })?),
            chat_models: chat_models(serve),
            sealing: Arc::new(AesSecretBox::from_config(
                serve.secret_keys.as_ref().map_or("", Secret::expose),
            )?),
            hasher: password_hasher(Some(serve))?,
            runs_here: domain::services::RunsHere::default(),
        })
    }

    /// The server's ingestion workers on the process's stores (not started).
    #[must_use]
    pub fn ingest_workers(&self) -> IngestWorkers {
        IngestWorkers {
            workers: (0..self.serve.ingest_workers)
                .map(|n| {
                    ingest_worker(
                        &self.stores,
                        self.embedders.clone(),
                        &self.serve,
                        &format!("serve{n}"),
                    )
                })
                .collect(),
            poll: std::time::Duration::from_millis(self.serve.worker_poll_ms),
        }
    }

    /// The executor the reaper works with, on the process's own connections.
    ///
    /// # Errors
    /// When Redis's address is invalid.
    pub fn process_executor(&self) -> anyhow::Result<Arc<Executor>> {
        let cache =
            RedisCache::connect(&self.serve.redis_url, self.serve.redis_key_prefix.clone())?;
        let chat_models = Arc::new(self.chat_models.for_worker());
        self.executor_on(&self.stores, &cache, &chat_models, self.serve.run_followers)
    }

    /// Every service on connections of their own, opened here: one HTTP worker's. A worker
    /// runs on a runtime of its own, and a connection is served by the runtime that opened it;
    /// a worker that used connections opened elsewhere would be woken by another thread on
    /// every reply. Each worker gets its share (`of` workers) of the configured connections.
    ///
    /// # Errors
    /// When the database cannot be reached.
    pub async fn worker_state(&self, of: usize) -> anyhow::Result<AppState> {
        let stores = self.stores.for_worker(&self.db, of).await?;
        let cache =
            RedisCache::connect(&self.serve.redis_url, self.serve.redis_key_prefix.clone())?;
        let followers = self.serve.run_followers.div_ceil(of.max(1));
        self.state_on(&stores, cache, followers)
    }

    /// The executor on `stores`, counting and publishing its runs with every other of the
    /// process.
    fn executor_on(
        &self,
        stores: &Stores,
        cache: &RedisCache,
        chat_models: &Arc<ServerChatModels>,
        followers: usize,
    ) -> anyhow::Result<Arc<Executor>> {
        let embedders = &self.embedders;
        let run_events = RedisRunEvents::new(cache.clone(), &self.serve.redis_url, followers)?;
        Ok(Arc::new(Executor::sharing(
            ExecutionPorts {
                store: stores.store.clone(),
                clock: Arc::new(SystemClock),
                models: chat_models.clone(),
                events: Arc::new(run_events),
                leases: stores.leases.clone(),
                secrets: self.sealing.clone(),
                provider_models: chat_models.clone(),
            },
            SearchService::new(stores.store.clone(), embedders.clone()),
            vec![Arc::new(KnowledgeSearch::new(SearchService::new(
                stores.store.clone(),
                embedders.clone(),
            ))) as Arc<dyn Tool>],
            ExecutionPolicy {
                max_runs_per_tenant: self.serve.runs_per_tenant,
                ..ExecutionPolicy::default()
            },
            self.runs_here.clone(),
        )))
    }

    fn state_on(
        &self,
        stores: &Stores,
        cache: RedisCache,
        followers: usize,
    ) -> anyhow::Result<AppState> {
        let serve = &self.serve;
        let chat_models = Arc::new(self.chat_models.for_worker());
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let embedders = &self.embedders;
        let executor = self.executor_on(stores, &cache, &chat_models, followers)?;
        let secrets: Arc<dyn Secrets> = Arc::new(RandomSecrets);
        let hasher = self.hasher.clone();
        let policy = AuthPolicy {
            access_ttl: serve.jwt.access_ttl(),
            refresh_ttl: serve.jwt.refresh_ttl(),
            login_attempts: serve.login_attempts,
            ..AuthPolicy::default()
        };
        let auth = AuthService::new(
            AuthPorts {
                store: stores.store.clone(),
                platform: stores.platform.clone(),
                hasher: hasher.clone(),
                codec: self.codec.clone(),
                revocation: Arc::new(cache.clone()),
                limiter: Arc::new(cache.clone()),
                secrets: secrets.clone(),
                clock: clock.clone(),
            },
            policy,
        );
        let usage = Arc::new(UsageService::new(stores.store.clone(), clock.clone()));
        Ok(AppState {
            auth,
            tenants: TenantService::new(TenantPorts {
                store: stores.store.clone(),
                platform: stores.platform.clone(),
                hasher: hasher.clone(),
                secrets: secrets.clone(),
                sessions: Arc::new(cache.clone()),
                clock: clock.clone(),
            }),
            users: UserService::new(
                stores.store.clone(),
                hasher,
                Arc::new(cache.clone()),
                clock.clone(),
            ),
            api_keys: ApiKeyService::new(
                stores.store.clone(),
                secrets,
                Arc::new(cache.clone()),
                clock.clone(),
            ),
            agents: AgentService::new(stores.store.clone(), clock.clone(), chat_models.clone()),
            providers: ProviderService::new(
                stores.store.clone(),
                self.sealing.clone(),
                clock.clone(),
            ),
            collections: CollectionService::new(
                stores.store.clone(),
                clock.clone(),
                embedders.clone(),
                DEFAULT_SPACE,
            ),
            documents: DocumentService::new(
                stores.store.clone(),
                self.extractor.clone(),
                clock.clone(),
                serve.max_document_bytes,
            ),
            search: SearchService::new(stores.store.clone(), embedders.clone())
                .metered(usage.clone()),
            audit: AuditService::new(stores.store.clone()),
            conversations: ConversationService::new(stores.store.clone(), clock.clone()),
            embeddings: EmbeddingService::new(
                stores.store.clone(),
                embedders.clone(),
                usage.clone(),
            ),
            usage,
            executor,
            store: stores.store.clone(),
            cache,
        })
    }
}

/// The HTTP server and the port it listens on (tests bind port 0), with the ingestion workers
/// `AGENTIC_INGEST_WORKERS` asks for. Building it binds the listener and starts no worker: the
/// workers work once [`Application::spawn_ingest_workers`] is called (`agentic serve` does; a
/// test or a benchmark chooses), and the server runs until [`Application::run_until_stopped`]
/// ends.
pub struct Application {
    port: u16,
    server: Server,
    workers: Option<IngestWorkers>,
    executor: Option<Arc<Executor>>,
}

impl Application {
    pub async fn build(
        db: &DatabaseSettings,
        serve: &ServeSettings,
        listener: TcpListener,
    ) -> anyhow::Result<Self> {
        let shared = Shared::build(db, serve).await?;
        let workers = shared.ingest_workers();
        // The reaper works on the process's connections, like the ingestion workers.
        let executor = shared.process_executor()?;
        let http_workers = serve.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let port = listener.local_addr()?.port();
        let limit = serve.max_body_bytes;
        let proxies = TrustedProxies(serve.trusted_proxies.clone());
        // A document travels inside a JSON string: escaping can double it, plus the envelope.
        let documents_limit = BodyLimit(serve.max_document_bytes.saturating_mul(2) + 64 * 1024);
        let openapi = crate::http::openapi::document();
        let mut server = HttpServer::new(move || {
            let shared = shared.clone();
            App::new()
                .data_factory(move || {
                    let shared = shared.clone();
                    async move {
                        shared.worker_state(http_workers).await.inspect_err(|e| {
                            tracing::error!(error = %e, "an HTTP worker could not connect");
                        })
                    }
                })
                .app_data(BodyLimit(limit))
                .app_data(proxies.clone())
                // Bodies are read at most this far (the document routes set their own).
                .app_data(web::PayloadConfig::new(limit))
                .app_data(web::QueryConfig::default().error_handler(query_error))
                .app_data(web::PathConfig::default().error_handler(path_error))
                .wrap(Compress::default())
                .wrap(from_fn(request_id::middleware))
                .configure(|cfg| routes::configure(cfg, documents_limit))
                .service(
                    SwaggerUi::new("/docs/{_:.*}")
                        .external_url_unchecked("/openapi.json", openapi.clone()),
                )
                .route(
                    "/docs",
                    web::get().to(|| async {
                        HttpResponse::PermanentRedirect()
                            .insert_header(("Location", "/docs/"))
                            .finish()
                    }),
                )
                .default_service(web::to(|| async {
                    Err::<HttpResponse, _>(ApiError::not_found(
                        "no route matches this method and path",
                    ))
                }))
        })
        .listen(listener)?;
        server = server.workers(http_workers);
        Ok(Self {
            port,
            server: server.run(),
            workers: Some(workers),
            executor: Some(executor),
        })
    }

    /// Starts the ingestion workers (once; later calls do nothing).
    pub fn spawn_ingest_workers(&mut self) {
        if let Some(workers) = self.workers.take() {
            workers.spawn();
        }
    }

    /// Starts ending runs whose process died (once; later calls do nothing). Every replica may
    /// run one: ending a run is one conditional statement, so two never end the same run.
    pub fn spawn_run_reaper(&mut self) {
        if let Some(executor) = self.executor.take() {
            tokio::spawn(run_reaper(executor));
        }
    }

    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
