use std::sync::Arc;

use serde_json::{Value, json};

use crate::entities::{
    Agent, AgentChanges, AgentFilter, AgentTool, AuditAction, NewAgent, Retrieval,
};
use crate::error::{Error, Resource, Validator};
use crate::ids::{AgentId, CollectionId};
use crate::page::{Page, PageRequest};
use crate::ports::{ChatModels, Clock, SearchMode, Store, TenantTx};
use crate::principal::{Principal, Scope};
use crate::services::lifecycle::{lifecycle_methods, plainly_soft_deletable};
use crate::values::{self, MaxTokens, ModelRef, Name, Slug, Temperature};

const MAX_DESCRIPTION: usize = 2_000;
const MAX_SYSTEM_PROMPT: usize = 100_000;
/// The most collections one agent retrieves from.
const MAX_COLLECTIONS: usize = 20;

/// Retrieval settings as asked for; `None` takes the default.
#[derive(Clone, Debug, Default)]
pub struct RetrievalDraft {
    pub top_k: Option<i64>,
    pub mode: Option<SearchMode>,
    pub min_score: Option<f64>,
}

/// An agent as asked for, before validation.
#[derive(Clone, Debug, Default)]
pub struct AgentDraft {
    pub name: String,
    pub slug: String,
    pub description: Option<String>,
    pub system_prompt: Option<String>,
    pub model_provider: String,
    pub model_name: String,
    pub temperature: Option<f64>,
    pub max_tokens: Option<i64>,
    pub metadata: Option<Value>,
    pub collections: Option<Vec<CollectionId>>,
    pub retrieval: Option<RetrievalDraft>,
    pub tools: Option<Vec<String>>,
}

/// A partial change as asked for, before validation; `None` keeps the field.
#[derive(Clone, Debug, Default)]
pub struct AgentPatch {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub description: Option<String>,
    pub system_prompt: Option<String>,
    pub model_provider: Option<String>,
    pub model_name: Option<String>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<i64>,
    pub metadata: Option<Value>,
    pub collections: Option<Vec<CollectionId>>,
    /// Replaces the retrieval settings as a whole (absent fields take their defaults).
    pub retrieval: Option<RetrievalDraft>,
    pub tools: Option<Vec<String>>,
}

pub struct AgentService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    models: Arc<dyn ChatModels>,
}

