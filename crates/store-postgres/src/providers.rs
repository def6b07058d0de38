//! Tenants' own model providers within a tenant unit of work, and (platform role) every sealed
//! provider key across tenants for their rotation.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::page::{Page, PageRequest};
use domain::ports::{
    Provider, ProviderChanges, ProviderRepo, SealedSecret, SecretStore, StoreResult, StoredSecret,
};
use domain::{AgentId, ProviderId, TenantId};
use sea_orm::FromQueryResult;
use uuid::Uuid;

use crate::platform::PgPlatformStore;
use crate::tenant_tx::{PgTx, execute, fetch_all, fetch_one, limit};

const COLUMNS: &str = "tenant_id, id, name, base_url, default_model, supports_tools, \
     timeout_secs, max_retries, key_id, created_at, updated_at";

#[derive(Debug, FromQueryResult)]
struct ProviderRow {
    tenant_id: Uuid,
    id: Uuid,
    name: String,
    base_url: String,
    default_model: Option<String>,
    supports_tools: bool,
    timeout_secs: Option<i32>,
    max_retries: Option<i32>,
    key_id: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<ProviderRow> for Provider {
    fn from(r: ProviderRow) -> Self {
        Self {
            id: ProviderId::from_uuid(r.id),
            tenant_id: TenantId::from_uuid(r.tenant_id),
            name: r.name,
            base_url: r.base_url,
            default_model: r.default_model,
            supports_tools: r.supports_tools,
            timeout_secs: r.timeout_secs.and_then(|t| u32::try_from(t).ok()),
            max_retries: r.max_retries.and_then(|t| u32::try_from(t).ok()),
            key_id: r.key_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

fn stored(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

#[derive(Debug, FromQueryResult)]
struct SealedRow {
    tenant_id: Uuid,
    id: Uuid,
    key_id: String,
    key_ciphertext: Vec<u8>,
}

#[async_trait]
impl ProviderRepo for PgTx {
    async fn insert(&mut self, p: &Provider, key: &SealedSecret) -> StoreResult<()> {
        execute(
            &self.tx,
            "INSERT INTO providers (tenant_id, id, name, base_url, default_model, supports_tools,
                                    timeout_secs, max_retries, key_id, key_ciphertext,
                                    created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
            vec![
                self.t(),
                p.id.as_uuid().into(),
                p.name.clone().into(),
                p.base_url.clone().into(),
                p.default_model.clone().into(),
                p.supports_tools.into(),
                p.timeout_secs.map(stored).into(),
                p.max_retries.map(stored).into(),
                key.key_id.clone().into(),
                key.ciphertext.clone().into(),
                p.created_at.into(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn get(&mut self, id: ProviderId) -> StoreResult<Option<Provider>> {
        let sql = format!("SELECT {COLUMNS} FROM providers WHERE tenant_id = $1 AND id = $2");
        Ok(
            fetch_one::<ProviderRow>(&self.tx, &sql, vec![self.t(), id.as_uuid().into()])
                .await?
                .map(Into::into),
        )
    }

    async fn by_name(&mut self, name: &str) -> StoreResult<Option<(Provider, SealedSecret)>> {
        #[derive(FromQueryResult)]
        struct Row {
            #[sea_orm(nested)]
            provider: ProviderRow,
            key_ciphertext: Vec<u8>,
        }
        let sql = format!(
            "SELECT {COLUMNS}, key_ciphertext FROM providers WHERE tenant_id = $1 AND name = $2
             FOR SHARE"
        );
        Ok(
            fetch_one::<Row>(&self.tx, &sql, vec![self.t(), name.into()])
                .await?
                .map(|r| {
                    let sealed = SealedSecret {
                        key_id: r.provider.key_id.clone(),
                        ciphertext: r.key_ciphertext,
                    };
                    (r.provider.into(), sealed)
                }),
        )
    }

    async fn list(&mut self, page: PageRequest) -> StoreResult<Page<Provider>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM providers
             WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3"
        );
        let rows = fetch_all::<ProviderRow>(
            &self.tx,
            &sql,
            vec![self.t(), page.after.into(), limit(page)],
        )
        .await?;
        let providers: Vec<Provider> = rows.into_iter().map(Into::into).collect();
        Ok(Page::from_rows(providers, page, |p: &Provider| {
            p.id.as_uuid()
        }))
    }

    async fn update(
        &mut self,
        id: ProviderId,
        changes: &ProviderChanges,
        key: Option<SealedSecret>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Provider>> {
        let sql = format!(
            "UPDATE providers SET
                 base_url = COALESCE($3, base_url),
                 default_model = CASE WHEN $4 THEN $5 ELSE default_model END,
                 supports_tools = COALESCE($6, supports_tools),
                 key_id = COALESCE($7, key_id),
                 key_ciphertext = COALESCE($8, key_ciphertext),
                 updated_at = $9,
                 timeout_secs = CASE WHEN $10 THEN $11 ELSE timeout_secs END,
                 max_retries = CASE WHEN $12 THEN $13 ELSE max_retries END
             WHERE tenant_id = $1 AND id = $2
             RETURNING {COLUMNS}"
        );
        let (key_id, ciphertext) = key.map(|k| (k.key_id, k.ciphertext)).unzip();
        Ok(fetch_one::<ProviderRow>(
            &self.tx,
            &sql,
            vec![
                self.t(),
                id.as_uuid().into(),
                changes.base_url.clone().into(),
                changes.default_model.is_some().into(),
                changes.default_model.clone().flatten().into(),
                changes.supports_tools.into(),
                key_id.into(),
                ciphertext.into(),
                now.into(),
                changes.timeout_secs.is_some().into(),
                changes.timeout_secs.flatten().map(stored).into(),
                changes.max_retries.is_some().into(),
                changes.max_retries.flatten().map(stored).into(),
            ],
        )
        .await?
        .map(Into::into))
    }

    async fn delete(&mut self, id: ProviderId) -> StoreResult<bool> {
        let deleted = execute(
            &self.tx,
            "DELETE FROM providers WHERE tenant_id = $1 AND id = $2",
            vec![self.t(), id.as_uuid().into()],
        )
        .await?;
        Ok(deleted == 1)
    }

    async fn agents_using(&mut self, name: &str) -> StoreResult<Vec<(AgentId, String)>> {
        #[derive(FromQueryResult)]
        struct Row {
            id: Uuid,
            slug: String,
        }
        // The provider's row first: an agent saved meanwhile (which reads it FOR SHARE) either
        // committed before, and is listed, or waits and then finds no provider.
        execute(
            &self.tx,
            "SELECT 1 FROM providers WHERE tenant_id = $1 AND name = $2 FOR UPDATE",
            vec![self.t(), name.into()],
        )
        .await?;
        let rows = fetch_all::<Row>(
            &self.tx,
            "SELECT id, slug FROM agents WHERE tenant_id = $1 AND model_provider = $2
             ORDER BY slug",
            vec![self.t(), name.into()],
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (AgentId::from_uuid(r.id), r.slug))
            .collect())
    }
}

#[async_trait]
impl SecretStore for PgPlatformStore {
    async fn sealed_not_under(&self, key_id: &str) -> StoreResult<Vec<StoredSecret>> {
        let rows = fetch_all::<SealedRow>(
            self.connection(),
            "SELECT tenant_id, id, key_id, key_ciphertext FROM providers WHERE key_id <> $1",
            vec![key_id.into()],
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| StoredSecret {
                tenant: TenantId::from_uuid(r.tenant_id),
                provider: ProviderId::from_uuid(r.id),
                sealed: SealedSecret {
                    key_id: r.key_id,
                    ciphertext: r.key_ciphertext,
                },
            })
            .collect())
    }

    async fn reseal(&self, secret: &StoredSecret, previous: &SealedSecret) -> StoreResult<bool> {
        let changed = execute(
            self.connection(),
            "UPDATE providers SET key_id = $3, key_ciphertext = $4
             WHERE tenant_id = $1 AND id = $2 AND key_id = $5 AND key_ciphertext = $6",
            vec![
                secret.tenant.as_uuid().into(),
                secret.provider.as_uuid().into(),
                secret.sealed.key_id.clone().into(),
                secret.sealed.ciphertext.clone().into(),
                previous.key_id.clone().into(),
                previous.ciphertext.clone().into(),
            ],
        )
        .await?;
        Ok(changed == 1)
    }
}
