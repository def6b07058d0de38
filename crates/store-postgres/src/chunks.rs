//! Chunks within a tenant unit of work: writing a document's chunks into a generation, and
//! finding what is left to embed. Searching them is `search.rs`.

use async_trait::async_trait;
use domain::ports::{ChunkRepo, ChunkTarget, NewChunk, SearchHit, SearchQuery, StoreResult};
use domain::{CollectionId, DocumentId, GenerationId};
use sea_orm::FromQueryResult;
use sea_orm::prelude::PgVector;
use uuid::Uuid;

use crate::tenant_tx::{PgTx, execute, fetch_all};

#[async_trait]
impl ChunkRepo for PgTx {
    async fn replace(&mut self, target: &ChunkTarget, chunks: &[NewChunk]) -> StoreResult<()> {
        let removed = execute(
            &self.tx,
            "DELETE FROM chunks WHERE tenant_id = $1 AND document_id = $2 AND generation_id = $3",
            vec![
                self.t(),
                target.document.as_uuid().into(),
                target.generation.as_uuid().into(),
            ],
        )
        .await?;
        for chunk in chunks {
            execute(
                &self.tx,
                "INSERT INTO chunks (tenant_id, id, collection_id, document_id, generation_id, space_id,
                                     position, content, token_count, metadata, embedding)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                vec![
                    self.t(),
                    chunk.id.as_uuid().into(),
                    target.collection.as_uuid().into(),
                    target.document.as_uuid().into(),
                    target.generation.as_uuid().into(),
                    target.space_id.as_str().into(),
                    i32::try_from(chunk.position).unwrap_or(i32::MAX).into(),
                    chunk.content.as_str().into(),
                    i32::try_from(chunk.token_count).unwrap_or(i32::MAX).into(),
                    target.metadata.clone().into(),
                    PgVector::from(chunk.embedding.clone()).into(),
                ],
            )
            .await?;
        }
        // The count the search planner reads (purging a document leaves it high: an estimate).
        let added = i64::try_from(chunks.len()).unwrap_or(i64::MAX);
        let removed = i64::try_from(removed).unwrap_or(i64::MAX);
        execute(
            &self.tx,
            "UPDATE generations SET chunk_count = GREATEST(chunk_count + $3, 0)
             WHERE tenant_id = $1 AND id = $2",
            vec![
                self.t(),
                target.generation.as_uuid().into(),
                (added - removed).into(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn discard_building(
        &mut self,
        collection: CollectionId,
        document: DocumentId,
    ) -> StoreResult<()> {
        execute(
            &self.tx,
            "WITH gone AS (
                 DELETE FROM chunks c USING generations g
                 WHERE c.tenant_id = $1 AND c.document_id = $3
                   AND g.tenant_id = $1 AND g.collection_id = $2 AND g.state = 'building'
                   AND c.generation_id = g.id
                 RETURNING c.generation_id
             )
             UPDATE generations g SET chunk_count = GREATEST(g.chunk_count - n.removed, 0)
             FROM (SELECT generation_id, count(*) AS removed FROM gone GROUP BY generation_id) n
             WHERE g.tenant_id = $1 AND g.id = n.generation_id",
            vec![
                self.t(),
                collection.as_uuid().into(),
                document.as_uuid().into(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn documents_without_chunks(
        &mut self,
        collection: CollectionId,
        generation: GenerationId,
    ) -> StoreResult<Vec<(DocumentId, Vec<u8>)>> {
        #[derive(FromQueryResult)]
        struct Row {
            id: Uuid,
            content_hash: Vec<u8>,
        }
        let rows = fetch_all::<Row>(
            &self.tx,
            "SELECT d.id, d.content_hash FROM documents d
             WHERE d.tenant_id = $1 AND d.collection_id = $2 AND d.status <> 'failed'
               AND NOT EXISTS (SELECT 1 FROM chunks c
                               WHERE c.tenant_id = $1 AND c.document_id = d.id
                                 AND c.generation_id = $3)
             ORDER BY d.id",
            vec![
                self.t(),
                collection.as_uuid().into(),
                generation.as_uuid().into(),
            ],
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (DocumentId::from_uuid(r.id), r.content_hash))
            .collect())
    }

    async fn search(&mut self, query: &SearchQuery) -> StoreResult<Vec<SearchHit>> {
        self.search_chunks(query).await
    }
}
