use chrono::{DateTime, Utc};
use std::sync::Arc;

use serde_json::json;

use crate::entities::{AuditAction, NewUser, User, UserChanges, UserStatus};
use crate::error::{Conflict, Error, Resource, Validator};
use crate::ids::{TenantId, TokenFamilyId, UserId};
use crate::page::{Page, PageRequest};
use crate::ports::{Clock, PasswordHasher, SessionsEnded, Store, TenantTx, TokenRevocation};
use crate::principal::{Actor, Principal, Role, Scope};
use crate::services::lifecycle::{self, plainly_soft_deletable};
use crate::values::{self, Email, Password};

#[derive(Clone, Debug, Default)]
pub struct UserDraft {
    pub email: String,
    pub password: String,
    pub role: String,
    pub name: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct UserPatch {
    pub name: Option<Option<String>>,
    pub role: Option<String>,
    pub status: Option<String>,
}

pub struct UserService {
    store: Arc<dyn Store>,
    hasher: Arc<dyn PasswordHasher>,
    sessions: Arc<dyn TokenRevocation>,
    clock: Arc<dyn Clock>,
}

impl UserService {
    pub fn new(
        store: Arc<dyn Store>,
        hasher: Arc<dyn PasswordHasher>,
        sessions: Arc<dyn TokenRevocation>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            hasher,
            sessions,
            clock,
        }
    }

    /// After a change to who a user is (role, status, existence) has committed, every server
    /// instance must stop trusting its cached view of that user.
    async fn committed_change(&self, id: UserId) -> Result<(), Error> {
        self.sessions.user_changed(id).await
    }

    /// Validates a new user and hashes the password (before any transaction opens: hashing is slow).
    ///
    /// # Errors
    /// Validation errors for every bad field.
    pub async fn prepare(&self, draft: UserDraft) -> Result<NewUser, Error> {
        let mut v = Validator::new();
        let email = v.check("email", Email::parse(&draft.email));
        let password = v.check("password", Password::parse(&draft.password));
        let role = v.check("role", Role::parse(&draft.role));
        let name = match draft.name {
            Some(name) => v
                .check(
                    "name",
                    values::bounded_text(&name, 200).map(|n| n.trim().to_owned()),
                )
                .map(Some),
            None => Some(None),
        };
        v.finish()?;
        let (Some(email), Some(password), Some(role), Some(name)) = (email, password, role, name)
        else {
            return Err(Error::internal("validator passed with a missing field"));
        };
        Ok(NewUser {
            id: UserId::new(),
            email,
            name,
            role,
            password_hash: self.hasher.hash(&password).await?,
        })
    }

    /// # Errors
    /// `Forbidden` for non-admins, validation, `Conflict` when the email is live in the tenant.
    pub async fn create(&self, who: &Principal, draft: UserDraft) -> Result<User, Error> {
        let tenant = who.tenant_with(Scope::Admin)?;
        self.create_as(who.actor(), tenant, draft).await
    }

