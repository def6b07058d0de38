//! `just bench-search`: tenant-filtered vector search in PostgreSQL + pgvector, as the platform
//! runs it (one `chunks` table for every tenant and space, a partial HNSW index per space, row-level
//! security, and the exact-or-HNSW planner of `ChunkRepo::search`).
//!
//! It creates its own database (`agentic_bench_search`, dropped and recreated on each run),
//! migrates it, loads synthetic chunks of several tenants with Zipf-distributed sizes, builds the
//! space's HNSW index through `store_postgres::ensure_space_indexes` (timed), and measures the
//! latency and recall@10 of a top-10 query restricted to one tenant's generation:
//! - the production path, `ChunkRepo::search` through `PgStore` (application role, RLS), as it is
//!   and on connections with `plan_cache_mode = force_custom_plan`;
//! - the same SQL with a forced exact order, which is also the ground truth;
//! - the same SQL forced through the HNSW index at several `hnsw.ef_search` values, with and
//!   without `hnsw.iterative_scan = relaxed_order`;
//! - what-if planners (exact up to some generation size, HNSW above), composed from those samples.
//!
//! Results are printed as Markdown and written into docs/benchmarks.md between the
//! `bench-search` markers (when every dataset ran).
//!
//! Environment: the database URLs as for the tests (`DATABASE_URL`, `DATABASE_OWNER_URL`,
//! `DATABASE_PLATFORM_URL`, else `.local/env`); `BENCH_SEARCH_DIMS` (default `384,1536`: which
//! datasets to run); `BENCH_SEARCH_KEEP_DB=1` keeps the database for inspection;
//! `BENCH_SEARCH_SAMPLES=path` writes every measured query to `path.<dims>` (tab-separated).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::entities::EmbeddingSpace;
use domain::ports::{SearchMode, SearchQuery, Store};
use domain::{CollectionId, GenerationId, TenantId};
use migration::{Migrator, MigratorTrait};
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use sea_orm::prelude::PgVector;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, FromQueryResult, Statement, TransactionTrait,
    Value,
};
use store_postgres::{PgStore, PoolOptions};
use uuid::Uuid;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

const DB_NAME: &str = "agentic_bench_search";
const TOP_K: u32 = 10;
/// Tenants up to this size are "small": the production planner searches them exactly.
fn small_max(dims: usize) -> usize {
    usize::try_from(store_postgres::exact_search_max_chunks(
        u32::try_from(dims).unwrap_or(u32::MAX),
    ))
    .unwrap_or(0)
}
/// Queries per tenant run unmeasured before each configuration.
const WARMUP_PER_TENANT: usize = 2;
const MARKER_START: &str = "<!-- bench-search:start -->";
const MARKER_END: &str = "<!-- bench-search:end -->";

/// One dataset: a space, its tenants and the configurations measured on it.
struct Spec {
    space: &'static str,
    /// Registered by the benchmark (the 384-d space is seeded by the migrations).
    register: bool,
    dims: usize,
    tenants: usize,
    chunks: usize,
    queries_per_tenant: usize,
    seed: u64,
    configs: Vec<Config>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Config {
    /// `ChunkRepo::search` through `PgStore`; with `custom_plans`, on connections that set
    /// `plan_cache_mode = force_custom_plan` (the planner then sees each query's tenant and
    /// vector instead of falling back to a generic plan after five executions).
    Production { custom_plans: bool },
    /// The production SQL ordered by `distance + 0`: no index can serve it.
    Exact,
    /// The production SQL through the HNSW index, with these scan settings; the index is forced
    /// (`enable_sort = off`, custom plans) so that every tenant goes through it.
    Hnsw { iterative: &'static str, ef: u32 },
}

impl Config {
    fn label(self) -> String {
        match self {
            Self::Production {
                custom_plans: false,
            } => "production (`ChunkRepo::search`)".into(),
            Self::Production { custom_plans: true } => {
                "production, `plan_cache_mode = force_custom_plan`".into()
            }
            Self::Exact => "exact (forced)".into(),
            Self::Hnsw { iterative, ef } => {
                format!("HNSW forced, iterative_scan={iterative}, ef_search={ef}")
            }
        }
    }

    fn is_production(self) -> bool {
        matches!(self, Self::Production { .. })
    }
}

struct Tenant {
    id: Uuid,
    collection: Uuid,
    document: Uuid,
    generation: Uuid,
    size: usize,
    queries: Vec<Vec<f32>>,
    /// Exact top-10 chunk ids per query.
    truth: Vec<HashSet<Uuid>>,
}

/// One measured query.
struct Sample {
    tenant: usize,
    ms: f64,
    recall: f64,
}

struct ConfigResult {
    config: Config,
    samples: Vec<Sample>,
    /// Whether EXPLAIN shows the space's index for the smallest and the largest tenant.
    index_used: Option<(bool, bool)>,
    /// Scans of the space's HNSW index (`pg_stat_user_indexes.idx_scan`) per query run.
    index_share: f64,
    /// The share of the queries run that were for large tenants (the production planner's HNSW
    /// branch).
    large_share: f64,
}

struct DatasetResult {
    spec_label: String,
    dims: usize,
    sizes: Vec<usize>,
    load_secs: f64,
    build_secs: f64,
    index_mb: f64,
    table_mb: f64,
    results: Vec<ConfigResult>,
}

#[derive(Clone)]
struct Urls {
    app: String,
    owner: String,
    platform: String,
}

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> Result<()> {
    let started = Instant::now();
    let base = base_urls()?;
    let wanted: Vec<usize> = std::env::var("BENCH_SEARCH_DIMS")
        .unwrap_or_else(|_| "384,1536".into())
        .split(',')
        .map(|d| d.trim().parse())
        .collect::<Result<_, _>>()?;
    let specs: Vec<Spec> = [spec_384(), spec_1536()]
        .into_iter()
        .filter(|s| wanted.contains(&s.dims))
        .collect();

    let admin = store_postgres::connect(&base.owner, &single()).await?;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)"))
        .await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {DB_NAME}"))
        .await?;
    let urls = Urls {
        app: with_database(&base.app, DB_NAME)?,
        owner: with_database(&base.owner, DB_NAME)?,
        platform: with_database(&base.platform, DB_NAME)?,
    };
    let outcome = bench(&urls, &specs).await;
    if std::env::var("BENCH_SEARCH_KEEP_DB").as_deref() != Ok("1") {
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)"))
            .await?;
    }
    admin.close().await?;
    let (datasets, versions) = outcome?;