impl AgentService {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, models: Arc<dyn ChatModels>) -> Self {
        Self {
            store,
            clock,
            models,
        }
    }

    /// Refuses a model this server cannot reach: an unknown provider (the platform's, or one of
    /// the tenant's own), a local model that is not installed.
    async fn check_model(
        &self,
        tx: &mut dyn TenantTx,
        model: Option<&crate::values::ModelRef>,
    ) -> Result<(), Error> {
        let Some(model) = model else { return Ok(()) };
        if !crate::services::RESERVED_PROVIDERS.contains(&model.provider()) {
            return match tx.providers().by_name(model.provider()).await? {
                Some(_) => Ok(()),
                None => Err(Error::invalid(
                    "model.provider",
                    format!(
                        "{:?} is neither \"local\", \"openai\" nor a provider of this tenant",
                        model.provider()
                    ),
                )),
            };
        }
        self.models
            .check(model)
            .map_err(|reason| Error::invalid("model", reason.to_string()))
    }

    /// # Errors
    /// Validation, `Forbidden` without the write scope, `Conflict` on a taken slug.
    pub async fn create(&self, who: &Principal, draft: AgentDraft) -> Result<Agent, Error> {
        let tenant = who.tenant_with(Scope::Write)?;
        let new = validate_draft(draft)?;
        let now = self.clock.now();
        let mut tx = self.store.begin(tenant).await?;
        self.check_model(tx.as_mut(), Some(&new.model)).await?;
        check_collections(tx.as_mut(), &new.collections).await?;
        let agent = tx.agents().insert(&new, now).await?;
        tx.audit()
            .record_with(
                now,
                who.actor(),
                AuditAction::Created,
                agent.id,
                json!({"slug": agent.slug.as_str(), "name": agent.name.as_str()}),
            )
            .await?;
        tx.commit().await?;
        Ok(agent)
    }

    /// # Errors
    /// `NotFound` when absent, deleted or another tenant's.
    pub async fn get(&self, who: &Principal, id: AgentId) -> Result<Agent, Error> {
        let tenant = who.tenant_with(Scope::Read)?;
        let mut tx = self.store.begin(tenant).await?;
        let agent = tx.agents().get(id, false).await?;
        tx.commit().await?;
        agent.ok_or(Error::NotFound(Resource::Agent))
    }

    /// # Errors
    /// `Forbidden` when a non-admin asks for deleted rows.
    pub async fn list(
        &self,
        who: &Principal,
        filter: AgentFilter,
        page: PageRequest,
    ) -> Result<Page<Agent>, Error> {
        let tenant = who.tenant_listing(filter.include_deleted)?;
        let mut tx = self.store.begin(tenant).await?;
        let agents = tx.agents().list(&filter, page).await?;
        tx.commit().await?;
        Ok(agents)
    }

    /// The tenant's live agents as models of the OpenAI-compatible API (`GET /v1/models`):
    /// the newest [`Self::MAX_MODELS`], newest first, in one unit of work.
    ///
    /// # Errors
    /// `Forbidden` without the read scope.
    pub async fn models(&self, who: &Principal) -> Result<Vec<Agent>, Error> {
        let tenant = who.tenant_with(crate::principal::Scope::Read)?;
        let mut tx = self.store.begin(tenant).await?;
        let mut agents = Vec::new();
        let mut after = None;
        loop {
            let page = PageRequest {
                limit: PageRequest::MAX_LIMIT,
                after,
            };
            let found = tx.agents().list(&AgentFilter::default(), page).await?;
            agents.extend(found.items);
            after = found.next;
            if after.is_none() || agents.len() >= Self::MAX_MODELS {
                break;
            }
        }
        tx.commit().await?;
        agents.truncate(Self::MAX_MODELS);
        Ok(agents)
    }

    /// The most agents `GET /v1/models` lists (it has no pages).
    pub const MAX_MODELS: usize = 1000;

    /// # Errors
    /// Validation, `NotFound`, `Conflict` on a taken slug.
    pub async fn update(
        &self,
        who: &Principal,
        id: AgentId,
        patch: AgentPatch,
    ) -> Result<Agent, Error> {
        let tenant = who.tenant_with(Scope::Write)?;
        let mut tx = self.store.begin(tenant).await?;
        let Some(current) = tx.agents().get(id, false).await? else {
            return Err(Error::NotFound(Resource::Agent));
        };
        let changes = validate_patch(patch, &current)?;
        if changes.is_empty() {
            return Ok(current);
        }
        self.check_model(tx.as_mut(), changes.model.as_ref())
            .await?;
        if let Some(collections) = &changes.collections {
            check_collections(tx.as_mut(), collections).await?;
        }
        let now = self.clock.now();
        let agent = tx
            .agents()
            .update(id, &changes, now)
            .await?
            .ok_or(Error::NotFound(Resource::Agent))?;
        tx.audit()
            .record_with(
                now,
                who.actor(),
                AuditAction::Updated,
                id,
                json!({"fields": changed_fields(&changes)}),
            )
            .await?;
        tx.commit().await?;
        Ok(agent)
    }

    lifecycle_methods!(Agents, AgentId, Agent, "agent");
}

plainly_soft_deletable!(Agents: agents, AgentId, Agent, Agent);

fn validate_draft(draft: AgentDraft) -> Result<NewAgent, Error> {
    let mut v = Validator::new();
    let name = v.check("name", Name::parse(&draft.name));
    let slug = v.check("slug", Slug::parse(&draft.slug));
    let description = v.check(
        "description",
        values::bounded_text(draft.description.as_deref().unwrap_or(""), MAX_DESCRIPTION),
    );
    let system_prompt = v.check(
        "system_prompt",
        values::bounded_text(
            draft.system_prompt.as_deref().unwrap_or(""),
            MAX_SYSTEM_PROMPT,
        ),
    );
    let model = v.check(
        "model",
        ModelRef::parse(&draft.model_provider, &draft.model_name),
    );
    let temperature = match draft.temperature {
        Some(t) => v.check("temperature", Temperature::parse(t)),
        None => Some(Temperature::default()),
    };
    let max_tokens = match draft.max_tokens {
        Some(t) => v.check("max_tokens", MaxTokens::parse(t)),
        None => Some(MaxTokens::default()),
    };
    let metadata = v.check(
        "metadata",
        values::metadata(draft.metadata.unwrap_or_else(|| json!({}))),
    );
    let collections = v.check(
        "collections",
        unique_collections(draft.collections.unwrap_or_default()),
    );
    let retrieval = v.check("retrieval", retrieval(draft.retrieval.unwrap_or_default()));
    let tools = v.check("tools", tools(draft.tools.unwrap_or_default()));
    v.finish()?;
    match (
        name,
        slug,
        description,
        system_prompt,
        model,
        temperature,
        max_tokens,
        metadata,
    ) {
        (
            Some(name),
            Some(slug),
            Some(description),
            Some(system_prompt),
            Some(model),
            Some(temperature),
            Some(max_tokens),
            Some(metadata),
        ) => Ok(NewAgent {
            collections: collections.unwrap_or_default(),
            retrieval: retrieval.unwrap_or_default(),
            tools: tools.unwrap_or_default(),
            id: AgentId::new(),
            name,
            slug,
            description,
            system_prompt,
            model,
            temperature,
            max_tokens,
            metadata,
        }),
        _ => Err(Error::internal("validator passed with a missing field")),
    }
}

