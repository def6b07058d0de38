//! `knowledge_search`, the platform's own tool: searches the agent's collections as its
//! retrieval settings say, and answers passages the model can cite.

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::entities::AgentTool;
use crate::error::Error;
use crate::ports::{Tool, ToolContext, ToolOutput, ToolSpec};
use crate::services::SearchService;

pub struct KnowledgeSearch {
    search: SearchService,
}

impl KnowledgeSearch {
    pub fn new(search: SearchService) -> Self {
        Self { search }
    }
}

#[async_trait]
impl Tool for KnowledgeSearch {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: AgentTool::KnowledgeSearch.as_str().to_owned(),
            description: "Searches the knowledge base. Answers numbered passages to cite as [n]."
                .to_owned(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "What to look for, in words."}
                },
                "required": ["query"],
                "additionalProperties": false,
            }),
        }
    }

    async fn call(
        &self,
        context: &ToolContext,
        _call_id: &str,
        arguments: &str,
    ) -> Result<ToolOutput, Error> {
        let query = serde_json::from_str::<Value>(arguments)
            .ok()
            .and_then(|v| v.get("query").and_then(Value::as_str).map(str::to_owned))
            .filter(|q| !q.trim().is_empty());
        let Some(query) = query else {
            return Ok(ToolOutput::Text(
                r#"error: the arguments must be {"query": "<what to look for>"}"#.to_owned(),
            ));
        };
        let found = self
            .search
            .retrieve(
                context.tenant,
                &context.collections,
                &query,
                context.retrieval,
            )
            .await?;
        Ok(ToolOutput::Passages {
            hits: found.hits,
            query_truncated: found.query_truncated,
            embedded_tokens: found.embedded_tokens,
        })
    }
}
