//! The PostgreSQL adapter against a real database: the lifecycle statements every
//! soft-deletable resource shares, and the search planner's choice between exact and HNSW
//! search. Each test gets a fresh, migrated database (`DATABASE_OWNER_URL` creates it; the
//! application and platform roles use it, as the server does); `just test` sets the URLs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, TimeZone, Utc};
use domain::entities::{Collection, NewAgent, NewCollection, NewDocument, NewUser};
use domain::error::Conflict;
use domain::ports::{
    ChunkTarget, NewChunk, NewTenant, PlatformStore, SearchMode, SearchQuery, Store, StoreError,
};
use domain::values::{ContentType, Email, MaxTokens, ModelRef, Name, Slug, Temperature};
use domain::{
    Actor, AgentId, ChunkId, CollectionId, DocumentId, GenerationId, Role, TenantId, UserId,
};
use migration::{Migrator, MigratorTrait};
use sea_orm::ConnectionTrait;
use store_postgres::{PgPlatformStore, PgStore, PoolOptions};

const MINILM: &str = "local-minilm-l6-v2";

struct TestDb {
    store: PgStore,
    platform: PgPlatformStore,
    owner_url: String,
    app_url: String,
}

fn url(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("{key} is not set (run through `just test`)"))
}

fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("a database URL has a path");
    format!("{base}/{db}")
}

fn small() -> PoolOptions {
    PoolOptions {
        max_connections: 2,
        min_connections: 1,
        ..PoolOptions::default()
    }
}

impl TestDb {
    async fn new() -> Self {
        // Left behind, as the API tests' are: `deploy/local/drop-test-databases.sh` drops them.
        let name = format!("agentic_test_store_{}", uuid::Uuid::new_v4().simple());
        let owner_base = url("DATABASE_OWNER_URL");
        let admin = store_postgres::connect(&owner_base, &small())
            .await
            .unwrap();
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        admin.close().await.unwrap();
        let owner = store_postgres::connect(&with_database(&owner_base, &name), &small())
            .await
            .unwrap();
        Migrator::up(&owner, None).await.unwrap();
        let app_url = with_database(&url("DATABASE_URL"), &name);
        let app = store_postgres::connect(&app_url, &small()).await.unwrap();
        let platform = store_postgres::connect(
            &with_database(&url("DATABASE_PLATFORM_URL"), &name),
            &small(),
        )
        .await
        .unwrap();
        owner.close().await.unwrap();
        Self {
            store: PgStore::new(app),
            platform: PgPlatformStore::new(platform),
            owner_url: with_database(&owner_base, &name),
            app_url,
        }
    }

    async fn tenant(&self, slug: &str) -> (TenantId, UserId) {
        let tenant = NewTenant {
            id: TenantId::new(),
            name: Name::parse(slug).unwrap(),
            slug: Slug::parse(slug).unwrap(),
        };
        let admin = NewUser {
            id: UserId::new(),
            email: Email::parse(&format!("admin@{slug}.test")).unwrap(),
            name: None,
            role: Role::Admin,
            password_hash: "not-a-hash".into(),
        };
        let (tenant, admin) = self
            .platform
            .create_tenant(&tenant, &admin, &[], now())
            .await
            .unwrap();
        (tenant.id, admin.id)
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0)
        .single()
        .unwrap()
}

fn agent(slug: &str) -> NewAgent {
    NewAgent {
        id: AgentId::new(),
        name: Name::parse("Bot").unwrap(),
        slug: Slug::parse(slug).unwrap(),
        description: String::new(),
        system_prompt: String::new(),
        model: ModelRef::parse("local", "smollm2").unwrap(),
        temperature: Temperature::default(),
        max_tokens: MaxTokens::default(),
        metadata: serde_json::json!({}),
        collections: Vec::new(),
        retrieval: domain::entities::Retrieval::default(),
        tools: vec![domain::entities::AgentTool::KnowledgeSearch],
    }
}

