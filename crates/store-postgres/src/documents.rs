//! Documents within a tenant unit of work: uploads, content replacement, status, lifecycle.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::entities::{Document, DocumentStatus, NewDocument};
use domain::page::{Page, PageRequest};
use domain::ports::{DocumentRepo, StoreError, StoreResult};
use domain::values::ContentType;
use domain::values::Name;
use domain::{Actor, CollectionId, DocumentId, TenantId};
use sea_orm::FromQueryResult;
use uuid::Uuid;

use crate::error::corrupt;
use crate::lifecycle::Table;
use crate::tenant_tx::{PgTx, execute, fetch_all, fetch_one, limit};

const DOCUMENT_COLUMNS: &str = "tenant_id, id, collection_id, title, content_type, metadata, \
     content_hash, byte_count, status, error, created_at, updated_at, deleted_at, deleted_by";

#[derive(Debug, FromQueryResult)]
struct DocumentRow {
    tenant_id: Uuid,
    id: Uuid,
    collection_id: Uuid,
    title: String,
    content_type: String,
    metadata: serde_json::Value,
    content_hash: Vec<u8>,
    byte_count: i64,
    status: String,
    error: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
    deleted_by: Option<Uuid>,
    content: Option<String>,
}

impl TryFrom<DocumentRow> for Document {
    type Error = StoreError;
    fn try_from(r: DocumentRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: DocumentId::from_uuid(r.id),
            tenant_id: TenantId::from_uuid(r.tenant_id),
            collection_id: CollectionId::from_uuid(r.collection_id),
            title: Name::parse(&r.title).map_err(|e| corrupt("document", e))?,
            content_type: ContentType::from_mime(&r.content_type)
                .ok_or_else(|| corrupt("document", r.content_type.clone()))?,
            metadata: r.metadata,
            content_hash: r.content_hash,
            byte_count: r.byte_count,
            status: DocumentStatus::parse(&r.status).map_err(|e| corrupt("document", e))?,
            error: r.error,
            content: r.content,
            created_at: r.created_at,
            updated_at: r.updated_at,
            deleted_at: r.deleted_at,
            deleted_by: r.deleted_by,
        })
    }
}

fn document(row: Option<DocumentRow>) -> StoreResult<Option<Document>> {
    row.map(Document::try_from).transpose()
}

