//! Fairness between tenants: a tenant's backlog does not delay another tenant's work.

use std::time::Duration;

use api_actix::startup::Stores;
use chrono::Utc;
use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::helpers::{Options, TestApp};

#[tokio::test]
async fn a_tenant_with_a_thousand_queued_jobs_does_not_delay_another_tenants_job() {
    let app = TestApp::spawn_with(Options {
        ingest_workers: 0,
        ..Default::default()
    })
    .await;
    let big = app.tenant("big").await;
    let small = app.tenant("small").await;
    let big_collection = app.collection(&big.admin_token, "Backlog").await;
    let first = app
        .upload(
            &big.admin_token,
            &big_collection,
            "Doc 0",
            "Text 0.",
            json!({}),
        )
        .await;
    // A thousand documents queued before the other tenant's one, with their jobs.
    let document = first["document"]["id"].as_str().unwrap();
    app.platform_connection()
        .await
        .execute_unprepared(&format!(
            "INSERT INTO documents (tenant_id, id, collection_id, title, content_type, content,
                                    content_hash, byte_count, metadata, status, created_at, updated_at)
             SELECT tenant_id, gen_random_uuid(), collection_id, title || ' ' || n, content_type,
                    content || n, sha256((content || n)::bytea), byte_count, metadata, status,
                    created_at, updated_at
             FROM documents, generate_series(1, 999) n WHERE id = '{document}';
             INSERT INTO jobs (tenant_id, id, kind, state, collection_id, document_id, run_at,
                               created_at, updated_at)
             SELECT d.tenant_id, gen_random_uuid(), 'ingest', 'queued', d.collection_id, d.id,
                    now() - interval '1 hour', now(), now()
             FROM documents d
             WHERE d.tenant_id = '{tenant}' AND d.id <> '{document}';",
            tenant = big.id
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let small_collection = app.collection(&small.admin_token, "Docs").await;
    let uploaded = app
        .upload(
            &small.admin_token,
            &small_collection,
            "Mine",
            "Text.",
            json!({}),
        )
        .await;
    let small_job = uploaded["job"]["id"].as_str().unwrap().to_owned();

    // One worker: the small tenant's job is among the next two claimed (workers + 1).
    let stores = Stores::connect(&app.db_settings()).await.unwrap();
    let lease = Duration::from_secs(60);
    let mut claimed = Vec::new();
    for _ in 0..2 {
        let job = stores
            .queue
            .claim("worker-a", lease, 2, Utc::now())
            .await
            .unwrap()
            .expect("a job to claim");
        claimed.push((job.tenant.to_string(), job.id.to_string()));
    }
    assert!(
        claimed.iter().any(|(_, id)| *id == small_job),
        "the small tenant's job waits behind the backlog: {claimed:?}"
    );

    // The big tenant runs at most its share at once (2 here), whatever its backlog.
    let more = stores
        .queue
        .claim("worker-b", lease, 2, Utc::now())
        .await
        .unwrap();
    let running_big = claimed.iter().filter(|(t, _)| *t == big.id).count()
        + usize::from(
            more.as_ref()
                .is_some_and(|j| j.tenant.to_string() == big.id),
        );
    assert_eq!(running_big, 2);
    let none = stores
        .queue
        .claim("worker-c", lease, 2, Utc::now())
        .await
        .unwrap();
    assert!(none.is_none(), "a third job of the big tenant was claimed");
}
