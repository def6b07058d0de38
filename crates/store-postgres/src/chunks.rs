//! Chunks within a tenant unit of work: writing a document's chunks into a generation, and
//! finding what is left to embed. Searching them is `search.rs`.

use async_trait::async_trait;
use domain::ports::{ChunkRepo, ChunkTarget, NewChunk, SearchHit, SearchQuery, StoreResult};
use domain::{ChunkId, CollectionId, DocumentId, GenerationId};
use sea_orm::FromQueryResult;
use sea_orm::prelude::PgVector;
use uuid::Uuid;

use crate::tenant_tx::{Params, PgTx, execute, fetch_all};

/// Chunks per INSERT: five parameters each, well within PostgreSQL's 65,535.
const INSERT_BATCH: usize = 500;

#[async_trait]
impl ChunkRepo for PgTx {
    async fn replace(&mut self, target: &ChunkTarget, chunks: &[NewChunk]) -> StoreResult<()> {
        // The generation's counts and full-text statistics follow in the same statements, kept
        // by triggers (migration `bm25`); a few large statements keep their work per chunk small.
        execute(
            &self.tx,
            "DELETE FROM chunks WHERE tenant_id = $1 AND document_id = $2 AND generation_id = $3",
            vec![
                self.t(),
                target.document.as_uuid().into(),
                target.generation.as_uuid().into(),
            ],
        )
        .await?;
        for batch in chunks.chunks(INSERT_BATCH) {
            let mut params = Params::of(self);
            let collection = params.bind(target.collection.as_uuid());
            let document = params.bind(target.document.as_uuid());
            let generation = params.bind(target.generation.as_uuid());
            let space = params.bind(target.space_id.as_str());
            let metadata = params.bind(target.metadata.clone());
            let title = params.bind(target.title.as_str());
            let rows: Vec<String> = batch
                .iter()
                .map(|chunk| {
                    format!(
                        "($1, {}, {collection}, {document}, {generation}, {space}, {}, {}, {}, \
                         {metadata}, {}, {title})",
                        params.bind(chunk.id.as_uuid()),
                        params.bind(i32::try_from(chunk.position).unwrap_or(i32::MAX)),
                        params.bind(chunk.content.as_str()),
                        params.bind(i32::try_from(chunk.token_count).unwrap_or(i32::MAX)),
                        params.bind(PgVector::from(chunk.embedding.clone())),
                    )
                })
                .collect();
            execute(
                &self.tx,
                &format!(
                    "INSERT INTO chunks (tenant_id, id, collection_id, document_id, generation_id, space_id,
                                         position, content, token_count, metadata, embedding, title)
                     VALUES {}",
                    rows.join(", ")
                ),
                params.into_values(),
            )
            .await?;
        }
        Ok(())
    }

    async fn discard_building(
        &mut self,
        collection: CollectionId,
        document: DocumentId,
    ) -> StoreResult<()> {
        execute(
            &self.tx,
            "DELETE FROM chunks c USING generations g
             WHERE c.tenant_id = $1 AND c.document_id = $3
               AND g.tenant_id = $1 AND g.collection_id = $2 AND g.state = 'building'
               AND c.generation_id = g.id",
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

    async fn fulltext_scores(&mut self, query: &SearchQuery) -> StoreResult<Vec<(ChunkId, f32)>> {
        self.search_fulltext_scores(query).await
    }

    async fn vector_scores(&mut self, query: &SearchQuery) -> StoreResult<Vec<(ChunkId, f32)>> {
        self.search_vector_scores(query).await
    }
}
