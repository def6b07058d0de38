//! Operations routes, conventions every response follows, and platform provisioning.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, assert_problem, json};

#[tokio::test]
async fn health_readiness_openapi_and_docs() {
    let app = TestApp::spawn().await;
    let res = app
        .request(Method::GET, "/healthz", None)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = app.readiness(StatusCode::OK).await;
    assert_eq!(body["postgres"], "ok");
    assert_eq!(body["redis"], "ok");
    assert_eq!(body["vector_indexes"], "ok");
    let spec = json(
        app.request(Method::GET, "/openapi.json", None)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/v1/agents/{id}",
        "/v1/auth/login",
        "/v1/users/{id}/purge",
        "/v1/audit",
        "/v1/api-keys",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} documented");
    }
    let docs = app
        .request(Method::GET, "/docs/", None)
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(
        docs.text().await.unwrap().contains("swagger"),
        "swagger UI served locally"
    );
}

#[tokio::test]
async fn unknown_routes_and_bad_bodies_are_problem_details() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let res = app.get("/v1/nothing-here", &acme.admin_token).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;

    let res = app
        .request(Method::POST, "/v1/agents", Some(&acme.admin_token))
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_problem(
        res,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;

    let huge = "x".repeat(70 * 1024);
    let res = app
        .post("/v1/agents", &acme.admin_token, json!({"name": "A", "slug": "a", "system_prompt": huge, "model": {"provider": "local", "name": "m"}}))
        .await;
    assert_problem(res, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;

    let res = app
        .request(Method::POST, "/v1/agents", Some(&acme.admin_token))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    let res = app
        .post("/v1/agents", &acme.admin_token, json!({"name": "A", "slug": "Bad Slug", "model": {"provider": "local", "name": "m"}, "max_tokens": 0}))
        .await;
    let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["slug", "max_tokens"]);

    let res = app
        .post(
            "/v1/agents",
            &acme.admin_token,
            json!({"name": "A", "slug": "a", "model": {"provider": "local"}}),
        )
        .await;
    let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "model");

    let res = app.get("/v1/agents?limit=1000", &acme.admin_token).await;
    let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "limit");
    let res = app.get("/v1/agents?limit=abc", &acme.admin_token).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let res = app.get("/v1/agents?cursor=!!", &acme.admin_token).await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let res = app.get("/v1/agents/not-a-uuid", &acme.admin_token).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = TestApp::spawn().await;
    let res = app
        .request(Method::GET, "/healthz", None)
        .header("x-request-id", "client-id-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "client-id-123");
    let res = app
        .request(Method::GET, "/v1/me", None)
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let generated = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(generated, "bad id with spaces");
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
    let body = assert_problem(res, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    assert_eq!(body["request_id"], generated);
}

#[tokio::test]
async fn only_platform_keys_provision_tenants() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let body = json!({"name": "Other", "slug": "other", "admin_email": "a@other.test"});
    let res = app
        .post("/v1/tenants", &acme.admin_token, body.clone())
        .await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    let res = app
        .post(
            "/v1/tenants",
            &app.platform_key,
            json!({"name": "Dup", "slug": "acme", "admin_email": "a@dup.test"}),
        )
        .await;
    assert_problem(res, StatusCode::CONFLICT, "tenant_slug_taken").await;
    let made = json(
        app.post("/v1/tenants", &app.platform_key, body).await,
        StatusCode::CREATED,
    )
    .await;
    let password = made["admin_password"].as_str().unwrap();
    assert!(
        password.len() >= 16,
        "a generated password is returned once"
    );
    app.login("other", "a@other.test", password).await;
    // Platform keys hold no tenant.
    let res = app.get("/v1/agents", &app.platform_key).await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn platform_keys_expire_are_listed_and_revoked() {
    use std::sync::Arc;

    use api_actix::startup::Stores;
    use domain::ports::SystemClock;
    use domain::services::{TenantPorts, TenantService};

    let app = TestApp::spawn().await;
    let stores = Stores::connect(&app.db_settings()).await.unwrap();
    let tenants = TenantService::new(TenantPorts {
        store: stores.store.clone(),
        platform: stores.platform.clone(),
        hasher: api_actix::startup::password_hasher(None).unwrap(),
        secrets: Arc::new(auth_crypto::RandomSecrets),
        sessions: Arc::new(
            cache_redis::RedisCache::connect(&app.redis_url, app.redis_prefix.clone()).unwrap(),
        ),
        clock: Arc::new(SystemClock),
    });
    let (expired, expired_key) = tenants
        .create_platform_key("expired", Some(chrono::Duration::seconds(-1)))
        .await
        .unwrap();
    let (live, live_key) = tenants
        .create_platform_key("live", Some(chrono::Duration::days(1)))
        .await
        .unwrap();
    assert_eq!(
        app.get("/v1/tenants", &expired_key).await.status(),
        StatusCode::UNAUTHORIZED
    );
    json(app.get("/v1/tenants", &live_key).await, StatusCode::OK).await;
    let listed: Vec<_> = tenants
        .platform_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert!(listed.contains(&expired.id) && listed.contains(&live.id));
    let revoked = tenants.revoke_platform_key(live.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert_eq!(
        app.get("/v1/tenants", &live_key).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn building_the_application_starts_no_worker_until_asked() {
    let app = TestApp::spawn_with(crate::helpers::Options {
        ingest_workers: 0,
        ..Default::default()
    })
    .await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;
    let collection = app.collection(t, "Docs").await;
    let uploaded = app
        .upload(t, &collection, "Notes", "Some notes to index.", json!({}))
        .await;
    let job_id = uploaded["job"]["id"].as_str().unwrap().to_owned();

    // A second server that would run a worker, built but not told to.
    let mut serve = app.serve_settings();
    serve.ingest_workers = 1;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut second = api_actix::startup::Application::build(&app.db_settings(), &serve, listener)
        .await
        .unwrap();
    // Many polls' worth (the tests' workers poll every 50 ms): a started worker would have
    // claimed the job by now.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let job = json(
        app.get(&format!("/v1/jobs/{job_id}"), t).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(job["state"], "queued", "{job}");

    second.spawn_ingest_workers();
    let done = app.wait_for_job(t, &job_id).await;
    assert_eq!(done["state"], "succeeded", "{done}");
}
