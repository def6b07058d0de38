//! Collections, within a tenant unit of work.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::entities::{Collection, CollectionChanges, Generation, GenerationState, NewCollection};
use domain::page::{Page, PageRequest};
use domain::ports::{CollectionRepo, StoreError, StoreResult};
use domain::{Actor, CollectionId, GenerationId};
use sea_orm::FromQueryResult;
use uuid::Uuid;

use crate::error::corrupt;
use crate::lifecycle::Table;
use crate::rows::{CollectionRow, collection_select, convert};
use crate::tenant_tx::{PgTx, execute, fetch_all, fetch_one, limit};

#[async_trait]
impl CollectionRepo for PgTx {
    async fn insert(&mut self, new: &NewCollection, now: DateTime<Utc>) -> StoreResult<Collection> {
        // The first generation goes in with the collection; the foreign keys between the two are
        // checked at the end of the statement (generation → collection) and of the transaction
        // (collection → active generation).
        let sql = format!(
            "WITH g AS (
                 INSERT INTO generations (tenant_id, id, collection_id, space_id, state, created_at)
                 VALUES ($1, $6, $2, $5, 'active', $7)
             ), c AS (
                 INSERT INTO collections (tenant_id, id, name, description, space_id,
                                          active_generation_id, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
                 RETURNING *
             ) {}",
            collection_select("c")
        );
        let values = vec![
            self.t(),
            new.id.as_uuid().into(),
            new.name.as_str().into(),
            new.description.as_str().into(),
            new.space_id.as_str().into(),
            new.generation.as_uuid().into(),
            now.into(),
        ];
        fetch_one::<CollectionRow>(&self.tx, &sql, values)
            .await?
            .ok_or_else(|| corrupt("collection", "insert returned nothing".into()))?
            .try_into()
    }

    async fn get(
        &mut self,
        id: CollectionId,
        include_deleted: bool,
    ) -> StoreResult<Option<Collection>> {
        let sql = format!(
            "{} WHERE c.tenant_id = $1 AND c.id = $2 AND ($3 OR c.deleted_at IS NULL)",
            collection_select("collections")
        );
        fetch_one::<CollectionRow>(
            &self.tx,
            &sql,
            vec![self.t(), id.as_uuid().into(), include_deleted.into()],
        )
        .await?
        .map(Collection::try_from)
        .transpose()
    }

    async fn list(
        &mut self,
        include_deleted: bool,
        page: PageRequest,
    ) -> StoreResult<Page<Collection>> {
        let sql = format!(
            "{} WHERE c.tenant_id = $1 AND ($2 OR c.deleted_at IS NULL) AND ($3::uuid IS NULL OR c.id < $3)
             ORDER BY c.id DESC LIMIT $4",
            collection_select("collections")
        );
        let rows = fetch_all::<CollectionRow>(
            &self.tx,
            &sql,
            vec![
                self.t(),
                include_deleted.into(),
                page.after.into(),
                limit(page),
            ],
        )
        .await?;
        Ok(Page::from_rows(convert(rows)?, page, |c: &Collection| {
            c.id.as_uuid()
        }))
    }

    async fn update(
        &mut self,
        id: CollectionId,
        changes: &CollectionChanges,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Collection>> {
        let sql = format!(
            "WITH c AS (
                 UPDATE collections SET name = COALESCE($3, name),
                                        description = COALESCE($4, description),
                                        updated_at = $5
                 WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL
                 RETURNING *
             ) {}",
            collection_select("c")
        );
        let values = vec![
            self.t(),
            id.as_uuid().into(),
            changes.name.as_ref().map(|n| n.as_str().to_owned()).into(),
            changes.description.clone().into(),
            now.into(),
        ];
        fetch_one::<CollectionRow>(&self.tx, &sql, values)
            .await?
            .map(Collection::try_from)
            .transpose()
    }

    async fn soft_delete(
        &mut self,
        id: CollectionId,
        by: Actor,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.soft_delete_row(Table::Collections, id.as_uuid(), by, now)
            .await
    }

    async fn restore(
        &mut self,
        id: CollectionId,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Collection>> {
        let sql = format!(
            "WITH c AS (
                 UPDATE collections SET deleted_at = NULL, deleted_by = NULL, updated_at = $3
                 WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NOT NULL
                 RETURNING *
             ) {}",
            collection_select("c")
        );
        fetch_one::<CollectionRow>(
            &self.tx,
            &sql,
            vec![self.t(), id.as_uuid().into(), now.into()],
        )
        .await?
        .map(Collection::try_from)
        .transpose()
    }

