use std::sync::Arc;

use serde_json::json;

use crate::entities::{AuditAction, AuditEntry, Tenant, TenantStatus, User};
use crate::entities::{NewUser, PlatformKey};
use crate::error::{Error, Resource, Validator};
use crate::ids::{PlatformKeyId, TenantId, UserId};
use crate::page::{Page, PageRequest};
use crate::ports::{
    Clock, NewTenant, PasswordHasher, PlatformStore, Secrets, Store, TokenRevocation,
};
use crate::principal::{Actor, Principal, Role, Scope};
use crate::values::{Email, Name, Password, Slug};

/// A tenant just created, with its first admin and that admin's password (shown once).
#[derive(Clone, Debug)]
pub struct ProvisionedTenant {
    pub tenant: Tenant,
    pub admin: User,
    pub admin_password: String,
}

pub struct TenantService {
    store: Arc<dyn Store>,
    platform: Arc<dyn PlatformStore>,
    hasher: Arc<dyn PasswordHasher>,
    secrets: Arc<dyn Secrets>,
    sessions: Arc<dyn TokenRevocation>,
    clock: Arc<dyn Clock>,
}

/// Everything [`TenantService`] needs, named so wiring code reads well.
pub struct TenantPorts {
    pub store: Arc<dyn Store>,
    pub platform: Arc<dyn PlatformStore>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub secrets: Arc<dyn Secrets>,
    /// Told when a tenant's status changes, so that every server stops trusting what it cached.
    pub sessions: Arc<dyn TokenRevocation>,
    pub clock: Arc<dyn Clock>,
}

impl TenantService {
    pub fn new(ports: TenantPorts) -> Self {
        Self {
            store: ports.store,
            platform: ports.platform,
            hasher: ports.hasher,
            secrets: ports.secrets,
            sessions: ports.sessions,
            clock: ports.clock,
        }
    }

    /// Every tenant, for platform operators.
    ///
    /// # Errors
    /// `Forbidden` unless the caller holds a platform key.
    pub async fn list(&self, who: &Principal, page: PageRequest) -> Result<Page<Tenant>, Error> {
        who.require_platform()?;
        Ok(self.platform.list_tenants(page).await?)
    }

    /// Suspends a tenant (platform keys only): from the next request on, every access token,
    /// refresh token and API key of it is refused with `tenant_suspended`, until it is resumed.
    /// Suspending a suspended tenant changes nothing.
    ///
    /// # Errors
    /// `Forbidden` unless the caller holds a platform key; `NotFound`.
    pub async fn suspend(&self, who: &Principal, id: TenantId) -> Result<Tenant, Error> {
        let key = who.require_platform()?;
        self.set_status(Actor::Platform(key), id, TenantStatus::Suspended)
            .await
    }

    /// Lets a suspended tenant in again (platform keys only).
    ///
    /// # Errors
    /// `Forbidden` unless the caller holds a platform key; `NotFound`.
    pub async fn resume(&self, who: &Principal, id: TenantId) -> Result<Tenant, Error> {
        let key = who.require_platform()?;
        self.set_status(Actor::Platform(key), id, TenantStatus::Active)
            .await
    }

    /// Sets a tenant's status with its audit entry, then tells every server (the operator at the
    /// command line uses [`Actor::System`]).
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn set_status(
        &self,
        actor: Actor,
        id: TenantId,
        status: TenantStatus,
    ) -> Result<Tenant, Error> {
        let now = self.clock.now();
        let action = match status {
            TenantStatus::Suspended => AuditAction::Suspended,
            TenantStatus::Active => AuditAction::Resumed,
        };
        let entry = AuditEntry::new(now, actor, action, id);
        let tenant = self
            .platform
            .set_tenant_status(id, status, &entry, now)
            .await?
            .ok_or(Error::NotFound(Resource::Tenant))?;
        self.sessions.tenant_changed(id).await?;
        // A key's view holds its tenant's status too.
        self.sessions.api_keys_changed().await?;
        Ok(tenant)
    }

    /// Creates a tenant for a platform operator.
    ///
    /// # Errors
    /// `Forbidden` unless the caller holds a platform key; see [`Self::provision`].
    pub async fn create(
        &self,
        who: &Principal,
        name: &str,
        slug: &str,
        admin_email: &str,
        admin_password: Option<&str>,
    ) -> Result<ProvisionedTenant, Error> {
        let key = who.require_platform()?;
        self.provision(
            Actor::Platform(key),
            name,
            slug,
            admin_email,
            admin_password,
        )
        .await
    }

