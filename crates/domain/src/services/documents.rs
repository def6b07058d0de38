use chrono::{DateTime, Utc};
use std::sync::Arc;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::entities::{AuditAction, Document, Job, JobKind, NewDocument};
use crate::error::{Error, Resource, Validator};
use crate::ids::{CollectionId, DocumentId, JobId, TenantId};
use crate::page::{Page, PageRequest};
use crate::ports::{CancelOutcome, Clock, ExtractError, NewJob, Store, TextExtractor};
use crate::ports::{StoreResult, TenantTx};
use crate::principal::Actor;
use crate::principal::{Principal, Scope};
use crate::services::lifecycle::{SoftDeletable, lifecycle_methods};
use crate::values::{self, ContentType, Name};

/// An upload as received.
#[derive(Clone, Debug)]
pub struct Upload {
    pub title: String,
    /// A MIME type (`text/plain`, `text/markdown`, `text/html`, `application/pdf`).
    pub content_type: String,
    pub bytes: Vec<u8>,
    pub metadata: Option<Value>,
}

/// What an upload did: a new document with its ingestion job, or the existing document with the
/// same content (no job).
#[derive(Clone, Debug)]
pub struct Uploaded {
    pub document: Document,
    pub job: Option<Job>,
}

pub struct DocumentService {
    store: Arc<dyn Store>,
    extractor: Arc<dyn TextExtractor>,
    clock: Arc<dyn Clock>,
    max_bytes: usize,
}

impl DocumentService {
    /// `max_bytes` bounds an uploaded document.
    pub fn new(
        store: Arc<dyn Store>,
        extractor: Arc<dyn TextExtractor>,
        clock: Arc<dyn Clock>,
        max_bytes: usize,
    ) -> Self {
        Self {
            store,
            extractor,
            clock,
            max_bytes,
        }
    }

    /// Stores a document and queues its ingestion; the same content twice in one collection is
    /// stored once. Text is extracted here, so a bad file is a clear error on the request.
    ///
    /// # Errors
    /// `TooLarge`, `UnsupportedMediaType`, validation (title, metadata, empty or invalid text),
    /// `NotFound` for the collection.
    pub async fn upload(
        &self,
        who: &Principal,
        collection: CollectionId,
        upload: Upload,
    ) -> Result<Uploaded, Error> {
        let tenant = who.tenant_with(Scope::Write)?;
        let new = self
            .read(tenant, DocumentId::new(), collection, upload)
            .await?;
        let now = self.clock.now();
        let mut tx = self.store.begin(tenant).await?;
        tx.collections()
            .get(collection, false)
            .await?
            .ok_or(Error::NotFound(Resource::Collection))?;
        let (document, created) = tx.documents().insert_unless_present(&new, now).await?;
        if !created {
            tx.commit().await?;
            return Ok(Uploaded {
                document,
                job: None,
            });
        }
        tx.documents()
            .count_in_collection(collection, 1, document.byte_count, now)
            .await?;
        let job = tx
            .jobs()
            .insert(&NewJob::ingest(collection, document.id), now)
            .await?;
        tx.audit()
            .record_with(
                now,
                who.actor(),
                AuditAction::Created,
                document.id,
                json!({"collection_id": collection.as_uuid(), "title": document.title.as_str(), "bytes": document.byte_count}),
            )
            .await?;
        tx.commit().await?;
        Ok(Uploaded {
            document,
            job: Some(job),
        })
    }