    async fn purge(&mut self, id: CollectionId) -> StoreResult<bool> {
        self.purge_row(Table::Collections, id.as_uuid()).await
    }

    async fn start_generation(
        &mut self,
        collection: CollectionId,
        generation: GenerationId,
        space_id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        // Generations retired by an earlier re-embedding that stopped before dropping them, and
        // any still marked building whose job has ended.
        execute(
            &self.tx,
            "DELETE FROM generations g
             WHERE g.tenant_id = $1 AND g.collection_id = $2
               AND (g.state = 'retired'
                    OR (g.state = 'building'
                        AND NOT EXISTS (SELECT 1 FROM jobs j
                                        WHERE j.tenant_id = $1 AND j.generation_id = g.id
                                          AND j.state IN ('queued', 'running'))))",
            vec![self.t(), collection.as_uuid().into()],
        )
        .await?;
        execute(
            &self.tx,
            "INSERT INTO generations (tenant_id, id, collection_id, space_id, state, created_at)
             VALUES ($1, $2, $3, $4, 'building', $5)",
            vec![
                self.t(),
                generation.as_uuid().into(),
                collection.as_uuid().into(),
                space_id.into(),
                now.into(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn generation(&mut self, id: GenerationId) -> StoreResult<Option<Generation>> {
        fetch_one::<GenerationRow>(
            &self.tx,
            "SELECT id, collection_id, space_id, state FROM generations
             WHERE tenant_id = $1 AND id = $2",
            vec![self.t(), id.as_uuid().into()],
        )
        .await?
        .map(Generation::try_from)
        .transpose()
    }

    async fn lock_active_generation(
        &mut self,
        collection: CollectionId,
        exclusive: bool,
    ) -> StoreResult<Option<Generation>> {
        let lock = if exclusive { "UPDATE" } else { "SHARE" };
        let sql = format!(
            "WITH c AS (
                 SELECT active_generation_id FROM collections
                 WHERE tenant_id = $1 AND id = $2 FOR {lock}
             )
             SELECT g.id, g.collection_id, g.space_id, g.state
             FROM c JOIN generations g ON g.tenant_id = $1 AND g.id = c.active_generation_id"
        );
        fetch_one::<GenerationRow>(&self.tx, &sql, vec![self.t(), collection.as_uuid().into()])
            .await?
            .map(Generation::try_from)
            .transpose()
    }

    async fn switch_generation(
        &mut self,
        collection: CollectionId,
        generation: GenerationId,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<GenerationId>> {
        #[derive(FromQueryResult)]
        struct Row {
            retired: Uuid,
        }
        // `old` reads the collection as it was before this statement's update.
        let row = fetch_one::<Row>(
            &self.tx,
            "WITH old AS (
                 SELECT active_generation_id AS id FROM collections WHERE tenant_id = $1 AND id = $2
             ), new AS (
                 UPDATE generations SET state = 'active'
                 WHERE tenant_id = $1 AND id = $3 AND collection_id = $2 AND state = 'building'
                 RETURNING id, space_id
             ), switched AS (
                 UPDATE collections c SET active_generation_id = new.id, space_id = new.space_id,
                                          updated_at = $4
                 FROM new WHERE c.tenant_id = $1 AND c.id = $2
                 RETURNING c.id
             )
             UPDATE generations g SET state = 'retired'
             FROM old, switched
             WHERE g.tenant_id = $1 AND g.id = old.id AND g.id <> $3
             RETURNING g.id AS retired",
            vec![
                self.t(),
                collection.as_uuid().into(),
                generation.as_uuid().into(),
                now.into(),
            ],
        )
        .await?;
        Ok(row.map(|r| GenerationId::from_uuid(r.retired)))
    }

    async fn drop_generation(&mut self, id: GenerationId) -> StoreResult<()> {
        execute(
            &self.tx,
            "DELETE FROM generations WHERE tenant_id = $1 AND id = $2 AND state <> 'active'",
            vec![self.t(), id.as_uuid().into()],
        )
        .await?;
        Ok(())
    }
}

#[derive(Debug, FromQueryResult)]
struct GenerationRow {
    id: Uuid,
    collection_id: Uuid,
    space_id: String,
    state: String,
}

impl TryFrom<GenerationRow> for Generation {
    type Error = StoreError;
    fn try_from(r: GenerationRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: GenerationId::from_uuid(r.id),
            collection_id: CollectionId::from_uuid(r.collection_id),
            space_id: r.space_id,
            state: GenerationState::parse(&r.state).map_err(|e| corrupt("generation", e))?,
        })
    }
}
