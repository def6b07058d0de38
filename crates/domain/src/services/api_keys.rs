use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::entities::{ApiKey, AuditAction, NewApiKey};
use crate::error::{Error, Resource, Validator};
use crate::ids::ApiKeyId;
use crate::page::{Page, PageRequest};
use crate::ports::{Clock, Secrets, Store, TokenRevocation};
use crate::principal::{Principal, Scope, Scopes};
use crate::values::Name;

/// A new key with its plaintext, which is shown this once and never stored.
#[derive(Clone, Debug)]
pub struct CreatedApiKey {
    pub key: ApiKey,
    pub plaintext: String,
}

pub struct ApiKeyService {
    store: Arc<dyn Store>,
    secrets: Arc<dyn Secrets>,
    /// Told of every revocation, so that no server trusts what it cached of the key.
    sessions: Arc<dyn TokenRevocation>,
    clock: Arc<dyn Clock>,
}

impl ApiKeyService {
    pub fn new(
        store: Arc<dyn Store>,
        secrets: Arc<dyn Secrets>,
        sessions: Arc<dyn TokenRevocation>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            secrets,
            sessions,
            clock,
        }
    }

    /// # Errors
    /// `Forbidden` for non-admins; validation (name, scopes, an expiry in the past).
    pub async fn create(
        &self,
        who: &Principal,
        name: &str,
        scopes: &[String],
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<CreatedApiKey, Error> {
        let tenant = who.tenant_with(Scope::Admin)?;
        let now = self.clock.now();
        let mut v = Validator::new();
        let name = v.check("name", Name::parse(name));
        let scopes = v.check("scopes", Scopes::parse(scopes.iter().map(String::as_str)));
        if expires_at.is_some_and(|at| at <= now) {
            v.push("expires_at", "must be in the future");
        }
        v.finish()?;
        let (Some(name), Some(scopes)) = (name, scopes) else {
            return Err(Error::internal("validator passed with a missing field"));
        };
        let minted = self.secrets.mint_api_key();
        let new = NewApiKey {
            id: ApiKeyId::new(),
            name,
            prefix: minted.prefix,
            key_hash: minted.hash,
            scopes,
            expires_at,
            created_by: who.actor(),
        };
        let mut tx = self.store.begin(tenant).await?;
        let key = tx.api_keys().insert(&new, now).await?;
        tx.audit()
            .record_with(
                now,
                who.actor(),
                AuditAction::Created,
                key.id,
                json!({
                    "name": key.name.as_str(),
                    "scopes": key.scopes.iter().map(Scope::as_str).collect::<Vec<_>>(),
                }),
            )
            .await?;
        tx.commit().await?;
        Ok(CreatedApiKey {
            key,
            plaintext: minted.plaintext,
        })
    }

    /// # Errors
    /// `Forbidden` for non-admins.
    pub async fn list(&self, who: &Principal, page: PageRequest) -> Result<Page<ApiKey>, Error> {
        let tenant = who.tenant_with(Scope::Admin)?;
        let mut tx = self.store.begin(tenant).await?;
        let keys = tx.api_keys().list(page).await?;
        tx.commit().await?;
        Ok(keys)
    }

    /// Revokes the key at once; revoking a revoked key is harmless.
    ///
    /// # Errors
    /// `Forbidden` for non-admins, `NotFound`.
    pub async fn revoke(&self, who: &Principal, id: ApiKeyId) -> Result<(), Error> {
        let tenant = who.tenant_with(Scope::Admin)?;
        let now = self.clock.now();
        let mut tx = self.store.begin(tenant).await?;
        tx.api_keys()
            .revoke(id, now)
            .await?
            .ok_or(Error::NotFound(Resource::ApiKey))?;
        tx.audit()
            .record(now, who.actor(), AuditAction::Revoked, id)
            .await?;
        tx.commit().await?;
        self.sessions.api_keys_changed().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{MintedKey, MockSecrets, MockTokenRevocation};
    use crate::services::testing::{FakeTx, admin, fixed_clock, now, store_with};

    #[tokio::test]
    async fn keys_are_stored_hashed_and_shown_once() {
        let who = admin();
        let mut secrets = MockSecrets::new();
        secrets.expect_mint_api_key().returning(|| MintedKey {
            plaintext: "ak_secret".into(),
            prefix: "ak_secr".into(),
            hash: vec![1, 2, 3],
        });
        let mut tx = FakeTx::new(who.tenant_with(Scope::Read).unwrap());
        tx.api_keys
            .expect_insert()
            .withf(|k, _| k.key_hash == [1, 2, 3] && k.scopes.contains(Scope::Read))
            .returning(|k, now| {
                Ok(ApiKey {
                    id: k.id,
                    tenant_id: crate::TenantId::new(),
                    name: k.name.clone(),
                    prefix: k.prefix.clone(),
                    scopes: k.scopes,
                    expires_at: k.expires_at,
                    last_used_at: None,
                    created_by: None,
                    created_at: now,
                    revoked_at: None,
                })
            });
        tx.audit.expect_append().times(1).returning(|_| Ok(()));
        let (store, _) = store_with(tx);
        let service = ApiKeyService::new(
            store,
            Arc::new(secrets),
            Arc::new(MockTokenRevocation::new()),
            fixed_clock(),
        );
        let created = service
            .create(&who, "ci", &["read".into()], None)
            .await
            .unwrap();
        assert_eq!(created.plaintext, "ak_secret");
    }

    #[tokio::test]
    async fn past_expiry_and_unknown_scopes_are_refused() {
        let who = admin();
        let (store, _) = store_with(FakeTx::new(crate::TenantId::new()));
        let service = ApiKeyService::new(
            store,
            Arc::new(MockSecrets::new()),
            Arc::new(MockTokenRevocation::new()),
            fixed_clock(),
        );
        let err = service
            .create(
                &who,
                "ci",
                &["root".into()],
                Some(now() - chrono::Duration::seconds(1)),
            )
            .await
            .unwrap_err();
        match err {
            Error::Validation(fields) => {
                let names: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
                assert_eq!(names, ["scopes", "expires_at"]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