#[tokio::test]
async fn soft_delete_restore_and_purge_find_only_what_they_should() {
    let db = TestDb::new().await;
    let (acme, admin) = db.tenant("acme").await;
    let (globex, _) = db.tenant("globex").await;
    let by = Actor::User(admin);
    let bot = agent("bot");

    let mut tx = db.store.begin(acme).await.unwrap();
    tx.agents().insert(&bot, now()).await.unwrap();
    assert!(tx.agents().soft_delete(bot.id, by, now()).await.unwrap());
    // Deleting again finds no live row; the deleted one leaves reads but stays restorable.
    assert!(!tx.agents().soft_delete(bot.id, by, now()).await.unwrap());
    assert!(tx.agents().get(bot.id, false).await.unwrap().is_none());
    let deleted = tx.agents().get(bot.id, true).await.unwrap().unwrap();
    assert_eq!(deleted.deleted_by, Some(admin.as_uuid()));
    tx.commit().await.unwrap();

    // Another tenant can neither restore nor purge it.
    let mut tx = db.store.begin(globex).await.unwrap();
    assert!(tx.agents().restore(bot.id, now()).await.unwrap().is_none());
    assert!(!tx.agents().purge(bot.id).await.unwrap());
    tx.commit().await.unwrap();

    // While it was deleted, a live agent took its slug: restoring it is the slug's conflict,
    // and nothing of the attempt stays.
    let mut tx = db.store.begin(acme).await.unwrap();
    let taker = agent("bot");
    tx.agents().insert(&taker, now()).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = db.store.begin(acme).await.unwrap();
    match tx.agents().restore(bot.id, now()).await {
        Err(StoreError::Conflict(Conflict::AgentSlugTaken)) => {}
        other => panic!("{other:?}"),
    }
    drop(tx);
    let mut tx = db.store.begin(acme).await.unwrap();
    assert!(tx.agents().purge(taker.id).await.unwrap());
    let restored = tx.agents().restore(bot.id, now()).await.unwrap().unwrap();
    assert_eq!((restored.deleted_at, restored.deleted_by), (None, None));
    // Restoring a live row finds nothing to restore.
    assert!(tx.agents().restore(bot.id, now()).await.unwrap().is_none());
    assert!(tx.agents().purge(bot.id).await.unwrap());
    assert!(!tx.agents().purge(bot.id).await.unwrap());
    assert!(tx.agents().get(bot.id, true).await.unwrap().is_none());
    tx.commit().await.unwrap();
}

/// What a connection of the application role holds outside any unit of work: its tenant
/// setting, and how many agents it can see.
async fn left_on(connection: &sea_orm::DatabaseConnection) -> (Option<String>, i64) {
    let row = connection
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT current_setting('app.tenant_id', true) AS setting,
                    (SELECT count(*) FROM agents) AS agents",
        ))
        .await
        .unwrap()
        .unwrap();
    (
        row.try_get::<Option<String>>("", "setting")
            .unwrap()
            .filter(|s| !s.is_empty()),
        row.try_get("", "agents").unwrap(),
    )
}