    let section = markdown(&datasets, &versions, started.elapsed());
    println!("{section}");
    if specs.len() == 2 {
        write_section(&section)?;
        eprintln!("written to docs/benchmarks.md");
    } else {
        eprintln!("not all datasets ran: docs/benchmarks.md left as it was");
    }
    Ok(())
}

async fn bench(urls: &Urls, specs: &[Spec]) -> Result<(Vec<DatasetResult>, (String, String))> {
    let owner = store_postgres::connect(&urls.owner, &single()).await?;
    Migrator::up(&owner, None).await?;
    let versions = (
        scalar::<String>(&owner, "SELECT version()").await?,
        scalar::<String>(
            &owner,
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
        )
        .await?,
    );
    let platform = store_postgres::connect(
        &urls.platform,
        &PoolOptions {
            max_connections: 2,
            min_connections: 1,
            ..PoolOptions::default()
        },
    )
    .await?;
    let app = store_postgres::connect(&urls.app, &single()).await?;
    // The same role on a connection that plans every statement for its parameters.
    let custom = store_postgres::connect(
        &format!(
            "{}?options=-c%20plan_cache_mode%3Dforce_custom_plan",
            urls.app
        ),
        &single(),
    )
    .await?;
    let mode = scalar::<String>(&custom, "SHOW plan_cache_mode").await?;
    if mode != "force_custom_plan" {
        return Err(format!("plan_cache_mode is {mode} on the custom-plan connection").into());
    }
    let apps = Apps {
        store: PgStore::new(app.clone()),
        custom_store: PgStore::new(custom.clone()),
        app: app.clone(),
        custom: custom.clone(),
    };

    let mut datasets = Vec::new();
    for spec in specs {
        eprintln!(
            "== {} chunks of {} dimensions over {} tenants",
            spec.chunks, spec.dims, spec.tenants
        );
        let index = store_postgres::space_index_name(spec.space);
        if spec.register {
            // The project's path: register the space (which builds its empty index), then drop
            // the index so that it is built below over the loaded rows, as a re-index would.
            let space = EmbeddingSpace {
                id: spec.space.into(),
                provider: "openai".into(),
                model: "synthetic".into(),
                dimensions: u32::try_from(spec.dims)?,
                normalized: true,
            };
            store_postgres::register_space(&urls.owner, &space).await?;
            owner
                .execute_unprepared(&format!("DROP INDEX IF EXISTS {index}"))
                .await?;
        }

        let started = Instant::now();
        let mut tenants = load(&platform, spec).await?;
        let load_secs = started.elapsed().as_secs_f64();
        eprintln!("loaded in {load_secs:.1} s");
        owner.execute_unprepared("VACUUM ANALYZE chunks").await?;

        let started = Instant::now();
        let built = store_postgres::ensure_space_indexes(&urls.owner).await?;
        let build_secs = started.elapsed().as_secs_f64();
        if !built.contains(&index) {
            return Err(format!("expected {index} to be built, got {built:?}").into());
        }
        eprintln!("{index} built in {build_secs:.1} s");
        let index_mb = scalar::<i64>(
            &owner,
            &format!("SELECT pg_relation_size('{index}')::bigint"),
        )
        .await? as f64
            / 1_048_576.0;
        let table_mb = scalar::<i64>(&owner, "SELECT pg_total_relation_size('chunks')::bigint")
            .await? as f64
            / 1_048_576.0;

        let mut results = Vec::new();
        // Exact first: its answers are the ground truth of the others.
        let mut order = vec![Config::Exact];
        order.extend(spec.configs.iter().copied().filter(|c| *c != Config::Exact));
        for config in order {
            let started = Instant::now();
            let result = measure(&apps, &owner, spec, &mut tenants, config).await?;
            let s = summary(&result.samples, |_| true);
            eprintln!(
                "{:<52} p50 {:>7.2} ms  p99 {:>7.2} ms  recall@10 {:.3}  ({:.0} s)",
                config.label(),
                s.p50,
                s.p99,
                s.recall,
                started.elapsed().as_secs_f64()
            );
            results.push(result);
        }
        if let Ok(path) = std::env::var("BENCH_SEARCH_SAMPLES") {
            let mut tsv = String::from("config\ttenant\tsize\tquery\tms\trecall\n");
            for r in &results {
                let mut per_tenant = vec![0_usize; tenants.len()];
                for s in &r.samples {
                    let _ = writeln!(
                        tsv,
                        "{}\t{}\t{}\t{}\t{:.3}\t{:.2}",
                        r.config.label(),
                        s.tenant,
                        tenants[s.tenant].size,
                        per_tenant[s.tenant],
                        s.ms,
                        s.recall
                    );
                    per_tenant[s.tenant] += 1;
                }
            }
            std::fs::write(format!("{path}.{}", spec.dims), tsv)?;
        }
        datasets.push(DatasetResult {
            dims: spec.dims,
            spec_label: format!(
                "{} chunks of {} dimensions, {} tenants",
                group(spec.chunks),
                spec.dims,
                spec.tenants
            ),
            sizes: tenants.iter().map(|t| t.size).collect(),
            load_secs,
            build_secs,
            index_mb,
            table_mb,
            results,
        });
    }
    app.close().await?;
    custom.close().await?;
    platform.close().await?;
    owner.close().await?;
    Ok((datasets, versions))
}

fn spec_384() -> Spec {
    Spec {
        space: "local-minilm-l6-v2",
        register: false,
        dims: 384,
        tenants: 50,
        chunks: 100_000,
        queries_per_tenant: 40,
        seed: 384,
        configs: vec![
            Config::Production {
                custom_plans: false,
            },
            Config::Production { custom_plans: true },
            Config::Exact,
            Config::Hnsw {
                iterative: "relaxed_order",
                ef: 40,
            },
            Config::Hnsw {
                iterative: "relaxed_order",
                ef: 100,
            },
            Config::Hnsw {
                iterative: "relaxed_order",
                ef: 200,
            },
            Config::Hnsw {
                iterative: "off",
                ef: 40,
            },
        ],
    }
}

