//! Embedding spaces and their vector indexes: the privileged path.
//!
//! Each space gets a partial HNSW index on the expression `(embedding::vector(D))`, restricted to
//! its own rows. Building it needs the table owner's rights and must not lock out writers, so it
//! runs with the owner's URL (`agentic migrate up`, `agentic space register`), never from the
//! serving process, with `CREATE INDEX CONCURRENTLY` on a connection of its own (it cannot run
//! inside a transaction) and enough `maintenance_work_mem` for the graph to be built in memory.
//! A running server uses a new index as soon as it is valid.

use domain::entities::EmbeddingSpace;
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};

use crate::PoolOptions;
use crate::tenant_tx::fetch_all;

/// The index of one space. Space ids are slugs (checked by the table), so they fit a name.
#[must_use]
pub fn space_index_name(space_id: &str) -> String {
    format!("chunks_embedding_{}", space_id.replace('-', "_"))
}

/// Registers a space (or leaves an identical one as it is) and builds its index, as the owner.
///
/// # Errors
/// When the database refuses the space (a different space with that id, say) or the index.
pub async fn register_space(owner_url: &str, space: &EmbeddingSpace) -> Result<(), DbErr> {
    let conn = crate::connect(owner_url, &single()).await?;
    conn.execute_raw(crate::tenant_tx::stmt(
        "INSERT INTO embedding_spaces (id, provider, model, dimensions, normalized)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
        vec![
            space.id.as_str().into(),
            space.provider.as_str().into(),
            space.model.as_str().into(),
            i32::try_from(space.dimensions).unwrap_or(i32::MAX).into(),
            space.normalized.into(),
        ],
    ))
    .await?;
    conn.close().await?;
    ensure_space_indexes(owner_url).await.map(|_| ())
}

/// HNSW on `vector` stops at 2,000 dimensions; wider spaces are searched exactly, by design.
pub(crate) const HNSW_MAX_DIMENSIONS: i32 = 2000;

/// The indexes of the current schema (`relname`, `indexrelid`) with whether each can serve
/// queries: a concurrent build that failed or was killed leaves one that is not valid.
pub(crate) const USABLE_INDEXES: &str =
    "SELECT c.relname, i.indexrelid, i.indisvalid AND i.indisready AS usable
     FROM pg_index i
     JOIN pg_class c ON c.oid = i.indexrelid
     JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()";

/// Builds the index of every space that lacks a valid one, as the owner (whose URL this takes);
/// answers the names of the indexes built.
///
/// # Errors
/// When an index cannot be built (the role is not the owner of `chunks`, say).
pub async fn ensure_space_indexes(owner_url: &str) -> Result<Vec<String>, DbErr> {
    #[derive(FromQueryResult)]
    struct Space {
        id: String,
        dimensions: i32,
    }
    // One connection: the memory setting below is per session.
    let conn = crate::connect(owner_url, &single()).await?;
    // An index that is not valid (a build that failed or died with its backend) is built again.
    let spaces: Vec<Space> = fetch_all(
        &conn,
        &format!(
            "SELECT s.id, s.dimensions FROM embedding_spaces s
             WHERE NOT EXISTS (SELECT 1 FROM ({USABLE_INDEXES}) i
                               WHERE i.usable AND i.relname = 'chunks_embedding_' || replace(s.id, '-', '_'))
             ORDER BY s.id"
        ),
        vec![],
    )
    .await
    .map_err(|e| DbErr::Custom(e.to_string()))?;
    #[derive(FromQueryResult)]
    struct Rows {
        n: i64,
    }
    if spaces.is_empty() {
        conn.close().await?;
        return Ok(Vec::new());
    }
    // The planner's estimate of all chunks, freshly sampled: the owner is subject to row-level
    // security, so it cannot count them, and an upper bound is what the memory setting needs.
    conn.execute_unprepared("ANALYZE chunks").await?;
    let rows = Rows::find_by_statement(sea_orm::Statement::from_string(
        sea_orm::DbBackend::Postgres,
        "SELECT GREATEST(reltuples, 0)::int8 AS n FROM pg_class WHERE oid = 'chunks'::regclass",
    ))
    .one(&conn)
    .await?
    .map_or(0, |r| r.n);
    let mut built = Vec::new();
    for space in spaces {
        let valid = space
            .id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid || !(1..=HNSW_MAX_DIMENSIONS).contains(&space.dimensions) {
            tracing::warn!(space = %space.id, dimensions = space.dimensions, "no HNSW index for this space");
            continue;
        }
        let name = space_index_name(&space.id);
        // The graph is built fastest in memory: about twice the vectors' size (a graph that
        // outgrows it is finished on disk, much slower), at least 512 MB, at most 4 GB.
        let megabytes =
            (rows * (i64::from(space.dimensions) * 4 + 64) * 2 / 1_048_576).clamp(512, 4096);
        conn.execute_unprepared(&format!("SET maintenance_work_mem = '{megabytes}MB'"))
            .await?;
        // A failed concurrent build leaves an invalid index behind; drop it before retrying.
        conn.execute_unprepared(&format!("DROP INDEX CONCURRENTLY IF EXISTS {name}"))
            .await?;
        conn.execute_unprepared(&format!(
            "CREATE INDEX CONCURRENTLY {name} ON chunks
                 USING hnsw ((embedding::vector({dims})) vector_cosine_ops)
                 WITH (m = 16, ef_construction = 64)
                 WHERE space_id = '{id}'",
            dims = space.dimensions,
            id = space.id,
        ))
        .await?;
        built.push(name);
    }
    conn.close().await?;
    Ok(built)
}

fn single() -> PoolOptions {
    PoolOptions {
        max_connections: 1,
        min_connections: 1,
        ..PoolOptions::default()
    }
}
