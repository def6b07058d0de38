//! Embeddings on demand (`/v1/embeddings`): the platform's embedders, local ones included, for
//! any client of the tenant, metered and held to the daily quota like chat.

use std::sync::Arc;

use crate::error::{Error, Resource, Validator};
use crate::ports::Store;
use crate::principal::{Principal, Scope};
use crate::services::Embedders;
use crate::services::conversations::owner_of;
use crate::services::metering::{UsageService, embedding_record};

/// The most inputs one call may embed.
pub const MAX_EMBEDDING_INPUTS: usize = 2048;

/// Vectors in the order of the inputs, and the tokens they took.
#[derive(Clone, Debug, PartialEq)]
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: u32,
}

pub struct EmbeddingService {
    store: Arc<dyn Store>,
    embedders: Embedders,
    usage: Arc<UsageService>,
}

impl EmbeddingService {
    pub fn new(store: Arc<dyn Store>, embedders: Embedders, usage: Arc<UsageService>) -> Self {
        Self {
            store,
            embedders,
            usage,
        }
    }

    /// Embeds `inputs` in the space `space_id`.
    ///
    /// # Errors
    /// `NotFound(Space)` for an unknown space; validation (no input, too many, an empty one, one
    /// longer than the model takes); `QuotaExceeded`; `Unavailable` when this server cannot embed
    /// in that space.
    pub async fn embed(
        &self,
        who: &Principal,
        space_id: &str,
        inputs: Vec<String>,
    ) -> Result<Embedded, Error> {
        let tenant = who.tenant_with(Scope::Read)?;
        let owner = owner_of(who)?;
        let space = self
            .store
            .spaces()
            .await?
            .into_iter()
            .find(|s| s.id == space_id)
            .ok_or(Error::NotFound(Resource::Space))?;
        let embedder = self.embedders.for_space(&space).map_err(|reason| {
            Error::Unavailable(format!(
                "this server cannot embed in space {}: {reason}",
                space.id
            ))
        })?;
        let mut v = Validator::new();
        if inputs.is_empty() {
            v.push("input", "must hold at least one text");
        }
        if inputs.len() > MAX_EMBEDDING_INPUTS {
            v.push(
                "input",
                format!("must hold at most {MAX_EMBEDDING_INPUTS} texts"),
            );
        }
        v.finish()?;
        let mut v = Validator::new();
        let max = embedder.max_input_tokens();
        let mut tokens = 0usize;
        for (i, text) in inputs.iter().enumerate() {
            if text.is_empty() {
                v.push(&format!("input[{i}]"), "must not be empty");
                continue;
            }
            match embedder.count_tokens(text) {
                Ok(n) if n > max => v.push(
                    &format!("input[{i}]"),
                    format!("has {n} tokens; the model takes at most {max}"),
                ),
                Ok(n) => tokens += n,
                Err(err) => v.push(&format!("input[{i}]"), err.to_string()),
            }
        }
        v.finish()?;
        self.usage.admit_call(tenant).await?;
        let vectors = embedder.embed(&inputs).await.map_err(|e| match e {
            crate::ports::EmbedError::TooLong { index, max, .. } => Error::invalid(
                format!("input[{index}]"),
                format!("is longer than the model's {max} tokens"),
            ),
            other => Error::Unavailable(format!("embedding failed: {other}")),
        })?;
        let prompt_tokens = u32::try_from(tokens).unwrap_or(u32::MAX);
        let record = embedding_record(
            Some(owner),
            &space.id,
            prompt_tokens,
            true,
            self.usage.now(),
        );
        self.usage.record(tenant, &record).await?;
        Ok(Embedded {
            vectors,
            prompt_tokens,
        })
    }
}
