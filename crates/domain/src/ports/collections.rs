//! Collections and their embedding generations.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::entities::{Collection, CollectionChanges, Generation, NewCollection};
use crate::ids::{CollectionId, GenerationId};
use crate::page::{Page, PageRequest};
use crate::ports::StoreResult;
use crate::principal::Actor;

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait CollectionRepo: Send {
    /// Creates the collection with its first (active, empty) generation.
    ///
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn insert(
        &mut self,
        collection: &NewCollection,
        now: DateTime<Utc>,
    ) -> StoreResult<Collection>;

    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn get(
        &mut self,
        id: CollectionId,
        include_deleted: bool,
    ) -> StoreResult<Option<Collection>>;

    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn list(
        &mut self,
        include_deleted: bool,
        page: PageRequest,
    ) -> StoreResult<Page<Collection>>;

    /// Changes a live collection; `None` when there is none with that id.
    ///
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn update(
        &mut self,
        id: CollectionId,
        changes: &CollectionChanges,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Collection>>;

    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn soft_delete(
        &mut self,
        id: CollectionId,
        by: Actor,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;

    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn restore(
        &mut self,
        id: CollectionId,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Collection>>;

    /// Removes the collection and everything in it (generations, documents, chunks, jobs).
    ///
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn purge(&mut self, id: CollectionId) -> StoreResult<bool>;

    /// Adds a generation in `building` state to a collection.
    ///
    /// # Errors
    /// [`crate::error::Conflict::ReembedInProgress`] when the collection already has one
    /// building.
    async fn start_generation(
        &mut self,
        collection: CollectionId,
        generation: GenerationId,
        space_id: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn generation(&mut self, id: GenerationId) -> StoreResult<Option<Generation>>;

    /// The collection's active generation and its space (deleted collections too), locking the
    /// collection row until the end of the unit of work: shared to write chunks into the
    /// generation, exclusive to switch it.
    ///
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn lock_active_generation(
        &mut self,
        collection: CollectionId,
        exclusive: bool,
    ) -> StoreResult<Option<Generation>>;

    /// Makes a building generation the collection's active one (and its space the collection's);
    /// the previous one is retired. Answers the retired generation, or `None` when the
    /// generation was not building (nothing changed then).
    ///
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn switch_generation(
        &mut self,
        collection: CollectionId,
        generation: GenerationId,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<GenerationId>>;

    /// Removes a generation that is not active, with its chunks.
    ///
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn drop_generation(&mut self, id: GenerationId) -> StoreResult<()>;
}
