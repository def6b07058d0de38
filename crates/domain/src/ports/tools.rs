//! Tools a model may call through function calling: the platform's own (`knowledge_search`) now,
//! tool servers (MCP) later, behind the same port. A tool says what it is (name, description,
//! JSON Schema of its arguments) and answers calls by id; the executor offers the tools an agent
//! names, bounds the rounds and refuses repeated calls, whatever the tool.

use async_trait::async_trait;

use crate::entities::Retrieval;
use crate::error::Error;
use crate::ids::{CollectionId, TenantId};
use crate::ports::{SearchHit, ToolSpec};

/// What a call runs for: the tenant, and the agent's knowledge.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolContext {
    pub tenant: TenantId,
    pub collections: Vec<CollectionId>,
    pub retrieval: Retrieval,
}

/// A call's result.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolOutput {
    /// Text the model reads as the result.
    Text(String),
    /// Passages the model may cite: the executor numbers them after the sources found so far and
    /// shows them numbered.
    Passages {
        hits: Vec<SearchHit>,
        /// The query was longer than the embedder takes; its leading window was searched.
        query_truncated: bool,
        /// Tokens the query's embedding took, metered with the run.
        embedded_tokens: u32,
    },
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Tool: Send + Sync {
    /// Name, description and the JSON Schema of the arguments, as offered to the model.
    fn spec(&self) -> ToolSpec;

    /// Runs one call. `arguments` is the JSON text the model wrote; arguments the tool cannot use
    /// are answered as [`ToolOutput::Text`] saying why (the model reads it and may try again),
    /// not as an error.
    ///
    /// # Errors
    /// When the tool itself fails (storage, an unreachable server): the run fails.
    async fn call(
        &self,
        context: &ToolContext,
        call_id: &str,
        arguments: &str,
    ) -> Result<ToolOutput, Error>;
}