fn validate_patch(patch: AgentPatch, current: &Agent) -> Result<AgentChanges, Error> {
    let mut v = Validator::new();
    let mut changes = AgentChanges {
        name: patch.name.and_then(|n| v.check("name", Name::parse(&n))),
        slug: patch.slug.and_then(|s| v.check("slug", Slug::parse(&s))),
        description: patch
            .description
            .and_then(|d| v.check("description", values::bounded_text(&d, MAX_DESCRIPTION))),
        system_prompt: patch
            .system_prompt
            .and_then(|p| v.check("system_prompt", values::bounded_text(&p, MAX_SYSTEM_PROMPT))),
        model: None,
        temperature: patch
            .temperature
            .and_then(|t| v.check("temperature", Temperature::parse(t))),
        max_tokens: patch
            .max_tokens
            .and_then(|t| v.check("max_tokens", MaxTokens::parse(t))),
        metadata: patch
            .metadata
            .and_then(|m| v.check("metadata", values::metadata(m))),
        collections: patch
            .collections
            .and_then(|c| v.check("collections", unique_collections(c))),
        retrieval: patch
            .retrieval
            .and_then(|r| v.check("retrieval", retrieval(r))),
        tools: patch.tools.and_then(|t| v.check("tools", tools(t))),
    };
    if patch.model_provider.is_some() || patch.model_name.is_some() {
        let provider = patch
            .model_provider
            .as_deref()
            .unwrap_or(current.model.provider());
        let name = patch.model_name.as_deref().unwrap_or(current.model.name());
        changes.model = v.check("model", ModelRef::parse(provider, name));
    }
    v.finish()?;
    Ok(changes)
}

fn unique_collections(ids: Vec<CollectionId>) -> Result<Vec<CollectionId>, String> {
    let mut unique: Vec<CollectionId> = Vec::with_capacity(ids.len());
    for id in ids {
        if !unique.contains(&id) {
            unique.push(id);
        }
    }
    if unique.len() > MAX_COLLECTIONS {
        return Err(format!("must name at most {MAX_COLLECTIONS} collections"));
    }
    Ok(unique)
}

fn retrieval(draft: RetrievalDraft) -> Result<Retrieval, String> {
    let defaults = Retrieval::default();
    let top_k = match draft.top_k {
        None => defaults.top_k,
        Some(k) => u32::try_from(k)
            .ok()
            .filter(|k| (1..=Retrieval::MAX_TOP_K).contains(k))
            .ok_or_else(|| format!("top_k must be between 1 and {}", Retrieval::MAX_TOP_K))?,
    };
    let min_score = match draft.min_score {
        None => None,
        Some(s) if s.is_finite() && (-1.0..=1.0).contains(&s) =>
        {
            #[allow(clippy::cast_possible_truncation)]
            Some(s as f32)
        }
        Some(_) => return Err("min_score must be between -1 and 1".into()),
    };
    Ok(Retrieval {
        top_k,
        mode: draft.mode.unwrap_or(defaults.mode),
        min_score,
    })
}

fn tools(names: Vec<String>) -> Result<Vec<AgentTool>, String> {
    let mut tools: Vec<AgentTool> = Vec::with_capacity(names.len());
    for name in names {
        let tool = AgentTool::parse(&name)?;
        if !tools.contains(&tool) {
            tools.push(tool);
        }
    }
    Ok(tools)
}

/// Every collection must be a live one of the tenant.
async fn check_collections(tx: &mut dyn TenantTx, ids: &[CollectionId]) -> Result<(), Error> {
    for id in ids {
        if tx.collections().get(*id, false).await?.is_none() {
            return Err(Error::invalid(
                "collections",
                format!("{id} is not a collection of this tenant"),
            ));
        }
    }
    Ok(())
}