fn spec_1536() -> Spec {
    Spec {
        space: "bench-1536",
        register: true,
        dims: 1536,
        tenants: 50,
        chunks: 100_000,
        queries_per_tenant: 40,
        seed: 1536,
        configs: vec![
            Config::Production {
                custom_plans: false,
            },
            Config::Production { custom_plans: true },
            Config::Exact,
            Config::Hnsw {
                iterative: "relaxed_order",
                ef: 40,
            },
            Config::Hnsw {
                iterative: "relaxed_order",
                ef: 100,
            },
            Config::Hnsw {
                iterative: "off",
                ef: 40,
            },
        ],
    }
}

// --- Data ---------------------------------------------------------------------------------------

/// Tenant sizes following Zipf's law with exponent 1, summing to `total`.
fn zipf_sizes(tenants: usize, total: usize) -> Vec<usize> {
    let weights: Vec<f64> = (1..=tenants).map(|k| 1.0 / k as f64).collect();
    let sum: f64 = weights.iter().sum();
    let mut sizes: Vec<usize> = weights
        .iter()
        .map(|w| ((total as f64) * w / sum).round() as usize)
        .collect();
    // Rounding leaves a few chunks over or short: the largest tenant takes them.
    let assigned: usize = sizes.iter().sum();
    if assigned < total {
        sizes[0] += total - assigned;
    } else {
        sizes[0] -= assigned - total;
    }
    sizes
}

/// Embedding-like vectors: a shared mean direction (embeddings are anisotropic), global topics
/// that tenants share (so other tenants' chunks crowd a tenant's neighbourhood, as in a real
/// multi-tenant index), a tenant-specific shift per topic, variation along a few directions per
/// topic (a low intrinsic dimension, like real embeddings), and a little isotropic noise.
struct Model {
    dims: usize,
    mean: Vec<f32>,
    topics: Vec<Topic>,
}

struct Topic {
    center: Vec<f32>,
    basis: Vec<Vec<f32>>,
}

/// A topic of one tenant: a global topic and its tenant-specific shift.
struct TenantTopic {
    topic: usize,
    shift: Vec<f32>,
}

const GLOBAL_TOPICS: usize = 200;
const TOPICS_PER_TENANT: usize = 24;
const TOPIC_RANK: usize = 8;
const MEAN_WEIGHT: f32 = 0.5;
const SHIFT_WEIGHT: f32 = 0.5;
const LOCAL_SD: f32 = 0.3;
const NOISE_NORM: f32 = 0.25;
const QUERY_LOCAL_SD: f32 = 0.15;
const QUERY_NOISE_NORM: f32 = 0.1;

fn gaussian(rng: &mut StdRng) -> f32 {
    // Box–Muller; 1 - u keeps the logarithm finite.
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random::<f64>();
    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
}

fn unit(rng: &mut StdRng, dims: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dims).map(|_| gaussian(rng)).collect();
    normalize(&mut v);
    v
}

fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x);
}

impl Model {
    fn new(rng: &mut StdRng, dims: usize) -> Self {
        let mean = unit(rng, dims);
        let topics = (0..GLOBAL_TOPICS)
            .map(|_| Topic {
                center: unit(rng, dims),
                basis: (0..TOPIC_RANK).map(|_| unit(rng, dims)).collect(),
            })
            .collect();
        Self { dims, mean, topics }
    }

    fn tenant_topics(&self, rng: &mut StdRng) -> Vec<TenantTopic> {
        sample(rng, GLOBAL_TOPICS, TOPICS_PER_TENANT)
            .into_iter()
            .map(|topic| TenantTopic {
                topic,
                shift: unit(rng, self.dims),
            })
            .collect()
    }

    /// A point of the topic, not normalised.
    fn point(&self, rng: &mut StdRng, t: &TenantTopic) -> Vec<f32> {
        let topic = &self.topics[t.topic];
        let mut v = topic.center.clone();
        axpy(&mut v, MEAN_WEIGHT, &self.mean);
        axpy(&mut v, SHIFT_WEIGHT, &t.shift);
        for b in &topic.basis {
            axpy(&mut v, LOCAL_SD * gaussian(rng), b);
        }
        self.noise(rng, &mut v, NOISE_NORM);
        v
    }

    /// A query near a stored point: the point moved a little along its topic and at random.
    fn query(&self, rng: &mut StdRng, t: &TenantTopic, point: &[f32]) -> Vec<f32> {
        let mut v = point.to_vec();
        for b in &self.topics[t.topic].basis {
            axpy(&mut v, QUERY_LOCAL_SD * gaussian(rng), b);
        }
        self.noise(rng, &mut v, QUERY_NOISE_NORM);
        normalize(&mut v);
        v
    }

    fn noise(&self, rng: &mut StdRng, v: &mut [f32], norm: f32) {
        let sd = norm / (self.dims as f32).sqrt();
        v.iter_mut().for_each(|x| *x += sd * gaussian(rng));
    }
}

/// A batch of one tenant's chunks, positions `start..`.
struct Batch {
    tenant: usize,
    start: usize,
    vectors: Vec<Vec<f32>>,
}

