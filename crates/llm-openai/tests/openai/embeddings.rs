//! The embedder against a wiremock server that speaks OpenAI's embeddings API: request shape,
//! batching and order, retries, timeouts and response checks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::ports::{EmbedError, Embedder};
use llm_openai::{ConfigError, OpenAiEmbedder, OpenAiEmbeddingConfig, SecretString};
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const KEY: &str = "sk-test-0123456789";
const MODEL: &str = "test-embedder";
const DIMENSIONS: usize = 4;

/// Settings for the mock server: an unknown model of [`DIMENSIONS`], fast backoff.
fn config(server: &MockServer) -> OpenAiEmbeddingConfig {
    let mut config = OpenAiEmbeddingConfig::new(
        format!("{}/v1", server.uri()),
        SecretString::from(KEY.to_owned()),
    );
    config.model = MODEL.to_owned();
    config.dimensions = Some(DIMENSIONS as u32);
    config.client.backoff_base = Duration::from_millis(5);
    config.client.max_backoff = Duration::from_millis(20);
    config
}

fn embedder(config: OpenAiEmbeddingConfig) -> Arc<dyn Embedder> {
    Arc::new(OpenAiEmbedder::new(config).unwrap())
}

fn texts(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|&text| text.to_owned()).collect()
}

/// The vector the mock gives `text`: distinct per text, so order mistakes show.
fn vector_for(text: &str, dimensions: usize) -> Vec<f32> {
    let seed: u32 = text.bytes().map(u32::from).sum::<u32>() + text.len() as u32 * 1000;
    (0..dimensions).map(|j| (seed + j as u32) as f32).collect()
}

/// Answers like the embeddings API: one item per input, with [`vector_for`] vectors.
struct EmbeddingsApi {
    /// Length of the vectors it returns.
    dimensions: usize,
    /// Lists the items in reverse order (their `index` fields stay right).
    reverse: bool,
    /// Leaves the last item out.
    drop_last: bool,
    /// Waits this long before answering.
    delay: Duration,
}

impl EmbeddingsApi {
    fn new(dimensions: usize) -> Self {
        Self {
            dimensions,
            reverse: false,
            drop_last: false,
            delay: Duration::ZERO,
        }
    }
}

impl Respond for EmbeddingsApi {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let inputs = body["input"].as_array().unwrap();
        let mut data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(index, text)| {
                json!({
                    "object": "embedding",
                    "index": index,
                    "embedding": vector_for(text.as_str().unwrap(), self.dimensions),
                })
            })
            .collect();
        if self.drop_last {
            data.pop();
        }
        if self.reverse {
            data.reverse();
        }
        ResponseTemplate::new(200)
            .set_body_json(json!({
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": { "prompt_tokens": inputs.len(), "total_tokens": inputs.len() },
            }))
            .set_delay(self.delay)
    }
}

fn openai_error(message: &str, kind: &str) -> Value {
    json!({ "error": { "message": message, "type": kind, "param": null, "code": null } })
}

async fn mount_success(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .respond_with(EmbeddingsApi::new(DIMENSIONS))
        .with_priority(10)
        .mount(server)
        .await;
}

async fn requests(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|request| serde_json::from_slice(&request.body).unwrap())
        .collect()
}

fn provider_message(result: Result<Vec<Vec<f32>>, EmbedError>) -> String {
    match result {
        Err(EmbedError::Provider(message)) => message,
        other => panic!("expected EmbedError::Provider, got {other:?}"),
    }
}

fn bad_response_message(result: Result<Vec<Vec<f32>>, EmbedError>) -> String {
    match result {
        Err(EmbedError::BadResponse(message)) => message,
        other => panic!("expected EmbedError::BadResponse, got {other:?}"),
    }
}

#[tokio::test]
async fn sends_model_inputs_dimensions_and_bearer_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header("content-type", "application/json"))
        .and(body_partial_json(json!({
            "model": "text-embedding-3-small",
            "input": ["alpha", "beta"],
            "dimensions": 256,
        })))
        .respond_with(EmbeddingsApi::new(256))
        .expect(1)
        .mount(&server)
        .await;
    let mut config = config(&server);
    config.model = "text-embedding-3-small".to_owned();
    config.dimensions = Some(256);
    let embedder = embedder(config);
    assert_eq!(embedder.dimensions(), 256);
    assert_eq!(embedder.max_input_tokens(), 8191);

    let vectors = embedder.embed(&texts(&["alpha", "beta"])).await.unwrap();

    assert_eq!(
        vectors,
        vec![vector_for("alpha", 256), vector_for("beta", 256)]
    );
}

