//! Tenants' own model providers: their agents answer through them with the tenant's key, the key
//! is stored sealed and re-sealed by rotation, names are checked, a provider in use cannot go,
//! and one tenant's provider is nobody else's (nor slows anybody else's runs).

use std::time::Duration;

use domain::ports::SecretStore as _;
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{Options, SECRET_KEYS, TestApp, assert_problem, json};

/// A provider's server: answers `Hello from <name>` to requests that carry `key`, 401 otherwise.
async fn provider_server(key: &str, delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    let body = [
        json!({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
               "choices": [{"index": 0, "delta": {"content": "Hello from the provider"}, "finish_reason": null}]}),
        json!({"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
               "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
    ]
    .iter()
    .map(|c| format!("data: {c}\n\n"))
    .collect::<String>()
        + "data: [DONE]\n\n";
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", format!("Bearer {key}").as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(body, "text/event-stream")
                .set_delay(delay),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(
            json!({"error": {"message": "bad key", "type": "invalid_request_error"}}),
        ))
        .mount(&server)
        .await;
    server
}

async fn create_provider(
    app: &TestApp,
    token: &str,
    name: &str,
    server: &MockServer,
    key: &str,
) -> Value {
    json(
        app.post(
            "/v1/providers",
            token,
            json!({"name": name, "base_url": format!("{}/v1", server.uri()), "api_key": key,
                   "default_model": "house-model"}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await
}

async fn agent_on(app: &TestApp, token: &str, slug: &str, provider: &str, model: &str) -> Value {
    json(
        app.post(
            "/v1/agents",
            token,
            json!({"name": slug, "slug": slug, "model": {"provider": provider, "name": model}}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await
}

async fn ask(app: &TestApp, token: &str, slug: &str) -> reqwest::Response {
    app.post(
        "/v1/chat/completions",
        token,
        json!({"model": slug, "messages": [{"role": "user", "content": "Hi"}]}),
    )
    .await
}

/// The model names the provider's server was asked for.
async fn asked_models(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            body["model"].as_str().unwrap_or("").to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_tenants_provider_answers_its_agents_with_its_own_key() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let token = &acme.admin_token;
    let server = provider_server("sk-acme-secret", Duration::ZERO).await;
    let provider = create_provider(&app, token, "acme-llm", &server, "sk-acme-secret").await;
    assert_eq!(provider["name"], "acme-llm");
    assert_eq!(provider["key_id"], "test-1");
    assert!(provider.get("api_key").is_none(), "{provider}");
    let listed = json(app.get("/v1/providers", token).await, StatusCode::OK).await;
    assert_eq!(listed["items"][0]["id"], provider["id"]);
    assert!(!listed.to_string().contains("sk-acme-secret"));

    agent_on(&app, token, "house", "acme-llm", "default").await;
    agent_on(&app, token, "named", "acme-llm", "gpt-x").await;
    for slug in ["house", "named"] {
        let body = json(ask(&app, token, slug).await, StatusCode::OK).await;
        assert_eq!(
            body["choices"][0]["message"]["content"],
            "Hello from the provider"
        );
    }
    // `default` is the provider's default model.
    assert_eq!(asked_models(&server).await, ["house-model", "gpt-x"]);

    // A new key applies from the next run on.
    let server_2 = provider_server("sk-acme-rotated", Duration::ZERO).await;
    let id = provider["id"].as_str().unwrap();
    let patched = json(
        app.patch(
            &format!("/v1/providers/{id}"),
            token,
            json!({"base_url": format!("{}/v1", server_2.uri()), "api_key": "sk-acme-rotated",
                   "default_model": null}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert!(patched["default_model"].is_null());
    json(ask(&app, token, "named").await, StatusCode::OK).await;
    assert_eq!(asked_models(&server_2).await, ["gpt-x"]);
    // Without a default model, `default` is asked for as it is.
    json(ask(&app, token, "house").await, StatusCode::OK).await;
    assert_eq!(asked_models(&server_2).await, ["gpt-x", "default"]);
}

#[tokio::test]
async fn provider_keys_are_stored_sealed_and_rotation_reseals_them() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let token = &acme.admin_token;
    let server = provider_server("sk-acme-secret", Duration::ZERO).await;
    create_provider(&app, token, "acme-llm", &server, "sk-acme-secret").await;
    agent_on(&app, token, "house", "acme-llm", "m").await;

    // The platform role reads across tenants (row-level security holds the others back).
    let stored = || async {
        let platform = store_postgres::connect(&app.platform_url, &Default::default())
            .await
            .unwrap();
        let row = platform
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT key_id, key_ciphertext FROM providers",
            ))
            .await
            .unwrap()
            .unwrap();
        let key_id: String = row.try_get("", "key_id").unwrap();
        let ciphertext: Vec<u8> = row.try_get("", "key_ciphertext").unwrap();
        (key_id, ciphertext)
    };
    let (key_id, ciphertext) = stored().await;
    assert_eq!(key_id, "test-1");
    assert!(!ciphertext.windows(14).any(|w| w == b"sk-acme-secret"));
    // The audit log records the provider, not its key.
    let platform = store_postgres::connect(&app.platform_url, &Default::default())
        .await
        .unwrap();
    let audit = platform
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) FILTER (WHERE resource_type = 'provider') AS entries,
                    count(*) FILTER (WHERE detail::text LIKE '%sk-acme%') AS leaks
             FROM audit_log",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(audit.try_get::<i64>("", "entries").unwrap(), 1);
    assert_eq!(audit.try_get::<i64>("", "leaks").unwrap(), 0);

    // Rotation: a new key first, the old one kept until everything is re-sealed.
    let new_key = auth_crypto::AesSecretBox::generate("test-2");
    let ring = auth_crypto::AesSecretBox::from_config(&format!("{new_key},{SECRET_KEYS}")).unwrap();
    let platform = store_postgres::PgPlatformStore::new(
        store_postgres::connect(&app.platform_url, &Default::default())
            .await
            .unwrap(),
    );
    let (resealed, stuck) = domain::services::rotate_secrets(&ring, &platform)
        .await
        .unwrap();
    assert_eq!((resealed, stuck.len()), (1, 0));
    let (key_id, rotated) = stored().await;
    assert_eq!(key_id, "test-2");
    assert_ne!(rotated, ciphertext);
    assert!(
        platform
            .sealed_not_under("test-2")
            .await
            .unwrap()
            .is_empty()
    );
    // A server that knows only the new key answers through the provider with the same key.
    let twin = app
        .sibling(Options {
            secret_keys: new_key.clone(),
            ..Options::default()
        })
        .await;
    let acme_token = twin
        .login("acme", &acme.admin_email, &acme.admin_password)
        .await;
    let token = acme_token["access_token"].as_str().unwrap();
    json(ask(&twin, token, "house").await, StatusCode::OK).await;
    // One that lost the key fails the run (it does not leak why beyond the provider's name).
    let lost = app
        .sibling(Options {
            secret_keys: SECRET_KEYS.into(),
            ..Options::default()
        })
        .await;
    let signed_in = lost
        .login("acme", &acme.admin_email, &acme.admin_password)
        .await;
    let res = ask(&lost, signed_in["access_token"].as_str().unwrap(), "house").await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    let body = res.text().await.unwrap();
    assert!(body.contains("model_unavailable"), "{body}");
    assert!(!body.contains("sk-acme"));
}

#[tokio::test]
async fn names_are_checked_and_a_provider_in_use_cannot_be_deleted() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let token = &acme.admin_token;
    let server = provider_server("k", Duration::ZERO).await;
    let url = format!("{}/v1", server.uri());
    for (body, field) in [
        (
            json!({"name": "openai", "base_url": url, "api_key": "k"}),
            "name",
        ),
        (
            json!({"name": "local", "base_url": url, "api_key": "k"}),
            "name",
        ),
        (
            json!({"name": "Bad Name", "base_url": url, "api_key": "k"}),
            "name",
        ),
        (
            json!({"name": "ok", "base_url": "file:///etc/passwd", "api_key": "k"}),
            "base_url",
        ),
        (
            json!({"name": "ok", "base_url": "https://user:pw@host", "api_key": "k"}),
            "base_url",
        ),
        (
            json!({"name": "ok", "base_url": url, "api_key": ""}),
            "api_key",
        ),
    ] {
        let problem = assert_problem(
            app.post("/v1/providers", token, body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let provider = create_provider(&app, token, "acme-llm", &server, "k").await;
    let res = app
        .post(
            "/v1/providers",
            token,
            json!({"name": "acme-llm", "base_url": url, "api_key": "k"}),
        )
        .await;
    assert_problem(res, StatusCode::CONFLICT, "provider_name_taken").await;
    // An agent may not name a provider the tenant does not have.
    let res = app
        .post(
            "/v1/agents",
            token,
            json!({"name": "x", "slug": "x", "model": {"provider": "nobody", "name": "m"}}),
        )
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    let agent = agent_on(&app, token, "house", "acme-llm", "m").await;
    let id = provider["id"].as_str().unwrap();
    let problem = assert_problem(
        app.delete(&format!("/v1/providers/{id}"), token).await,
        StatusCode::CONFLICT,
        "provider_in_use",
    )
    .await;
    assert_eq!(
        problem["agents"],
        json!([{"id": agent["id"], "slug": "house"}])
    );
    // A deleted agent still names it (it can be restored); a purged one does not.
    let agent_id = agent["id"].as_str().unwrap();
    app.delete(&format!("/v1/agents/{agent_id}"), token).await;
    let res = app.delete(&format!("/v1/providers/{id}"), token).await;
    assert_problem(res, StatusCode::CONFLICT, "provider_in_use").await;
    app.delete(&format!("/v1/agents/{agent_id}/purge"), token)
        .await;
    let res = app.delete(&format!("/v1/providers/{id}"), token).await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app.get(&format!("/v1/providers/{id}"), token).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;

    // Providers are the admins'.
    let (_, member) = app.user(&acme, "member@acme.test", "member").await;
    let res = app.get("/v1/providers", &member).await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    let (_, writer) = app.api_key(&acme, &["read", "write"]).await;
    let res = app
        .post(
            "/v1/providers",
            &writer,
            json!({"name": "mine", "base_url": url, "api_key": "k"}),
        )
        .await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn a_provider_is_its_tenants_and_a_slow_one_slows_no_other_tenant() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let globex = app.tenant("globex").await;
    let slow = provider_server("sk-acme", Duration::from_secs(8)).await;
    let fast = provider_server("sk-globex", Duration::ZERO).await;
    let provider = create_provider(&app, &acme.admin_token, "llm", &slow, "sk-acme").await;
    create_provider(&app, &globex.admin_token, "llm", &fast, "sk-globex").await;
    agent_on(&app, &acme.admin_token, "bot", "llm", "m").await;
    agent_on(&app, &globex.admin_token, "bot", "llm", "m").await;

    // Another tenant cannot see, change or remove it.
    let id = provider["id"].as_str().unwrap();
    let path = format!("/v1/providers/{id}");
    let other = &globex.admin_token;
    assert_problem(
        app.get(&path, other).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let res = app.patch(&path, other, json!({"api_key": "stolen"})).await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    assert_problem(
        app.delete(&path, other).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let listed = json(app.get("/v1/providers", other).await, StatusCode::OK).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_ne!(listed["items"][0]["id"], provider["id"]);

    // Acme's provider hangs; Globex's runs go on meanwhile, through Globex's own provider.
    let request = app
        .request(
            reqwest::Method::POST,
            "/v1/chat/completions",
            Some(&acme.admin_token),
        )
        .json(&json!({"model": "bot", "messages": [{"role": "user", "content": "Hi"}]}));
    let hanging = tokio::spawn(async move { request.send().await.unwrap().status() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let body = json(ask(&app, other, "bot").await, StatusCode::OK).await;
        assert_eq!(
            body["choices"][0]["message"]["content"],
            "Hello from the provider"
        );
    }
    assert!(
        !hanging.is_finished(),
        "acme's run is still waiting on its provider"
    );
    assert_eq!(fast.received_requests().await.unwrap().len(), 3);
    assert_eq!(hanging.await.unwrap(), StatusCode::OK);
}

#[tokio::test]
async fn a_providers_own_timeout_and_retries_apply_to_its_calls() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let token = &acme.admin_token;
    let slow = provider_server("k", Duration::from_secs(4)).await;
    let url = format!("{}/v1", slow.uri());
    let res = app
        .post(
            "/v1/providers",
            token,
            json!({"name": "slow", "base_url": url, "api_key": "k", "timeout_secs": 0}),
        )
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let provider = json(
        app.post(
            "/v1/providers",
            token,
            json!({"name": "slow", "base_url": url, "api_key": "k",
                   "timeout_secs": 1, "max_retries": 0}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(
        (
            provider["timeout_secs"].clone(),
            provider["max_retries"].clone()
        ),
        (json!(1), json!(0))
    );
    agent_on(&app, token, "bot", "slow", "m").await;
    let started = std::time::Instant::now();
    let res = ask(&app, token, "bot").await;
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    // One attempt, cut at its own second (the server's default would wait 10 s and retry).
    assert_eq!(slow.received_requests().await.unwrap().len(), 1);
    assert!(started.elapsed() < Duration::from_secs(4));
    // Back to the server's defaults.
    let id = provider["id"].as_str().unwrap();
    let reset = json(
        app.patch(
            &format!("/v1/providers/{id}"),
            token,
            json!({"timeout_secs": null, "max_retries": null}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert!(reset["timeout_secs"].is_null() && reset["max_retries"].is_null());
}