/// Inserts the tenants, their collection, generation and document, and their chunks (generated
/// on a thread of their own and inserted by two connections); answers the tenants with their
/// query vectors.
async fn load(platform: &DatabaseConnection, spec: &Spec) -> Result<Vec<Tenant>> {
    let sizes = zipf_sizes(spec.tenants, spec.chunks);
    let mut tenants: Vec<Tenant> = sizes
        .iter()
        .map(|&size| Tenant {
            id: Uuid::new_v4(),
            collection: Uuid::new_v4(),
            document: Uuid::new_v4(),
            generation: Uuid::new_v4(),
            size,
            queries: Vec::new(),
            truth: Vec::new(),
        })
        .collect();
    for (i, t) in tenants.iter().enumerate() {
        let tx = platform.begin().await?;
        let name = format!("Bench {} {i}", spec.dims);
        let slug = format!("bench-{}-{i}", spec.dims);
        for (sql, values) in [
            (
                "INSERT INTO tenants (id, name, slug, created_at, updated_at)
                 VALUES ($1, $2, $3, now(), now())",
                vec![t.id.into(), name.into(), slug.into()],
            ),
            (
                "INSERT INTO collections (tenant_id, id, name, space_id, active_generation_id,
                                          document_count, created_at, updated_at)
                 VALUES ($1, $2, 'Bench', $3, $4, 1, now(), now())",
                vec![
                    t.id.into(),
                    t.collection.into(),
                    spec.space.into(),
                    t.generation.into(),
                ],
            ),
            (
                "INSERT INTO generations (tenant_id, id, collection_id, space_id, state, created_at, chunk_count)
                 VALUES ($1, $2, $3, $4, 'active', now(), $5)",
                vec![
                    t.id.into(),
                    t.generation.into(),
                    t.collection.into(),
                    spec.space.into(),
                    i64::try_from(t.size)?.into(),
                ],
            ),
            (
                "INSERT INTO documents (tenant_id, id, collection_id, title, content_type, content_hash,
                                        byte_count, status, created_at, updated_at)
                 VALUES ($1, $2, $3, 'Synthetic', 'text/plain', $4, 0, 'ready', now(), now())",
                vec![
                    t.id.into(),
                    t.document.into(),
                    t.collection.into(),
                    t.document.as_bytes().to_vec().into(),
                ],
            ),
        ] {
            tx.execute_raw(stmt(sql, values)).await?;
        }
        tx.commit().await?;
    }

    const BATCH: usize = 500;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Batch>(4);
    let (dims, seed, queries_per_tenant) = (spec.dims, spec.seed, spec.queries_per_tenant);
    let generator = std::thread::spawn(move || -> Vec<Vec<Vec<f32>>> {
        let mut rng = StdRng::seed_from_u64(seed);
        let model = Model::new(&mut rng, dims);
        let mut queries = Vec::new();
        for (tenant, &size) in sizes.iter().enumerate() {
            let topics = model.tenant_topics(&mut rng);
            let mut chosen: Vec<usize> = sample(&mut rng, size, queries_per_tenant).into_vec();
            chosen.sort_unstable();
            let mut mine = Vec::with_capacity(queries_per_tenant);
            let mut batch = Vec::with_capacity(BATCH);
            let mut start = 0;
            for position in 0..size {
                let topic = &topics[rng.random_range(0..topics.len())];
                let mut v = model.point(&mut rng, topic);
                normalize(&mut v);
                if chosen.binary_search(&position).is_ok() {
                    mine.push(model.query(&mut rng, topic, &v));
                }
                batch.push(v);
                if batch.len() == BATCH || position + 1 == size {
                    let vectors = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    let n = vectors.len();
                    if sender
                        .blocking_send(Batch {
                            tenant,
                            start,
                            vectors,
                        })
                        .is_err()
                    {
                        return queries;
                    }
                    start += n;
                }
            }
            queries.push(mine);
        }
        queries
    });

    let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
    let ids: Arc<Vec<(Uuid, Uuid, Uuid, Uuid)>> = Arc::new(
        tenants
            .iter()
            .map(|t| (t.id, t.collection, t.document, t.generation))
            .collect(),
    );
    let mut workers = Vec::new();
    for _ in 0..2 {
        let receiver = receiver.clone();
        let ids = ids.clone();
        let platform = platform.clone();
        let space = spec.space;
        workers.push(tokio::spawn(async move {
            loop {
                let Some(batch) = receiver.lock().await.recv().await else {
                    return Ok::<(), Error>(());
                };
                insert_chunks(&platform, space, ids[batch.tenant], batch).await?;
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let queries = generator
        .join()
        .map_err(|_| "the vector generator panicked")?;
    for (t, q) in tenants.iter_mut().zip(queries) {
        t.queries = q;
    }
    Ok(tenants)
}

async fn insert_chunks(
    platform: &DatabaseConnection,
    space: &str,
    (tenant, collection, document, generation): (Uuid, Uuid, Uuid, Uuid),
    batch: Batch,
) -> Result<()> {
    let mut values: Vec<Value> = vec![
        tenant.into(),
        collection.into(),
        document.into(),
        generation.into(),
    ];
    let mut rows = Vec::with_capacity(batch.vectors.len());
    for (i, v) in batch.vectors.into_iter().enumerate() {
        values.push(i32::try_from(batch.start + i)?.into());
        values.push(PgVector::from(v).into());
        rows.push(format!(
            "(${}::integer, ${}::vector)",
            values.len() - 1,
            values.len()
        ));
    }
    let sql = format!(
        "INSERT INTO chunks (tenant_id, id, collection_id, document_id, generation_id, space_id,
                             position, content, token_count, embedding)
         SELECT $1::uuid, gen_random_uuid(), $2::uuid, $3::uuid, $4::uuid, '{space}',
                v.position, 'synthetic chunk', 2, v.embedding
         FROM (VALUES {}) v(position, embedding)",
        rows.join(", ")
    );
    platform.execute_raw(stmt(&sql, values)).await?;
    Ok(())
}

// --- Queries ------------------------------------------------------------------------------------

/// The vector query of `ChunkRepo::search` (mode Vector, no metadata filter, no minimum score).
fn search_sql(space: &str, dims: usize, exact: bool) -> String {
    let distance = format!("c.embedding::vector({dims}) <=> $4::vector({dims})");
    let order = if exact {
        format!("({distance}) + 0")
    } else {
        distance.clone()
    };
    format!(
        "SELECT * FROM (
             SELECT c.id AS chunk_id, c.document_id, d.title AS document_title, c.position, c.content,
                    (1 - ({distance}))::float8 AS score, c.metadata
             FROM chunks c
             JOIN documents d ON d.tenant_id = c.tenant_id AND d.id = c.document_id AND d.deleted_at IS NULL
             WHERE c.tenant_id = $1 AND c.space_id = '{space}' AND c.generation_id = $2
             ORDER BY {order}
             LIMIT $3
         ) nearest
         ORDER BY score DESC, chunk_id"
    )
}

#[derive(FromQueryResult)]
struct Hit {
    chunk_id: Uuid,
}

/// The application role's pools.
struct Apps {
    app: DatabaseConnection,
    store: PgStore,
    /// With `plan_cache_mode = force_custom_plan`.
    custom: DatabaseConnection,
    custom_store: PgStore,
}

/// Runs every query of every tenant in one configuration (after a warm-up); for `Exact`, records
/// the answers as the ground truth.
async fn measure(
    apps: &Apps,
    owner: &DatabaseConnection,
    spec: &Spec,
    tenants: &mut [Tenant],
    config: Config,
) -> Result<ConfigResult> {
    let (app, store) = match config {
        Config::Production { custom_plans: true } => (&apps.custom, &apps.custom_store),
        _ => (&apps.app, &apps.store),
    };
    let index = store_postgres::space_index_name(spec.space);
    let scans_before = index_scans(owner, app, &index).await?;
    let (mut runs, mut large_runs) = (0_usize, 0_usize);
    for t in tenants.iter() {
        for q in t.queries.iter().take(WARMUP_PER_TENANT) {
            one(app, store, spec, t, config, q).await?;
            runs += 1;
            large_runs += usize::from(t.size > small_max(spec.dims));
        }
    }
    let mut samples = Vec::new();
    for (i, t) in tenants.iter_mut().enumerate() {
        for (n, q) in t.queries.iter().enumerate() {
            let (elapsed, ids) = one(app, store, spec, t, config, q).await?;
            runs += 1;
            large_runs += usize::from(t.size > small_max(spec.dims));
            if config == Config::Exact {
                t.truth.push(ids.iter().copied().collect());
            }
            let truth = &t.truth[n];
            let found = ids.iter().filter(|id| truth.contains(id)).count();
            samples.push(Sample {
                tenant: i,
                ms: elapsed.as_secs_f64() * 1000.0,
                recall: found as f64 / truth.len().max(1) as f64,
            });
        }
    }
    let scans = index_scans(owner, app, &index).await? - scans_before;
    let index_used = match config {
        Config::Production { .. } => None,
        _ => {
            let smallest = tenants.iter().min_by_key(|t| t.size).ok_or("no tenants")?;
            let largest = tenants.iter().max_by_key(|t| t.size).ok_or("no tenants")?;
            Some((
                uses_index(app, spec, smallest, config).await?,
                uses_index(app, spec, largest, config).await?,
            ))
        }
    };
    Ok(ConfigResult {
        config,
        samples,
        index_used,
        index_share: scans as f64 / runs.max(1) as f64,
        large_share: large_runs as f64 / runs.max(1) as f64,
    })
}

/// Scans of `index` so far, once `app`'s backend has reported its statistics.
async fn index_scans(
    owner: &DatabaseConnection,
    app: &DatabaseConnection,
    index: &str,
) -> Result<i64> {
    app.execute_unprepared("SELECT pg_stat_force_next_flush()")
        .await?;
    // The backend reports when it goes idle, just after that statement.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let row = owner
        .query_one_raw(stmt(
            "SELECT COALESCE(sum(idx_scan), 0)::bigint FROM pg_stat_user_indexes WHERE indexrelname = $1",
            vec![index.into()],
        ))
        .await?
        .ok_or("no statistics row")?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

/// One query: the time of the search itself (not of opening and closing the transaction), and
/// the chunk ids found.
async fn one(
    app: &DatabaseConnection,
    store: &PgStore,
    spec: &Spec,
    t: &Tenant,
    config: Config,
    vector: &[f32],
) -> Result<(Duration, Vec<Uuid>)> {
    if config.is_production() {
        let mut tx = store.begin(TenantId::from_uuid(t.id)).await?;
        let query = SearchQuery {
            collection: CollectionId::from_uuid(t.collection),
            generation: GenerationId::from_uuid(t.generation),
            space_id: spec.space.into(),
            dimensions: u32::try_from(spec.dims)?,
            chunk_count: i64::try_from(t.size)?,
            text: String::new(),
            vector: Some(vector.to_vec()),
            mode: SearchMode::Vector,
            top_k: TOP_K,
            filter: Vec::new(),
            min_score: None,
            hybrid_weight: 0.5,
            vector_hits: Vec::new(),
            text_hits: Vec::new(),
        };
        let started = Instant::now();
        let hits = tx.chunks().search(&query).await?;
        let elapsed = started.elapsed();
        tx.commit().await?;
        return Ok((elapsed, hits.iter().map(|h| h.chunk_id.as_uuid()).collect()));
    }
    let tx = app.begin().await?;
    settings(&tx, t, config).await?;
    let sql = search_sql(spec.space, spec.dims, config == Config::Exact);
    let started = Instant::now();
    let hits = Hit::find_by_statement(stmt(&sql, search_values(t, vector)))
        .all(&tx)
        .await?;
    let elapsed = started.elapsed();
    tx.commit().await?;
    Ok((elapsed, hits.iter().map(|h| h.chunk_id).collect()))
}

/// The tenant of the transaction (as `PgStore::begin` sets it) and the HNSW scan settings.
async fn settings(tx: &impl ConnectionTrait, t: &Tenant, config: Config) -> Result<()> {
    tx.execute_raw(stmt(
        "SELECT set_config('app.tenant_id', $1, true)",
        vec![t.id.to_string().into()],
    ))
    .await?;
    if let Config::Hnsw { iterative, ef } = config {
        tx.execute_raw(stmt(
            "SELECT set_config('hnsw.iterative_scan', $1, true),
                    set_config('hnsw.ef_search', $2, true),
                    set_config('enable_sort', 'off', true),
                    set_config('plan_cache_mode', 'force_custom_plan', true)",
            vec![iterative.into(), ef.to_string().into()],
        ))
        .await?;
    }
    Ok(())
}

fn search_values(t: &Tenant, vector: &[f32]) -> Vec<Value> {
    vec![
        t.id.into(),
        t.generation.into(),
        i64::from(TOP_K).into(),
        PgVector::from(vector.to_vec()).into(),
    ]
}

/// Whether the planner takes the space's HNSW index for this tenant and configuration.
async fn uses_index(
    app: &DatabaseConnection,
    spec: &Spec,
    t: &Tenant,
    config: Config,
) -> Result<bool> {
    let tx = app.begin().await?;
    settings(&tx, t, config).await?;
    let sql = format!(
        "EXPLAIN (COSTS OFF) {}",
        search_sql(spec.space, spec.dims, config == Config::Exact)
    );
    let rows = tx
        .query_all_raw(stmt(&sql, search_values(t, &t.queries[0])))
        .await?;
    tx.commit().await?;
    let index = store_postgres::space_index_name(spec.space);
    let mut used = false;
    for row in rows {
        used |= row.try_get_by_index::<String>(0)?.contains(&index);
    }
    Ok(used)
}

// --- Report -------------------------------------------------------------------------------------

struct Summary {
    queries: usize,
    p50: f64,
    p99: f64,
    recall: f64,
}

fn summary(samples: &[Sample], keep: impl Fn(&Sample) -> bool) -> Summary {
    let kept: Vec<&Sample> = samples.iter().filter(|s| keep(s)).collect();
    let mut ms: Vec<f64> = kept.iter().map(|s| s.ms).collect();
    ms.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        if ms.is_empty() {
            f64::NAN
        } else {
            ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1]
        }
    };
    Summary {
        queries: kept.len(),
        p50: rank(0.50),
        p99: rank(0.99),
        recall: kept.iter().map(|s| s.recall).sum::<f64>() / kept.len().max(1) as f64,
    }
}

/// The lowest mean recall of any one tenant.
fn worst_tenant(samples: &[Sample], tenants: usize) -> f64 {
    (0..tenants)
        .map(|t| summary(samples, |s| s.tenant == t).recall)
        .fold(f64::INFINITY, f64::min)
}

fn group(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Exact search up to these generation sizes, in the what-if table (0: always HNSW).
const THRESHOLDS: [usize; 10] = [
    0,
    500,
    1_000,
    1_500,
    2_000,
    3_000,
    5_000,
    10_000,
    20_000,
    usize::MAX,
];

/// What a planner that searches generations up to `threshold` chunks exactly and larger ones
/// through HNSW (as `hnsw` ran) would have answered: composed, query by query, from the measured
/// samples of the exact and HNSW configurations.
fn compose(
    sizes: &[usize],
    threshold: usize,
    exact: &ConfigResult,
    hnsw: &ConfigResult,
) -> Vec<Sample> {
    exact
        .samples
        .iter()
        .zip(&hnsw.samples)
        .map(|(e, h)| {
            let s = if sizes[e.tenant] <= threshold { e } else { h };
            Sample {
                tenant: s.tenant,
                ms: s.ms,
                recall: s.recall,
            }
        })
        .collect()
}

/// The goal for these dimensions: (text, met).
fn goal(dims: usize, s: &Summary) -> (&'static str, bool) {
    if dims == 384 {
        (
            "recall@10 ≥ 0.95 at p99 ≤ 15 ms",
            s.recall >= 0.95 && s.p99 <= 15.0,
        )
    } else {
        (
            "p99 ≤ 10 ms (recall@10 ≥ 0.95 assumed as well)",
            s.recall >= 0.95 && s.p99 <= 10.0,
        )
    }
}

fn threshold_label(t: usize, dims: usize) -> String {
    match t {
        0 => "none: HNSW for every tenant".into(),
        usize::MAX => "all: exact for every tenant".into(),
        t if t == small_max(dims) => format!("{} (the production planner's)", group(t)),
        t => group(t),
    }
}

fn markdown(
    datasets: &[DatasetResult],
    (pg, pgvector): &(String, String),
    elapsed: Duration,
) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|kb| kb.parse::<f64>().ok())
                })
        })
        .map_or(0.0, |kb| kb / 1_048_576.0);
    let pg_short = pg.split(" on ").next().unwrap_or(pg);
    let queries_per_tenant = datasets.first().map_or(0, |d| {
        d.results
            .first()
            .map_or(0, |r| r.samples.len() / d.sizes.len().max(1))
    });
    let mut md = String::new();
    let _ = writeln!(md, "{MARKER_START}");
    let _ = writeln!(md, "## Vector search (`just bench-search`)\n");
    let _ = writeln!(
        md,
        "{}, {cores} cores ({cpu}), {memory_gib:.0} GiB; {pg_short}, pgvector {pgvector}, with the settings \
         `just services` gives it (shared_buffers 256 MB), the benchmark client on the same machine. \
         Written by `crates/store-postgres/benches/search.rs` in {:.1} min.\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        elapsed.as_secs_f64() / 60.0,
    );
    let _ = writeln!(
        md,
        "**Data.** Synthetic, embedding-like unit vectors in the one `chunks` table that holds every \
         tenant and space, under row-level security, as the platform stores them. Each tenant has one \
         collection, generation (with its `chunk_count`) and document; tenant sizes follow Zipf's law \
         (s = 1). A vector is a shared mean direction (embeddings are anisotropic) plus one of \
         {GLOBAL_TOPICS} global topics (each tenant draws {TOPICS_PER_TENANT}, so tenants overlap in \
         the space and crowd each other's neighbourhoods), a tenant-specific shift, variation along \
         {TOPIC_RANK} directions of the topic (a low intrinsic dimension) and a little isotropic noise, \
         L2-normalised. Queries are stored points moved a little: {queries_per_tenant} per tenant \
         whatever its size, so that small tenants weigh as much as large ones; top-10; one at a time, \
         after a warm-up of {WARMUP_PER_TENANT} queries per tenant. The 384-d space is \
         `local-minilm-l6-v2` (seeded by the migrations), the 1,536-d one `bench-1536` (provider \
         `openai`, model `synthetic`), registered with `register_space`; each HNSW index is built by \
         `ensure_space_indexes` once the rows are loaded (m = 16, ef_construction = 64, \
         maintenance_work_mem sized from the rows, `CREATE INDEX CONCURRENTLY`), the 1,536-d one with the 384-d \
         rows in the table too.\n"
    );
    let _ = writeln!(
        md,
        "**Plans.** All as the application role under RLS, latency measured by the client:\n\
         - *production*: `ChunkRepo::search` through `PgStore` (mode Vector, top_k 10), whose \
           `PgTx::vector_plan` searches generations of ≤ {} chunks exactly (384-d; {} at 1,536-d: \
           `exact_search_max_chunks`) and larger ones through HNSW with `relaxed_order` iterative \
           scan, custom plans and sorting off, so that its choice binds PostgreSQL; the latency is the whole call (HNSW settings, \
           query and reset: one to three round trips; the chunk count comes with the collection);\n\
         - *production, `plan_cache_mode = force_custom_plan`*: the same code on connections with \
           that setting, so that PostgreSQL plans each execution for its tenant and vector instead \
           of switching to a generic plan after five executions of the prepared statement;\n\
         - *exact (forced)*: the production query ordered by `distance + 0` (no index can serve it); \
           its answers are the ground truth of recall@10;\n\
         - *HNSW forced*: the production query with `hnsw.iterative_scan` and `hnsw.ef_search` as \
           shown, and `enable_sort = off` plus custom plans so that every tenant, small ones too, \
           goes through the index (the EXPLAIN column checks it).\n\
         \n\
         For the last three the latency is the query statement alone. *HNSW scans per query* is \
         the growth of the index's `pg_stat_user_indexes.idx_scan` over the queries run. *Small* \
         tenants are those the production planner searches exactly, *large* ones the others.\n",
        group(small_max(384)),
        group(small_max(1536)),
    );
    for d in datasets {
        let largest = d.sizes.iter().max().copied().unwrap_or(0);
        let smallest = d.sizes.iter().min().copied().unwrap_or(0);
        let large = d.sizes.iter().filter(|&&s| s > small_max(d.dims)).count();
        let _ = writeln!(md, "### {}\n", d.spec_label);
        let _ = writeln!(
            md,
            "Tenant sizes {} to {} chunks ({} large, {} small). Loaded in {:.0} s; HNSW index built \
             in **{:.1} s** ({:.0} MB; `chunks` with its other indexes and TOAST {:.0} MB).\n",
            group(smallest),
            group(largest),
            large,
            d.sizes.len() - large,
            d.load_secs,
            d.build_secs,
            d.index_mb,
            d.table_mb,
        );
        let _ = writeln!(
            md,
            "| plan | queries | p50 ms | p99 ms | recall@10 | small: p99 ms | small: recall | large: p50 ms | large: p99 ms | large: recall | worst tenant's recall | HNSW scans per query | EXPLAIN uses HNSW (smallest / largest tenant) |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for r in &d.results {
            let all = summary(&r.samples, |_| true);
            let small = summary(&r.samples, |s| d.sizes[s.tenant] <= small_max(d.dims));
            let big = summary(&r.samples, |s| d.sizes[s.tenant] > small_max(d.dims));
            let used = match r.index_used {
                None => "—".to_owned(),
                Some((a, b)) => format!("{} / {}", yes(a), yes(b)),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {:.2} | {:.2} | {:.3} | {:.2} | {:.3} | {:.2} | {:.2} | {:.3} | {:.3} | {:.3} | {} |",
                r.config.label(),
                all.queries,
                all.p50,
                all.p99,
                all.recall,
                small.p99,
                small.recall,
                big.p50,
                big.p99,
                big.recall,
                worst_tenant(&r.samples, d.sizes.len()),
                r.index_share,
                used,
            );
        }
        let _ = writeln!(md);
        for r in d.results.iter().filter(|r| r.config.is_production()) {
            let _ = writeln!(
                md,
                "- {}: {:.1} % of the queries run were for large tenants, which the planner sends to \
                 HNSW; {:.1} % went through the index.",
                r.config.label(),
                100.0 * r.large_share,
                100.0 * r.index_share,
            );
        }
        let _ = writeln!(md);

        // Latency by tenant size.
        let buckets: [(usize, usize); 5] = [
            (0, 1_000),
            (1_001, 3_000),
            (3_001, 10_000),
            (10_001, 20_000),
            (20_001, usize::MAX),
        ];
        let _ = writeln!(
            md,
            "By tenant size (cells: p50 / p99 ms, mean recall@10):\n"
        );
        let _ = write!(md, "| tenant size | tenants |");
        for r in &d.results {
            let _ = write!(md, " {} |", r.config.label());
        }
        let _ = write!(md, "\n|---|---|");
        for _ in &d.results {
            let _ = write!(md, "---|");
        }
        let _ = writeln!(md);
        for (lo, hi) in buckets {
            let n = d.sizes.iter().filter(|&&s| s >= lo && s <= hi).count();
            if n == 0 {
                continue;
            }
            let range = if hi == usize::MAX {
                format!("> {}", group(lo - 1))
            } else {
                format!("{}–{}", group(lo), group(hi))
            };
            let _ = write!(md, "| {range} | {n} |");
            for r in &d.results {
                let s = summary(&r.samples, |s| {
                    let size = d.sizes[s.tenant];
                    size >= lo && size <= hi
                });
                let _ = write!(md, " {:.2} / {:.2}, {:.3} |", s.p50, s.p99, s.recall);
            }
            let _ = writeln!(md);
        }
        let _ = writeln!(md);

        // What-if: other thresholds and ef_search values for the production planner.
        let hnsw: Vec<&ConfigResult> = d
            .results
            .iter()
            .filter(|r| {
                matches!(
                    r.config,
                    Config::Hnsw {
                        iterative: "relaxed_order",
                        ..
                    }
                )
            })
            .collect();
        let Some(exact) = d.results.iter().find(|r| r.config == Config::Exact) else {
            continue;
        };
        if hnsw.is_empty() {
            continue;
        }
        let _ = writeln!(
            md,
            "Planner what-if: exact search up to a generation size, HNSW (forced, `relaxed_order`) \
             above it, composed query by query from the exact and HNSW rows above (the production \
             path adds its `chunk_count` lookup, about 0.1–0.3 ms). Cells: p99 ms, mean recall@10.\n"
        );
        let _ = write!(md, "| exact up to (chunks) |");
        for h in &hnsw {
            if let Config::Hnsw { ef, .. } = h.config {
                let _ = write!(md, " HNSW ef_search {ef} |");
            }
        }
        let _ = write!(md, "\n|---|");
        for _ in &hnsw {
            let _ = write!(md, "---|");
        }
        let _ = writeln!(md);
        for t in THRESHOLDS {
            let _ = write!(md, "| {} |", threshold_label(t, d.dims));
            for h in &hnsw {
                let s = summary(&compose(&d.sizes, t, exact, h), |_| true);
                let (_, met) = goal(d.dims, &s);
                let mark = if met { " ✓" } else { "" };
                let _ = write!(md, " {:.2}, {:.3}{mark} |", s.p99, s.recall);
            }
            let _ = writeln!(md);
        }
        let _ = writeln!(md, "\n(✓: meets this dataset's goal.)\n");
    }
    let _ = writeln!(md, "{}", verdict(datasets));
    let _ = write!(md, "{MARKER_END}");
    md
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Whether the production path meets the goals, and which composed planners would.
fn verdict(datasets: &[DatasetResult]) -> String {
    let mut out = String::from("**Goals.**");
    for d in datasets {
        for r in d.results.iter().filter(|r| r.config.is_production()) {
            let s = summary(&r.samples, |_| true);
            let (text, met) = goal(d.dims, &s);
            let _ = write!(
                out,
                "\n- {} dimensions, {text}, {}: **{}** (recall@10 {:.3}, p99 {:.2} ms).",
                d.dims,
                r.config.label(),
                if met { "met" } else { "not met" },
                s.recall,
                s.p99
            );
        }
        let Some(exact) = d.results.iter().find(|r| r.config == Config::Exact) else {
            continue;
        };
        let mut combos = Vec::new();
        for h in d.results.iter().filter(|r| {
            matches!(
                r.config,
                Config::Hnsw {
                    iterative: "relaxed_order",
                    ..
                }
            )
        }) {
            let Config::Hnsw { ef, .. } = h.config else {
                continue;
            };
            for t in THRESHOLDS {
                let s = summary(&compose(&d.sizes, t, exact, h), |_| true);
                let met = goal(d.dims, &s).1;
                let exact_up_to = match t {
                    0 => "none".to_owned(),
                    usize::MAX => "all".to_owned(),
                    t => group(t),
                };
                let text = format!(
                    "exact up to {exact_up_to} chunks, HNSW ef_search {ef} above (p99 {:.2} ms, recall {:.3})",
                    s.p99, s.recall
                );
                combos.push((met, s, text));
            }
        }
        let total = combos.len();
        let meeting: Vec<&(bool, Summary, String)> = combos.iter().filter(|c| c.0).collect();
        let fastest = |list: &mut dyn Iterator<Item = &(bool, Summary, String)>| {
            list.min_by(|a, b| a.1.p99.total_cmp(&b.1.p99))
                .map_or_else(|| "none".to_owned(), |c| c.2.clone())
        };
        if meeting.is_empty() {
            let closest = fastest(&mut combos.iter().filter(|c| c.1.recall >= 0.95));
            let _ = write!(
                out,
                "\n- {} dimensions, composed planners (what-if table): none of {total} meets it; the \
                 lowest p99 with recall@10 ≥ 0.95 is {closest}.",
                d.dims
            );
        } else {
            let best = fastest(&mut meeting.iter().copied());
            let _ = write!(
                out,
                "\n- {} dimensions, composed planners (what-if table): {} of {total} meet it (✓); the \
                 lowest p99 is {best}.",
                d.dims,
                meeting.len()
            );
        }
    }
    out.push('\n');
    out
}

