//! API keys within a tenant unit of work.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::entities::{ApiKey, NewApiKey};
use domain::page::{Page, PageRequest};
use domain::ports::{ApiKeyRepo, StoreResult};
use domain::{ApiKeyId, Scope};

use crate::rows::{API_KEY_COLUMNS, ApiKeyRow, convert};
use crate::tenant_tx::{PgTx, fetch_all, fetch_one, limit};

#[async_trait]
impl ApiKeyRepo for PgTx {
    async fn insert(&mut self, key: &NewApiKey, now: DateTime<Utc>) -> StoreResult<ApiKey> {
        let sql = format!(
            "INSERT INTO api_keys (tenant_id, id, name, prefix, key_hash, scopes, expires_at, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, string_to_array($6, ','), $7, $8, $9)
             RETURNING {API_KEY_COLUMNS}"
        );
        let scopes: Vec<&str> = key.scopes.iter().map(Scope::as_str).collect();
        let values = vec![
            self.t(),
            key.id.as_uuid().into(),
            key.name.as_str().into(),
            key.prefix.as_str().into(),
            key.key_hash.clone().into(),
            scopes.join(",").into(),
            key.expires_at.into(),
            key.created_by.id().into(),
            now.into(),
        ];
        let row = fetch_one::<ApiKeyRow>(&self.tx, &sql, values).await?;
        row.ok_or_else(|| crate::error::corrupt("api key", "insert returned nothing".into()))?
            .try_into()
    }

    async fn list(&mut self, page: PageRequest) -> StoreResult<Page<ApiKey>> {
        let sql = format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys
             WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3"
        );
        let rows = fetch_all::<ApiKeyRow>(
            &self.tx,
            &sql,
            vec![self.t(), page.after.into(), limit(page)],
        )
        .await?;
        Ok(Page::from_rows(convert(rows)?, page, |k: &ApiKey| {
            k.id.as_uuid()
        }))
    }

    async fn revoke(&mut self, id: ApiKeyId, now: DateTime<Utc>) -> StoreResult<Option<ApiKey>> {
        let sql = format!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3)
             WHERE tenant_id = $1 AND id = $2 RETURNING {API_KEY_COLUMNS}"
        );
        fetch_one::<ApiKeyRow>(
            &self.tx,
            &sql,
            vec![self.t(), id.as_uuid().into(), now.into()],
        )
        .await?
        .map(ApiKey::try_from)
        .transpose()
    }
}
