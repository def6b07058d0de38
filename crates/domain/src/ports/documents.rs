//! Documents.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::entities::Document;
use crate::ids::{CollectionId, DocumentId};
use crate::page::{Page, PageRequest};
use crate::ports::StoreResult;
use crate::principal::Actor;

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait DocumentRepo: Send {
    /// Stores the document unless the collection already holds a live one with the same content
    /// hash; answers the stored document and whether it is new.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn insert_unless_present(
        &mut self,
        document: &crate::entities::NewDocument,
        now: DateTime<Utc>,
    ) -> StoreResult<(Document, bool)>;

    /// A live document, with its extracted text when `with_content`.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn get(&mut self, id: DocumentId, with_content: bool) -> StoreResult<Option<Document>>;

    /// A document with its text, deleted or not (a deleted one can be restored, so re-embedding
    /// covers it too).
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn get_for_embedding(&mut self, id: DocumentId) -> StoreResult<Option<Document>>;

    /// Locks the document row against changes until the end of the unit of work; answers
    /// whether it still exists, has not failed and has this content (re-embedding writes chunks
    /// of a text only while that text is the document's).
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn lock_unchanged(&mut self, id: DocumentId, content_hash: &[u8]) -> StoreResult<bool>;

    /// Replaces a live document's content (and title, type and metadata) and sets it pending;
    /// answers it as it is now with the byte count it had (read under the row's lock), or `None`
    /// when there is no live document with that id.
    ///
    /// # Errors
    /// [`crate::error::Conflict::DocumentExists`] when another live document of the collection
    /// has the new content.
    async fn replace_content(
        &mut self,
        id: DocumentId,
        replacement: &crate::entities::NewDocument,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(Document, i64)>>;

    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn list(
        &mut self,
        collection: CollectionId,
        include_deleted: bool,
        page: PageRequest,
    ) -> StoreResult<Page<Document>>;

    /// Soft-deletes a live document and answers it (its chunks leave search at once).
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn soft_delete(
        &mut self,
        id: DocumentId,
        by: Actor,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Document>>;

    /// # Errors
    /// [`crate::error::Conflict::DocumentExists`] when the collection holds the same content again.
    async fn restore(
        &mut self,
        id: DocumentId,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Document>>;

    /// Removes a document (live or deleted) with its chunks; answers it as it was.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn purge(&mut self, id: DocumentId) -> StoreResult<Option<Document>>;

    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn set_status(
        &mut self,
        id: DocumentId,
        status: crate::entities::DocumentStatus,
        error: Option<String>,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// Adds to a collection's document and byte counts (negative to subtract).
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn count_in_collection(
        &mut self,
        collection: CollectionId,
        documents: i64,
        bytes: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
}