#[tokio::test]
async fn a_unit_of_work_opens_with_its_tenant_and_leaves_none_on_its_connection() {
    let db = TestDb::new().await;
    let (acme, _) = db.tenant("acme").await;
    let (globex, _) = db.tenant("globex").await;
    // One connection, so every unit of work and every check below runs on the same one.
    let single = PoolOptions {
        max_connections: 1,
        min_connections: 1,
        ..PoolOptions::default()
    };
    let connection = store_postgres::connect(&db.app_url, &single).await.unwrap();
    let store = PgStore::new(connection.clone());
    let bot = agent("bot");

    let mut tx = store.begin(acme).await.unwrap();
    tx.agents().insert(&bot, now()).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(left_on(&connection).await, (None, 0), "after a commit");

    // Dropped uncommitted: what it wrote is gone, and so is its tenant.
    let mut tx = store.begin(acme).await.unwrap();
    let dropped = agent("dropped");
    tx.agents().insert(&dropped, now()).await.unwrap();
    drop(tx);
    assert_eq!(left_on(&connection).await, (None, 0), "after a drop");

    let mut tx = store.begin(acme).await.unwrap();
    assert!(tx.agents().get(bot.id, false).await.unwrap().is_some());
    assert!(tx.agents().get(dropped.id, false).await.unwrap().is_none());
    tx.commit().await.unwrap();
    let mut tx = store.begin(globex).await.unwrap();
    assert!(tx.agents().get(bot.id, false).await.unwrap().is_none());
    tx.commit().await.unwrap();

    // A statement that fails aborts the unit of work; the next one starts clean.
    let mut tx = store.begin(acme).await.unwrap();
    let twin = agent("bot");
    assert!(matches!(
        tx.agents().insert(&twin, now()).await,
        Err(StoreError::Conflict(Conflict::AgentSlugTaken))
    ));
    drop(tx);
    assert_eq!(left_on(&connection).await, (None, 0), "after a failure");
    let mut tx = store.begin(acme).await.unwrap();
    assert!(tx.agents().get(bot.id, false).await.unwrap().is_some());
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_deleted_user_s_sessions_end_with_it() {
    let db = TestDb::new().await;
    let (acme, admin) = db.tenant("acme").await;
    let member = NewUser {
        id: UserId::new(),
        email: Email::parse("ada@acme.test").unwrap(),
        name: None,
        role: Role::Member,
        password_hash: "not-a-hash".into(),
    };
    let mut tx = db.store.begin(acme).await.unwrap();
    tx.users().insert(&member, now()).await.unwrap();
    assert!(
        tx.users()
            .soft_delete(member.id, Actor::User(admin), now())
            .await
            .unwrap()
    );
    let deleted = tx.users().get(member.id, true).await.unwrap().unwrap();
    assert_eq!(deleted.sessions_valid_after, Some(now()));
    let restored = tx.users().restore(member.id, now()).await.unwrap().unwrap();
    assert!(restored.deleted_at.is_none());
    tx.commit().await.unwrap();
}

/// A collection of `count` one-chunk documents whose vectors point each along its own axis.
async fn axes(db: &TestDb, tenant: TenantId, count: usize) -> (Collection, Vec<DocumentId>) {
    let mut tx = db.store.begin(tenant).await.unwrap();
    let collection = tx
        .collections()
        .insert(
            &NewCollection {
                id: CollectionId::new(),
                name: Name::parse("Docs").unwrap(),
                description: String::new(),
                space_id: MINILM.into(),
                generation: GenerationId::new(),
            },
            now(),
        )
        .await
        .unwrap();
    let mut documents = Vec::new();
    for axis in 0..count {
        let content = format!("document {axis}");
        let (document, _) = tx
            .documents()
            .insert_unless_present(
                &NewDocument {
                    id: DocumentId::new(),
                    collection_id: collection.id,
                    title: Name::parse(&content).unwrap(),
                    content_type: ContentType::PlainText,
                    metadata: serde_json::json!({}),
                    content_hash: vec![u8::try_from(axis).unwrap(); 32],
                    byte_count: 10,
                    content: content.clone(),
                },
                now(),
            )
            .await
            .unwrap();
        let mut embedding = vec![0.0_f32; 384];
        embedding[axis] = 1.0;
        let target = ChunkTarget {
            collection: collection.id,
            document: document.id,
            generation: collection.active_generation,
            space_id: MINILM.into(),
            title: document.title.as_str().to_owned(),
            metadata: serde_json::json!({}),
        };
        let chunk = NewChunk {
            id: ChunkId::new(),
            position: 0,
            content,
            token_count: 2,
            embedding,
        };
        tx.chunks().replace(&target, &[chunk]).await.unwrap();
        documents.push(document.id);
    }
    tx.commit().await.unwrap();
    (collection, documents)
}

fn nearest_to_axis(collection: &Collection, axis: usize, chunk_count: i64) -> SearchQuery {
    let mut vector = vec![0.0_f32; 384];
    vector[axis] = 1.0;
    SearchQuery {
        collection: collection.id,
        generation: collection.active_generation,
        space_id: MINILM.into(),
        dimensions: 384,
        chunk_count,
        text: "document".into(),
        vector: Some(vector),
        mode: SearchMode::Vector,
        top_k: 3,
        filter: Vec::new(),
        min_score: None,
        hybrid_weight: 0.5,
        vector_hits: Vec::new(),
        text_hits: Vec::new(),
    }
}

#[tokio::test]
async fn exact_and_index_searches_find_the_same_nearest_chunk_and_a_missing_index_falls_back() {
    let db = TestDb::new().await;
    let (acme, _) = db.tenant("acme").await;
    let (collection, documents) = axes(&db, acme, 8).await;
    store_postgres::ensure_space_indexes(&db.owner_url)
        .await
        .unwrap();
    // The planner reads the generation's size from the query: a few chunks are searched
    // exactly, a count beyond the exact budget goes through the index, and without a usable
    // index the same search scans exactly (and still answers).
    let budget = store_postgres::exact_search_max_chunks(384);
    let mut answers = Vec::new();
    for chunk_count in [8, budget + 1] {
        let mut tx = db.store.begin(acme).await.unwrap();
        let hits = tx
            .chunks()
            .search(&nearest_to_axis(&collection, 5, chunk_count))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            hits[0].document_id, documents[5],
            "chunk_count {chunk_count}"
        );
        assert!((hits[0].score - 1.0).abs() < 1e-4, "{}", hits[0].score);
        answers.push(hits.iter().map(|h| h.document_id).collect::<Vec<_>>());
    }
    assert_eq!(answers[0][0], answers[1][0]);

    let owner = store_postgres::connect(&db.owner_url, &small())
        .await
        .unwrap();
    owner
        .execute_unprepared(&format!(
            "DROP INDEX {}",
            store_postgres::space_index_name(MINILM)
        ))
        .await
        .unwrap();
    owner.close().await.unwrap();
    let mut tx = db.store.begin(acme).await.unwrap();
    let hits = tx
        .chunks()
        .search(&nearest_to_axis(&collection, 2, budget + 1))
        .await
        .unwrap();
    assert_eq!(hits[0].document_id, documents[2]);
    // Another tenant's unit of work finds nothing of it.
    let (globex, _) = db.tenant("globex").await;
    let mut other = db.store.begin(globex).await.unwrap();
    let none = other
        .chunks()
        .search(&nearest_to_axis(&collection, 2, 8))
        .await
        .unwrap();
    assert!(none.is_empty());
}