fn changed_fields(changes: &AgentChanges) -> Vec<&'static str> {
    [
        ("name", changes.name.is_some()),
        ("slug", changes.slug.is_some()),
        ("description", changes.description.is_some()),
        ("system_prompt", changes.system_prompt.is_some()),
        ("model", changes.model.is_some()),
        ("temperature", changes.temperature.is_some()),
        ("max_tokens", changes.max_tokens.is_some()),
        ("metadata", changes.metadata.is_some()),
        ("collections", changes.collections.is_some()),
        ("retrieval", changes.retrieval.is_some()),
        ("tools", changes.tools.is_some()),
    ]
    .into_iter()
    .filter_map(|(field, changed)| changed.then_some(field))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Conflict;
    use crate::ports::StoreError;
    use crate::services::testing::{
        FakeTx, admin, fixed_clock, known_models, member_key_read, sample_agent, store_with,
    };

    fn draft() -> AgentDraft {
        AgentDraft {
            name: "Support".into(),
            slug: "support".into(),
            model_provider: "local".into(),
            model_name: "smollm2".into(),
            ..AgentDraft::default()
        }
    }

    #[tokio::test]
    async fn create_writes_agent_and_audit_in_one_unit_of_work() {
        let who = admin();
        let mut tx = FakeTx::new(who.tenant_with(Scope::Read).unwrap());
        tx.agents
            .expect_insert()
            .withf(|a, _| a.slug.as_str() == "support" && a.temperature == Temperature::default())
            .returning(|a, now| Ok(sample_agent(a, now)));
        tx.audit
            .expect_append()
            .withf(|e| e.action == AuditAction::Created && e.resource.as_str() == "agent")
            .times(1)
            .returning(|_| Ok(()));
        let (store, committed) = store_with(tx);
        let service = AgentService::new(store, fixed_clock(), known_models());
        let agent = service.create(&who, draft()).await.unwrap();
        assert_eq!(agent.slug.as_str(), "support");
        assert!(committed.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn create_reports_every_invalid_field_without_touching_the_store() {
        let (store, _) = store_with(FakeTx::new(crate::TenantId::new()));
        let service = AgentService::new(store, fixed_clock(), known_models());
        let bad = AgentDraft {
            name: " ".into(),
            slug: "Not A Slug".into(),
            temperature: Some(9.0),
            ..draft()
        };
        match service.create(&admin(), bad).await {
            Err(Error::Validation(fields)) => {
                let names: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
                assert_eq!(names, ["name", "slug", "temperature"]);
            }
            other => panic!("expected validation error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn taken_slug_is_a_conflict_and_nothing_is_committed() {
        let who = admin();
        let mut tx = FakeTx::new(who.tenant_with(Scope::Read).unwrap());
        tx.agents
            .expect_insert()
            .returning(|_, _| Err(StoreError::Conflict(Conflict::AgentSlugTaken)));
        let (store, committed) = store_with(tx);
        let service = AgentService::new(store, fixed_clock(), known_models());
        let err = service.create(&who, draft()).await.unwrap_err();
        assert!(matches!(err, Error::Conflict(Conflict::AgentSlugTaken)));
        assert!(!committed.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn read_scope_cannot_write_or_purge() {
        let (store, _) = store_with(FakeTx::new(crate::TenantId::new()));
        let service = AgentService::new(store, fixed_clock(), known_models());
        let reader = member_key_read();
        assert!(matches!(
            service.create(&reader, draft()).await,
            Err(Error::Forbidden(_))
        ));
        assert!(matches!(
            service.purge(&reader, AgentId::new()).await,
            Err(Error::Forbidden(_))
        ));
        let deleted = AgentFilter {
            include_deleted: true,
            ..AgentFilter::default()
        };
        assert!(matches!(
            service.list(&reader, deleted, PageRequest::default()).await,
            Err(Error::Forbidden(_))
        ));
    }

    #[tokio::test]
    async fn deleting_a_missing_agent_is_not_found_without_audit() {
        let who = admin();
        let mut tx = FakeTx::new(who.tenant_with(Scope::Read).unwrap());
        tx.agents
            .expect_soft_delete()
            .returning(|_, _, _| Ok(false));
        tx.audit.expect_append().never();
        let (store, _) = store_with(tx);
        let service = AgentService::new(store, fixed_clock(), known_models());
        let err = service.delete(&who, AgentId::new()).await.unwrap_err();
        assert!(matches!(err, Error::NotFound(Resource::Agent)));
    }

    #[tokio::test]
    async fn patch_with_only_a_model_name_keeps_the_provider() {
        let who = admin();
        let tenant = who.tenant_with(Scope::Read).unwrap();
        let mut tx = FakeTx::new(tenant);
        let existing = sample_agent(&validate_draft(draft()).unwrap(), chrono::Utc::now());
        let id = existing.id;
        tx.agents
            .expect_get()
            .returning(move |_, _| Ok(Some(existing.clone())));
        tx.agents
            .expect_update()
            .withf(|_, c, _| {
                c.model
                    .as_ref()
                    .is_some_and(|m| m.provider() == "local" && m.name() == "bigger")
                    && c.name.is_none()
            })
            .returning(|_, _, now| Ok(Some(sample_agent(&validate_draft(draft()).unwrap(), now))));
        tx.audit.expect_append().times(1).returning(|_| Ok(()));
        let (store, _) = store_with(tx);
        let service = AgentService::new(store, fixed_clock(), known_models());
        let patch = AgentPatch {
            model_name: Some("bigger".into()),
            ..AgentPatch::default()
        };
        service.update(&who, id, patch).await.unwrap();
    }
}