    /// Creates a user on behalf of `actor`, whose right to do so the caller has established
    /// (an admin principal, or the operator at the command line).
    ///
    /// # Errors
    /// Validation, `Conflict` when the email is live in the tenant.
    pub async fn create_as(
        &self,
        actor: Actor,
        tenant: TenantId,
        draft: UserDraft,
    ) -> Result<User, Error> {
        let new = self.prepare(draft).await?;
        let now = self.clock.now();
        let mut tx = self.store.begin(tenant).await?;
        let user = tx.users().insert(&new, now).await?;
        tx.audit()
            .record_with(
                now,
                actor,
                AuditAction::Created,
                user.id,
                json!({"email": user.email.as_str(), "role": user.role.as_str()}),
            )
            .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Admins see any user of their tenant; everyone may see themselves.
    ///
    /// # Errors
    /// `NotFound`; `Forbidden` for a non-admin asking for anyone else (whether that user exists
    /// or not, so ids cannot be probed).
    pub async fn get(&self, who: &Principal, id: UserId) -> Result<User, Error> {
        let is_self = matches!(who, Principal::User { user, .. } if *user == id);
        let tenant = if is_self {
            who.tenant()?
        } else {
            who.tenant_with(Scope::Admin)?
        };
        let mut tx = self.store.begin(tenant).await?;
        let user = tx.users().get(id, false).await?;
        tx.commit().await?;
        user.ok_or(Error::NotFound(Resource::User))
    }

    /// # Errors
    /// `Forbidden` for non-admins.
    pub async fn list(
        &self,
        who: &Principal,
        include_deleted: bool,
        page: PageRequest,
    ) -> Result<Page<User>, Error> {
        let tenant = who.tenant_with(Scope::Admin)?;
        let mut tx = self.store.begin(tenant).await?;
        let users = tx.users().list(include_deleted, page).await?;
        tx.commit().await?;
        Ok(users)
    }

    /// # Errors
    /// Validation, `NotFound`, `Conflict::LastAdmin` when the change would leave no active admin.
    pub async fn update(
        &self,
        who: &Principal,
        id: UserId,
        patch: UserPatch,
    ) -> Result<User, Error> {
        let tenant = who.tenant_with(Scope::Admin)?;
        let mut v = Validator::new();
        let changes = UserChanges {
            name: patch.name.map(|name| {
                name.and_then(|n| {
                    v.check(
                        "name",
                        values::bounded_text(&n, 200).map(|n| n.trim().to_owned()),
                    )
                })
            }),
            role: patch.role.and_then(|r| v.check("role", Role::parse(&r))),
            status: patch
                .status
                .and_then(|s| v.check("status", UserStatus::parse(&s))),
            ends_sessions: false,
        };
        // A disabled user's sessions end for good: enabling it again asks for a new sign-in.
        let changes = UserChanges {
            ends_sessions: changes.status == Some(UserStatus::Disabled),
            ..changes
        };
        v.finish()?;
        let now = self.clock.now();
        let mut tx = self.store.begin(tenant).await?;
        let current = tx
            .users()
            .get(id, false)
            .await?
            .ok_or(Error::NotFound(Resource::User))?;
        let stays_admin = changes.role.unwrap_or(current.role) == Role::Admin
            && changes.status.unwrap_or(current.status) == UserStatus::Active;
        if current.is_active_admin() && !stays_admin {
            ensure_other_admin(tx.as_mut(), id).await?;
        }
        let user = tx
            .users()
            .update(id, &changes, now)
            .await?
            .ok_or(Error::NotFound(Resource::User))?;
        tx.audit()
            .record_with(
                now,
                who.actor(),
                AuditAction::Updated,
                id,
                json!({
                    "role": changes.role.map(Role::as_str),
                    "status": changes.status.map(UserStatus::as_str),
                    "name_changed": changes.name.is_some(),
                }),
            )
            .await?;
        tx.commit().await?;
        self.committed_change(id).await?;
        Ok(user)
    }

    /// Sets a user's password (admins): every session of that user ends, at once.
    ///
    /// # Errors
    /// `Forbidden` for non-admins; `Validation` for a weak password; `NotFound`.
    pub async fn reset_password(
        &self,
        who: &Principal,
        id: UserId,
        password: &str,
    ) -> Result<(), Error> {
        let tenant = who.tenant_with(Scope::Admin)?;
        let password = Password::parse(password).map_err(|m| Error::invalid("new_password", m))?;
        let hash = self.hasher.hash(&password).await?;
        let replaced = replace_password(
            PasswordChange {
                store: self.store.as_ref(),
                sessions: self.sessions.as_ref(),
                now: self.clock.now(),
                who,
                tenant,
                user: id,
                keep: None,
            },
            &hash,
            json!({"password_reset": true}),
        )
        .await?;
        if replaced {
            Ok(())
        } else {
            Err(Error::NotFound(Resource::User))
        }
    }

    /// # Errors
    /// `NotFound`, `Conflict::LastAdmin`.
    pub async fn delete(&self, who: &Principal, id: UserId) -> Result<(), Error> {
        lifecycle::delete::<Users>(self.store.as_ref(), self.clock.as_ref(), who, id).await?;
        self.committed_change(id).await
    }

    /// # Errors
    /// `NotFound`, `Conflict::UserEmailTaken` when the email is live again.
    pub async fn restore(&self, who: &Principal, id: UserId) -> Result<User, Error> {
        let user =
            lifecycle::restore::<Users>(self.store.as_ref(), self.clock.as_ref(), who, id).await?;
        self.committed_change(id).await?;
        Ok(user)
    }

    /// # Errors
    /// `NotFound`, `Conflict::LastAdmin` when purging the last live admin.
    pub async fn purge(&self, who: &Principal, id: UserId) -> Result<(), Error> {
        lifecycle::purge::<Users>(self.store.as_ref(), self.clock.as_ref(), who, id).await?;
        self.committed_change(id).await
    }
}

/// The last-admin rule: some active admin other than `leaving` must remain. The admins stay locked
/// until the unit of work ends, so concurrent demotions serialise on them.
async fn ensure_other_admin(tx: &mut dyn TenantTx, leaving: UserId) -> Result<(), Error> {
    let admins = tx.users().lock_active_admins().await?;
    if admins.iter().any(|id| *id != leaving) {
        Ok(())
    } else {
        Err(Error::Conflict(Conflict::LastAdmin))
    }
}

plainly_soft_deletable!(Users: users, UserId, User, User;
    // Only admins delete and restore users, and the last active admin can be neither deleted
    // nor purged.
    const SCOPE: Scope = Scope::Admin;

    async fn before_delete(tx: &mut dyn TenantTx, id: UserId) -> Result<(), Error> {
        keep_an_admin(tx, id, false).await
    }

    async fn before_purge(tx: &mut dyn TenantTx, id: UserId) -> Result<(), Error> {
        keep_an_admin(tx, id, true).await
    }
);

/// Whose password changes, by whom, and which session (if any) survives it.
pub(crate) struct PasswordChange<'a> {
    pub store: &'a dyn Store,
    pub sessions: &'a dyn TokenRevocation,
    pub now: DateTime<Utc>,
    pub who: &'a Principal,
    pub tenant: TenantId,
    pub user: UserId,
    pub keep: Option<TokenFamilyId>,
}

