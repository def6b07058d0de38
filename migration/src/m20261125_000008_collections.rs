//! Collections and their generations. A collection's chunks belong to one generation, bound to
//! one space; re-embedding builds a new generation beside the active one and switches the
//! collection to it in one update, so agents keep pointing at the same collection id.

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
                "CREATE TABLE collections (
                     tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
                     id uuid NOT NULL,
                     name text NOT NULL,
                     description text NOT NULL DEFAULT '',
                     space_id text NOT NULL REFERENCES embedding_spaces (id),
                     active_generation_id uuid NOT NULL,
                     document_count bigint NOT NULL DEFAULT 0 CHECK (document_count >= 0),
                     byte_count bigint NOT NULL DEFAULT 0 CHECK (byte_count >= 0),
                     last_active_at timestamptz,
                     created_at timestamptz NOT NULL,
                     updated_at timestamptz NOT NULL,
                     deleted_at timestamptz,
                     deleted_by uuid,
                     PRIMARY KEY (tenant_id, id)
                 );
                 CREATE TABLE generations (
                     tenant_id uuid NOT NULL,
                     id uuid NOT NULL,
                     collection_id uuid NOT NULL,
                     space_id text NOT NULL REFERENCES embedding_spaces (id),
                     state text NOT NULL CHECK (state IN ('building', 'active', 'retired')),
                     created_at timestamptz NOT NULL,
                     PRIMARY KEY (tenant_id, id),
                     FOREIGN KEY (tenant_id, collection_id) REFERENCES collections (tenant_id, id)
                         ON DELETE CASCADE
                 );
                 -- The active generation must be one of the collection's own. Deferred: the
                 -- collection and its first generation are inserted in one transaction.
                 ALTER TABLE collections ADD CONSTRAINT collections_active_generation_fkey
                     FOREIGN KEY (tenant_id, active_generation_id) REFERENCES generations (tenant_id, id)
                     DEFERRABLE INITIALLY DEFERRED;
                 {collections_policy}
                 {generations_policy}
                 GRANT SELECT, INSERT, UPDATE, DELETE ON collections, generations
                     TO {APP_ROLE}, {PLATFORM_ROLE};",
                collections_policy = tenant_policy("collections"),
                generations_policy = tenant_policy("generations"),
            ),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            "ALTER TABLE collections DROP CONSTRAINT collections_active_generation_fkey;
             DROP TABLE generations;
             DROP TABLE collections;",
        )
        .await
    }
}
