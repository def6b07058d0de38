//! A database that fails under the platform: a backend killed in the middle of a job's final
//! transaction, vector indexes that are missing, and what readiness and search say about it.

use std::time::Duration;

use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult, TransactionTrait};
use serde_json::json;

use crate::helpers::{Options, TestApp, app_with_openai_space, json};

const TEXT: &str = "Rockets carry satellites to orbit. The first stage burns for two minutes, \
                    then falls away. The second stage fires its engine and reaches orbit.";

#[derive(FromQueryResult)]
struct Count {
    n: i64,
}

async fn count(db: &DatabaseConnection, sql: String) -> i64 {
    Count::find_by_statement(sea_orm::Statement::from_string(
        sea_orm::DbBackend::Postgres,
        sql,
    ))
    .one(db)
    .await
    .unwrap()
    .unwrap()
    .n
}

/// The application role's sessions waiting on a lock in this test's database: the worker's
/// final transaction, held up by the test's lock on the collection row.
async fn waiting_backend(app_db: &DatabaseConnection) -> Option<i32> {
    #[derive(FromQueryResult)]
    struct Pid {
        pid: i32,
    }
    Pid::find_by_statement(sea_orm::Statement::from_string(
        sea_orm::DbBackend::Postgres,
        "SELECT pid FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND wait_event_type = 'Lock' AND query ILIKE '%FROM collections%'"
            .to_owned(),
    ))
    .one(app_db)
    .await
    .unwrap()
    .map(|p| p.pid)
}