    /// Creates a tenant with its first admin. Without a password, a random one is generated.
    ///
    /// # Errors
    /// Validation, `Conflict::TenantSlugTaken`.
    pub async fn provision(
        &self,
        actor: Actor,
        name: &str,
        slug: &str,
        admin_email: &str,
        admin_password: Option<&str>,
    ) -> Result<ProvisionedTenant, Error> {
        let mut v = Validator::new();
        let name = v.check("name", Name::parse(name));
        let slug = v.check("slug", Slug::parse(slug));
        let email = v.check("admin_email", Email::parse(admin_email));
        let plaintext =
            admin_password.map_or_else(|| self.secrets.generate_password(), str::to_owned);
        let password = v.check("admin_password", Password::parse(&plaintext));
        v.finish()?;
        let (Some(name), Some(slug), Some(email), Some(password)) = (name, slug, email, password)
        else {
            return Err(Error::internal("validator passed with a missing field"));
        };
        let now = self.clock.now();
        let tenant = NewTenant {
            id: TenantId::new(),
            name,
            slug,
        };
        let admin = NewUser {
            id: UserId::new(),
            email,
            name: None,
            role: Role::Admin,
            password_hash: self.hasher.hash(&password).await?,
        };
        let audit = [
            AuditEntry::new(now, actor, AuditAction::Created, tenant.id)
                .with_detail(json!({"slug": tenant.slug.as_str()})),
            AuditEntry::new(now, actor, AuditAction::Created, admin.id)
                .with_detail(json!({"email": admin.email.as_str(), "role": "admin"})),
        ];
        let (tenant, admin) = self
            .platform
            .create_tenant(&tenant, &admin, &audit, now)
            .await?;
        Ok(ProvisionedTenant {
            tenant,
            admin,
            admin_password: plaintext,
        })
    }

    /// The caller's own tenant.
    ///
    /// # Errors
    /// `Forbidden` for platform keys.
    pub async fn current(&self, who: &Principal) -> Result<Tenant, Error> {
        // Any key may learn its own tenant, whatever its scopes.
        let tenant = who.tenant()?;
        let mut tx = self.store.begin(tenant).await?;
        let found = tx.tenant().get().await?;
        tx.commit().await?;
        found.ok_or(Error::NotFound(Resource::Tenant))
    }

    /// Changes the caller's tenant; without changes, answers it as it is.
    ///
    /// # Errors
    /// `Forbidden` for non-admins, validation.
    pub async fn update(&self, who: &Principal, name: Option<&str>) -> Result<Tenant, Error> {
        let tenant = who.tenant_with(Scope::Admin)?;
        let Some(name) = name else {
            return self.current(who).await;
        };
        let name = Name::parse(name).map_err(|m| Error::invalid("name", m))?;
        let now = self.clock.now();
        let mut tx = self.store.begin(tenant).await?;
        let renamed = tx
            .tenant()
            .rename(&name, now)
            .await?
            .ok_or(Error::NotFound(Resource::Tenant))?;
        tx.audit()
            .record_with(
                now,
                who.actor(),
                AuditAction::Updated,
                tenant,
                json!({"name": name.as_str()}),
            )
            .await?;
        tx.commit().await?;
        Ok(renamed)
    }

    /// Sets or lifts a tenant's daily token quota (platform keys only).
    ///
    /// # Errors
    /// `Forbidden` unless the caller holds a platform key; `NotFound`.
    pub async fn set_quota(
        &self,
        who: &Principal,
        id: TenantId,
        quota: Option<u64>,
    ) -> Result<Tenant, Error> {
        let key = who.require_platform()?;
        self.set_daily_token_quota(Actor::Platform(key), id, quota)
            .await
    }

