//! A tenant's own model providers (admins): OpenAI-compatible servers that its agents may name
//! as `model.provider`. The API key is sealed before it is stored (never returned, never
//! logged); the names `local` and `openai` are the platform's. A provider that agents name cannot
//! be deleted (409 `provider_in_use`, listing them).

use std::sync::Arc;

use serde_json::json;

use crate::entities::AuditAction;
use crate::error::{Conflict, Error, Resource, Validator};
use crate::ids::ProviderId;
use crate::page::{Page, PageRequest};
use crate::ports::{
    Clock, Provider, ProviderChanges, SecretBox, SecretError, SecretStore, Store, StoreError,
    StoredSecret, secret_context,
};
use crate::principal::{Principal, Scope};

/// The providers every tenant has, which no tenant's own may be named.
pub const RESERVED_PROVIDERS: [&str; 2] = [LOCAL_PROVIDER, "openai"];

/// The platform's provider of models that run in this process.
pub const LOCAL_PROVIDER: &str = "local";
/// The longest API key taken, in characters.
pub const MAX_API_KEY_CHARS: usize = 4096;
const MAX_URL_CHARS: usize = 2048;

/// A provider as asked for (no `Debug`: it holds the API key in clear).
#[derive(Clone, Default)]
pub struct ProviderDraft {
    pub name: String,
    pub base_url: String,
    pub api_key: String,
    pub default_model: Option<String>,
    pub supports_tools: Option<bool>,
    pub timeout_secs: Option<u32>,
    pub max_retries: Option<u32>,
}

/// Changes as asked for; `None` keeps a field (no `Debug`: it may hold the API key).
#[derive(Clone, Default)]
pub struct ProviderPatch {
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    pub default_model: Option<Option<String>>,
    pub supports_tools: Option<bool>,
    pub timeout_secs: Option<Option<u32>>,
    pub max_retries: Option<Option<u32>>,
}

/// The longest wait a provider may ask for, in seconds, and the most retries.
pub const MAX_PROVIDER_TIMEOUT_SECS: u32 = 600;
pub const MAX_PROVIDER_RETRIES: u32 = 5;

fn check_policy(v: &mut Validator, timeout_secs: Option<u32>, max_retries: Option<u32>) {
    if timeout_secs.is_some_and(|t| !(1..=MAX_PROVIDER_TIMEOUT_SECS).contains(&t)) {
        v.push(
            "timeout_secs",
            format!("must be between 1 and {MAX_PROVIDER_TIMEOUT_SECS}"),
        );
    }
    if max_retries.is_some_and(|r| r > MAX_PROVIDER_RETRIES) {
        v.push(
            "max_retries",
            format!("must be at most {MAX_PROVIDER_RETRIES}"),
        );
    }
}

pub struct ProviderService {
    store: Arc<dyn Store>,
    secrets: Arc<dyn SecretBox>,
    clock: Arc<dyn Clock>,
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 50
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && name.starts_with(|c: char| c.is_ascii_lowercase());
    if !ok {
        return Err(
            "must be 1 to 50 lowercase letters, digits, dashes or underscores, starting with a letter"
                .into(),
        );
    }
    if RESERVED_PROVIDERS.contains(&name) {
        return Err("is reserved for the platform's own providers".into());
    }
    Ok(())
}