#[tokio::test]
async fn a_job_whose_final_transaction_loses_its_backend_is_retried_and_stores_its_chunks_once() {
    // Embedding takes a second, which leaves time to lock the collection row before the
    // worker's final transaction asks for it.
    let (app, _server) = app_with_openai_space(Duration::from_secs(1), 1).await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;
    let collection = app.collection_in(t, "Launches", "openai-test").await;
    let uploaded = app.upload(t, &collection, "Rockets", TEXT, json!({})).await;
    let job_id = uploaded["job"]["id"].as_str().unwrap().to_owned();
    let document_id = uploaded["document"]["id"].as_str().unwrap().to_owned();

    // The worker's final transaction marks the document ready, then waits for the collection
    // row this test holds: there its database backend is terminated, as a crash would end it.
    let platform = app.platform_connection().await;
    let blocker = platform.begin().await.unwrap();
    blocker
        .execute_unprepared(&format!(
            "SELECT 1 FROM collections WHERE id = '{collection}' FOR UPDATE"
        ))
        .await
        .unwrap();
    let app_db = app.app_connection().await;
    let mut pid = None;
    for _ in 0..200 {
        pid = waiting_backend(&app_db).await;
        if pid.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = pid.expect("the worker's final transaction waits for the collection row");
    app_db
        .execute_unprepared(&format!("SELECT pg_terminate_backend({pid})"))
        .await
        .unwrap();
    blocker.rollback().await.unwrap();

    // The attempt failed with the database, so the job goes back to the queue and the next
    // attempt completes.
    let job = app.wait_for_job(t, &job_id).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let attempts = count(
        &platform,
        format!("SELECT attempts::int8 AS n FROM jobs WHERE id = '{job_id}'"),
    )
    .await;
    assert_eq!(attempts, 2, "the killed attempt and the one that completed");
    let document = json(
        app.get(&format!("/v1/documents/{document_id}"), t).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(document["status"], "ready", "{document}");

    // Its chunks are stored exactly once, and the planner's count agrees with them.
    let chunks = count(
        &platform,
        format!("SELECT count(*) AS n FROM chunks WHERE document_id = '{document_id}'"),
    )
    .await;
    let positions = count(
        &platform,
        format!(
            "SELECT count(DISTINCT position) AS n FROM chunks WHERE document_id = '{document_id}'"
        ),
    )
    .await;
    let counted = count(
        &platform,
        format!(
            "SELECT g.chunk_count AS n FROM generations g JOIN collections c ON c.active_generation_id = g.id
             WHERE c.id = '{collection}'"
        ),
    )
    .await;
    assert!(chunks >= 1);
    assert_eq!(chunks, positions, "no chunk stored twice");
    assert_eq!(counted, chunks, "the generation counts each chunk once");

    let found = json(
        app.post(
            &format!("/v1/collections/{collection}/search"),
            t,
            json!({"query": "rocket", "mode": "vector"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(found["results"].as_array().unwrap().len(), chunks as usize);
}

#[tokio::test]
async fn a_job_abandoned_after_its_attempts_fails_saying_what_happened() {
    let app = TestApp::spawn_with(Options {
        ingest_workers: 0,
        ..Default::default()
    })
    .await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;
    let collection = app.collection(t, "Docs").await;
    let uploaded = app.upload(t, &collection, "Rockets", TEXT, json!({})).await;
    let job_id = uploaded["job"]["id"].as_str().unwrap();
    let document_id = uploaded["document"]["id"].as_str().unwrap();
    // Every attempt died with its database session: the last one a worker could record said so,
    // and the last lease ran out without an outcome.
    app.platform_connection()
        .await
        .execute_unprepared(&format!(
            "UPDATE jobs SET state = 'running', locked_by = 'dead-worker',
                             locked_until = now() - interval '1 second', attempts = max_attempts,
                             error = 'the database is unavailable: the connection to the database was lost'
             WHERE id = '{job_id}'"
        ))
        .await
        .unwrap();
    let worker = app
        .sibling(Options {
            jwt_secret: app.jwt_secret.clone(),
            ..Default::default()
        })
        .await;
    let job = worker.wait_for_job(t, job_id).await;
    assert_eq!(job["state"], "failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("abandoned by its workers")
            && error.contains("database session")
            && error.contains("the connection to the database was lost"),
        "{error}"
    );
    let document = json(
        app.get(&format!("/v1/documents/{document_id}"), t).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(document["status"], "failed");
    assert!(
        document["error"]
            .as_str()
            .unwrap()
            .contains("the connection to the database was lost"),
        "{document}"
    );
}

#[tokio::test]
async fn a_missing_vector_index_makes_the_server_not_ready_and_search_scans_instead() {
    let app = TestApp::spawn().await;
    let ready = app.readiness(StatusCode::OK).await;
    assert_eq!(ready["vector_indexes"], "ok", "{ready}");
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;
    let collection = app.collection(t, "Docs").await;
    let uploaded = app.upload(t, &collection, "Rockets", TEXT, json!({})).await;
    let job = app
        .wait_for_job(t, uploaded["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(job["state"], "succeeded", "{job}");

    // The index is gone (a crashed build leaves none, or an invalid one), and the generation is
    // large enough that search would use it.
    let owner = store_postgres::connect(&app.owner_url, &Default::default())
        .await
        .unwrap();
    owner
        .execute_unprepared("DROP INDEX chunks_embedding_local_minilm_l6_v2")
        .await
        .unwrap();
    app.platform_connection()
        .await
        .execute_unprepared(&format!(
            "UPDATE generations SET chunk_count = 1000000 WHERE collection_id = '{collection}'"
        ))
        .await
        .unwrap();
    let not_ready = app.readiness(StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(not_ready["status"], "unavailable");
    assert_eq!(not_ready["postgres"], "ok");
    assert_eq!(not_ready["vector_indexes"], "unavailable");

    // Search still answers, exactly, and the hit is right.
    let found = json(
        app.post(
            &format!("/v1/collections/{collection}/search"),
            t,
            json!({"query": "what carries satellites to orbit?", "mode": "vector"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(found["results"][0]["document_title"], "Rockets", "{found}");

    // Built again (as `agentic migrate up` or `agentic space register` does), the server is ready.
    store_postgres::ensure_space_indexes(&app.owner_url)
        .await
        .unwrap();
    let ready = app.readiness(StatusCode::OK).await;
    assert_eq!(ready["vector_indexes"], "ok");
}