    /// Replaces a document's content, title and metadata and queues its ingestion; its current
    /// chunks stay searchable until the new ones are ready, and an ingestion of the old content
    /// still under way is cancelled. The same title, metadata and content again changes nothing.
    ///
    /// # Errors
    /// As [`Self::upload`]; `NotFound` for the document; `Conflict::DocumentExists` when another
    /// document of the collection has this content.
    pub async fn replace(
        &self,
        who: &Principal,
        id: DocumentId,
        upload: Upload,
    ) -> Result<Uploaded, Error> {
        let tenant = who.tenant_with(Scope::Write)?;
        let mut tx = self.store.begin(tenant).await?;
        let current = tx
            .documents()
            .get(id, false)
            .await?
            .ok_or(Error::NotFound(Resource::Document))?;
        tx.commit().await?;
        let new = self.read(tenant, id, current.collection_id, upload).await?;
        if new.content_hash == current.content_hash
            && new.title == current.title
            && new.metadata == current.metadata
            && new.content_type == current.content_type
        {
            return Ok(Uploaded {
                document: current,
                job: None,
            });
        }
        let now = self.clock.now();
        let mut tx = self.store.begin(tenant).await?;
        let (document, previous_bytes) = tx
            .documents()
            .replace_content(id, &new, now)
            .await?
            .ok_or(Error::NotFound(Resource::Document))?;
        tx.jobs().cancel_for_document(id, now).await?;
        tx.documents()
            .count_in_collection(
                document.collection_id,
                0,
                document.byte_count - previous_bytes,
                now,
            )
            .await?;
        let job = tx
            .jobs()
            .insert(&NewJob::ingest(document.collection_id, id), now)
            .await?;
        tx.audit()
            .record_with(
                now,
                who.actor(),
                AuditAction::Updated,
                id,
                json!({"title": document.title.as_str(), "bytes": document.byte_count, "content_changed": new.content_hash != current.content_hash}),
            )
            .await?;
        tx.commit().await?;
        Ok(Uploaded {
            document,
            job: Some(job),
        })
    }

    /// Checks an upload and extracts its text (a bad file is a clear error on the request).
    async fn read(
        &self,
        tenant: TenantId,
        id: DocumentId,
        collection: CollectionId,
        upload: Upload,
    ) -> Result<NewDocument, Error> {
        if upload.bytes.len() > self.max_bytes {
            return Err(Error::TooLarge {
                limit: self.max_bytes,
            });
        }
        let content_type = ContentType::from_mime(&upload.content_type)
            .ok_or_else(|| Error::UnsupportedMediaType(upload.content_type.clone()))?;
        let mut v = Validator::new();
        let title = v.check("title", Name::parse(&upload.title));
        let metadata = v.check(
            "metadata",
            values::metadata(upload.metadata.unwrap_or_else(|| json!({}))),
        );
        v.finish()?;
        let (Some(title), Some(metadata)) = (title, metadata) else {
            return Err(Error::internal("validator passed with a missing field"));
        };
        let byte_count = i64::try_from(upload.bytes.len()).unwrap_or(i64::MAX);
        let content_hash = Sha256::digest(&upload.bytes).to_vec();
        let content = self
            .extractor
            .extract(tenant, content_type, upload.bytes)
            .await
            .map_err(extraction_error)?;
        Ok(NewDocument {
            id,
            collection_id: collection,
            title,
            content_type,
            metadata,
            content,
            content_hash,
            byte_count,
        })
    }

    /// # Errors
    /// `NotFound`.
    pub async fn get(&self, who: &Principal, id: DocumentId) -> Result<Document, Error> {
        let tenant = who.tenant_with(Scope::Read)?;
        let mut tx = self.store.begin(tenant).await?;
        let found = tx.documents().get(id, true).await?;
        tx.commit().await?;
        found.ok_or(Error::NotFound(Resource::Document))
    }

    /// # Errors
    /// `NotFound` for the collection; `Forbidden` when a non-admin asks for deleted rows.
    pub async fn list(
        &self,
        who: &Principal,
        collection: CollectionId,
        include_deleted: bool,
        page: PageRequest,
    ) -> Result<Page<Document>, Error> {
        let tenant = who.tenant_listing(include_deleted)?;
        let mut tx = self.store.begin(tenant).await?;
        tx.collections()
            .get(collection, false)
            .await?
            .ok_or(Error::NotFound(Resource::Collection))?;
        let found = tx
            .documents()
            .list(collection, include_deleted, page)
            .await?;
        tx.commit().await?;
        Ok(found)
    }

    lifecycle_methods!(Documents, DocumentId, Document, "document");

    /// # Errors
    /// `NotFound`.
    pub async fn job(&self, who: &Principal, id: JobId) -> Result<Job, Error> {
        let tenant = who.tenant_with(Scope::Read)?;
        let mut tx = self.store.begin(tenant).await?;
        let found = tx.jobs().get(id).await?;
        tx.commit().await?;
        found.ok_or(Error::NotFound(Resource::Job))
    }