#[tokio::test]
async fn known_model_without_dimensions_uses_its_native_length_and_omits_the_parameter() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .respond_with(EmbeddingsApi::new(1536))
        .expect(1)
        .mount(&server)
        .await;
    let mut config = config(&server);
    config.model = OpenAiEmbeddingConfig::DEFAULT_MODEL.to_owned();
    config.dimensions = None;
    let embedder = embedder(config);
    assert_eq!(embedder.dimensions(), 1536);

    let vectors = embedder.embed(&texts(&["one"])).await.unwrap();

    assert_eq!(vectors, vec![vector_for("one", 1536)]);
    let sent = requests(&server).await;
    assert_eq!(sent[0]["model"], "text-embedding-3-small");
    assert!(sent[0].get("dimensions").is_none(), "{}", sent[0]);
    assert!(sent[0].get("encoding_format").is_none(), "{}", sent[0]);
}

#[tokio::test]
async fn splits_into_batches_and_keeps_input_order_when_items_come_shuffled() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .respond_with(EmbeddingsApi {
            reverse: true,
            ..EmbeddingsApi::new(DIMENSIONS)
        })
        .expect(3)
        .mount(&server)
        .await;
    let mut config = config(&server);
    config.batch_size = 2;
    let embedder = embedder(config);
    let inputs = texts(&["zero", "one", "two", "three", "four"]);

    let vectors = embedder.embed(&inputs).await.unwrap();

    let expected: Vec<Vec<f32>> = inputs
        .iter()
        .map(|text| vector_for(text, DIMENSIONS))
        .collect();
    assert_eq!(vectors, expected);
    let batches: Vec<Value> = requests(&server)
        .await
        .into_iter()
        .map(|body| body["input"].clone())
        .collect();
    assert_eq!(
        batches,
        vec![
            json!(["zero", "one"]),
            json!(["two", "three"]),
            json!(["four"])
        ]
    );
}

#[tokio::test]
async fn closes_a_batch_early_at_the_token_budget() {
    let server = MockServer::start().await;
    mount_success(&server).await;
    let mut config = config(&server);
    config.max_tokens_per_request = 8191;
    let embedder = embedder(config);
    // 5,000 tokens each: two do not fit in one request of at most 8,191 tokens.
    let long = " hello".repeat(5000);
    assert_eq!(embedder.count_tokens(&long).unwrap(), 5000);

    let vectors = embedder
        .embed(&[long.clone(), long.clone(), "short".to_owned()])
        .await
        .unwrap();

    assert_eq!(vectors.len(), 3);
    let batches: Vec<usize> = requests(&server)
        .await
        .iter()
        .map(|body| body["input"].as_array().unwrap().len())
        .collect();
    assert_eq!(batches, vec![1, 2]);
}

#[tokio::test]
async fn an_empty_call_sends_nothing() {
    let server = MockServer::start().await;
    mount_success(&server).await;
    let embedder = embedder(config(&server));

    assert!(embedder.embed(&[]).await.unwrap().is_empty());
    assert!(requests(&server).await.is_empty());
}

#[tokio::test]
async fn retries_a_rate_limit_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .set_body_json(openai_error("Rate limit reached", "requests")),
        )
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_success(&server).await;
    let embedder = embedder(config(&server));

    let vectors = embedder.embed(&texts(&["a"])).await.unwrap();

    assert_eq!(vectors, vec![vector_for("a", DIMENSIONS)]);
    assert_eq!(requests(&server).await.len(), 3);
}

#[tokio::test]
async fn waits_as_retry_after_says_rather_than_backing_off() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after-ms", "20"))
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&server)
        .await;
    mount_success(&server).await;
    let mut config = config(&server);
    // Were the backoff used, this test would take minutes.
    config.client.backoff_base = Duration::from_secs(60);
    config.client.max_backoff = Duration::from_secs(60);
    let embedder = embedder(config);

    let started = Instant::now();
    embedder.embed(&texts(&["a"])).await.unwrap();

    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(requests(&server).await.len(), 3);
}

