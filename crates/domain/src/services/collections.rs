use std::sync::Arc;

use serde_json::json;

use crate::entities::{
    AuditAction, Collection, CollectionChanges, EmbeddingSpace, Job, JobKind, NewCollection,
};
use crate::error::{Error, Resource, Validator};
use crate::ids::{CollectionId, GenerationId, JobId};
use crate::page::{Page, PageRequest};
use crate::ports::{Clock, NewJob, Store};
use crate::principal::{Principal, Scope};
use crate::services::Embedders;
use crate::services::lifecycle::{lifecycle_methods, plainly_soft_deletable};
use crate::values::{self, Name};

const MAX_DESCRIPTION: usize = 2_000;

/// A partial change as asked for; `space_id` is accepted only to refuse it with a clear message.
#[derive(Clone, Debug, Default)]
pub struct CollectionPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub space_id: Option<String>,
}

pub struct CollectionService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    embedders: Embedders,
    default_space: String,
}

impl CollectionService {
    /// `default_space` is the space of collections created without one; `embedders` are the
    /// spaces this server can re-embed into.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        embedders: Embedders,
        default_space: impl Into<String>,
    ) -> Self {
        Self {
            store,
            clock,
            embedders,
            default_space: default_space.into(),
        }
    }

    /// The embedding spaces collections can be created in.
    ///
    /// # Errors
    /// `Forbidden` for platform keys.
    pub async fn spaces(&self, who: &Principal) -> Result<Vec<EmbeddingSpace>, Error> {
        who.tenant()?;
        Ok(self.store.spaces().await?)
    }

    /// # Errors
    /// Validation (an unknown space names `space_id`), `Forbidden` without the write scope.
    pub async fn create(
        &self,
        who: &Principal,
        name: &str,
        description: Option<&str>,
        space_id: Option<&str>,
    ) -> Result<Collection, Error> {
        let tenant = who.tenant_with(Scope::Write)?;
        let mut v = Validator::new();
        let name = v.check("name", Name::parse(name));
        let description = v.check(
            "description",
            values::bounded_text(description.unwrap_or(""), MAX_DESCRIPTION),
        );
        let space_id = space_id.unwrap_or(&self.default_space).to_owned();
        if !self.store.spaces().await?.iter().any(|s| s.id == space_id) {
            v.push(
                "space_id",
                format!("no embedding space {space_id:?}; see GET /v1/spaces"),
            );
        }
        v.finish()?;
        let (Some(name), Some(description)) = (name, description) else {
            return Err(Error::internal("validator passed with a missing field"));
        };
        let new = NewCollection {
            id: CollectionId::new(),
            name,
            description,
            space_id,
            generation: GenerationId::new(),
        };
        let now = self.clock.now();
        let mut tx = self.store.begin(tenant).await?;
        let collection = tx.collections().insert(&new, now).await?;
        tx.audit()
            .record_with(
                now,
                who.actor(),
                AuditAction::Created,
                collection.id,
                json!({"name": collection.name.as_str(), "space_id": collection.space.id}),
            )
            .await?;
        tx.commit().await?;
        Ok(collection)
    }

    /// # Errors
    /// `NotFound` when absent, deleted or another tenant's.
    pub async fn get(&self, who: &Principal, id: CollectionId) -> Result<Collection, Error> {
        let tenant = who.tenant_with(Scope::Read)?;
        let mut tx = self.store.begin(tenant).await?;
        let found = tx.collections().get(id, false).await?;
        tx.commit().await?;
        found.ok_or(Error::NotFound(Resource::Collection))
    }

    /// # Errors
    /// `Forbidden` when a non-admin asks for deleted rows.
    pub async fn list(
        &self,
        who: &Principal,
        include_deleted: bool,
        page: PageRequest,
    ) -> Result<Page<Collection>, Error> {
        let tenant = who.tenant_listing(include_deleted)?;
        let mut tx = self.store.begin(tenant).await?;
        let found = tx.collections().list(include_deleted, page).await?;
        tx.commit().await?;
        Ok(found)
    }

    /// # Errors
    /// Validation (the space cannot change: re-embed instead), `NotFound`.
    pub async fn update(
        &self,
        who: &Principal,
        id: CollectionId,
        patch: CollectionPatch,
    ) -> Result<Collection, Error> {
        let tenant = who.tenant_with(Scope::Write)?;
        let mut v = Validator::new();
        if patch.space_id.is_some() {
            v.push(
                "space_id",
                "the space of a collection cannot change; POST /v1/collections/{id}/reembed",
            );
        }
        let changes = CollectionChanges {
            name: patch.name.and_then(|n| v.check("name", Name::parse(&n))),
            description: patch
                .description
                .and_then(|d| v.check("description", values::bounded_text(&d, MAX_DESCRIPTION))),
        };
        v.finish()?;
        let now = self.clock.now();
        let mut tx = self.store.begin(tenant).await?;
        if changes.is_empty() {
            let found = tx.collections().get(id, false).await?;
            tx.commit().await?;
            return found.ok_or(Error::NotFound(Resource::Collection));
        }
        let collection = tx
            .collections()
            .update(id, &changes, now)
            .await?
            .ok_or(Error::NotFound(Resource::Collection))?;
        tx.audit()
            .record_with(
                now,
                who.actor(),
                AuditAction::Updated,
                id,
                json!({"name_changed": changes.name.is_some(), "description_changed": changes.description.is_some()}),
            )
            .await?;
        tx.commit().await?;
        Ok(collection)
    }

    /// Queues the re-embedding of a collection into `space_id`: a new generation is built in the
    /// background from the stored document texts while searches keep reading the current one,
    /// then the collection switches to it at once (keeping its id) and the old one is dropped.
    ///
    /// # Errors
    /// Validation (an unknown space, or one this server cannot embed in, names `space_id`),
    /// `NotFound`, `Conflict::ReembedInProgress`.
    pub async fn reembed(
        &self,
        who: &Principal,
        id: CollectionId,
        space_id: &str,
    ) -> Result<Job, Error> {
        let tenant = who.tenant_with(Scope::Write)?;
        let spaces = self.store.spaces().await?;
        let space = spaces.iter().find(|s| s.id == space_id).ok_or_else(|| {
            Error::invalid(
                "space_id",
                format!("no embedding space {space_id:?}; see GET /v1/spaces"),
            )
        })?;
        self.embedders.for_space(space).map_err(|reason| {
            tracing::warn!(space = space_id, %reason, "this server cannot embed in the space");
            Error::invalid(
                "space_id",
                format!("this server cannot embed in space {space_id:?}"),
            )
        })?;
        let now = self.clock.now();
        let generation = GenerationId::new();
        let mut tx = self.store.begin(tenant).await?;
        let collection = tx
            .collections()
            .get(id, false)
            .await?
            .ok_or(Error::NotFound(Resource::Collection))?;
        tx.collections()
            .start_generation(id, generation, space_id, now)
            .await?;
        let job = tx
            .jobs()
            .insert(
                &NewJob {
                    id: JobId::new(),
                    kind: JobKind::Reembed,
                    collection_id: id,
                    document_id: None,
                    generation_id: Some(generation),
                },
                now,
            )
            .await?;
        tx.audit()
            .record_with(
                now,
                who.actor(),
                AuditAction::Updated,
                id,
                json!({"reembed": {"from": collection.space.id, "to": space_id, "job_id": job.id.as_uuid()}}),
            )
            .await?;
        tx.commit().await?;
        Ok(job)
    }

    lifecycle_methods!(Collections, CollectionId, Collection, "collection");
}

