//! What a tenant sees of a failure upstream: a stable code and a generic message. The provider's
//! answer (which may carry internal URLs, bodies or secrets) goes to the log, never to a response
//! or a job's error.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Options, TestApp, assert_problem, json};

const SECRET: &str = "sk-live-4242 at http://10.9.8.7/internal";

#[tokio::test]
async fn upstream_failures_reach_tenants_without_their_details() {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/v1/embeddings"))
        .respond_with(
            wiremock::ResponseTemplate::new(500)
                .set_body_string(format!("upstream said: {SECRET}")),
        )
        .mount(&server)
        .await;
    let app = TestApp::spawn_with(Options {
        openai_base_url: Some(format!("{}/v1", server.uri())),
        spaces: vec![
            (
                "openai-test".into(),
                "openai".into(),
                "test-embed".into(),
                8,
            ),
            (
                "missing-model".into(),
                "local".into(),
                "no-such-model".into(),
                384,
            ),
        ],
        ..Default::default()
    })
    .await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;
    let collection = app.collection_in(t, "Docs", "openai-test").await;
    let leaked = |text: &str| {
        text.contains("sk-live") || text.contains("10.9.8.7") || text.contains(&server.uri())
    };

    // The job's error says the provider failed, and nothing the provider said.
    let uploaded = app
        .upload(t, &collection, "Doc", "Some text.", json!({}))
        .await;
    let job_id = uploaded["job"]["id"].as_str().unwrap();
    let mut error = String::new();
    for _ in 0..300 {
        let job = json(
            app.get(&format!("/v1/jobs/{job_id}"), t).await,
            StatusCode::OK,
        )
        .await;
        if let Some(e) = job["error"].as_str() {
            error = e.to_owned();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(error.contains("embedding provider failed"), "{error:?}");
    assert!(!leaked(&error), "{error}");

    // A search that needs the provider answers 503 with a stable code, and no detail.
    let res = app
        .post(
            &format!("/v1/collections/{collection}/search"),
            t,
            json!({"query": "text", "mode": "vector"}),
        )
        .await;
    assert!(res.headers().contains_key("retry-after"));
    let problem = assert_problem(res, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    assert!(!leaked(&problem.to_string()), "{problem}");

    // A space this server cannot embed in (its local model is missing) is named, not explained:
    // the model's path stays in the log.
    let res = app
        .post(
            &format!("/v1/collections/{collection}/reembed"),
            t,
            json!({"space_id": "missing-model"}),
        )
        .await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let text = problem.to_string();
    assert!(text.contains("missing-model"), "{text}");
    assert!(
        !text.contains("models/") && !text.contains("just models"),
        "{text}"
    );
}
