//! Chunks with their vectors. The vector column is untyped (`vector` without dimensions) so one
//! table holds every space; each space gets its own partial HNSW index on the expression
//! `(embedding::vector(D))`, created by the platform role when the space is registered (not
//! here: `CREATE INDEX CONCURRENTLY` cannot run in a migration's transaction). Full text uses a
//! generated tsvector with a GIN index.

use sea_orm_migration::prelude::*;

use crate::{APP_ROLE, PLATFORM_ROLE, run, tenant_policy};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            &format!(
                "CREATE TABLE chunks (
                     tenant_id uuid NOT NULL,
                     id uuid NOT NULL,
                     collection_id uuid NOT NULL,
                     document_id uuid NOT NULL,
                     generation_id uuid NOT NULL,
                     space_id text NOT NULL REFERENCES embedding_spaces (id),
                     position integer NOT NULL CHECK (position >= 0),
                     content text NOT NULL,
                     token_count integer NOT NULL,
                     metadata jsonb NOT NULL DEFAULT '{{}}',
                     embedding vector NOT NULL,
                     tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', content)) STORED,
                     PRIMARY KEY (tenant_id, id),
                     FOREIGN KEY (tenant_id, document_id) REFERENCES documents (tenant_id, id)
                         ON DELETE CASCADE,
                     FOREIGN KEY (tenant_id, generation_id) REFERENCES generations (tenant_id, id)
                         ON DELETE CASCADE,
                     FOREIGN KEY (tenant_id, collection_id) REFERENCES collections (tenant_id, id)
                         ON DELETE CASCADE
                 );
                 CREATE INDEX chunks_generation ON chunks (tenant_id, generation_id);
                 CREATE INDEX chunks_document ON chunks (tenant_id, document_id, position);
                 CREATE INDEX chunks_tsv ON chunks USING gin (tsv);
                 CREATE INDEX chunks_metadata ON chunks USING gin (metadata jsonb_path_ops);
                 {policy}
                 GRANT SELECT, INSERT, UPDATE, DELETE ON chunks TO {APP_ROLE}, {PLATFORM_ROLE};",
                policy = tenant_policy("chunks"),
            ),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, "DROP TABLE chunks;").await
    }
}
