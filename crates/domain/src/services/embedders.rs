//! The embedders of the spaces this server can embed in. Collections, search and ingestion
//! share one registry.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::entities::EmbeddingSpace;
use crate::ports::{Embedder, EmbedderFactory, EmbedderUnavailable};

/// The embedders of the spaces this server can embed in, by space id: built on first use by the
/// factory (when there is one) and shared by every clone.
#[derive(Clone, Default)]
pub struct Embedders {
    built: Arc<RwLock<HashMap<String, Arc<dyn Embedder>>>>,
    factory: Option<Arc<dyn EmbedderFactory>>,
}

impl Embedders {
    /// A fixed set, filled with [`Self::insert`].
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Embedders built by `factory` as spaces are first used.
    #[must_use]
    pub fn with_factory(factory: Arc<dyn EmbedderFactory>) -> Self {
        Self {
            built: Arc::default(),
            factory: Some(factory),
        }
    }

    pub fn insert(&self, space_id: impl Into<String>, embedder: Arc<dyn Embedder>) {
        self.built
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(space_id.into(), embedder);
    }

    /// The embedder of a space already built.
    #[must_use]
    pub fn get(&self, space_id: &str) -> Option<Arc<dyn Embedder>> {
        self.built
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(space_id)
            .cloned()
    }

    /// The space's embedder, built on first use.
    ///
    /// # Errors
    /// Why this server cannot embed in the space.
    pub fn for_space(
        &self,
        space: &EmbeddingSpace,
    ) -> Result<Arc<dyn Embedder>, EmbedderUnavailable> {
        if let Some(embedder) = self.get(&space.id) {
            return Ok(embedder);
        }
        let factory = self
            .factory
            .as_ref()
            .ok_or(EmbedderUnavailable::NotConfigured)?;
        let embedder = factory.build(space)?;
        if embedder.dimensions() != space.dimensions as usize {
            return Err(EmbedderUnavailable::Dimensions {
                model: embedder.dimensions(),
                space: space.dimensions,
            });
        }
        self.insert(space.id.clone(), embedder.clone());
        Ok(embedder)
    }
}

impl std::fmt::Debug for Embedders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let built = self
            .built
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f.debug_list().entries(built.keys()).finish()
    }
}