/// A turn as the execution service stores it: the run with its question and answer in one
/// statement, its end (answer, run, usage, day's counter) in one more. An end that finds the
/// run already ended (by the reaper, its lease run out) writes nothing.
#[tokio::test]
async fn a_run_starts_and_ends_in_one_statement_each_and_a_late_end_writes_nothing() {
    use domain::entities::{
        MessageOutcome, MessageRole, MessageStatus, NewConversation, Owner, Run, RunContext,
        RunOutcome, RunStatus,
    };
    use domain::ports::{RunEnd, RunLeases, TokenUsage, UsageKind, UsageRecord};
    use domain::{ConversationId, RunId};

    let db = TestDb::new().await;
    let (tenant, user) = db.tenant("turns").await;
    let owner = Owner::User(user);
    let mut tx = db.store.begin(tenant).await.unwrap();
    let agent = tx.agents().insert(&agent("bot"), now()).await.unwrap();
    let conversation = tx
        .conversations()
        .insert(
            &NewConversation {
                id: ConversationId::new(),
                agent_id: agent.id,
                title: String::new(),
                owner,
            },
            now(),
        )
        .await
        .unwrap();
    let start = tx
        .conversations()
        .get_for_turn(conversation.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(start.agent.map(|a| a.id), Some(agent.id));
    assert_eq!(start.daily_token_quota, None);

    let start_run = |id: RunId| {
        let question = domain::entities::Message::new(
            conversation.id,
            None,
            MessageRole::User,
            "Why?".into(),
            id,
            now(),
        );
        let answer = domain::entities::Message {
            status: MessageStatus::Pending,
            ..domain::entities::Message::new(
                conversation.id,
                Some(question.id),
                MessageRole::Assistant,
                String::new(),
                id,
                now(),
            )
        };
        let run = Run {
            id,
            tenant_id: tenant,
            conversation_id: Some(conversation.id),
            message_id: Some(answer.id),
            user_message_id: Some(question.id),
            agent_id: agent.id,
            started_by: owner,
            model: agent.model.clone(),
            status: RunStatus::InProgress,
            usage: TokenUsage::default(),
            error: None,
            context: RunContext::default(),
            created_at: now(),
            started_at: Some(now()),
            ended_at: None,
            lease_until: now() + chrono::Duration::seconds(30),
            reserved: None,
        };
        (run, question, answer)
    };
    let end_of = |run: &Run, answer: domain::MessageId| {
        let usage = TokenUsage {
            prompt_tokens: 7,
            completion_tokens: 3,
        };
        RunEnd {
            outcome: RunOutcome {
                status: RunStatus::Completed,
                usage,
                error: None,
                context: RunContext {
                    kept_message_ids: vec![run.user_message_id.unwrap()],
                    query_truncated: true,
                    ..RunContext::default()
                },
            },
            answer: Some((
                answer,
                MessageOutcome {
                    content: "Because.".into(),
                    tool_calls: Vec::new(),
                    citations: Vec::new(),
                    usage,
                    latency_ms: 5,
                    status: MessageStatus::Complete,
                    error: None,
                },
            )),
            usage: vec![UsageRecord {
                id: uuid::Uuid::now_v7(),
                day: now().date_naive(),
                at: now(),
                kind: UsageKind::Chat,
                principal: Some(owner),
                agent_id: Some(agent.id),
                run_id: Some(run.id),
                provider: "local".into(),
                model: "smollm2".into(),
                usage,
                counted: true,
            }],
            release: None,
            at: now() + chrono::Duration::seconds(1),
        }
    };

    let (run, question, answer) = start_run(RunId::new());
    tx.runs()
        .insert(&run, &[question.clone(), answer.clone()])
        .await
        .unwrap();
    let stored = tx.messages().list(conversation.id).await.unwrap();
    assert_eq!(
        stored.iter().map(|m| m.id).collect::<Vec<_>>(),
        [question.id, answer.id]
    );
    let (ended, answered) = tx
        .runs()
        .finish(run.id, &end_of(&run, answer.id))
        .await
        .unwrap()
        .expect("an open run ends");
    assert_eq!(ended.status, RunStatus::Completed);
    assert_eq!(ended.usage.completion_tokens, 3);
    // The context the end wrote, as it stored it.
    let stored = tx.runs().get(run.id).await.unwrap().unwrap();
    assert_eq!(ended.context, stored.context);
    assert_eq!(stored.context.kept_message_ids, [question.id]);
    assert!(stored.context.query_truncated);
    let answered = answered.expect("its open answer ends with it");
    assert_eq!(
        (answered.content.as_str(), answered.status),
        ("Because.", MessageStatus::Complete)
    );
    assert_eq!(
        tx.usage().day(now().date_naive()).await.unwrap(),
        (10, 0),
        "the day's counter has the run's tokens"
    );
    let active = tx
        .conversations()
        .get(conversation.id, false)
        .await
        .unwrap()
        .unwrap()
        .last_active_at;
    assert_eq!(active, ended.ended_at);

    // A second end of the same run, and the end of a run the reaper ended: nothing is written.
    assert!(
        tx.runs()
            .finish(run.id, &end_of(&run, answer.id))
            .await
            .unwrap()
            .is_none()
    );
    let (late, late_question, late_answer) = start_run(RunId::new());
    tx.runs()
        .insert(&late, &[late_question, late_answer.clone()])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let expired = db
        .platform
        .expire(now() + chrono::Duration::minutes(5))
        .await
        .unwrap();
    assert_eq!(expired.len(), 1);
    let mut tx = db.store.begin(tenant).await.unwrap();
    assert!(
        tx.runs()
            .finish(late.id, &end_of(&late, late_answer.id))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        tx.usage().day(now().date_naive()).await.unwrap(),
        (10, 0),
        "no usage of an end that did not happen"
    );
    let kept = tx.messages().get(late_answer.id).await.unwrap().unwrap();
    assert_eq!(
        kept.status,
        MessageStatus::Failed,
        "the reaper's end stands"
    );
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn a_reservation_is_one_statement_that_creates_the_day_and_holds_the_quota() {
    let db = TestDb::new().await;
    let (tenant, _) = db.tenant("quota").await;
    let (other, _) = db.tenant("other").await;
    let day = now().date_naive();
    let mut tx = db.store.begin(tenant).await.unwrap();
    // A quota of nothing admits nothing, and leaves no counter behind.
    assert!(!tx.usage().reserve(day, 0, 0).await.unwrap());
    assert_eq!(tx.usage().day(day).await.unwrap(), (0, 0));
    // The day's first reservation makes its counter.
    assert!(tx.usage().reserve(day, 10, 4).await.unwrap());
    assert_eq!(tx.usage().day(day).await.unwrap(), (0, 4));
    // More within the quota and its allowance, and not beyond.
    assert!(tx.usage().reserve_more(day, 10, 6, 0).await.unwrap());
    assert!(!tx.usage().reserve_more(day, 10, 1, 0).await.unwrap());
    assert!(tx.usage().reserve_more(day, 10, 2, 2).await.unwrap());
    assert_eq!(tx.usage().day(day).await.unwrap(), (0, 12));
    // Spent: nothing more starts.
    assert!(!tx.usage().reserve(day, 12, 0).await.unwrap());
    assert!(tx.usage().reserve(day, 13, 0).await.unwrap());
    // A later day starts afresh.
    let next = day.succ_opt().unwrap();
    assert!(tx.usage().reserve_more(next, 5, 5, 0).await.unwrap());
    assert_eq!(tx.usage().day(next).await.unwrap(), (0, 5));
    tx.commit().await.unwrap();
    // Another tenant's day is its own.
    let mut tx = db.store.begin(other).await.unwrap();
    assert_eq!(tx.usage().day(day).await.unwrap(), (0, 0));
    assert!(tx.usage().reserve(day, 1, 1).await.unwrap());
    tx.commit().await.unwrap();
    let mut tx = db.store.begin(tenant).await.unwrap();
    assert_eq!(tx.usage().day(day).await.unwrap(), (0, 12));
    tx.commit().await.unwrap();
}
