//! The lifecycle every soft-deletable resource shares: delete (soft), restore, purge.
//!
//! The rules that are the same everywhere live here once: the scope each step needs (purge is
//! for admins), 404 for what is not there, restoring something live as an idempotent no-op (200
//! with it as it is, nothing recorded), the repository's 409 when a restored row's unique key
//! was taken meanwhile, and the audit entry in the same transaction as the change. A resource
//! says how its repository does each step, and hooks in where it has a rule of its own (the
//! last-admin rule for users, collection counters for documents). Adding a soft-deletable
//! resource is an implementation of [`SoftDeletable`] and three one-line service methods.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::entities::{AuditAction, AuditedId};
use crate::error::{Error, Resource};
use crate::ports::{Clock, Store, StoreResult, TenantTx};
use crate::principal::{Actor, Principal, Scope};

/// A soft-deletable resource, as the shared lifecycle drives it.
#[async_trait]
pub(crate) trait SoftDeletable: Send + Sync {
    type Id: AuditedId + Send + Sync;
    /// The resource as read back (what restore answers).
    type Item: Send;
    /// What the repository tells of a row it deleted or purged.
    type Removed: Send + Sync;

    const RESOURCE: Resource;
    /// The scope deleting and restoring need; purging always needs [`Scope::Admin`].
    const SCOPE: Scope = Scope::Write;

