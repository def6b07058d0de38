//! Documents, ingestion jobs and search, end to end with the local MiniLM model.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{FakeEmbeddings, TestApp, assert_problem, json};

const CORPUS: [(&str, &str, &str); 4] = [
    (
        "Vacation policy",
        "Employees receive twenty-five days of paid vacation per year. Unused vacation days expire at the end of March.",
        "hr",
    ),
    (
        "Expense reports",
        "Submit expense reports within thirty days. Receipts are required for every purchase above fifty euros.",
        "finance",
    ),
    (
        "Password resets",
        "To reset your password, open the login page and click the forgot password link; a reset email arrives within minutes.",
        "it",
    ),
    (
        "Office plants",
        "The office ficus needs water twice a week and indirect sunlight near the north window.",
        "facilities",
    ),
];

pub async fn ingested_collection(app: &TestApp, token: &str) -> (String, Vec<String>) {
    let id = app.collection(token, "Handbook").await;
    let mut documents = Vec::new();
    for (title, content, team) in CORPUS {
        let uploaded = app
            .upload(token, &id, title, content, json!({"team": team}))
            .await;
        assert_eq!(uploaded["document"]["status"], "pending");
        let job = app
            .wait_for_job(token, uploaded["job"]["id"].as_str().unwrap())
            .await;
        assert_eq!(job["state"], "succeeded", "{job}");
        assert!(job["progress"]["total"].as_i64().unwrap() >= 1);
        assert_eq!(job["progress"]["done"], job["progress"]["total"]);
        documents.push(uploaded["document"]["id"].as_str().unwrap().to_owned());
    }
    (id, documents)
}

