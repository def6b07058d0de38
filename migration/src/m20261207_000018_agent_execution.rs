//! Agent execution: agents gain collections, retrieval settings and tools (JSON arrays of ids
//! and names); conversations hold a
//! tree of messages (`parent_id` within the same conversation, enforced by a foreign key on
//! `(tenant_id, conversation_id, parent_id)`); runs record how each answer was made; ratings are
//! one per principal per message.
//!
//! Purging a conversation removes its messages, runs and ratings by cascade; purging an agent
//! removes its conversations likewise.

use sea_orm_migration::prelude::*;

use crate::{APP_ROLE, PLATFORM_ROLE, run, tenant_policy};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            &format!(
                "ALTER TABLE agents
                     ADD COLUMN collection_ids jsonb NOT NULL DEFAULT '[]'
                         CHECK (jsonb_typeof(collection_ids) = 'array'),
                     ADD COLUMN retrieval_top_k integer NOT NULL DEFAULT 6
                         CHECK (retrieval_top_k BETWEEN 1 AND 50),
                     ADD COLUMN retrieval_mode text NOT NULL DEFAULT 'hybrid'
                         CHECK (retrieval_mode IN ('vector', 'fulltext', 'hybrid')),
                     ADD COLUMN retrieval_min_score real,
                     ADD COLUMN tools jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(tools) = 'array');

                 CREATE TABLE conversations (
                     tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
                     id uuid NOT NULL,
                     agent_id uuid NOT NULL,
                     title text NOT NULL DEFAULT '',
                     owner_kind text NOT NULL CHECK (owner_kind IN ('user', 'api_key')),
                     owner_id uuid NOT NULL,
                     last_active_at timestamptz,
                     created_at timestamptz NOT NULL,
                     updated_at timestamptz NOT NULL,
                     deleted_at timestamptz,
                     deleted_by uuid,
                     PRIMARY KEY (tenant_id, id),
                     FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id)
                         ON DELETE CASCADE
                 );
                 CREATE INDEX conversations_by_owner ON conversations (tenant_id, owner_id, id);
                 CREATE INDEX conversations_by_agent ON conversations (tenant_id, agent_id, id);
                 {conversations_policy}

                 CREATE TABLE messages (
                     tenant_id uuid NOT NULL,
                     id uuid NOT NULL,
                     conversation_id uuid NOT NULL,
                     parent_id uuid,
                     role text NOT NULL CHECK (role IN ('user', 'assistant', 'tool')),
                     content text NOT NULL,
                     tool_calls jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(tool_calls) = 'array'),
                     tool_call_id text,
                     citations jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(citations) = 'array'),
                     model_provider text,
                     model_name text,
                     prompt_tokens integer,
                     completion_tokens integer,
                     latency_ms integer,
                     status text NOT NULL
                         CHECK (status IN ('pending', 'streaming', 'complete', 'failed', 'cancelled')),
                     error_code text,
                     error_message text,
                     run_id uuid,
                     created_at timestamptz NOT NULL,
                     PRIMARY KEY (tenant_id, id),
                     UNIQUE (tenant_id, conversation_id, id),
                     FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations (tenant_id, id)
                         ON DELETE CASCADE,
                     FOREIGN KEY (tenant_id, conversation_id, parent_id)
                         REFERENCES messages (tenant_id, conversation_id, id) ON DELETE CASCADE
                 );
                 CREATE INDEX messages_by_conversation
                     ON messages (tenant_id, conversation_id, created_at, id);
                 {messages_policy}

                 CREATE TABLE runs (
                     tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
                     id uuid NOT NULL,
                     conversation_id uuid,
                     message_id uuid,
                     user_message_id uuid,
                     agent_id uuid NOT NULL,
                     started_by_kind text NOT NULL CHECK (started_by_kind IN ('user', 'api_key')),
                     started_by_id uuid NOT NULL,
                     model_provider text NOT NULL,
                     model_name text NOT NULL,
                     status text NOT NULL
                         CHECK (status IN ('queued', 'in_progress', 'completed', 'failed', 'cancelled')),
                     prompt_tokens integer NOT NULL DEFAULT 0,
                     completion_tokens integer NOT NULL DEFAULT 0,
                     error_code text,
                     error_message text,
                     context jsonb NOT NULL DEFAULT '{{}}',
                     created_at timestamptz NOT NULL,
                     started_at timestamptz,
                     ended_at timestamptz,
                     lease_until timestamptz NOT NULL,
                     PRIMARY KEY (tenant_id, id),
                     FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations (tenant_id, id)
                         ON DELETE CASCADE,
                     FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id)
                         ON DELETE CASCADE
                 );
                 CREATE INDEX runs_unfinished ON runs (lease_until)
                     WHERE status IN ('queued', 'in_progress');
                 {runs_policy}

                 CREATE TABLE message_feedback (
                     tenant_id uuid NOT NULL,
                     message_id uuid NOT NULL,
                     owner_kind text NOT NULL CHECK (owner_kind IN ('user', 'api_key')),
                     owner_id uuid NOT NULL,
                     rating text NOT NULL CHECK (rating IN ('up', 'down')),
                     comment text,
                     created_at timestamptz NOT NULL,
                     updated_at timestamptz NOT NULL,
                     PRIMARY KEY (tenant_id, message_id, owner_kind, owner_id),
                     FOREIGN KEY (tenant_id, message_id) REFERENCES messages (tenant_id, id)
                         ON DELETE CASCADE
                 );
                 {feedback_policy}

                 GRANT SELECT, INSERT, UPDATE, DELETE
                     ON conversations, messages, runs, message_feedback
                     TO {APP_ROLE}, {PLATFORM_ROLE};",
                conversations_policy = tenant_policy("conversations"),
                messages_policy = tenant_policy("messages"),
                runs_policy = tenant_policy("runs"),
                feedback_policy = tenant_policy("message_feedback"),
            ),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            "DROP TABLE message_feedback;
             DROP TABLE runs;
             DROP TABLE messages;
             DROP TABLE conversations;
             ALTER TABLE agents
                 DROP COLUMN tools,
                 DROP COLUMN retrieval_min_score,
                 DROP COLUMN retrieval_mode,
                 DROP COLUMN retrieval_top_k,
                 DROP COLUMN collection_ids;",
        )
        .await
    }
}