    /// Marks the live row deleted; `None` when there is no live row.
    async fn soft_delete(
        tx: &mut dyn TenantTx,
        id: Self::Id,
        by: Actor,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Self::Removed>>;

    /// Brings the deleted row back; `None` when it is not deleted (or not there).
    async fn restore(
        tx: &mut dyn TenantTx,
        id: Self::Id,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Self::Item>>;

    /// The live row.
    async fn get_live(tx: &mut dyn TenantTx, id: Self::Id) -> StoreResult<Option<Self::Item>>;

    /// Removes the row, deleted or not, and what belongs to it; `None` when it is not there.
    async fn purge(tx: &mut dyn TenantTx, id: Self::Id) -> StoreResult<Option<Self::Removed>>;

    /// Refuses a delete the resource's own rules forbid.
    async fn before_delete(_tx: &mut dyn TenantTx, _id: Self::Id) -> Result<(), Error> {
        Ok(())
    }

    /// Refuses a purge the resource's own rules forbid.
    async fn before_purge(_tx: &mut dyn TenantTx, _id: Self::Id) -> Result<(), Error> {
        Ok(())
    }

    /// Keeps what depends on the resource in step, in the same transaction.
    async fn after_delete(
        _tx: &mut dyn TenantTx,
        _removed: &Self::Removed,
        _now: DateTime<Utc>,
    ) -> Result<(), Error> {
        Ok(())
    }

    /// As [`SoftDeletable::after_delete`], for a restore.
    async fn after_restore(
        _tx: &mut dyn TenantTx,
        _item: &Self::Item,
        _now: DateTime<Utc>,
    ) -> Result<(), Error> {
        Ok(())
    }

    /// As [`SoftDeletable::after_delete`], for a purge.
    async fn after_purge(
        _tx: &mut dyn TenantTx,
        _removed: &Self::Removed,
        _now: DateTime<Utc>,
    ) -> Result<(), Error> {
        Ok(())
    }
}

/// Soft-deletes `id`.
///
/// # Errors
/// `Forbidden` without the resource's scope, `NotFound` when there is no live row, and whatever
/// the resource's own rule refuses.
pub(crate) async fn delete<R: SoftDeletable>(
    store: &dyn Store,
    clock: &dyn Clock,
    who: &Principal,
    id: R::Id,
) -> Result<(), Error> {
    let tenant = who.tenant_with(R::SCOPE)?;
    let now = clock.now();
    let mut tx = store.begin(tenant).await?;
    R::before_delete(tx.as_mut(), id).await?;
    let removed = R::soft_delete(tx.as_mut(), id, who.actor(), now)
        .await?
        .ok_or(Error::NotFound(R::RESOURCE))?;
    R::after_delete(tx.as_mut(), &removed, now).await?;
    tx.audit()
        .record(now, who.actor(), AuditAction::Deleted, id)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Restores `id`; a live one is answered as it is, with nothing changed or recorded.
///
/// # Errors
/// `Forbidden` without the resource's scope, `NotFound` when there is no such row, `Conflict`
/// when its unique key was taken while it was deleted.
pub(crate) async fn restore<R: SoftDeletable>(
    store: &dyn Store,
    clock: &dyn Clock,
    who: &Principal,
    id: R::Id,
) -> Result<R::Item, Error> {
    let tenant = who.tenant_with(R::SCOPE)?;
    let now = clock.now();
    let mut tx = store.begin(tenant).await?;
    let Some(item) = R::restore(tx.as_mut(), id, now).await? else {
        let live = R::get_live(tx.as_mut(), id)
            .await?
            .ok_or(Error::NotFound(R::RESOURCE))?;
        tx.commit().await?;
        return Ok(live);
    };
    R::after_restore(tx.as_mut(), &item, now).await?;
    tx.audit()
        .record(now, who.actor(), AuditAction::Restored, id)
        .await?;
    tx.commit().await?;
    Ok(item)
}

/// Removes `id` for good, deleted or not.
///
/// # Errors
/// `Forbidden` without the admin scope, `NotFound` when there is no such row, and whatever the
/// resource's own rule refuses.
pub(crate) async fn purge<R: SoftDeletable>(
    store: &dyn Store,
    clock: &dyn Clock,
    who: &Principal,
    id: R::Id,
) -> Result<(), Error> {
    let tenant = who.tenant_with(Scope::Admin)?;
    let now = clock.now();
    let mut tx = store.begin(tenant).await?;
    R::before_purge(tx.as_mut(), id).await?;
    let removed = R::purge(tx.as_mut(), id)
        .await?
        .ok_or(Error::NotFound(R::RESOURCE))?;
    R::after_purge(tx.as_mut(), &removed, now).await?;
    tx.audit()
        .record(now, who.actor(), AuditAction::Purged, id)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Implements [`SoftDeletable`] as `$marker` for a resource whose repository (`tx.$repo()`)
/// answers deletes and purges with whether it found the row. What follows the resource's name
/// goes into the implementation as it is: the resource's own scope and hooks, if any.
macro_rules! plainly_soft_deletable {
    ($marker:ident: $repo:ident, $id:ty, $item:ty, $resource:ident $(; $($own:tt)*)?) => {
        /// The resource in the shared lifecycle ([`crate::services::lifecycle`]).
        pub(crate) struct $marker;

        #[async_trait::async_trait]
        impl $crate::services::lifecycle::SoftDeletable for $marker {
            type Id = $id;
            type Item = $item;
            type Removed = ();
            const RESOURCE: $crate::error::Resource = $crate::error::Resource::$resource;

            async fn soft_delete(
                tx: &mut dyn $crate::ports::TenantTx,
                id: $id,
                by: $crate::principal::Actor,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::ports::StoreResult<Option<()>> {
                Ok(tx.$repo().soft_delete(id, by, now).await?.then_some(()))
            }

            async fn restore(
                tx: &mut dyn $crate::ports::TenantTx,
                id: $id,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::ports::StoreResult<Option<$item>> {
                tx.$repo().restore(id, now).await
            }

            async fn get_live(
                tx: &mut dyn $crate::ports::TenantTx,
                id: $id,
            ) -> $crate::ports::StoreResult<Option<$item>> {
                tx.$repo().get(id, false).await
            }

            async fn purge(
                tx: &mut dyn $crate::ports::TenantTx,
                id: $id,
            ) -> $crate::ports::StoreResult<Option<()>> {
                Ok(tx.$repo().purge(id).await?.then_some(()))
            }

            $($($own)*)?
        }
    };
}

pub(crate) use plainly_soft_deletable;

/// The service methods of the shared lifecycle, for a service with `store` and `clock` fields
/// whose resource needs nothing done after the commit.
macro_rules! lifecycle_methods {
    ($marker:ty, $id:ty, $item:ty, $what:literal) => {
        #[doc = concat!("Soft-deletes the ", $what, ": it leaves every read and list.")]
        ///
        /// # Errors
        /// `Forbidden` without the write scope, `NotFound` when there is no live one.
        pub async fn delete(&self, who: &$crate::Principal, id: $id) -> Result<(), $crate::Error> {
            $crate::services::lifecycle::delete::<$marker>(
                self.store.as_ref(),
                self.clock.as_ref(),
                who,
                id,
            )
            .await
        }

        #[doc = concat!("Restores the soft-deleted ", $what, "; a live one is answered as it is.")]
        ///
        /// # Errors
        /// `Forbidden` without the write scope, `NotFound` when there is no such one, `Conflict`
        /// when its unique key was taken meanwhile.
        pub async fn restore(
            &self,
            who: &$crate::Principal,
            id: $id,
        ) -> Result<$item, $crate::Error> {
            $crate::services::lifecycle::restore::<$marker>(
                self.store.as_ref(),
                self.clock.as_ref(),
                who,
                id,
            )
            .await
        }

        #[doc = concat!("Removes the ", $what, " for good, deleted or not (admins only).")]
        ///
        /// # Errors
        /// `Forbidden` without the admin scope, `NotFound` when there is no such one.
        pub async fn purge(&self, who: &$crate::Principal, id: $id) -> Result<(), $crate::Error> {
            $crate::services::lifecycle::purge::<$marker>(
                self.store.as_ref(),
                self.clock.as_ref(),
                who,
                id,
            )
            .await
        }
    };
}

pub(crate) use lifecycle_methods;
