//! Re-embedding a collection into another space: a new generation is built in the background,
//! searches keep answering from the old one, then the collection switches at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};

use crate::helpers::{TestApp, app_with_openai_space, assert_problem, json};
use crate::knowledge::{ingested_collection, titles};

const LOCAL: &str = "local-minilm-l6-v2";

/// (generation state, space) of every generation of the collection, and the spaces its chunks are in.
async fn generations(app: &TestApp, collection: &str) -> (Vec<(String, String)>, Vec<String>) {
    let conn = app.platform_connection().await;
    let rows = conn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT state, space_id FROM generations WHERE collection_id = '{collection}' ORDER BY state"
            ),
        ))
        .await
        .unwrap();
    let generations = rows
        .iter()
        .map(|r| {
            (
                r.try_get::<String>("", "state").unwrap(),
                r.try_get::<String>("", "space_id").unwrap(),
            )
        })
        .collect();
    let rows = conn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT DISTINCT space_id FROM chunks WHERE collection_id = '{collection}' ORDER BY 1"
            ),
        ))
        .await
        .unwrap();
    let spaces = rows
        .iter()
        .map(|r| r.try_get::<String>("", "space_id").unwrap())
        .collect();
    (generations, spaces)
}

/// Searches the collection for "rocket" over and over until `stop`, asserting every answer.
fn keep_searching(
    app: &TestApp,
    token: &str,
    collection: &str,
    stop: Arc<AtomicBool>,
) -> (tokio::task::JoinHandle<()>, Arc<AtomicUsize>) {
    let answered = Arc::new(AtomicUsize::new(0));
    let client = app.client.clone();
    let url = format!("{}/v1/collections/{collection}/search", app.address);
    let token = token.to_owned();
    let count = answered.clone();
    let task = tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            let res = client
                .post(&url)
                .bearer_auth(&token)
                .json(&json!({"query": "rocket launch", "mode": "vector", "top_k": 1}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let body: Value = res.json().await.unwrap();
            assert_eq!(titles(&body), ["Launch"], "{body}");
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (task, answered)
}

#[tokio::test]
async fn reembedding_switches_generations_while_search_keeps_answering() {
    // Each embedding call of the new space takes 150 ms, so the build is caught under way.
    let (app, _server) = app_with_openai_space(Duration::from_millis(150), 1).await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;
    let (id, _) = ingested_collection(&app, t).await;
    let launch = app
        .upload(t, &id, "Launch", "The rocket launches at dawn.", json!({}))
        .await;
    app.wait_for_job(t, launch["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(
        generations(&app, &id).await,
        (vec![("active".into(), LOCAL.into())], vec![LOCAL.into()])
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (searching, answered) = keep_searching(&app, t, &id, stop.clone());
    let queued = json(
        app.post(
            &format!("/v1/collections/{id}/reembed"),
            t,
            json!({"space_id": "openai-test"}),
        )
        .await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(queued["job"]["kind"], "reembed");
    let jid = queued["job"]["id"].as_str().unwrap();
    assert_problem(
        app.post(
            &format!("/v1/collections/{id}/reembed"),
            t,
            json!({"space_id": LOCAL}),
        )
        .await,
        StatusCode::CONFLICT,
        "reembed_in_progress",
    )
    .await;
    // Until the switch the collection stays in its space, and uploads still go there.
    let during = json(
        app.get(&format!("/v1/collections/{id}"), t).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(during["space"]["id"], LOCAL);
    let late = app
        .upload(
            t,
            &id,
            "Late",
            "A kayak manual uploaded mid-way.",
            json!({}),
        )
        .await;

    let job = app.wait_for_job(t, jid).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["progress"]["done"], job["progress"]["total"]);
    let late_job = app
        .wait_for_job(t, late["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(late_job["state"], "succeeded", "{late_job}");
    stop.store(true, Ordering::SeqCst);
    searching.await.unwrap();
    assert!(
        answered.load(Ordering::SeqCst) >= 3,
        "searches kept answering during the build"
    );

    let after = json(
        app.get(&format!("/v1/collections/{id}"), t).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(after["id"], id.as_str());
    assert_eq!(after["space"]["id"], "openai-test");
    assert_eq!(after["space"]["dimensions"], 8);
    // The old generation and its chunks are gone; every document is in the new space, the
    // one uploaded during the build too.
    assert_eq!(
        generations(&app, &id).await,
        (
            vec![("active".into(), "openai-test".into())],
            vec!["openai-test".into()]
        )
    );
    let body = json!({"query": "rocket", "mode": "vector", "top_k": 10});
    let found = json(
        app.post(&format!("/v1/collections/{id}/search"), t, body)
            .await,
        StatusCode::OK,
    )
    .await;
    let results = found["results"].as_array().unwrap();
    assert_eq!(results.len(), 6, "{found}");
    // The fake embedder gives "rocket" texts the query's own vector.
    assert!(results[0]["score"].as_f64().unwrap() > 0.999, "{found}");
    assert_eq!(titles(&found)[0], "Launch");
    let text = json(
        app.post(
            &format!("/v1/collections/{id}/search"),
            t,
            json!({"query": "vacation", "mode": "fulltext"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(titles(&text), ["Vacation policy"]);

    // And back again, into the local space.
    let back = json(
        app.post(
            &format!("/v1/collections/{id}/reembed"),
            t,
            json!({"space_id": LOCAL}),
        )
        .await,
        StatusCode::ACCEPTED,
    )
    .await;
    let job = app
        .wait_for_job(t, back["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(
        generations(&app, &id).await,
        (vec![("active".into(), LOCAL.into())], vec![LOCAL.into()])
    );
    let found = json(
        app.post(
            &format!("/v1/collections/{id}/search"),
            t,
            json!({"query": "how many vacation days", "mode": "vector", "top_k": 1}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(titles(&found), ["Vacation policy"]);
}

#[tokio::test]
async fn a_cancelled_reembedding_leaves_the_collection_as_it_was() {
    let (app, _server) = app_with_openai_space(Duration::from_millis(400), 1).await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;
    let (id, _) = ingested_collection(&app, t).await;
    let queued = json(
        app.post(
            &format!("/v1/collections/{id}/reembed"),
            t,
            json!({"space_id": "openai-test"}),
        )
        .await,
        StatusCode::ACCEPTED,
    )
    .await;
    let jid = queued["job"]["id"].as_str().unwrap();
    let running = wait_until_running(&app, t, jid).await;
    assert_eq!(running["state"], "running");
    let asked = json(
        app.post_empty(&format!("/v1/jobs/{jid}/cancel"), t).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        asked["state"], "running",
        "a running job stops at its next heartbeat"
    );
    let job = app.wait_for_job(t, jid).await;
    assert_eq!(job["state"], "cancelled", "{job}");
    let collection = json(
        app.get(&format!("/v1/collections/{id}"), t).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(collection["space"]["id"], LOCAL);
    assert_eq!(
        generations(&app, &id).await,
        (vec![("active".into(), LOCAL.into())], vec![LOCAL.into()])
    );
    let found = json(
        app.post(
            &format!("/v1/collections/{id}/search"),
            t,
            json!({"query": "reset my password", "mode": "vector", "top_k": 1}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(titles(&found), ["Password resets"]);
}

#[tokio::test]
async fn reembedding_refuses_unknown_spaces_readers_and_deleted_collections() {
    let app = TestApp::spawn_with(crate::helpers::Options {
        ingest_workers: 0,
        ..Default::default()
    })
    .await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;
    let id = &app.collection(t, "Docs").await;
    let path = format!("/v1/collections/{id}/reembed");
    let problem = assert_problem(
        app.post(&path, t, json!({"space_id": "nope"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "space_id");
    assert_problem(
        app.post(&path, t, json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let (_, reader) = app.api_key(&acme, &["read"]).await;
    assert_problem(
        app.post(&path, &reader, json!({"space_id": LOCAL})).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    // Without a worker the job stays queued; a second one is refused until it is cancelled.
    let first = json(
        app.post(&path, t, json!({"space_id": LOCAL})).await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(first["job"]["state"], "queued");
    assert_problem(
        app.post(&path, t, json!({"space_id": LOCAL})).await,
        StatusCode::CONFLICT,
        "reembed_in_progress",
    )
    .await;
    let jid = first["job"]["id"].as_str().unwrap();
    let cancelled = json(
        app.post_empty(&format!("/v1/jobs/{jid}/cancel"), t).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(cancelled["state"], "cancelled");
    json(
        app.post(&path, t, json!({"space_id": LOCAL})).await,
        StatusCode::ACCEPTED,
    )
    .await;
    app.delete(&format!("/v1/collections/{id}"), t).await;
    assert_problem(
        app.post(&path, t, json!({"space_id": LOCAL})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

/// Polls the job until it is running (or fails the test after 30 s).
pub async fn wait_until_running(app: &TestApp, token: &str, job: &str) -> Value {
    for _ in 0..1500 {
        let found = json(
            app.get(&format!("/v1/jobs/{job}"), token).await,
            StatusCode::OK,
        )
        .await;
        if found["state"] != "queued" {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job {job} did not start within 30 s");
}

#[tokio::test]
async fn a_space_registered_while_the_server_runs_is_usable_at_once() {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/v1/embeddings"))
        .respond_with(crate::helpers::FakeEmbeddings::default())
        .mount(&server)
        .await;
    let app = TestApp::spawn_with(crate::helpers::Options {
        openai_base_url: Some(format!("{}/v1", server.uri())),
        ..Default::default()
    })
    .await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;
    let (id, _) = ingested_collection(&app, t).await;
    // Registered the way `agentic space register` does it (as the owner), after the server started.
    store_postgres::register_space(
        &app.owner_url,
        &domain::entities::EmbeddingSpace {
            id: "late-space".into(),
            provider: "openai".into(),
            model: "test-embed".into(),
            dimensions: 8,
            normalized: true,
        },
    )
    .await
    .unwrap();
    let queued = json(
        app.post(
            &format!("/v1/collections/{id}/reembed"),
            t,
            json!({"space_id": "late-space"}),
        )
        .await,
        StatusCode::ACCEPTED,
    )
    .await;
    let job = app
        .wait_for_job(t, queued["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let made = json(
        app.post(
            "/v1/collections",
            t,
            json!({"name": "Late", "space_id": "late-space"}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let late = made["id"].as_str().unwrap();
    let uploaded = app
        .upload(t, late, "Launch", "The rocket launches at dawn.", json!({}))
        .await;
    let job = app
        .wait_for_job(t, uploaded["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let found = json(
        app.post(
            "/v1/search",
            t,
            json!({"collection_ids": [id, late], "query": "rocket", "mode": "vector", "top_k": 1}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(titles(&found), ["Launch"]);
}

#[tokio::test]
async fn a_reembedding_abandoned_by_its_workers_frees_the_collection() {
    use sea_orm::ConnectionTrait;
    let app = TestApp::spawn_with(crate::helpers::Options {
        ingest_workers: 0,
        ..Default::default()
    })
    .await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;
    let id = &app.collection(t, "Docs").await;
    let path = format!("/v1/collections/{id}/reembed");
    let queued = json(
        app.post(&path, t, json!({"space_id": LOCAL})).await,
        StatusCode::ACCEPTED,
    )
    .await;
    let jid = queued["job"]["id"].as_str().unwrap();
    // Its workers all died: running, lease expired, no attempts left.
    app.platform_connection()
        .await
        .execute_unprepared(&format!(
            "UPDATE jobs SET state = 'running', locked_by = 'dead-worker',
                             locked_until = now() - interval '1 second', attempts = max_attempts
             WHERE id = '{jid}'"
        ))
        .await
        .unwrap();
    let worker = app
        .sibling(crate::helpers::Options {
            jwt_secret: app.jwt_secret.clone(),
            ..Default::default()
        })
        .await;
    let job = worker.wait_for_job(t, jid).await;
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(
        generations(&app, id).await.0,
        [("active".to_owned(), LOCAL.to_owned())]
    );
    json(
        app.post(&path, t, json!({"space_id": LOCAL})).await,
        StatusCode::ACCEPTED,
    )
    .await;
}
