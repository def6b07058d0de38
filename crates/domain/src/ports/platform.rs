//! Work across tenants, by the platform role.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::entities::{AuditEntry, KeyOwner, NewUser, PlatformKey, Tenant, TenantStatus, User};
use crate::ids::{PlatformKeyId, TenantId};
use crate::page::{Page, PageRequest};
use crate::ports::StoreResult;
use crate::values::{Name, Slug};

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

    /// Sets (or, with `None`, lifts) a tenant's daily token quota and appends `audit`, in one
    /// transaction; `None` when there is no such tenant. A platform write: the tenants' own role
    /// cannot change its quota.
    ///
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn set_daily_token_quota(
        &self,
        id: TenantId,
        quota: Option<u64>,
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