/// An `http` or `https` URL without spaces or credentials.
fn check_url(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must start with http:// or https://")?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || url.chars().count() > MAX_URL_CHARS {
        return Err(format!(
            "must name a host, in at most {MAX_URL_CHARS} characters"
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    if host.contains('@') {
        return Err("must not carry credentials; send the key as api_key".into());
    }
    Ok(url.to_owned())
}

fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.chars().count() > MAX_API_KEY_CHARS {
        return Err(format!("must be 1 to {MAX_API_KEY_CHARS} characters"));
    }
    if key.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

fn check_model_name(name: &str) -> Result<(), String> {
    crate::values::ModelRef::parse("provider", name).map(|_| ())
}

fn sealing(err: SecretError) -> Error {
    match err {
        SecretError::NotConfigured => Error::Unavailable(
            "provider keys cannot be stored: no secret key is configured (AGENTIC_SECRET_KEYS)"
                .into(),
        ),
        other => Error::internal(other),
    }
}

impl ProviderService {
    pub fn new(store: Arc<dyn Store>, secrets: Arc<dyn SecretBox>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            secrets,
            clock,
        }
    }

    /// # Errors
    /// Validation (a reserved or malformed name, a URL that is not http(s), an empty key);
    /// `Conflict` when the name is taken; `Forbidden` for non-admins; `Unavailable` without a
    /// secret key configured.
    pub async fn create(&self, who: &Principal, draft: ProviderDraft) -> Result<Provider, Error> {
        let tenant = who.tenant_with(Scope::Admin)?;
        let mut v = Validator::new();
        v.check("name", check_name(&draft.name));
        let base_url = v.check("base_url", check_url(&draft.base_url));
        v.check("api_key", check_key(&draft.api_key));
        if let Some(model) = &draft.default_model {
            v.check("default_model", check_model_name(model));
        }
        check_policy(&mut v, draft.timeout_secs, draft.max_retries);
        v.finish()?;
        let base_url = base_url.ok_or_else(|| Error::internal("validated without a URL"))?;
        let now = self.clock.now();
        let id = ProviderId::new();
        let sealed = self
            .secrets
            .seal(&draft.api_key, &secret_context(tenant, id))
            .map_err(sealing)?;
        let provider = Provider {
            id,
            tenant_id: tenant,
            name: draft.name,
            base_url,
            default_model: draft.default_model,
            supports_tools: draft.supports_tools.unwrap_or(true),
            timeout_secs: draft.timeout_secs,
            max_retries: draft.max_retries,
            key_id: sealed.key_id.clone(),
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.store.begin(tenant).await?;
        tx.providers()
            .insert(&provider, &sealed)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => Error::Conflict(Conflict::ProviderNameTaken),
                other => other.into(),
            })?;
        tx.audit()
            .record_with(
                now,
                who.actor(),
                AuditAction::Created,
                id,
                json!({"name": provider.name, "base_url": provider.base_url}),
            )
            .await?;
        tx.commit().await?;
        Ok(provider)
    }

    /// # Errors
    /// `Forbidden` for non-admins.
    pub async fn list(&self, who: &Principal, page: PageRequest) -> Result<Page<Provider>, Error> {
        let tenant = who.tenant_with(Scope::Admin)?;
        let mut tx = self.store.begin(tenant).await?;
        let found = tx.providers().list(page).await?;
        tx.commit().await?;
        Ok(found)
    }

    /// # Errors
    /// `NotFound`; `Forbidden` for non-admins.
    pub async fn get(&self, who: &Principal, id: ProviderId) -> Result<Provider, Error> {
        let tenant = who.tenant_with(Scope::Admin)?;
        let mut tx = self.store.begin(tenant).await?;
        let found = tx.providers().get(id).await?;
        tx.commit().await?;
        found.ok_or(Error::NotFound(Resource::Provider))
    }

    /// Changes the URL, the key (sealed anew), the default model or `supports_tools`; the name
    /// stays (agents name it).
    ///
    /// # Errors
    /// Validation; `NotFound`; `Forbidden` for non-admins.
    pub async fn update(
        &self,
        who: &Principal,
        id: ProviderId,
        patch: ProviderPatch,
    ) -> Result<Provider, Error> {
        let tenant = who.tenant_with(Scope::Admin)?;
        let mut v = Validator::new();
        let base_url = patch
            .base_url
            .as_deref()
            .and_then(|url| v.check("base_url", check_url(url)));
        if let Some(key) = &patch.api_key {
            v.check("api_key", check_key(key));
        }
        if let Some(Some(model)) = &patch.default_model {
            v.check("default_model", check_model_name(model));
        }
        check_policy(
            &mut v,
            patch.timeout_secs.flatten(),
            patch.max_retries.flatten(),
        );
        v.finish()?;
        let sealed = patch
            .api_key
            .as_deref()
            .map(|key| self.secrets.seal(key, &secret_context(tenant, id)))
            .transpose()
            .map_err(sealing)?;
        let changes = ProviderChanges {
            base_url,
            default_model: patch.default_model,
            supports_tools: patch.supports_tools,
            timeout_secs: patch.timeout_secs,
            max_retries: patch.max_retries,
        };
        let now = self.clock.now();
        let mut tx = self.store.begin(tenant).await?;
        let updated = tx
            .providers()
            .update(id, &changes, sealed.clone(), now)
            .await?
            .ok_or(Error::NotFound(Resource::Provider))?;
        tx.audit()
            .record_with(
                now,
                who.actor(),
                AuditAction::Updated,
                id,
                json!({
                    "base_url": changes.base_url,
                    "key_replaced": sealed.is_some(),
                    "supports_tools": changes.supports_tools,
                }),
            )
            .await?;
        tx.commit().await?;
        Ok(updated)
    }

    /// Removes a provider no agent names.
    ///
    /// # Errors
    /// `ProviderInUse` listing the agents that name it; `NotFound`; `Forbidden` for non-admins.
    pub async fn delete(&self, who: &Principal, id: ProviderId) -> Result<(), Error> {
        let tenant = who.tenant_with(Scope::Admin)?;
        let now = self.clock.now();
        let mut tx = self.store.begin(tenant).await?;
        let provider = tx
            .providers()
            .get(id)
            .await?
            .ok_or(Error::NotFound(Resource::Provider))?;
        let agents = tx.providers().agents_using(&provider.name).await?;
        if !agents.is_empty() {
            return Err(Error::ProviderInUse(agents));
        }
        tx.providers().delete(id).await?;
        tx.audit()
            .record_with(
                now,
                who.actor(),
                AuditAction::Purged,
                id,
                json!({"name": provider.name}),
            )
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Re-seals every provider key not sealed under the current secret key (`agentic keys rotate`):
/// answers how many were re-sealed. Keys that do not open (a secret key no longer configured)
/// are reported, not lost: they stay as they are.
///
/// # Errors
/// `Unavailable` without a secret key; storage failures.
pub async fn rotate_secrets(
    secrets: &dyn SecretBox,
    store: &dyn SecretStore,
) -> Result<(usize, Vec<StoredSecret>), Error> {
    let current = secrets
        .current_key_id()
        .ok_or_else(|| sealing(SecretError::NotConfigured))?;
    let mut resealed = 0;
    let mut stuck = Vec::new();
    for stored in store.sealed_not_under(&current).await? {
        let context = secret_context(stored.tenant, stored.provider);
        let Ok(plain) = secrets.open(&stored.sealed, &context) else {
            stuck.push(stored);
            continue;
        };
        let sealed = secrets.seal(&plain, &context).map_err(sealing)?;
        let next = StoredSecret {
            sealed,
            ..stored.clone()
        };
        if store.reseal(&next, &stored.sealed).await? {
            resealed += 1;
        }
    }
    Ok((resealed, stuck))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_urls_and_keys_are_checked() {
        assert!(check_name("azure-eu").is_ok());
        assert!(check_name("openai").is_err());
        assert!(check_name("local").is_err());
        assert!(check_name("Big Provider").is_err());
        assert!(check_name("-x").is_err());
        assert_eq!(
            check_url(" https://llm.example/v1/ ").unwrap(),
            "https://llm.example/v1"
        );
        assert!(check_url("ftp://llm.example").is_err());
        assert!(check_url("https://user:pw@llm.example").is_err());
        assert!(check_url("https://").is_err());
        assert!(check_key("").is_err());
        assert!(check_key("sk-\n").is_err());
        assert!(check_key("sk-test").is_ok());
    }
}