fn write_section(section: &str) -> Result<()> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/benchmarks.md");
    let text = std::fs::read_to_string(path).unwrap_or_else(|_| {
        "# Benchmarks\n\nMedians and tails measured by the `just bench*` recipes; each section is \
         rewritten by its recipe.\n"
            .into()
    });
    let updated = match (text.find(MARKER_START), text.find(MARKER_END)) {
        (Some(start), Some(end)) if end > start => format!(
            "{}{section}{}",
            &text[..start],
            &text[end + MARKER_END.len()..]
        ),
        _ => format!("{}\n\n{section}\n", text.trim_end()),
    };
    std::fs::write(path, updated)?;
    Ok(())
}

// --- Plumbing -----------------------------------------------------------------------------------

fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

async fn scalar<T: sea_orm::TryGetable>(conn: &impl ConnectionTrait, sql: &str) -> Result<T> {
    let row = conn
        .query_one_raw(stmt(sql, Vec::new()))
        .await?
        .ok_or_else(|| format!("no row from {sql}"))?;
    Ok(row.try_get_by_index::<T>(0)?)
}

fn single() -> PoolOptions {
    PoolOptions {
        max_connections: 1,
        min_connections: 1,
        ..PoolOptions::default()
    }
}

/// The database URLs from the environment, else from `.local/env` (as the tests read them).
fn base_urls() -> Result<Urls> {
    let file = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.local/env"))
        .unwrap_or_default();
    let get = |key: &str| -> Result<String> {
        if let Ok(v) = std::env::var(key) {
            return Ok(v);
        }
        file.lines()
            .filter_map(|l| l.trim().trim_start_matches("export ").split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.trim_matches('\'').trim_matches('"').to_owned())
            .ok_or_else(|| format!("{key} is not set: run `just services` first").into())
    };
    Ok(Urls {
        app: get("DATABASE_URL")?,
        owner: get("DATABASE_OWNER_URL")?,
        platform: get("DATABASE_PLATFORM_URL")?,
    })
}

fn with_database(url: &str, db: &str) -> Result<String> {
    let (base, _) = url.rsplit_once('/').ok_or("a database URL has a path")?;
    Ok(format!("{base}/{db}"))
}
