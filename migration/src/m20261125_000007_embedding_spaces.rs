//! Embedding spaces: (provider, model, dimensions, normalisation), registered platform-wide.
//! Vectors of two spaces are never compared, so every chunk names its space and every vector
//! index is partial on one space. Not tenant data: no tenant_id, no RLS; tenants may read it.

use sea_orm_migration::prelude::*;

use crate::{APP_ROLE, PLATFORM_ROLE, run};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            &format!(
                "CREATE TABLE embedding_spaces (
                     -- A slug, inlined as a literal in each space's partial index predicate.
                     id text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9-]{{0,62}}$'),
                     provider text NOT NULL,
                     model text NOT NULL,
                     dimensions integer NOT NULL CHECK (dimensions BETWEEN 1 AND 4000),
                     normalized boolean NOT NULL,
                     created_at timestamptz NOT NULL DEFAULT now(),
                     CONSTRAINT embedding_spaces_model_key UNIQUE (provider, model, dimensions)
                 );
                 -- The local model is there out of the box: it needs no network.
                 INSERT INTO embedding_spaces (id, provider, model, dimensions, normalized)
                     VALUES ('local-minilm-l6-v2', 'local', 'all-MiniLM-L6-v2', 384, true);
                 GRANT SELECT ON embedding_spaces TO {APP_ROLE};
                 GRANT SELECT, INSERT, UPDATE, DELETE ON embedding_spaces TO {PLATFORM_ROLE};"
            ),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, "DROP TABLE embedding_spaces;").await
    }
}