#[tokio::test]
async fn caps_a_long_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).insert_header("retry-after", "3600"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_success(&server).await;
    let mut config = config(&server);
    config.client.max_retry_after = Duration::from_millis(50);
    let embedder = embedder(config);

    let started = Instant::now();
    embedder.embed(&texts(&["a"])).await.unwrap();

    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn retries_a_server_error_then_succeeds() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string("upstream hiccup"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_success(&server).await;
    let embedder = embedder(config(&server));

    let vectors = embedder.embed(&texts(&["a", "b"])).await.unwrap();

    assert_eq!(vectors.len(), 2);
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn does_not_retry_a_bad_request() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(openai_error(
            "'$.input' is invalid. Please check the API reference.",
            "invalid_request_error",
        )))
        .expect(1)
        .mount(&server)
        .await;
    let embedder = embedder(config(&server));

    let message = provider_message(embedder.embed(&texts(&[""])).await);

    assert!(message.contains("400"), "{message}");
    assert!(message.contains("'$.input' is invalid"), "{message}");
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn keeps_the_status_of_a_client_error_that_is_not_openai_json() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(404).set_body_string("404 page not found"))
        .expect(1)
        .mount(&server)
        .await;
    let embedder = embedder(config(&server));

    let message = provider_message(embedder.embed(&texts(&["a"])).await);

    assert!(message.contains("404 Not Found"), "{message}");
    assert!(message.contains("page not found"), "{message}");
}

#[tokio::test]
async fn does_not_retry_an_exhausted_quota() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({ "error": {
            "message": "You exceeded your current quota.",
            "type": "insufficient_quota",
            "param": null,
            "code": "insufficient_quota",
        }})))
        .mount(&server)
        .await;
    let embedder = embedder(config(&server));

    let message = provider_message(embedder.embed(&texts(&["a"])).await);

    assert!(message.contains("429"), "{message}");
    assert!(message.contains("exceeded your current quota"), "{message}");
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn gives_up_after_max_retries_on_a_persistent_server_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_string("overloaded"))
        .mount(&server)
        .await;
    let mut config = config(&server);
    config.client.max_retries = 2;
    let embedder = embedder(config);

    let message = provider_message(embedder.embed(&texts(&["a"])).await);

    assert!(message.contains("503"), "{message}");
    assert!(message.contains("overloaded"), "{message}");
    assert_eq!(requests(&server).await.len(), 3);
}

#[tokio::test]
async fn times_out_each_attempt_and_gives_up_after_the_retries() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(EmbeddingsApi {
            delay: Duration::from_secs(5),
            ..EmbeddingsApi::new(DIMENSIONS)
        })
        .mount(&server)
        .await;
    let mut config = config(&server);
    config.client.timeout = Duration::from_millis(200);
    config.client.max_retries = 1;
    let embedder = embedder(config);

    let started = Instant::now();
    let message = provider_message(embedder.embed(&texts(&["a"])).await);

    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert!(message.contains("after 2 attempt"), "{message}");
    assert!(message.contains("timed out"), "{message}");
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn retries_connection_errors() {
    // A port nobody listens on any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = OpenAiEmbeddingConfig::new(
        format!("http://127.0.0.1:{port}/v1"),
        SecretString::from(KEY.to_owned()),
    );
    config.client.max_retries = 2;
    config.client.backoff_base = Duration::from_millis(5);
    let embedder = embedder(config);

    let message = provider_message(embedder.embed(&texts(&["a"])).await);

    assert!(message.contains("after 3 attempt"), "{message}");
}

#[tokio::test]
async fn a_vector_of_the_wrong_length_is_a_bad_response() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(EmbeddingsApi::new(DIMENSIONS + 1))
        .expect(1)
        .mount(&server)
        .await;
    let embedder = embedder(config(&server));

    let message = bad_response_message(embedder.embed(&texts(&["a", "b"])).await);

    assert!(message.contains("dimensions"), "{message}");
}