/// Stores a new password hash and ends every session of the user but `keep`'s: refresh tokens in
/// the same unit of work as the change and its audit entry, access tokens on every server once
/// it is committed. Whether the user (live) was there.
pub(crate) async fn replace_password(
    change: PasswordChange<'_>,
    hash: &str,
    detail: serde_json::Value,
) -> Result<bool, Error> {
    let PasswordChange {
        store,
        sessions,
        now,
        who,
        tenant,
        user,
        keep,
    } = change;
    let mut tx = store.begin(tenant).await?;
    if !tx.users().set_password(user, hash, now).await? {
        return Ok(false);
    }
    tx.users().end_sessions(user, keep, now).await?;
    tx.audit()
        .record_with(now, who.actor(), AuditAction::Updated, user, detail)
        .await?;
    tx.commit().await?;
    let ended = SessionsEnded {
        at: now,
        kept_family: keep,
    };
    sessions.end_user_sessions(user, ended).await?;
    Ok(true)
}

/// Refuses to take away the tenant's last active admin.
async fn keep_an_admin(
    tx: &mut dyn TenantTx,
    id: UserId,
    include_deleted: bool,
) -> Result<(), Error> {
    let current = tx
        .users()
        .get(id, include_deleted)
        .await?
        .ok_or(Error::NotFound(Resource::User))?;
    if current.is_active_admin() {
        ensure_other_admin(tx, id).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::MockPasswordHasher;
    use crate::services::testing::{FakeTx, fixed_clock, sample_user, store_with, user_principal};

    fn hasher() -> Arc<dyn PasswordHasher> {
        let mut h = MockPasswordHasher::new();
        h.expect_hash()
            .returning(|p| Ok(format!("hashed:{}", p.expose().len())));
        Arc::new(h)
    }

    fn sessions() -> Arc<dyn TokenRevocation> {
        let mut s = crate::ports::MockTokenRevocation::new();
        s.expect_user_changed().returning(|_| Ok(()));
        Arc::new(s)
    }

    fn lone_admin_tx(tenant: TenantId, admin_id: UserId) -> FakeTx {
        let mut tx = FakeTx::new(tenant);
        let admin = sample_user(
            tenant,
            &NewUser {
                id: admin_id,
                email: Email::parse("root@example.com").unwrap(),
                name: None,
                role: Role::Admin,
                password_hash: String::new(),
            },
        );
        tx.users
            .expect_get()
            .returning(move |_, _| Ok(Some(admin.clone())));
        tx.users
            .expect_lock_active_admins()
            .returning(move || Ok(vec![admin_id]));
        tx
    }

    #[tokio::test]
    async fn the_last_admin_cannot_be_demoted_disabled_or_deleted() {
        let tenant = TenantId::new();
        let admin_id = UserId::new();
        let who = user_principal(tenant, admin_id, Role::Admin);
        for patch in [
            UserPatch {
                role: Some("member".into()),
                ..UserPatch::default()
            },
            UserPatch {
                status: Some("disabled".into()),
                ..UserPatch::default()
            },
        ] {
            let mut tx = lone_admin_tx(tenant, admin_id);
            tx.users.expect_update().never();
            let (store, committed) = store_with(tx);
            let service = UserService::new(store, hasher(), sessions(), fixed_clock());
            let err = service.update(&who, admin_id, patch).await.unwrap_err();
            assert!(matches!(err, Error::Conflict(Conflict::LastAdmin)));
            assert!(!committed.load(std::sync::atomic::Ordering::SeqCst));
        }
        let mut tx = lone_admin_tx(tenant, admin_id);
        tx.users.expect_soft_delete().never();
        let (store, _) = store_with(tx);
        let service = UserService::new(store, hasher(), sessions(), fixed_clock());
        let err = service.delete(&who, admin_id).await.unwrap_err();
        assert!(matches!(err, Error::Conflict(Conflict::LastAdmin)));
    }

    #[tokio::test]
    async fn create_hashes_the_password_and_audits() {
        let tenant = TenantId::new();
        let who = user_principal(tenant, UserId::new(), Role::Admin);
        let mut tx = FakeTx::new(tenant);
        tx.users
            .expect_insert()
            .withf(|u, _| u.password_hash == "hashed:12" && u.email.as_str() == "new@example.com")
            .returning(move |u, _| Ok(sample_user(tenant, u)));
        tx.audit.expect_append().times(1).returning(|_| Ok(()));
        let (store, committed) = store_with(tx);
        let service = UserService::new(store, hasher(), sessions(), fixed_clock());
        let draft = UserDraft {
            email: "New@Example.com".into(),
            password: "long-enough!".into(),
            role: "member".into(),
            name: None,
        };
        service.create(&who, draft).await.unwrap();
        assert!(committed.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn members_see_only_themselves() {
        let tenant = TenantId::new();
        let me = UserId::new();
        let who = user_principal(tenant, me, Role::Member);
        let (store, _) = store_with(FakeTx::new(tenant));
        let service = UserService::new(store, hasher(), sessions(), fixed_clock());
        assert!(matches!(
            service.get(&who, UserId::new()).await,
            Err(Error::Forbidden(_))
        ));
        assert!(matches!(
            service.list(&who, false, PageRequest::default()).await,
            Err(Error::Forbidden(_))
        ));
    }
}