#[async_trait]
impl DocumentRepo for PgTx {
    async fn insert_unless_present(
        &mut self,
        new: &NewDocument,
        now: DateTime<Utc>,
    ) -> StoreResult<(Document, bool)> {
        let sql = format!(
            "INSERT INTO documents (tenant_id, id, collection_id, title, content_type, metadata, content,
                                    content_hash, byte_count, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $10)
             ON CONFLICT (tenant_id, collection_id, content_hash) WHERE deleted_at IS NULL DO NOTHING
             RETURNING {DOCUMENT_COLUMNS}, NULL::text AS content"
        );
        let values = vec![
            self.t(),
            new.id.as_uuid().into(),
            new.collection_id.as_uuid().into(),
            new.title.as_str().into(),
            new.content_type.mime().into(),
            new.metadata.clone().into(),
            new.content.as_str().into(),
            new.content_hash.clone().into(),
            new.byte_count.into(),
            now.into(),
        ];
        if let Some(row) = fetch_one::<DocumentRow>(&self.tx, &sql, values).await? {
            return Ok((row.try_into()?, true));
        }
        let sql = format!(
            "SELECT {DOCUMENT_COLUMNS}, NULL::text AS content FROM documents
             WHERE tenant_id = $1 AND collection_id = $2 AND content_hash = $3 AND deleted_at IS NULL"
        );
        let existing = fetch_one::<DocumentRow>(
            &self.tx,
            &sql,
            vec![
                self.t(),
                new.collection_id.as_uuid().into(),
                new.content_hash.clone().into(),
            ],
        )
        .await?
        .ok_or_else(|| corrupt("document", "conflicting document vanished".into()))?;
        Ok((existing.try_into()?, false))
    }

    async fn get(&mut self, id: DocumentId, with_content: bool) -> StoreResult<Option<Document>> {
        let content = if with_content {
            "content"
        } else {
            "NULL::text AS content"
        };
        let sql = format!(
            "SELECT {DOCUMENT_COLUMNS}, {content} FROM documents
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"
        );
        document(fetch_one(&self.tx, &sql, vec![self.t(), id.as_uuid().into()]).await?)
    }

    async fn get_for_embedding(&mut self, id: DocumentId) -> StoreResult<Option<Document>> {
        let sql = format!(
            "SELECT {DOCUMENT_COLUMNS}, content FROM documents WHERE tenant_id = $1 AND id = $2"
        );
        document(fetch_one(&self.tx, &sql, vec![self.t(), id.as_uuid().into()]).await?)
    }

    async fn lock_unchanged(&mut self, id: DocumentId, content_hash: &[u8]) -> StoreResult<bool> {
        #[derive(FromQueryResult)]
        struct Row {
            unchanged: bool,
        }
        let row = fetch_one::<Row>(
            &self.tx,
            "SELECT status <> 'failed' AND content_hash = $3 AS unchanged FROM documents
             WHERE tenant_id = $1 AND id = $2 FOR SHARE",
            vec![self.t(), id.as_uuid().into(), content_hash.to_vec().into()],
        )
        .await?;
        Ok(row.is_some_and(|r| r.unchanged))
    }

    async fn replace_content(
        &mut self,
        id: DocumentId,
        new: &NewDocument,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(Document, i64)>> {
        #[derive(FromQueryResult)]
        struct Previous {
            byte_count: i64,
        }
        // The previous size under the row's lock, so concurrent replacements each adjust the
        // collection's byte count from what they replaced.
        let Some(previous) = fetch_one::<Previous>(
            &self.tx,
            "SELECT byte_count FROM documents
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL FOR UPDATE",
            vec![self.t(), id.as_uuid().into()],
        )
        .await?
        else {
            return Ok(None);
        };
        // Another live document with this content makes this a unique violation, mapped to
        // `Conflict::DocumentExists`.
        let sql = format!(
            "UPDATE documents SET title = $3, content_type = $4, metadata = $5, content = $6,
                                  content_hash = $7, byte_count = $8, status = 'pending',
                                  error = NULL, updated_at = $9
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL
             RETURNING {DOCUMENT_COLUMNS}, NULL::text AS content"
        );
        let values = vec![
            self.t(),
            id.as_uuid().into(),
            new.title.as_str().into(),
            new.content_type.mime().into(),
            new.metadata.clone().into(),
            new.content.as_str().into(),
            new.content_hash.clone().into(),
            new.byte_count.into(),
            now.into(),
        ];
        Ok(document(fetch_one(&self.tx, &sql, values).await?)?.map(|d| (d, previous.byte_count)))
    }

    async fn list(
        &mut self,
        collection: CollectionId,
        include_deleted: bool,
        page: PageRequest,
    ) -> StoreResult<Page<Document>> {
        let sql = format!(
            "SELECT {DOCUMENT_COLUMNS}, NULL::text AS content FROM documents
             WHERE tenant_id = $1 AND collection_id = $2 AND ($3 OR deleted_at IS NULL)
               AND ($4::uuid IS NULL OR id < $4)
             ORDER BY id DESC LIMIT $5"
        );
        let rows = fetch_all::<DocumentRow>(
            &self.tx,
            &sql,
            vec![
                self.t(),
                collection.as_uuid().into(),
                include_deleted.into(),
                page.after.into(),
                limit(page),
            ],
        )
        .await?;
        let docs = rows
            .into_iter()
            .map(Document::try_from)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(docs, page, |d: &Document| d.id.as_uuid()))
    }

    async fn soft_delete(
        &mut self,
        id: DocumentId,
        by: Actor,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Document>> {
        let returning = format!("{DOCUMENT_COLUMNS}, NULL::text AS content");
        document(
            self.soft_delete_returning(Table::Documents, id.as_uuid(), by, now, &returning)
                .await?,
        )
    }

    async fn restore(
        &mut self,
        id: DocumentId,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Document>> {
        // A live document with the same content makes this a unique violation, mapped to
        // `Conflict::DocumentExists`.
        let returning = format!("{DOCUMENT_COLUMNS}, NULL::text AS content");
        document(
            self.restore_row(Table::Documents, id.as_uuid(), now, &returning)
                .await?,
        )
    }

    async fn purge(&mut self, id: DocumentId) -> StoreResult<Option<Document>> {
        let returning = format!("{DOCUMENT_COLUMNS}, NULL::text AS content");
        document(
            self.purge_returning(Table::Documents, id.as_uuid(), &returning)
                .await?,
        )
    }

    async fn set_status(
        &mut self,
        id: DocumentId,
        status: DocumentStatus,
        error: Option<String>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        execute(
            &self.tx,
            "UPDATE documents SET status = $3, error = $4, updated_at = $5 WHERE tenant_id = $1 AND id = $2",
            vec![self.t(), id.as_uuid().into(), status.as_str().into(), error.into(), now.into()],
        )
        .await?;
        Ok(())
    }

    async fn count_in_collection(
        &mut self,
        collection: CollectionId,
        documents: i64,
        bytes: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        execute(
            &self.tx,
            "UPDATE collections SET document_count = GREATEST(document_count + $3, 0),
                                    byte_count = GREATEST(byte_count + $4, 0),
                                    last_active_at = $5
             WHERE tenant_id = $1 AND id = $2",
            vec![
                self.t(),
                collection.as_uuid().into(),
                documents.into(),
                bytes.into(),
                now.into(),
            ],
        )
        .await?;
        Ok(())
    }
}
