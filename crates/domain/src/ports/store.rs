use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::entities::{
    Agent, AgentChanges, AgentFilter, ApiKey, AuditEntry, AuditFilter, AuditRecord, Collection,
    CollectionChanges, EmbeddingSpace, Generation, KeyOwner, NewAgent, NewApiKey, NewCollection,
    NewUser, PlatformKey, Tenant, TenantStatus, User, UserChanges, UserCredentials,
};
use crate::error::{Conflict, Error};
use crate::ids::{
    AgentId, ApiKeyId, CollectionId, GenerationId, PlatformKeyId, TenantId, TokenFamilyId, UserId,
};
use crate::page::{Page, PageRequest};
use crate::principal::Actor;
use crate::values::{Email, Name, Slug};

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
    fn documents(&mut self) -> &mut dyn crate::ports::DocumentRepo;
    fn jobs(&mut self) -> &mut dyn crate::ports::JobRepo;
    fn chunks(&mut self) -> &mut dyn crate::ports::ChunkRepo;
    fn audit(&mut self) -> &mut dyn AuditLog;

    /// # Errors
    /// [`StoreError::Internal`] when the commit fails; nothing of the unit of work is kept then.
    async fn commit(self: Box<Self>) -> StoreResult<()>;
}

/// The tenant's own row.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait TenantRepo: Send {
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn get(&mut self) -> StoreResult<Option<Tenant>>;

    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn rename(&mut self, name: &Name, now: DateTime<Utc>) -> StoreResult<Option<Tenant>>;
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait UserRepo: Send {
    /// # Errors
    /// [`Conflict::UserEmailTaken`] when a live user has the email.
    async fn insert(&mut self, user: &NewUser, now: DateTime<Utc>) -> StoreResult<User>;

    /// A live user, or with `include_deleted` a soft-deleted one too.
    ///
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn get(&mut self, id: UserId, include_deleted: bool) -> StoreResult<Option<User>>;

    /// The live user with this email, with the password hash.
    ///
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn credentials_by_email(&mut self, email: &Email)
    -> StoreResult<Option<UserCredentials>>;

    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn list(&mut self, include_deleted: bool, page: PageRequest) -> StoreResult<Page<User>>;

    /// Changes a live user; `None` when there is none with that id.
    ///
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn update(
        &mut self,
        id: UserId,
        changes: &UserChanges,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<User>>;

    /// The ids of the live, active admins, locked until the end of the unit of work so two
    /// concurrent demotions cannot both pass the last-admin rule.
    ///
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn lock_active_admins(&mut self) -> StoreResult<Vec<UserId>>;

    /// Replaces a live user's password hash; `false` when there is none.
    ///
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn set_password(
        &mut self,
        id: UserId,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;

    /// Ends a live user's sessions: refresh tokens issued before `now` stop working, except those
    /// of `keep` (`User::sessions_valid_after`); `false` when there is no such user.
    ///
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn end_sessions(
        &mut self,
        id: UserId,
        keep: Option<TokenFamilyId>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;

    /// Soft-deletes a live user and ends its sessions (`sessions_valid_after`), so a restore does
    /// not revive them; `false` when there is none.
    ///
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn soft_delete(&mut self, id: UserId, by: Actor, now: DateTime<Utc>)
    -> StoreResult<bool>;

    /// Brings back a soft-deleted user; `None` when there is no deleted user with that id.
    ///
    /// # Errors
    /// [`Conflict::UserEmailTaken`] when a live user took the email meanwhile.
    async fn restore(&mut self, id: UserId, now: DateTime<Utc>) -> StoreResult<Option<User>>;

    /// Removes the user for good; `false` when there is none, live or deleted.
    ///
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn purge(&mut self, id: UserId) -> StoreResult<bool>;
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ApiKeyRepo: Send {
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn insert(&mut self, key: &NewApiKey, now: DateTime<Utc>) -> StoreResult<ApiKey>;

    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn list(&mut self, page: PageRequest) -> StoreResult<Page<ApiKey>>;

    /// Revokes the key (idempotent); `None` when there is no such key.
    ///
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn revoke(&mut self, id: ApiKeyId, now: DateTime<Utc>) -> StoreResult<Option<ApiKey>>;
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AgentRepo: Send {
    /// # Errors
    /// [`Conflict::AgentSlugTaken`] when a live agent has the slug.
    async fn insert(&mut self, agent: &NewAgent, now: DateTime<Utc>) -> StoreResult<Agent>;

    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn get(&mut self, id: AgentId, include_deleted: bool) -> StoreResult<Option<Agent>>;

    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn list(&mut self, filter: &AgentFilter, page: PageRequest) -> StoreResult<Page<Agent>>;

    /// Changes a live agent; `None` when there is none with that id.
    ///
    /// # Errors
    /// [`Conflict::AgentSlugTaken`] when the new slug belongs to another live agent.
    async fn update(
        &mut self,
        id: AgentId,
        changes: &AgentChanges,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Agent>>;

    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn soft_delete(
        &mut self,
        id: AgentId,
        by: Actor,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;

    /// # Errors
    /// [`Conflict::AgentSlugTaken`] when a live agent took the slug meanwhile.
    async fn restore(&mut self, id: AgentId, now: DateTime<Utc>) -> StoreResult<Option<Agent>>;

    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn purge(&mut self, id: AgentId) -> StoreResult<bool>;
}

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

/// The append-only audit log. There is no update or delete: the database refuses them too.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AuditLog: Send {
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn append(&mut self, entry: &AuditEntry) -> StoreResult<()>;

    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn list(
        &mut self,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> StoreResult<Page<AuditRecord>>;
}

/// A tenant to provision, with its first admin.
#[derive(Clone, Debug, PartialEq)]
pub struct NewTenant {
    pub id: TenantId,
    pub name: Name,
    pub slug: Slug,
}

/// Work that has to see across tenants, done by the platform role (which bypasses row-level
/// security): resolving a tenant slug or an API key before any tenant is known, and provisioning.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PlatformStore: Send + Sync {
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn tenant_by_slug(&self, slug: &Slug) -> StoreResult<Option<(TenantId, TenantStatus)>>;

    /// Creates the tenant, its first admin and the audit entries in one transaction.
    ///
    /// # Errors
    /// [`Conflict::TenantSlugTaken`] when the slug is taken.
    async fn create_tenant(
        &self,
        tenant: &NewTenant,
        admin: &NewUser,
        audit: &[AuditEntry],
        now: DateTime<Utc>,
    ) -> StoreResult<(Tenant, User)>;

    /// Sets a tenant's status (suspended or active) and appends `audit`, in one transaction;
    /// `None` when there is no such tenant.
    ///
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn set_tenant_status(
        &self,
        id: TenantId,
        status: TenantStatus,
        audit: &AuditEntry,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Tenant>>;

    /// Every tenant, newest first, a page at a time.
    ///
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn list_tenants(&self, page: PageRequest) -> StoreResult<Page<Tenant>>;

    /// Finds the tenant or platform key with this hash and notes that it was used.
    ///
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn key_owner(&self, key_hash: &[u8], now: DateTime<Utc>)
    -> StoreResult<Option<KeyOwner>>;

    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn insert_platform_key(
        &self,
        id: PlatformKeyId,
        name: &Name,
        prefix: &str,
        key_hash: &[u8],
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> StoreResult<PlatformKey>;

    /// Every platform key, newest first (there are few).
    ///
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn list_platform_keys(&self) -> StoreResult<Vec<PlatformKey>>;

    /// Revokes a platform key (a revoked one stays revoked); `None` when there is none.
    ///
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn revoke_platform_key(
        &self,
        id: PlatformKeyId,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<PlatformKey>>;
}