    /// # Errors
    /// Storage failures only.
    pub async fn jobs(&self, who: &Principal, page: PageRequest) -> Result<Page<Job>, Error> {
        let tenant = who.tenant_with(Scope::Read)?;
        let mut tx = self.store.begin(tenant).await?;
        let found = tx.jobs().list(page).await?;
        tx.commit().await?;
        Ok(found)
    }

    /// Cancels a queued job at once, or asks a running one to stop; a finished job is left as it
    /// is. A cancelled ingestion leaves nothing indexed.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn cancel_job(&self, who: &Principal, id: JobId) -> Result<Job, Error> {
        let tenant = who.tenant_with(Scope::Write)?;
        let now = self.clock.now();
        let mut tx = self.store.begin(tenant).await?;
        let (job, outcome) = tx
            .jobs()
            .cancel(id, now)
            .await?
            .ok_or(Error::NotFound(Resource::Job))?;
        if outcome != CancelOutcome::AlreadyFinished {
            tx.audit()
                .record_with(
                    now,
                    who.actor(),
                    AuditAction::Updated,
                    id,
                    json!({"cancel": if outcome == CancelOutcome::Cancelled { "cancelled" } else { "requested" }}),
                )
                .await?;
        }
        // A job cancelled before it started leaves nothing behind: no pending document, no
        // generation half-built.
        if outcome == CancelOutcome::Cancelled {
            match (job.kind, job.document_id, job.generation_id) {
                (JobKind::Ingest, Some(document), _) => {
                    tx.documents()
                        .set_status(
                            document,
                            crate::entities::DocumentStatus::Failed,
                            Some("ingestion cancelled".into()),
                            now,
                        )
                        .await?;
                }
                (JobKind::Reembed, _, Some(generation)) => {
                    tx.collections().drop_generation(generation).await?;
                }
                _ => {}
            }
        }
        tx.commit().await?;
        Ok(job)
    }
}

fn extraction_error(err: ExtractError) -> Error {
    match err {
        ExtractError::InvalidUtf8(at) => {
            Error::invalid("content", format!("is not valid UTF-8 (at byte {at})"))
        }
        ExtractError::Empty => Error::invalid("content", "contains no text"),
        ExtractError::Corrupt(reason) => {
            Error::invalid("content", format!("cannot be read: {reason}"))
        }
        ExtractError::TimedOut(secs) => {
            Error::invalid("content", format!("took longer than {secs} s to read"))
        }
        ExtractError::LimitExceeded(what) => Error::ExtractionLimit(what),
        ExtractError::Busy => Error::Busy,
        ExtractError::Internal(reason) => Error::internal(reason),
    }
}

/// Documents in the shared lifecycle: their collection counts the live ones and their bytes.
struct Documents;

#[async_trait::async_trait]
impl SoftDeletable for Documents {
    type Id = DocumentId;
    type Item = Document;
    type Removed = Document;
    const RESOURCE: Resource = Resource::Document;

    async fn soft_delete(
        tx: &mut dyn TenantTx,
        id: DocumentId,
        by: Actor,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Document>> {
        tx.documents().soft_delete(id, by, now).await
    }

    async fn restore(
        tx: &mut dyn TenantTx,
        id: DocumentId,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Document>> {
        tx.documents().restore(id, now).await
    }

    async fn get_live(tx: &mut dyn TenantTx, id: DocumentId) -> StoreResult<Option<Document>> {
        tx.documents().get(id, false).await
    }

    async fn purge(tx: &mut dyn TenantTx, id: DocumentId) -> StoreResult<Option<Document>> {
        tx.documents().purge(id).await
    }

    async fn after_delete(
        tx: &mut dyn TenantTx,
        document: &Document,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        count(tx, document, -1, now).await
    }

    async fn after_restore(
        tx: &mut dyn TenantTx,
        document: &Document,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        count(tx, document, 1, now).await
    }

    async fn after_purge(
        tx: &mut dyn TenantTx,
        document: &Document,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        // A deleted document left its collection's counts when it was deleted.
        if document.deleted_at.is_none() {
            count(tx, document, -1, now).await?;
        }
        Ok(())
    }
}

/// Adds (`sign` 1) or removes (-1) a document from its collection's counts.
async fn count(
    tx: &mut dyn TenantTx,
    document: &Document,
    sign: i64,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    tx.documents()
        .count_in_collection(
            document.collection_id,
            sign,
            sign * document.byte_count,
            now,
        )
        .await?;
    Ok(())
}
