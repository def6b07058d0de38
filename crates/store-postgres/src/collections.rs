//! Collections, within a tenant unit of work.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::entities::{Collection, CollectionChanges, NewCollection};
use domain::page::{Page, PageRequest};
use domain::ports::{CollectionRepo, StoreResult};
use domain::{Actor, CollectionId};

use crate::error::corrupt;
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
        let n = execute(
            &self.tx,
            "UPDATE collections SET deleted_at = $3, deleted_by = $4, updated_at = $3
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
            vec![self.t(), id.as_uuid().into(), now.into(), by.id().into()],
        )
        .await?;
        Ok(n == 1)
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
        let n = execute(
            &self.tx,
            "DELETE FROM collections WHERE tenant_id = $1 AND id = $2",
            vec![self.t(), id.as_uuid().into()],
        )
        .await?;
        Ok(n == 1)
    }
}
