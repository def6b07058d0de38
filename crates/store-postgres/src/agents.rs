//! Agents within a tenant unit of work.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::entities::{Agent, AgentChanges, AgentFilter, AgentTool, NewAgent};
use domain::page::{Page, PageRequest};
use domain::ports::{AgentRepo, StoreResult};
use domain::values::Slug;
use domain::{Actor, AgentId, CollectionId};

use crate::lifecycle::Table;
use crate::rows::{AGENT_COLUMNS, AgentRow, convert, search_mode_name};
use crate::tenant_tx::{PgTx, fetch_all, fetch_one, limit};

#[async_trait]
impl AgentRepo for PgTx {
    async fn insert(&mut self, agent: &NewAgent, now: DateTime<Utc>) -> StoreResult<Agent> {
        let sql = format!(
            "INSERT INTO agents (tenant_id, id, name, slug, description, system_prompt, model_provider,
                                 model_name, temperature, max_tokens, metadata, collection_ids,
                                 retrieval_top_k, retrieval_mode, retrieval_min_score, tools,
                                 created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $13, $14, $15, $16, $17, $12, $12)
             RETURNING {AGENT_COLUMNS}"
        );
        let values = vec![
            self.t(),
            agent.id.as_uuid().into(),
            agent.name.as_str().into(),
            agent.slug.as_str().into(),
            agent.description.as_str().into(),
            agent.system_prompt.as_str().into(),
            agent.model.provider().into(),
            agent.model.name().into(),
            agent.temperature.value().into(),
            i32::try_from(agent.max_tokens.value())
                .unwrap_or(i32::MAX)
                .into(),
            agent.metadata.clone().into(),
            now.into(),
            collections_json(&agent.collections).into(),
            i32::try_from(agent.retrieval.top_k)
                .unwrap_or(i32::MAX)
                .into(),
            search_mode_name(agent.retrieval.mode).into(),
            agent.retrieval.min_score.into(),
            tools_json(&agent.tools).into(),
        ];
        let row = fetch_one::<AgentRow>(&self.tx, &sql, values).await?;
        row.ok_or_else(|| crate::error::corrupt("agent", "insert returned nothing".into()))?
            .try_into()
    }

    async fn get(&mut self, id: AgentId, include_deleted: bool) -> StoreResult<Option<Agent>> {
        let sql = format!(
            "SELECT {AGENT_COLUMNS} FROM agents
             WHERE tenant_id = $1 AND id = $2 AND ($3 OR deleted_at IS NULL)"
        );
        fetch_one::<AgentRow>(
            &self.tx,
            &sql,
            vec![self.t(), id.as_uuid().into(), include_deleted.into()],
        )
        .await?
        .map(Agent::try_from)
        .transpose()
    }

    async fn list(&mut self, filter: &AgentFilter, page: PageRequest) -> StoreResult<Page<Agent>> {
        let sql = format!(
            "SELECT {AGENT_COLUMNS} FROM agents
             WHERE tenant_id = $1
               AND ($2 OR deleted_at IS NULL)
               AND ($3::text IS NULL OR name ILIKE $3 OR slug ILIKE $3)
               AND ($4::uuid IS NULL OR id < $4)
             ORDER BY id DESC LIMIT $5"
        );
        let values = vec![
            self.t(),
            filter.include_deleted.into(),
            filter.q.as_deref().map(contains_pattern).into(),
            page.after.into(),
            limit(page),
        ];
        let rows = fetch_all::<AgentRow>(&self.tx, &sql, values).await?;
        Ok(Page::from_rows(convert(rows)?, page, |a: &Agent| {
            a.id.as_uuid()
        }))
    }

    async fn get_by_slug(&mut self, slug: &Slug) -> StoreResult<Option<Agent>> {
        let sql = format!(
            "SELECT {AGENT_COLUMNS} FROM agents
             WHERE tenant_id = $1 AND slug = $2 AND deleted_at IS NULL"
        );
        fetch_one::<AgentRow>(&self.tx, &sql, vec![self.t(), slug.as_str().into()])
            .await?
            .map(Agent::try_from)
            .transpose()
    }

    async fn update(
        &mut self,
        id: AgentId,
        changes: &AgentChanges,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Agent>> {
        let sql = format!(
            "UPDATE agents SET
                 name = COALESCE($3, name),
                 slug = COALESCE($4, slug),
                 description = COALESCE($5, description),
                 system_prompt = COALESCE($6, system_prompt),
                 model_provider = COALESCE($7, model_provider),
                 model_name = COALESCE($8, model_name),
                 temperature = COALESCE($9, temperature),
                 max_tokens = COALESCE($10, max_tokens),
                 metadata = COALESCE($11, metadata),
                 collection_ids = COALESCE($13, collection_ids),
                 retrieval_top_k = CASE WHEN $14 THEN $15 ELSE retrieval_top_k END,
                 retrieval_mode = CASE WHEN $14 THEN $16 ELSE retrieval_mode END,
                 retrieval_min_score = CASE WHEN $14 THEN $17 ELSE retrieval_min_score END,
                 tools = COALESCE($18, tools),
                 updated_at = $12
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL
             RETURNING {AGENT_COLUMNS}"
        );
        let values = vec![
            self.t(),
            id.as_uuid().into(),
            changes.name.as_ref().map(|n| n.as_str().to_owned()).into(),
            changes.slug.as_ref().map(|s| s.as_str().to_owned()).into(),
            changes.description.clone().into(),
            changes.system_prompt.clone().into(),
            changes
                .model
                .as_ref()
                .map(|m| m.provider().to_owned())
                .into(),
            changes.model.as_ref().map(|m| m.name().to_owned()).into(),
            changes.temperature.map(|t| t.value()).into(),
            changes
                .max_tokens
                .map(|m| i32::try_from(m.value()).unwrap_or(i32::MAX))
                .into(),
            changes.metadata.clone().into(),
            now.into(),
            changes
                .collections
                .as_ref()
                .map(|c| collections_json(c))
                .into(),
            changes.retrieval.is_some().into(),
            changes
                .retrieval
                .map(|r| i32::try_from(r.top_k).unwrap_or(i32::MAX))
                .into(),
            changes
                .retrieval
                .map(|r| search_mode_name(r.mode).to_owned())
                .into(),
            changes.retrieval.and_then(|r| r.min_score).into(),
            changes.tools.as_ref().map(|t| tools_json(t)).into(),
        ];
        fetch_one::<AgentRow>(&self.tx, &sql, values)
            .await?
            .map(Agent::try_from)
            .transpose()
    }

    async fn soft_delete(
        &mut self,
        id: AgentId,
        by: Actor,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.soft_delete_row(Table::Agents, id.as_uuid(), by, now)
            .await
    }

    async fn restore(&mut self, id: AgentId, now: DateTime<Utc>) -> StoreResult<Option<Agent>> {
        self.restore_row::<AgentRow>(Table::Agents, id.as_uuid(), now, AGENT_COLUMNS)
            .await?
            .map(Agent::try_from)
            .transpose()
    }

    async fn purge(&mut self, id: AgentId) -> StoreResult<bool> {
        self.purge_row(Table::Agents, id.as_uuid()).await
    }
}

fn collections_json(ids: &[CollectionId]) -> serde_json::Value {
    ids.iter().map(|id| id.to_string()).collect()
}

fn tools_json(tools: &[AgentTool]) -> serde_json::Value {
    tools.iter().map(|t| t.as_str()).collect()
}

/// `text` for a case-insensitive substring match, with LIKE's wildcards escaped.
fn contains_pattern(q: &str) -> String {
    let escaped = q
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}
