//! Users: credentials, roles, sessions, lifecycle.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::entities::{NewUser, User, UserChanges, UserCredentials};
use crate::ids::{TokenFamilyId, UserId};
use crate::page::{Page, PageRequest};
use crate::ports::StoreResult;
use crate::principal::Actor;
use crate::values::Email;

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
