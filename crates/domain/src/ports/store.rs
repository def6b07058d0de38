use async_trait::async_trait;

use crate::entities::EmbeddingSpace;
use crate::error::{Conflict, Error};
use crate::ids::TenantId;
use crate::ports::{
    AgentRepo, ApiKeyRepo, AuditLog, ChunkRepo, CollectionRepo, ConversationRepo, DocumentRepo,
    JobRepo, MessageRepo, ProviderRepo, RunRepo, TenantRepo, UsageRepo, UserRepo,
};

/// What a storage adapter can report.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule held by the database (mapped from the constraint's name).
    #[error("conflict: {0:?}")]
    Conflict(Conflict),
    /// The database could not be reached, or ended the session (a restart, a crashed backend,
    /// no free connection in time): worth retrying, and not a bug. Says what happened.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("storage failure")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(conflict) => Self::Conflict(conflict),
            err @ StoreError::Unavailable(_) => Self::Unavailable(err.to_string()),
            StoreError::Internal(source) => Self::Internal(source),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Opens units of work on tenant data.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Store: Send + Sync {
    /// A unit of work that sees only `tenant`'s rows, through an explicit filter in every query and
    /// through row-level security. Dropping it without [`TenantTx::commit`] rolls it back.
    ///
    /// # Errors
    /// [`StoreError::Internal`] when no connection or transaction can be had.
    async fn begin(&self, tenant: TenantId) -> StoreResult<Box<dyn TenantTx>>;

    /// Whether the database answers.
    ///
    /// # Errors
    /// [`StoreError::Internal`] when it does not.
    async fn ping(&self) -> StoreResult<()>;

    /// The embedding spaces this server offers (platform-wide, not tenant data).
    ///
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn spaces(&self) -> StoreResult<Vec<EmbeddingSpace>>;

    /// What is wrong with the vector indexes of registered spaces, one line per space whose
    /// index is missing or not valid (a build that failed, crashed or is still running); empty
    /// when every space that should have one has it. Searches in such a space still answer, by
    /// comparing every vector, which is far slower in a large collection.
    ///
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn vector_index_problems(&self) -> StoreResult<Vec<String>>;
}

/// A transaction bound to one tenant. Its repositories need no tenant argument and cannot reach
/// another tenant's rows.
#[async_trait]
pub trait TenantTx: Send {
    fn tenant_id(&self) -> TenantId;
    fn tenant(&mut self) -> &mut dyn TenantRepo;
    fn users(&mut self) -> &mut dyn UserRepo;
    fn api_keys(&mut self) -> &mut dyn ApiKeyRepo;
    fn agents(&mut self) -> &mut dyn AgentRepo;
    fn collections(&mut self) -> &mut dyn CollectionRepo;
    fn documents(&mut self) -> &mut dyn DocumentRepo;
    fn jobs(&mut self) -> &mut dyn JobRepo;
    fn chunks(&mut self) -> &mut dyn ChunkRepo;
    fn audit(&mut self) -> &mut dyn AuditLog;
    fn conversations(&mut self) -> &mut dyn ConversationRepo;
    fn messages(&mut self) -> &mut dyn MessageRepo;
    fn runs(&mut self) -> &mut dyn RunRepo;
    fn usage(&mut self) -> &mut dyn UsageRepo;
    fn providers(&mut self) -> &mut dyn ProviderRepo;

    /// # Errors
    /// [`StoreError::Internal`] when the commit fails; nothing of the unit of work is kept then.
    async fn commit(self: Box<Self>) -> StoreResult<()>;
}
