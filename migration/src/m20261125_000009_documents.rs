//! Documents: the extracted text is kept, so a collection can be re-embedded without the
//! original files. The same content twice in one collection is stored once: a partial unique
//! index on the content hash among live documents.

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
                "CREATE TABLE documents (
                     tenant_id uuid NOT NULL,
                     id uuid NOT NULL,
                     collection_id uuid NOT NULL,
                     title text NOT NULL,
                     content_type text NOT NULL,
                     metadata jsonb NOT NULL DEFAULT '{{}}' CHECK (jsonb_typeof(metadata) = 'object'),
                     content text,
                     content_hash bytea NOT NULL,
                     byte_count bigint NOT NULL CHECK (byte_count >= 0),
                     status text NOT NULL CHECK (status IN ('pending', 'processing', 'ready', 'failed')),
                     error text,
                     created_at timestamptz NOT NULL,
                     updated_at timestamptz NOT NULL,
                     deleted_at timestamptz,
                     deleted_by uuid,
                     PRIMARY KEY (tenant_id, id),
                     FOREIGN KEY (tenant_id, collection_id) REFERENCES collections (tenant_id, id)
                         ON DELETE CASCADE
                 );
                 CREATE UNIQUE INDEX documents_live_content ON documents (tenant_id, collection_id, content_hash)
                     WHERE deleted_at IS NULL;
                 CREATE INDEX documents_collection ON documents (tenant_id, collection_id, id);
                 {policy}
                 GRANT SELECT, INSERT, UPDATE, DELETE ON documents TO {APP_ROLE}, {PLATFORM_ROLE};",
                policy = tenant_policy("documents"),
            ),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, "DROP TABLE documents;").await
    }
}