pub fn titles(results: &Value) -> Vec<String> {
    results["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["document_title"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn ingest_then_search_in_every_mode() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;
    let (collection, documents) = ingested_collection(&app, t).await;

    let doc = json(
        app.get(&format!("/v1/documents/{}", documents[0]), t).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(doc["status"], "ready");
    assert!(
        doc["content"]
            .as_str()
            .unwrap()
            .contains("twenty-five days")
    );
    let col = json(
        app.get(&format!("/v1/collections/{collection}"), t).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(col["document_count"], 4);
    assert!(col["byte_count"].as_i64().unwrap() > 100);

    let search_path = format!("/v1/collections/{collection}/search");
    let search = |mode: &str, query: &str| {
        let body = json!({"query": query, "mode": mode, "top_k": 2});
        app.post(&search_path, t, body)
    };
    let vector = json(
        search("vector", "how many holidays do I get?").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(titles(&vector)[0], "Vacation policy");
    assert_eq!(vector["results"][0]["score_kind"], "cosine_similarity");
    assert!(
        vector["results"][0]["score"].as_f64().unwrap()
            > vector["results"][1]["score"].as_f64().unwrap()
    );
    let fulltext = json(search("fulltext", "receipts").await, StatusCode::OK).await;
    assert_eq!(titles(&fulltext), ["Expense reports"]);
    assert_eq!(fulltext["results"][0]["score_kind"], "bm25");
    assert_eq!(fulltext["query_truncated"], false);
    let hybrid = json(search("hybrid", "forgot my password").await, StatusCode::OK).await;
    assert_eq!(titles(&hybrid)[0], "Password resets");
    assert_eq!(hybrid["results"][0]["score_kind"], "weighted_sum");

    // Metadata filters: equality and membership.
    let body = json!({"query": "days", "mode": "vector", "filter": {"team": "finance"}});
    let filtered = json(
        app.post(&format!("/v1/collections/{collection}/search"), t, body)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(titles(&filtered), ["Expense reports"]);
    let body = json!({"query": "days", "mode": "vector", "filter": {"team": ["finance", "hr"]}});
    let filtered = json(
        app.post(&format!("/v1/collections/{collection}/search"), t, body)
            .await,
        StatusCode::OK,
    )
    .await;
    let mut found = titles(&filtered);
    found.sort();
    assert_eq!(found, ["Expense reports", "Vacation policy"]);
    // min_score cuts weak matches (vector mode).
    let body = json!({"query": "how many holidays do I get?", "mode": "vector", "min_score": 0.99});
    let strict = json(
        app.post(&format!("/v1/collections/{collection}/search"), t, body)
            .await,
        StatusCode::OK,
    )
    .await;
    assert!(strict["results"].as_array().unwrap().is_empty());

    // Several collections at once.
    let other_id = &app.collection(t, "Other").await;
    let uploaded = app
        .upload(
            t,
            other_id,
            "Parking",
            "Visitor parking is behind building B; ask reception for a pass.",
            json!({}),
        )
        .await;
    app.wait_for_job(t, uploaded["job"]["id"].as_str().unwrap())
        .await;
    let body = json!({"collection_ids": [collection, other_id], "query": "where can visitors park", "mode": "vector", "top_k": 3});
    let many = json(app.post("/v1/search", t, body).await, StatusCode::OK).await;
    assert_eq!(titles(&many)[0], "Parking");
    // One space: the lists merge by cosine similarity, which stays comparable.
    assert_eq!(many["results"][0]["score_kind"], "cosine_similarity");

    // Deleting a document hides its chunks at once; restoring brings them back.
    assert_eq!(
        app.delete(&format!("/v1/documents/{}", documents[0]), t)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    for mode in ["vector", "fulltext", "hybrid"] {
        let after = json(
            search(mode, "how many vacation days do I get?").await,
            StatusCode::OK,
        )
        .await;
        assert!(
            !titles(&after).contains(&"Vacation policy".to_owned()),
            "{mode}: {after}"
        );
    }
    json(
        app.post_empty(&format!("/v1/documents/{}/restore", documents[0]), t)
            .await,
        StatusCode::OK,
    )
    .await;
    // Again: the document is live, so nothing changes (and the collection's counts stay right).
    let again = json(
        app.post_empty(&format!("/v1/documents/{}/restore", documents[0]), t)
            .await,
        StatusCode::OK,
    )
    .await;
    assert!(again["deleted_at"].is_null());
    for mode in ["vector", "fulltext", "hybrid"] {
        let back = json(
            search(mode, "how many vacation days do I get?").await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(titles(&back)[0], "Vacation policy", "{mode}");
    }

    // Deleting the collection hides everything.
    assert_eq!(
        app.delete(&format!("/v1/collections/{collection}"), t)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_problem(
        search("vector", "vacation").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn the_same_content_is_stored_once_and_bad_uploads_are_refused() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;
    let id = &app.collection(t, "Docs").await;
    let first = app
        .upload(t, id, "One", "Exactly the same words.", json!({}))
        .await;
    let res = app
        .post(
            &format!("/v1/collections/{id}/documents"),
            t,
            json!({"title": "Two", "content": "Exactly the same words."}),
        )
        .await;
    let second = json(res, StatusCode::OK).await;
    assert_eq!(second["document"]["id"], first["document"]["id"]);
    assert!(second["job"].is_null());

    let upload_path = format!("/v1/collections/{id}/documents");
    let upload = |body: Value| app.post(&upload_path, t, body);
    let res = upload(json!({"title": "Empty", "content": "   \n "})).await;
    let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "content");
    let res =
        upload(json!({"title": "Word", "content": "x", "content_type": "application/msword"}))
            .await;
    assert_problem(
        res,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    let res = upload(json!({"title": "Huge", "content": "a ".repeat(300 * 1024)})).await;
    assert_problem(res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    // Under the limit but above actix's default payload size (256 KiB): accepted.
    let big = "Plenty of words about nothing in particular. ".repeat(7_000);
    assert!(big.len() > 300 * 1024 && big.len() < 512 * 1024);
    json(
        upload(json!({"title": "Big", "content": big})).await,
        StatusCode::ACCEPTED,
    )
    .await;
    // NUL characters never reach the database as a 500.
    let res = upload(json!({"title": "Nul", "content": "a\u{0}b"})).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    // A search query is only read: NUL counts as a space there (a filter's keys and values
    // are compared with stored metadata, so NUL there is refused).
    let body = json!({"query": "a\u{0}", "mode": "fulltext"});
    let res = app
        .post(&format!("/v1/collections/{id}/search"), t, body)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = json!({"query": "a", "filter": {"team": "a\u{0}"}});
    let res = app
        .post(&format!("/v1/collections/{id}/search"), t, body)
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let res = app.get("/v1/agents?q=a%00b", t).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let res = app
        .request(reqwest::Method::POST, "/v1/auth/login", None)
        .json(&json!({"tenant": "acme", "email": "a\u{0}@acme.test", "password": "whatever-1"}))
        .send()
        .await
        .unwrap();
    assert_ne!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let res = upload(json!({"title": "", "content": "text", "metadata": [1]})).await;
    let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["title", "metadata"]);
    let html = upload(json!({"title": "Page", "content": "<html><head><script>var secret=1;</script></head><body><p>Visible words</p></body></html>", "content_type": "text/html"})).await;
    let html = json(html, StatusCode::ACCEPTED).await;
    let doc = json(
        app.get(
            &format!("/v1/documents/{}", html["document"]["id"].as_str().unwrap()),
            t,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert!(doc["content"].as_str().unwrap().contains("Visible words"));
    assert!(!doc["content"].as_str().unwrap().contains("secret"));
}

#[tokio::test]
async fn another_tenants_documents_jobs_and_searches_are_not_found() {
    let app = TestApp::spawn().await;
    let a = app.tenant("tenant-a").await;
    let b = app.tenant("tenant-b").await;
    let cid = &app.collection(&a.admin_token, "A").await;
    let uploaded = app
        .upload(
            &a.admin_token,
            cid,
            "Secret plan",
            "The launch date is the ninth of May.",
            json!({}),
        )
        .await;
    let did = uploaded["document"]["id"].as_str().unwrap();
    let jid = uploaded["job"]["id"].as_str().unwrap();
    app.wait_for_job(&a.admin_token, jid).await;
    let (_, b_key) = app.api_key(&b, &["read", "write", "admin"]).await;
    let b_cid = &app.collection(&b.admin_token, "B").await;
    for token in [b.admin_token.as_str(), b_key.as_str()] {
        for res in [
            app.get(&format!("/v1/documents/{did}"), token).await,
            app.put(
                &format!("/v1/documents/{did}"),
                token,
                json!({"title": "x", "content": "overwritten"}),
            )
            .await,
            app.send_file(
                reqwest::Method::PUT,
                &format!("/v1/documents/{did}"),
                token,
                ("x.txt", None, &b"overwritten by a file"[..]),
                &[],
            )
            .await,
            app.send_file(
                reqwest::Method::POST,
                &format!("/v1/collections/{cid}/documents"),
                token,
                ("x.txt", None, &b"added by a file"[..]),
                &[],
            )
            .await,
            app.post(
                &format!("/v1/collections/{cid}/reembed"),
                token,
                json!({"space_id": "local-minilm-l6-v2"}),
            )
            .await,
            app.delete(&format!("/v1/documents/{did}"), token).await,
            app.post_empty(&format!("/v1/documents/{did}/restore"), token)
                .await,
            app.delete(&format!("/v1/documents/{did}/purge"), token)
                .await,
            app.get(&format!("/v1/jobs/{jid}"), token).await,
            app.post_empty(&format!("/v1/jobs/{jid}/cancel"), token)
                .await,
            app.get(&format!("/v1/collections/{cid}/documents"), token)
                .await,
            app.post(
                &format!("/v1/collections/{cid}/documents"),
                token,
                json!({"title": "x", "content": "y"}),
            )
            .await,
            app.post(
                &format!("/v1/collections/{cid}/search"),
                token,
                json!({"query": "launch"}),
            )
            .await,
            app.post(
                "/v1/search",
                token,
                json!({"collection_ids": [cid], "query": "launch"}),
            )
            .await,
            app.post(
                "/v1/search",
                token,
                json!({"collection_ids": [b_cid, cid], "query": "launch"}),
            )
            .await,
        ] {
            assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
        }
        let jobs = json(app.get("/v1/jobs", token).await, StatusCode::OK).await;
        assert!(!jobs.to_string().contains(jid));
        let own = json(
            app.post(
                &format!("/v1/collections/{b_cid}/search"),
                token,
                json!({"query": "launch date"}),
            )
            .await,
            StatusCode::OK,
        )
        .await;
        assert!(
            own["results"].as_array().unwrap().is_empty(),
            "B's search never reaches A's chunks"
        );
    }
    let doc = json(
        app.get(&format!("/v1/documents/{did}"), &a.admin_token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert!(doc["deleted_at"].is_null());
    assert_eq!(doc["title"], "Secret plan");
    let jobs = json(app.get("/v1/jobs", &a.admin_token).await, StatusCode::OK).await;
    assert_eq!(jobs["items"].as_array().unwrap().len(), 1, "{jobs}");
}

#[tokio::test]
async fn a_queued_job_can_be_cancelled_and_leaves_nothing_indexed() {
    // No worker: the job is still queued when cancelled.
    let app = TestApp::spawn_with(crate::helpers::Options {
        ingest_workers: 0,
        ..Default::default()
    })
    .await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;
    let id = &app.collection(t, "Docs").await;
    let uploaded = app
        .upload(
            t,
            id,
            "Later",
            "Words that should never be searchable.",
            json!({}),
        )
        .await;
    let jid = uploaded["job"]["id"].as_str().unwrap();
    let job = json(
        app.post_empty(&format!("/v1/jobs/{jid}/cancel"), t).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(job["state"], "cancelled");
    let body = json!({"query": "never searchable", "mode": "fulltext"});
    let res = json(
        app.post(&format!("/v1/collections/{id}/search"), t, body)
            .await,
        StatusCode::OK,
    )
    .await;
    assert!(res["results"].as_array().unwrap().is_empty());
    let doc = json(
        app.get(
            &format!(
                "/v1/documents/{}",
                uploaded["document"]["id"].as_str().unwrap()
            ),
            t,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(doc["status"], "failed");
    // Cancelling a finished job answers it unchanged.
    let again = json(
        app.post_empty(&format!("/v1/jobs/{jid}/cancel"), t).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(again["state"], "cancelled");
}

#[tokio::test]
async fn a_crashed_workers_job_is_taken_up_again() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;
    let id = &app.collection(t, "Docs").await;
    let conn = app.platform_connection().await;
    use sea_orm::ConnectionTrait;
    // A job leased to a worker that died: running, lease expired.
    let uploaded = app
        .upload(
            t,
            id,
            "Orphan",
            "The orphaned job still gets indexed.",
            json!({}),
        )
        .await;
    let jid = uploaded["job"]["id"].as_str().unwrap();
    conn.execute_unprepared(&format!(
        "UPDATE jobs SET state = 'running', locked_by = 'dead-worker', locked_until = now() - interval '1 second', attempts = 1
         WHERE id = '{jid}' AND state = 'queued'"
    ))
    .await
    .unwrap();
    let job = app.wait_for_job(t, jid).await;
    assert_eq!(job["state"], "succeeded");
    let body = json!({"query": "orphaned job", "mode": "fulltext"});
    let res = json(
        app.post(&format!("/v1/collections/{id}/search"), t, body)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(titles(&res), ["Orphan"]);
}

#[tokio::test]
async fn the_application_role_can_use_the_space_index() {
    use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let owner = store_postgres::connect(&app.owner_url, &Default::default())
        .await
        .unwrap();
    // The server builds the index in the background at start.
    let mut built = false;
    for _ in 0..100 {
        let found = owner
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT count(*) AS n FROM pg_indexes WHERE indexname = 'chunks_embedding_local_minilm_l6_v2'",
            ))
            .await
            .unwrap()
            .unwrap();
        if found.try_get::<i64>("", "n").unwrap() == 1 {
            built = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(built, "the platform role built the space's HNSW index");
    let app_role = app.app_connection().await;
    let tx = app_role.begin().await.unwrap();
    tx.execute_unprepared(&format!(
        "SELECT set_config('app.tenant_id', '{}', true)",
        acme.id
    ))
    .await
    .unwrap();
    // The table is tiny; forbid the sequential scan to see whether the index can serve the query.
    tx.execute_unprepared("SET LOCAL enable_seqscan = off")
        .await
        .unwrap();
    let vector = format!("[{}]", vec!["0.05"; 384].join(","));
    let plan = tx
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "EXPLAIN SELECT id FROM chunks WHERE tenant_id = '{}' AND space_id = 'local-minilm-l6-v2'
                 ORDER BY embedding::vector(384) <=> '{vector}'::vector(384) LIMIT 10",
                acme.id
            ),
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.try_get::<String>("", "QUERY PLAN").unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        plan.contains("chunks_embedding_local_minilm_l6_v2"),
        "{plan}"
    );
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn an_openai_space_embeds_through_the_configured_server() {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/v1/embeddings"))
        .and(wiremock::matchers::header(
            "authorization",
            "Bearer test-key",
        ))
        .respond_with(FakeEmbeddings::default())
        .expect(1..)
        .mount(&server)
        .await;
    let app = TestApp::spawn_with(crate::helpers::Options {
        openai_base_url: Some(format!("{}/v1", server.uri())),
        spaces: vec![(
            "openai-test".into(),
            "openai".into(),
            "test-embed".into(),
            8,
        )],
        ..Default::default()
    })
    .await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;
    let spaces = json(app.get("/v1/spaces", t).await, StatusCode::OK).await;
    assert!(spaces.to_string().contains("openai-test"));
    let made = json(
        app.post(
            "/v1/collections",
            t,
            json!({"name": "Remote", "space_id": "openai-test"}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let id = made["id"].as_str().unwrap();
    assert_eq!(made["space"]["dimensions"], 8);
    for (title, content) in [
        ("Launch", "The rocket launches at dawn."),
        ("Lunch", "Lunch is served at noon."),
    ] {
        let uploaded = app.upload(t, id, title, content, json!({})).await;
        let job = app
            .wait_for_job(t, uploaded["job"]["id"].as_str().unwrap())
            .await;
        assert_eq!(job["state"], "succeeded", "{job}");
    }
    let body = json!({"query": "rocket", "mode": "vector", "top_k": 1});
    let found = json(
        app.post(&format!("/v1/collections/{id}/search"), t, body)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(titles(&found), ["Launch"]);
    // A local and a remote collection together: two spaces, fused by rank.
    let local_id = &app.collection(t, "Local").await;
    let uploaded = app
        .upload(
            t,
            local_id,
            "Rockets",
            "A rocket is a vehicle propelled by a rocket engine.",
            json!({}),
        )
        .await;
    app.wait_for_job(t, uploaded["job"]["id"].as_str().unwrap())
        .await;
    let body =
        json!({"collection_ids": [id, local_id], "query": "rocket", "mode": "vector", "top_k": 2});
    let both = json(app.post("/v1/search", t, body).await, StatusCode::OK).await;
    let mut got = titles(&both);
    got.sort();
    assert_eq!(got, ["Launch", "Rockets"]);
    assert_eq!(both["results"][0]["score_kind"], "rrf");
}

/// The plan of `sql` (rows of EXPLAIN), run in `tx`.
async fn explain(tx: &sea_orm::DatabaseTransaction, sql: &str) -> String {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    tx.query_all_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.try_get::<String>("", "QUERY PLAN").unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn full_text_search_runs_where_its_gin_indexes_are_usable() {
    use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let other = app.tenant("other").await;
    let (id, _) = ingested_collection(&app, &acme.admin_token).await;
    ingested_collection(&app, &other.admin_token).await;
    let platform = app.platform_connection().await;
    let generation = platform
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT active_generation_id::text AS g FROM collections WHERE id = '{id}'"),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<String>("", "g")
        .unwrap();
    let tenant = format!("SELECT set_config('app.tenant_id', '{}', true)", acme.id);
    // Enough rows that an index is worth using: 5,000 filler chunks in the same generation.
    platform
        .execute_unprepared(&format!(
            "INSERT INTO chunks (tenant_id, id, collection_id, document_id, generation_id, space_id,
                                 position, content, token_count, metadata, embedding)
             SELECT c.tenant_id, gen_random_uuid(), c.collection_id, c.document_id, c.generation_id,
                    c.space_id, 1000 + i, 'filler text number ' || i, 4,
                    jsonb_build_object('team', 'filler' || (i % 50)), c.embedding
             FROM (SELECT * FROM chunks WHERE generation_id = '{generation}' LIMIT 1) c,
                  generate_series(1, 5000) i"
        ))
        .await
        .unwrap();
    let owner = store_postgres::connect(&app.owner_url, &Default::default())
        .await
        .unwrap();
    owner.execute_unprepared("ANALYZE chunks").await.unwrap();

    // As the application role, the tenant policy comes first and `@@` is not leakproof: the
    // full-text index cannot serve a plain query (the reason for the search function).
    let app_role = app.app_connection().await;
    let tx = app_role.begin().await.unwrap();
    tx.execute_unprepared(&tenant).await.unwrap();
    tx.execute_unprepared("SET LOCAL enable_seqscan = off")
        .await
        .unwrap();
    let plain = explain(
        &tx,
        "EXPLAIN SELECT id FROM chunks WHERE tsv @@ websearch_to_tsquery('english', 'vacation')",
    )
    .await;
    assert!(!plain.contains("chunks_tsv"), "{plain}");
    // The function's ids come back to `chunks` by key, as the search statement joins them (not
    // by hashing a scan of every tenant's chunks).
    tx.execute_unprepared("SET LOCAL enable_seqscan = on")
        .await
        .unwrap();
    let joined = explain(
        &tx,
        &format!(
            "EXPLAIN SELECT c.id, c.content FROM chunk_fulltext_hits('{generation}', 'vacation', '[]'::jsonb, 50) f
             JOIN chunks c ON c.tenant_id = '{}' AND c.id = f.id",
            acme.id
        ),
    )
    .await;
    assert!(!joined.contains("Seq Scan on chunks"), "{joined}");
    tx.execute_unprepared("SET LOCAL enable_seqscan = off")
        .await
        .unwrap();
    // Through the function the caller sees its own tenant's chunks only, filters apply, and a
    // transaction that set no tenant sees nothing.
    for (filter, expected) in [
        ("[]", 2),
        (r#"[[{"team": "hr"}]]"#, 1),
        (r#"[[{"team": "x"}, {"team": "it"}]]"#, 1),
        (r#"[[{"team": "x"}]]"#, 0),
    ] {
        let n = tx
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                format!(
                    "SELECT count(*) AS n FROM chunk_fulltext_hits('{generation}', 'vacation OR password', '{filter}'::jsonb, 10)"
                ),
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap();
        assert_eq!(n, expected, "{filter}");
    }
    tx.rollback().await.unwrap();
    let nobody = app_role
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT count(*) AS n FROM chunk_fulltext_hits('{generation}', 'vacation', '[]'::jsonb, 10)"
            ),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(nobody, 0);

    // The statement the function runs, as the role it runs as and with the planner settings it
    // runs with: the planner picks the GIN index of the selective condition, full text or
    // metadata, scoped to the generation.
    let tx = owner.begin().await.unwrap();
    let settings = tx
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT array_to_string(proconfig, ';') AS settings FROM pg_proc
             WHERE proname = 'chunk_fulltext_hits'",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<String>("", "settings")
        .unwrap();
    assert!(
        settings.contains("enable_seqscan=off") && settings.contains("enable_nestloop=off"),
        "{settings}"
    );
    tx.execute_unprepared(
        "SET LOCAL ROLE agentic_search; SET LOCAL enable_seqscan = off; SET LOCAL enable_nestloop = off",
    )
    .await
    .unwrap();
    for (filter, query, index) in [
        ("[]", "vacation", "chunks_tsv"),
        (
            r#"[[{"team": "hr"}]]"#,
            "filler OR vacation",
            "chunks_metadata",
        ),
    ] {
        let sql = tx
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("SELECT chunk_fulltext_sql('{filter}'::jsonb) AS sql"),
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<String>("", "sql")
            .unwrap();
        tx.execute_unprepared(&format!(
            "PREPARE fulltext (uuid, uuid, text[], tsquery, integer) AS {sql}"
        ))
        .await
        .unwrap();
        // The arguments `chunk_fulltext_hits` passes: the query's lexemes, and those as
        // alternatives.
        let plan = explain(
            &tx,
            &format!(
                "EXPLAIN EXECUTE fulltext ('{}', '{generation}',
                    tsvector_to_array(to_tsvector('english', '{query}')),
                    replace(plainto_tsquery('english', '{query}')::text, '&', '|')::tsquery, 10)",
                acme.id
            ),
        )
        .await;
        assert!(plan.contains(index), "{filter}: {plan}");
        // Both indexes lead with the generation, so the scan reads this generation's postings
        // and not every tenant's.
        let lines: Vec<&str> = plan.lines().collect();
        let scoped = lines.windows(2).all(|pair| {
            let on_gin =
                pair[0].contains("on chunks_tsv") || pair[0].contains("on chunks_metadata");
            !on_gin || (pair[1].contains("Index Cond") && pair[1].contains("generation_id ="))
        });
        assert!(
            scoped,
            "{filter}: an index scan not scoped to the generation: {plan}"
        );
        tx.execute_unprepared("DEALLOCATE fulltext").await.unwrap();
    }
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn large_generations_are_searched_through_hnsw_with_the_same_answers() {
    use sea_orm::ConnectionTrait;
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;
    let (id, _) = ingested_collection(&app, t).await;
    let search = |mode: &'static str| {
        let app = &app;
        let id = id.clone();
        async move {
            let body = json!({"query": "how do I reset my password", "mode": mode, "top_k": 2});
            json(
                app.post(&format!("/v1/collections/{id}/search"), t, body)
                    .await,
                StatusCode::OK,
            )
            .await
        }
    };
    let exact = (search("vector").await, search("hybrid").await);
    // Past the exact-search threshold the space's HNSW index answers, with iterative scan.
    app.platform_connection()
        .await
        .execute_unprepared(&format!(
            "UPDATE generations SET chunk_count = 1000000 WHERE collection_id = '{id}'"
        ))
        .await
        .unwrap();
    let indexed = (search("vector").await, search("hybrid").await);
    assert_eq!(titles(&exact.0)[0], "Password resets");
    assert_eq!(titles(&indexed.0), titles(&exact.0));
    assert_eq!(titles(&indexed.1), titles(&exact.1));
}

/// The generation's BM25 statistics as the triggers keep them, against a count from the chunks
/// themselves: (chunk_count, token_total, lexemes whose kept count differs from the recount).
/// How far the kept statistics are from a recount: chunks, tokens, lexemes whose count differs,
/// and documents whose count or length differs (or the generation's document count).
async fn statistics_drift(app: &TestApp, collection: &str) -> (i64, i64, i64, i64) {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let row = app
        .platform_connection()
        .await
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "WITH g AS (SELECT g.* FROM generations g JOIN collections c ON c.active_generation_id = g.id
                            WHERE c.id = '{collection}'),
                      counted AS (SELECT u.lexeme, count(*) AS chunks
                                  FROM chunks c, g, unnest(c.tsv) u
                                  WHERE c.tenant_id = g.tenant_id AND c.generation_id = g.id
                                  GROUP BY u.lexeme),
                      kept AS (SELECT s.lexeme, s.chunks FROM generation_lexemes s, g
                               WHERE s.tenant_id = g.tenant_id AND s.generation_id = g.id),
                      counted_documents AS (SELECT c.document_id, count(*) AS chunks, sum(c.tsv_length) AS tokens
                                            FROM chunks c, g
                                            WHERE c.tenant_id = g.tenant_id AND c.generation_id = g.id
                                            GROUP BY c.document_id),
                      kept_documents AS (SELECT s.document_id, s.chunks, s.token_total AS tokens
                                         FROM generation_documents s, g
                                         WHERE s.tenant_id = g.tenant_id AND s.generation_id = g.id)
                 SELECT (SELECT g.chunk_count - (SELECT count(*) FROM chunks c
                                                 WHERE c.tenant_id = g.tenant_id AND c.generation_id = g.id)
                         FROM g) AS chunks,
                        (SELECT g.token_total - (SELECT COALESCE(sum(c.tsv_length), 0) FROM chunks c
                                                 WHERE c.tenant_id = g.tenant_id AND c.generation_id = g.id)
                         FROM g)::int8 AS tokens,
                        (SELECT count(*) FROM counted FULL JOIN kept USING (lexeme)
                         WHERE counted.chunks IS DISTINCT FROM kept.chunks) AS lexemes,
                        (SELECT count(*) FROM counted_documents n FULL JOIN kept_documents k USING (document_id)
                         WHERE (n.chunks, n.tokens) IS DISTINCT FROM (k.chunks, k.tokens))
                        + (SELECT abs(g.document_count - (SELECT count(*) FROM counted_documents)) FROM g)
                          AS documents"
            ),
        ))
        .await
        .unwrap()
        .unwrap();
    (
        row.try_get::<i64>("", "chunks").unwrap(),
        row.try_get::<i64>("", "tokens").unwrap(),
        row.try_get::<i64>("", "lexemes").unwrap(),
        row.try_get::<i64>("", "documents").unwrap(),
    )
}

#[tokio::test]
async fn full_text_ranks_by_bm25_over_statistics_kept_with_the_chunks() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let other = app.tenant("other").await;
    let t = &acme.admin_token;
    let (id, documents) = ingested_collection(&app, t).await;
    assert_eq!(statistics_drift(&app, &id).await, (0, 0, 0, 0));
    let path = format!("/v1/collections/{id}/search");
    let fulltext = |query: &'static str| {
        let app = &app;
        let path = path.clone();
        async move {
            json(
                app.post(&path, t, json!({"query": query, "mode": "fulltext"}))
                    .await,
                StatusCode::OK,
            )
            .await
        }
    };

    // Any term matches: a question whose words are not all in one chunk still finds it, and the
    // chunk with more of them comes first.
    let found = fulltext("how many vacation days do employees get per year?").await;
    assert_eq!(titles(&found), ["Vacation policy", "Expense reports"]);
    // A rare term outweighs a common one: "days" is in two chunks, "ficus" in one.
    let found = fulltext("days ficus").await;
    assert_eq!(titles(&found)[0], "Office plants");
    let scores: Vec<f64> = found["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["score"].as_f64().unwrap())
        .collect();
    assert!(scores[0] > scores[1], "{scores:?}");
    // Only stop words: nothing to look for, and no error.
    let found = fulltext("the and of").await;
    assert!(found["results"].as_array().unwrap().is_empty());

    // Another tenant's chunks leave this tenant's statistics, and scores, alone.
    let before = fulltext("receipts").await["results"][0]["score"].clone();
    let elsewhere = app.collection(&other.admin_token, "Receipts").await;
    let uploaded = app
        .upload(
            &other.admin_token,
            &elsewhere,
            "Receipts",
            "Receipts, receipts and more receipts.",
            json!({}),
        )
        .await;
    app.wait_for_job(&other.admin_token, uploaded["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(fulltext("receipts").await["results"][0]["score"], before);

    // Dotted and slashed names are words apart: `os.path.join` is found by `join`.
    let uploaded = app
        .upload(
            t,
            &id,
            "Paths",
            "Build a path with os.path.join(home, '/etc/hosts.allow').",
            json!({}),
        )
        .await;
    app.wait_for_job(t, uploaded["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(titles(&fulltext("join hosts").await), ["Paths"]);

    // Typographic punctuation separates words too, whatever the database's locale: the
    // apostrophe of `kettle’s` and the quotes and dash around `descaling` do not stick to them.
    let uploaded = app
        .upload(
            t,
            &id,
            "Kitchen",
            "The kettle’s “descaling”—monthly—keeps it quiet…",
            json!({}),
        )
        .await;
    app.wait_for_job(t, uploaded["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(titles(&fulltext("kettle descaling").await), ["Kitchen"]);
    assert_eq!(titles(&fulltext("“Kettle’s”").await), ["Kitchen"]);
    assert_eq!(titles(&fulltext("monthly").await), ["Kitchen"]);
    // A chunk is read with its document's title: the word is only in the title.
    assert_eq!(titles(&fulltext("kitchen").await), ["Kitchen"]);

    // Replacing a text (and the title) and purging a document keep the statistics exact, and
    // the chunks follow the new title.
    let replaced = json(
        app.put(
            &format!("/v1/documents/{}", documents[3]),
            t,
            json!({"title": "Greenery", "content": "The ficus moved to the lobby; the cactus needs no water at all."}),
        )
        .await,
        StatusCode::ACCEPTED,
    )
    .await;
    let job = app
        .wait_for_job(t, replaced["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(statistics_drift(&app, &id).await, (0, 0, 0, 0));
    assert_eq!(titles(&fulltext("cactus").await), ["Greenery"]);
    assert_eq!(titles(&fulltext("greenery").await), ["Greenery"]);
    assert!(titles(&fulltext("plants").await).is_empty());
    let doc = &documents[1];
    assert_eq!(
        app.delete(&format!("/v1/documents/{doc}"), t)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete(&format!("/v1/documents/{doc}/purge"), t)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(statistics_drift(&app, &id).await, (0, 0, 0, 0));
    assert!(titles(&fulltext("receipts").await).is_empty());
}

#[tokio::test]
async fn queries_of_any_length_or_script_are_searched_and_say_when_they_were_cut() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;
    let (id, _) = ingested_collection(&app, t).await;
    let path = format!("/v1/collections/{id}/search");
    let long = format!(
        "how do I reset my password {}",
        "please tell me quickly ".repeat(2_000)
    );
    let one_long_word = "x".repeat(60_000);
    for mode in ["vector", "fulltext", "hybrid"] {
        let body = json!({"query": long, "mode": mode, "top_k": 1});
        let found = json(app.post(&path, t, body).await, StatusCode::OK).await;
        assert_eq!(found["query_truncated"], true, "{mode}");
        assert_eq!(titles(&found), ["Password resets"], "{mode}");
        let body = json!({"query": one_long_word, "mode": mode});
        let found = json(app.post(&path, t, body).await, StatusCode::OK).await;
        assert_eq!(found["query_truncated"], true, "{mode}");
        for strange in [
            "\u{0}password\u{0}",
            "パスワードをリセットする方法 🔑",
            "!!! ??? ...",
            "foo:* & !bar | (baz <-> 'qux''",
            "\\' OR 1=1; --",
            "كيف أعيد تعيين كلمة المرور",
        ] {
            let body = json!({"query": strange, "mode": mode});
            let found = json(app.post(&path, t, body).await, StatusCode::OK).await;
            assert_eq!(found["query_truncated"], false, "{mode} {strange}");
        }
    }
    // Short queries are not cut; a query with nothing but whitespace is still refused.
    let body = json!({"query": "password", "mode": "hybrid"});
    let found = json(app.post(&path, t, body).await, StatusCode::OK).await;
    assert_eq!(found["query_truncated"], false);
    assert_problem(
        app.post(&path, t, json!({"query": " \u{0} "})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn the_hybrid_weight_moves_between_the_two_lists() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;
    let (id, _) = ingested_collection(&app, t).await;
    let path = format!("/v1/collections/{id}/search");
    let search = |body: Value| {
        let app = &app;
        let path = path.clone();
        async move { json(app.post(&path, t, body).await, StatusCode::OK).await }
    };
    // The words point at expenses, the meaning at holidays.
    let query = "annual holiday allowance purchase";
    let vector = search(json!({"query": query, "mode": "vector"})).await;
    let fulltext = search(json!({"query": query, "mode": "fulltext"})).await;
    assert_ne!(titles(&vector)[0], titles(&fulltext)[0]);
    for (weight, expected) in [(1.0, &vector), (0.0, &fulltext)] {
        let hybrid = search(json!({"query": query, "hybrid_weight": weight})).await;
        assert_eq!(
            hybrid["results"][0]["chunk_id"], expected["results"][0]["chunk_id"],
            "{weight}"
        );
        assert_eq!(hybrid["results"][0]["score_kind"], "weighted_sum");
    }
    for weight in [json!(1.5), json!(-0.1), json!("half")] {
        assert_problem(
            app.post(&path, t, json!({"query": query, "hybrid_weight": weight}))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
    }
}

#[tokio::test]
async fn concurrent_ingestions_into_one_generation_keep_its_statistics_exact() {
    let app = TestApp::spawn_with(crate::helpers::Options {
        ingest_workers: 3,
        ..Default::default()
    })
    .await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;
    let id = app.collection(t, "Shared words").await;
    // Every text shares most lexemes with the others, so the writers meet on the same rows.
    let mut uploaded = Vec::new();
    for i in 0..6 {
        let content = format!(
            "Shared words about policies, holidays, receipts and passwords, text number {i}. {}",
            "Every team follows the common handbook rules. ".repeat(12 + i * 4)
        );
        uploaded.push(
            app.upload(t, &id, &format!("Text {i}"), &content, json!({}))
                .await,
        );
    }
    for up in &uploaded {
        let job = app.wait_for_job(t, up["job"]["id"].as_str().unwrap()).await;
        assert_eq!(job["state"], "succeeded", "{job}");
    }
    assert_eq!(statistics_drift(&app, &id).await, (0, 0, 0, 0));
    let body = json!({"query": "handbook passwords", "mode": "fulltext", "top_k": 10});
    let found = json(
        app.post(&format!("/v1/collections/{id}/search"), t, body)
            .await,
        StatusCode::OK,
    )
    .await;
    assert!(found["results"].as_array().unwrap().len() >= 6);
}