plainly_soft_deletable!(Collections: collections, CollectionId, Collection, Collection);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::EmbedderUnavailable;
    use crate::services::testing::{FakeTx, admin, fixed_clock, member_key_read, store_with};

    #[tokio::test]
    async fn unknown_spaces_and_space_changes_are_refused() {
        let (store, _) = store_with(FakeTx::new(crate::TenantId::new()));
        let service =
            CollectionService::new(store, fixed_clock(), Embedders::new(), "local-minilm-l6-v2");
        match service.create(&admin(), "Docs", None, Some("nope")).await {
            Err(Error::Validation(fields)) => assert_eq!(fields[0].field, "space_id"),
            other => panic!("{other:?}"),
        }
        let patch = CollectionPatch {
            space_id: Some("local-minilm-l6-v2".into()),
            ..CollectionPatch::default()
        };
        match service.update(&admin(), CollectionId::new(), patch).await {
            Err(Error::Validation(fields)) => assert_eq!(fields[0].field, "space_id"),
            other => panic!("{other:?}"),
        }
    }

    fn embedders_of_minilm() -> Embedders {
        let mut factory = crate::ports::MockEmbedderFactory::new();
        factory.expect_build().times(1).returning(|space| {
            let mut embedder = crate::ports::MockEmbedder::new();
            embedder
                .expect_dimensions()
                .return_const(space.dimensions as usize);
            Ok(Arc::new(embedder))
        });
        Embedders::with_factory(Arc::new(factory))
    }

    #[tokio::test]
    async fn reembedding_starts_a_generation_and_queues_its_job_in_one_unit_of_work() {
        let tenant = crate::TenantId::new();
        let who = crate::services::testing::user_principal(
            tenant,
            crate::UserId::new(),
            crate::Role::Admin,
        );
        let id = CollectionId::new();
        let mut tx = FakeTx::new(tenant);
        tx.collections.expect_get().returning(move |_, _| {
            Ok(Some(Collection {
                id,
                tenant_id: tenant,
                name: Name::parse("Docs").unwrap_or_else(|_| unreachable!()),
                description: String::new(),
                space: crate::services::testing::minilm_space(),
                active_generation: GenerationId::new(),
                chunk_count: 0,
                document_count: 0,
                byte_count: 0,
                last_active_at: None,
                created_at: crate::services::testing::now(),
                updated_at: crate::services::testing::now(),
                deleted_at: None,
                deleted_by: None,
            }))
        });
        tx.collections
            .expect_start_generation()
            .withf(move |c, _, space, _| *c == id && space == "local-minilm-l6-v2")
            .times(1)
            .returning(|_, _, _, _| Ok(()));
        tx.jobs
            .expect_insert()
            .withf(move |job, _| {
                job.kind == JobKind::Reembed
                    && job.collection_id == id
                    && job.generation_id.is_some()
                    && job.document_id.is_none()
            })
            .times(1)
            .returning(move |job, now| {
                Ok(Job {
                    id: job.id,
                    tenant_id: tenant,
                    kind: job.kind,
                    state: crate::entities::JobState::Queued,
                    collection_id: job.collection_id,
                    document_id: None,
                    generation_id: job.generation_id,
                    progress_done: 0,
                    progress_total: 0,
                    error: None,
                    attempts: 0,
                    created_at: now,
                    updated_at: now,
                })
            });
        tx.audit.expect_append().times(1).returning(|_| Ok(()));
        let (store, committed) = store_with(tx);
        let service = CollectionService::new(
            store,
            fixed_clock(),
            embedders_of_minilm(),
            "local-minilm-l6-v2",
        );
        let job = service
            .reembed(&who, id, "local-minilm-l6-v2")
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(job.kind, JobKind::Reembed);
        assert!(committed.load(std::sync::atomic::Ordering::SeqCst));
        // The embedder was built once and is kept.
        assert!(service.embedders.get("local-minilm-l6-v2").is_some());
    }

    #[tokio::test]
    async fn reembedding_needs_a_space_this_server_can_embed_in() {
        let (store, _) = store_with(FakeTx::new(crate::TenantId::new()));
        let mut factory = crate::ports::MockEmbedderFactory::new();
        factory
            .expect_build()
            .returning(|_| Err(EmbedderUnavailable::Setup("no local model".into())));
        let service = CollectionService::new(
            store,
            fixed_clock(),
            Embedders::with_factory(Arc::new(factory)),
            "local-minilm-l6-v2",
        );
        for space in ["local-minilm-l6-v2", "nope"] {
            match service.reembed(&admin(), CollectionId::new(), space).await {
                Err(Error::Validation(fields)) => assert_eq!(fields[0].field, "space_id"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn an_embedder_of_the_wrong_size_is_refused() {
        let mut factory = crate::ports::MockEmbedderFactory::new();
        factory.expect_build().returning(|_| {
            let mut embedder = crate::ports::MockEmbedder::new();
            embedder.expect_dimensions().return_const(768usize);
            Ok(Arc::new(embedder))
        });
        let embedders = Embedders::with_factory(Arc::new(factory));
        let refused = embedders.for_space(&crate::services::testing::minilm_space());
        assert!(refused.is_err_and(|reason| reason.to_string().contains("768")));
        assert!(embedders.get("local-minilm-l6-v2").is_none());
    }

    #[tokio::test]
    async fn readers_cannot_create_or_purge() {
        let (store, _) = store_with(FakeTx::new(crate::TenantId::new()));
        let service =
            CollectionService::new(store, fixed_clock(), Embedders::new(), "local-minilm-l6-v2");
        let reader = member_key_read();
        assert!(matches!(
            service.create(&reader, "Docs", None, None).await,
            Err(Error::Forbidden(_))
        ));
        assert!(matches!(
            service.purge(&reader, CollectionId::new()).await,
            Err(Error::Forbidden(_))
        ));
    }
}