#[tokio::test]
async fn a_missing_item_is_a_bad_response() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(EmbeddingsApi {
            drop_last: true,
            ..EmbeddingsApi::new(DIMENSIONS)
        })
        .expect(1)
        .mount(&server)
        .await;
    let embedder = embedder(config(&server));

    let message = bad_response_message(embedder.embed(&texts(&["a", "b", "c"])).await);

    assert!(message.contains("2 embeddings for 3 inputs"), "{message}");
}

#[tokio::test]
async fn a_body_that_is_not_the_api_json_is_a_bad_response() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>proxy says hi</html>"))
        .expect(1)
        .mount(&server)
        .await;
    let embedder = embedder(config(&server));

    let message = bad_response_message(embedder.embed(&texts(&["a"])).await);

    assert!(message.contains("proxy says hi"), "{message}");
}

#[tokio::test]
async fn a_text_beyond_the_limit_fails_before_any_request() {
    let server = MockServer::start().await;
    mount_success(&server).await;
    let embedder = embedder(config(&server));
    let inputs = vec!["fine".to_owned(), " hello".repeat(9000)];

    let result = embedder.embed(&inputs).await;

    assert!(
        matches!(
            result,
            Err(EmbedError::TooLong {
                index: 1,
                tokens: 9000,
                max: 8191
            })
        ),
        "{result:?}"
    );
    assert!(requests(&server).await.is_empty());
}

#[tokio::test]
async fn counts_tokens_with_cl100k_base() {
    let server = MockServer::start().await;
    let embedder = embedder(config(&server));

    assert_eq!(embedder.count_tokens("").unwrap(), 0);
    assert_eq!(embedder.count_tokens("hello world").unwrap(), 2);
    assert_eq!(embedder.count_tokens("tiktoken is great!").unwrap(), 6);
}

#[test]
fn rejects_unusable_configurations() {
    let base =
        || OpenAiEmbeddingConfig::new("http://127.0.0.1:9/v1", SecretString::from(KEY.to_owned()));
    let error = |config: OpenAiEmbeddingConfig| OpenAiEmbedder::new(config).unwrap_err();

    assert!(OpenAiEmbedder::new(base()).is_ok());

    let mut config = base();
    config.model = "my-local-model".to_owned();
    assert!(matches!(
        error(config),
        ConfigError::UnknownDimensions { .. }
    ));

    let mut config = base();
    config.dimensions = Some(4096);
    assert!(matches!(error(config), ConfigError::Dimensions { .. }));

    let mut config = base();
    config.model = "text-embedding-ada-002".to_owned();
    config.dimensions = Some(512);
    assert!(matches!(error(config), ConfigError::Dimensions { .. }));

    let mut config = base();
    config.model = " ".to_owned();
    assert!(matches!(error(config), ConfigError::EmptyModel));

    for batch_size in [0, 2049] {
        let mut config = base();
        config.batch_size = batch_size;
        assert!(matches!(error(config), ConfigError::BatchSize(_)));
    }

    let mut config = base();
    config.max_tokens_per_request = 100;
    assert!(matches!(
        error(config),
        ConfigError::TokensPerRequest { .. }
    ));

    for url in ["127.0.0.1:9/v1", "ftp://127.0.0.1/v1", "not a url"] {
        let mut config = base();
        config.client.base_url = url.to_owned();
        assert!(
            matches!(error(config), ConfigError::BaseUrl { .. }),
            "{url}"
        );
    }

    for key in ["", "line\nbreak"] {
        let mut config = base();
        config.client.api_key = SecretString::from(key.to_owned());
        assert!(matches!(error(config), ConfigError::ApiKey(_)), "{key:?}");
    }

    let mut config = base();
    config.client.timeout = Duration::ZERO;
    assert!(matches!(error(config), ConfigError::Timeout));
}

#[test]
fn debug_output_never_shows_the_key() {
    let config =
        OpenAiEmbeddingConfig::new("http://127.0.0.1:9/v1", SecretString::from(KEY.to_owned()));
    let config_debug = format!("{config:?}");
    let embedder_debug = format!("{:?}", OpenAiEmbedder::new(config).unwrap());

    for debug in [config_debug, embedder_debug] {
        assert!(!debug.contains(KEY), "{debug}");
        assert!(debug.contains("text-embedding-3-small"), "{debug}");
    }
}