    /// Sets or lifts a tenant's daily token quota (platform operators; `actor` is the platform
    /// key, or [`Actor::System`] at the command line). It applies from the next run on.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn set_daily_token_quota(
        &self,
        actor: Actor,
        id: TenantId,
        quota: Option<u64>,
    ) -> Result<Tenant, Error> {
        if quota.is_some_and(|q| q > i64::MAX as u64) {
            return Err(Error::invalid("daily_token_quota", "is too large"));
        }
        let now = self.clock.now();
        let entry = AuditEntry::new(now, actor, AuditAction::Updated, id)
            .with_detail(json!({"daily_token_quota": quota}));
        self.platform
            .set_daily_token_quota(id, quota, &entry, now)
            .await?
            .ok_or(Error::NotFound(Resource::Tenant))
    }

    /// Mints a platform key (command line only: whoever runs it already holds the database),
    /// valid for `valid_for` when given.
    ///
    /// # Errors
    /// Validation of the name.
    pub async fn create_platform_key(
        &self,
        name: &str,
        valid_for: Option<chrono::Duration>,
    ) -> Result<(PlatformKey, String), Error> {
        let name = Name::parse(name).map_err(|m| Error::invalid("name", m))?;
        let minted = self.secrets.mint_api_key();
        let now = self.clock.now();
        let key = self
            .platform
            .insert_platform_key(
                PlatformKeyId::new(),
                &name,
                &minted.prefix,
                &minted.hash,
                valid_for.map(|d| now + d),
                now,
            )
            .await?;
        Ok((key, minted.plaintext))
    }

    /// Every platform key (command line only).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn platform_keys(&self) -> Result<Vec<PlatformKey>, Error> {
        Ok(self.platform.list_platform_keys().await?)
    }

    /// Revokes a platform key at once (command line only).
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn revoke_platform_key(&self, id: PlatformKeyId) -> Result<PlatformKey, Error> {
        let key = self
            .platform
            .revoke_platform_key(id, self.clock.now())
            .await?
            .ok_or(Error::NotFound(Resource::ApiKey))?;
        self.sessions.api_keys_changed().await?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entities::TenantStatus;
    use crate::ports::{MockPasswordHasher, MockPlatformStore, MockSecrets, MockTokenRevocation};
    use crate::services::testing::{admin, fixed_clock, sample_user, store_with_all};

    #[tokio::test]
    async fn only_platform_keys_create_tenants_and_a_password_is_generated() {
        let mut secrets = MockSecrets::new();
        secrets
            .expect_generate_password()
            .returning(|| "generated-password".into());
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_hash().returning(|_| Ok("h".into()));
        let mut platform = MockPlatformStore::new();
        platform
            .expect_create_tenant()
            .withf(|t, a, audit, _| {
                t.slug.as_str() == "acme" && a.role == Role::Admin && audit.len() == 2
            })
            .returning(|t, a, _, now| {
                Ok((
                    Tenant {
                        id: t.id,
                        name: t.name.clone(),
                        slug: t.slug.clone(),
                        status: TenantStatus::Active,
                        daily_token_quota: None,
                        created_at: now,
                        updated_at: now,
                    },
                    sample_user(t.id, a),
                ))
            });
        let service = TenantService::new(TenantPorts {
            store: store_with_all(vec![]),
            platform: Arc::new(platform),
            hasher: Arc::new(hasher),
            secrets: Arc::new(secrets),
            sessions: Arc::new(crate::ports::MockTokenRevocation::new()),
            clock: fixed_clock(),
        });
        assert!(matches!(
            service
                .create(&admin(), "Acme", "acme", "a@acme.test", None)
                .await,
            Err(Error::Forbidden(_))
        ));
        let operator = Principal::Platform {
            key: PlatformKeyId::new(),
        };
        let made = service
            .create(&operator, "Acme", "acme", "a@acme.test", None)
            .await
            .unwrap();
        assert_eq!(made.admin_password, "generated-password");
    }

    #[tokio::test]
    async fn revoking_a_key_or_changing_a_tenant_starts_a_new_epoch_of_keys() {
        // Suspending a tenant: its keys' cached views hold its status.
        let mut revocation = MockTokenRevocation::new();
        revocation
            .expect_tenant_changed()
            .times(1)
            .returning(|_| Ok(()));
        revocation
            .expect_api_keys_changed()
            .times(2)
            .returning(|| Ok(()));
        let revocation = Arc::new(revocation);
        let tenant = TenantId::new();
        let mut platform = MockPlatformStore::new();
        platform
            .expect_set_tenant_status()
            .returning(move |_, status, _, now| {
                Ok(Some(Tenant {
                    id: tenant,
                    name: Name::parse("Acme").unwrap(),
                    slug: Slug::parse("acme").unwrap(),
                    status,
                    daily_token_quota: None,
                    created_at: now,
                    updated_at: now,
                }))
            });
        platform.expect_revoke_platform_key().returning(|id, now| {
            Ok(Some(PlatformKey {
                id,
                name: Name::parse("ops").unwrap(),
                prefix: "ak_ops".into(),
                created_at: now,
                expires_at: None,
                last_used_at: None,
                revoked_at: Some(now),
            }))
        });
        let tenants = TenantService::new(TenantPorts {
            store: store_with_all(vec![]),
            platform: Arc::new(platform),
            hasher: Arc::new(MockPasswordHasher::new()),
            secrets: Arc::new(MockSecrets::new()),
            sessions: revocation,
            clock: fixed_clock(),
        });
        tenants
            .set_status(
                Actor::Platform(PlatformKeyId::new()),
                tenant,
                TenantStatus::Suspended,
            )
            .await
            .unwrap();
        tenants
            .revoke_platform_key(PlatformKeyId::new())
            .await
            .unwrap();
    }
}
