//! The chat model against a server that streams like OpenAI's chat completions API: request
//! shape, deltas, usage, retries before the stream, timeouts, and streams that are cut,
//! malformed, stalled or abandoned.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use domain::ports::{
    ChatDelta, ChatError, ChatMessage, ChatModel, ChatRequest, ChatRole, ChatStream, TokenUsage,
    ToolCall, ToolSpec,
};
use llm_openai::{ConfigError, OpenAiChat, OpenAiChatConfig, SecretString};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "sk-chat-test-0123456789";
const MODEL: &str = "test-chat-model";

/// Settings for a server at `base` (without `/v1`): fast backoff.
fn config_at(base: &str) -> OpenAiChatConfig {
    let mut config = OpenAiChatConfig::new(
        format!("{base}/v1"),
        SecretString::from(KEY.to_owned()),
        MODEL,
    );
    config.client.backoff_base = Duration::from_millis(5);
    config.client.max_backoff = Duration::from_millis(20);
    config
}

fn config(server: &MockServer) -> OpenAiChatConfig {
    config_at(&server.uri())
}

fn model(config: OpenAiChatConfig) -> Arc<dyn ChatModel> {
    Arc::new(OpenAiChat::new(config).unwrap())
}

fn ask(question: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage::new(ChatRole::System, "Be brief."),
            ChatMessage::new(ChatRole::User, question),
        ],
        temperature: 0.5,
        max_tokens: 256,
        tools: Vec::new(),
    }
}

/// A chunk as OpenAI streams it, with `delta` and `finish_reason` for choice 0.
fn chunk(delta: Value, finish_reason: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": MODEL,
        "system_fingerprint": "fp_test",
        "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason }],
        "usage": null,
    })
}

fn text(text: &str) -> Value {
    chunk(json!({ "content": text }), None)
}

fn finish(reason: &str) -> Value {
    chunk(json!({}), Some(reason))
}

/// The last chunk when `include_usage` is set: no choices, the counts.
fn usage(prompt_tokens: u32, completion_tokens: u32) -> Value {
    json!({
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    })
}

/// `events` as server-sent events, then `data: [DONE]`.
fn sse(events: &[Value]) -> String {
    sse_without_done(events) + "data: [DONE]\n\n"
}

fn sse_without_done(events: &[Value]) -> String {
    events
        .iter()
        .map(|event| format!("data: {event}\n\n"))
        .collect()
}

fn event_stream(body: String) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body, "text/event-stream")
}

async fn answer_with(server: &MockServer, response: ResponseTemplate) {
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(response)
        .with_priority(10)
        .mount(server)
        .await;
}

/// Everything the stream yields, until it says it is over.
async fn drain(mut stream: Box<dyn ChatStream>) -> Vec<Result<ChatDelta, ChatError>> {
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push(item);
        assert!(items.len() < 1000, "the stream does not end");
    }
    // Over means over.
    assert_eq!(stream.next().await, None);
    items
}

/// The whole answer to `request`; a stream that does not end within 10 s fails the test.
async fn answer(model: &dyn ChatModel, request: ChatRequest) -> Vec<Result<ChatDelta, ChatError>> {
    let stream = model.stream(request).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), drain(stream))
        .await
        .expect("the stream does not end")
}

fn texts(items: &[&str]) -> Vec<Result<ChatDelta, ChatError>> {
    items
        .iter()
        .map(|&text| Ok(ChatDelta::Text(text.to_owned())))
        .collect()
}

async fn requests(server: &MockServer) -> Vec<wiremock::Request> {
    server.received_requests().await.unwrap()
}

fn body(request: &wiremock::Request) -> Value {
    serde_json::from_slice(&request.body).unwrap()
}

fn openai_error(message: &str, kind: &str, code: Option<&str>) -> Value {
    json!({ "error": { "message": message, "type": kind, "param": null, "code": code } })
}

#[tokio::test]
async fn streams_text_deltas_then_the_usage() {
    let server = MockServer::start().await;
    let body = format!(
        ": OPENROUTER PROCESSING\n\n{}",
        sse(&[
            chunk(json!({ "role": "assistant", "content": "" }), None),
            text("Hel"),
            text("lo"),
            text(", world"),
            finish("stop"),
            usage(21, 4),
        ])
    );
    answer_with(&server, event_stream(body)).await;
    let model = model(config(&server));

    let items = answer(model.as_ref(), ask("Say hello")).await;

    let mut expected = texts(&["Hel", "lo", ", world"]);
    expected.push(Ok(ChatDelta::Usage(TokenUsage {
        prompt_tokens: 21,
        completion_tokens: 4,
    })));
    assert_eq!(items, expected);
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn passes_on_no_usage_when_the_provider_sends_none() {
    let server = MockServer::start().await;
    answer_with(
        &server,
        event_stream(sse(&[text("Just"), text(" this"), finish("length")])),
    )
    .await;
    let model = model(config(&server));

    let items = answer(model.as_ref(), ask("Go on")).await;

    assert_eq!(items, texts(&["Just", " this"]));
}

#[tokio::test]
async fn passes_on_tool_call_pieces_in_order() {
    let server = MockServer::start().await;
    let call = |index: u32, id: Option<&str>, name: Option<&str>, arguments: &str| {
        let mut function = json!({ "arguments": arguments });
        let mut piece = json!({ "index": index });
        if let Some(name) = name {
            function["name"] = json!(name);
        }
        if let Some(id) = id {
            piece["id"] = json!(id);
            piece["type"] = json!("function");
        }
        piece["function"] = function;
        chunk(json!({ "tool_calls": [piece] }), None)
    };
    answer_with(
        &server,
        event_stream(sse(&[
            chunk(json!({ "role": "assistant", "content": null }), None),
            call(0, Some("call_a"), Some("search"), ""),
            call(0, None, None, "{\"query\":"),
            call(0, None, None, " \"rust\"}"),
            call(1, Some("call_b"), Some("clock"), "{}"),
            finish("tool_calls"),
            usage(50, 20),
        ])),
    )
    .await;
    let model = model(config(&server));

    let items = answer(model.as_ref(), ask("Search for rust")).await;

    let piece = |index, id: Option<&str>, name: Option<&str>, arguments: &str| {
        Ok(ChatDelta::ToolCall {
            index,
            id: id.map(str::to_owned),
            name: name.map(str::to_owned),
            arguments: arguments.to_owned(),
        })
    };
    assert_eq!(
        items,
        vec![
            piece(0, Some("call_a"), Some("search"), ""),
            piece(0, None, None, "{\"query\":"),
            piece(0, None, None, " \"rust\"}"),
            piece(1, Some("call_b"), Some("clock"), "{}"),
            Ok(ChatDelta::Usage(TokenUsage {
                prompt_tokens: 50,
                completion_tokens: 20,
            })),
        ]
    );
    let arguments: String = items
        .iter()
        .filter_map(|item| match item {
            Ok(ChatDelta::ToolCall {
                index: 0,
                arguments,
                ..
            }) => Some(arguments.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({ "query": "rust" })
    );
}

#[tokio::test]
async fn sends_a_streamed_request_with_the_bearer_key() {
    let server = MockServer::start().await;
    answer_with(&server, event_stream(sse(&[text("ok"), finish("stop")]))).await;
    let model = model(config(&server));

    answer(model.as_ref(), ask("Hi")).await;

    let sent = &requests(&server).await[0];
    assert_eq!(
        sent.headers.get("authorization").unwrap(),
        &format!("Bearer {KEY}")
    );
    assert_eq!(
        sent.headers.get("content-type").unwrap(),
        "application/json"
    );
    assert_eq!(
        body(sent),
        json!({
            "model": MODEL,
            "messages": [
                { "role": "system", "content": "Be brief." },
                { "role": "user", "content": "Hi" },
            ],
            "stream": true,
            "stream_options": { "include_usage": true },
            "max_tokens": 256,
            "temperature": 0.5,
        })
    );
}

#[tokio::test]
async fn sends_tools_and_the_turns_that_used_them() {
    let server = MockServer::start().await;
    answer_with(
        &server,
        event_stream(sse(&[text("It is noon."), finish("stop")])),
    )
    .await;
    let model = model(config(&server));
    let parameters = json!({
        "type": "object",
        "properties": { "zone": { "type": "string" } },
        "required": ["zone"],
    });
    let mut called = ChatMessage::new(ChatRole::Assistant, "");
    called.tool_calls = vec![ToolCall {
        id: "call_1".to_owned(),
        name: "clock".to_owned(),
        arguments: "{\"zone\":\"UTC\"}".to_owned(),
    }];
    let mut result = ChatMessage::new(ChatRole::Tool, "12:00");
    result.tool_call_id = Some("call_1".to_owned());
    let mut request = ask("What time is it?");
    request.messages.extend([called, result]);
    request.tools = vec![ToolSpec {
        name: "clock".to_owned(),
        description: "The current time in a zone.".to_owned(),
        parameters: parameters.clone(),
    }];

    let items = answer(model.as_ref(), request).await;

    assert_eq!(items, texts(&["It is noon."]));
    let sent = body(&requests(&server).await[0]);
    assert_eq!(
        sent["tools"],
        json!([{
            "type": "function",
            "function": {
                "name": "clock",
                "description": "The current time in a zone.",
                "parameters": parameters,
            },
        }])
    );
    assert_eq!(
        sent["messages"][2],
        json!({
            "role": "assistant",
            "tool_calls": [{
                "id": "call_1",
                "type": "function",
                "function": { "name": "clock", "arguments": "{\"zone\":\"UTC\"}" },
            }],
        })
    );
    assert_eq!(
        sent["messages"][3],
        json!({ "role": "tool", "content": "12:00", "tool_call_id": "call_1" })
    );
}

#[tokio::test]
async fn refuses_tools_for_a_model_configured_without_them() {
    let server = MockServer::start().await;
    answer_with(&server, event_stream(sse(&[text("ok"), finish("stop")]))).await;
    let mut config = config(&server);
    config.supports_tools = false;
    let model = model(config);
    assert!(!model.supports_tools());
    let mut request = ask("Hi");
    request.tools = vec![ToolSpec {
        name: "clock".to_owned(),
        description: String::new(),
        parameters: json!({ "type": "object" }),
    }];

    let result = model.stream(request).await;

    assert!(matches!(result, Err(ChatError::Internal(_))));
    assert!(requests(&server).await.is_empty());
}

#[tokio::test]
async fn waits_as_retry_after_says_then_streams() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(openai_error("Rate limit reached", "requests", None)),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    answer_with(&server, event_stream(sse(&[text("ok"), finish("stop")]))).await;
    let mut config = config(&server);
    // Were the backoff used instead, the test would take a minute.
    config.client.backoff_base = Duration::from_secs(60);
    config.client.max_backoff = Duration::from_secs(60);
    let model = model(config);

    let started = Instant::now();
    let items = answer(model.as_ref(), ask("Hi")).await;

    let elapsed = started.elapsed();
    assert_eq!(items, texts(&["ok"]));
    assert_eq!(requests(&server).await.len(), 2);
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[tokio::test]
async fn gives_up_after_max_retries_on_a_persistent_server_error() {
    let server = MockServer::start().await;
    answer_with(
        &server,
        ResponseTemplate::new(500).set_body_string("upstream overloaded"),
    )
    .await;
    let mut config = config(&server);
    config.client.max_retries = 2;
    let model = model(config);

    let result = model.stream(ask("Hi")).await;

    let Err(ChatError::Provider(message)) = result else {
        panic!("expected ChatError::Provider");
    };
    assert!(message.contains("500"), "{message}");
    assert!(message.contains("upstream overloaded"), "{message}");
    assert_eq!(requests(&server).await.len(), 3);
}

#[tokio::test]
async fn an_unknown_model_is_unavailable() {
    let server = MockServer::start().await;
    answer_with(
        &server,
        ResponseTemplate::new(404).set_body_json(openai_error(
            "The model `test-chat-model` does not exist or you do not have access to it.",
            "invalid_request_error",
            Some("model_not_found"),
        )),
    )
    .await;
    let model = model(config(&server));

    let result = model.stream(ask("Hi")).await;

    assert!(
        matches!(&result, Err(ChatError::ModelUnavailable(name)) if name == MODEL),
        "{:?}",
        result.err()
    );
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn a_refused_request_is_a_provider_error_with_its_message_and_is_not_retried() {
    let server = MockServer::start().await;
    answer_with(
        &server,
        ResponseTemplate::new(401).set_body_json(openai_error(
            "Incorrect API key provided.",
            "invalid_request_error",
            Some("invalid_api_key"),
        )),
    )
    .await;
    let model = model(config(&server));

    let result = model.stream(ask("Hi")).await;

    assert_eq!(
        result.err(),
        Some(ChatError::Provider(
            "HTTP 401 Unauthorized: Incorrect API key provided.".to_owned()
        ))
    );
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn a_provider_message_is_truncated() {
    let server = MockServer::start().await;
    answer_with(
        &server,
        ResponseTemplate::new(400).set_body_string("x".repeat(10_000)),
    )
    .await;
    let model = model(config(&server));

    let Err(ChatError::Provider(message)) = model.stream(ask("Hi")).await else {
        panic!("expected ChatError::Provider");
    };

    assert!(
        message.starts_with("HTTP 400 Bad Request: xxx"),
        "{message}"
    );
    assert!(message.chars().count() <= 330, "{}", message.len());
}

#[tokio::test]
async fn times_out_without_an_answer_after_the_retries() {
    let server = MockServer::start().await;
    answer_with(
        &server,
        event_stream(sse(&[text("late"), finish("stop")])).set_delay(Duration::from_secs(3)),
    )
    .await;
    let mut config = config(&server);
    config.client.timeout = Duration::from_millis(200);
    config.client.max_retries = 1;
    let model = model(config);

    let started = Instant::now();
    let result = model.stream(ask("Hi")).await;

    let elapsed = started.elapsed();
    assert_eq!(result.err(), Some(ChatError::Timeout));
    assert_eq!(requests(&server).await.len(), 2);
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

#[tokio::test]
async fn an_unreachable_server_is_a_provider_error_after_the_retries() {
    // A port nobody listens on any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = config_at(&format!("http://127.0.0.1:{port}"));
    config.client.max_retries = 2;
    let model = model(config);

    let result = model.stream(ask("Hi")).await;

    let Err(ChatError::Provider(message)) = result else {
        panic!("expected ChatError::Provider");
    };
    assert!(message.contains("after 3 attempt"), "{message}");
}

#[tokio::test]
async fn a_stream_cut_before_the_model_finished_fails_after_the_text() {
    let server = MockServer::start().await;
    answer_with(
        &server,
        event_stream(sse_without_done(&[text("The answer"), text(" is")])),
    )
    .await;
    let model = model(config(&server));

    let items = answer(model.as_ref(), ask("What is it?")).await;

    let mut expected = texts(&["The answer", " is"]);
    expected.push(Err(ChatError::BadResponse(
        "the stream ended before the model finished".to_owned(),
    )));
    assert_eq!(items, expected);
}

#[tokio::test]
async fn a_stream_that_finished_without_done_ends_normally() {
    let server = MockServer::start().await;
    answer_with(
        &server,
        event_stream(sse_without_done(&[
            text("Done."),
            finish("stop"),
            usage(3, 2),
        ])),
    )
    .await;
    let model = model(config(&server));

    let items = answer(model.as_ref(), ask("Finish")).await;

    let mut expected = texts(&["Done."]);
    expected.push(Ok(ChatDelta::Usage(TokenUsage {
        prompt_tokens: 3,
        completion_tokens: 2,
    })));
    assert_eq!(items, expected);
}

fn bad_response(item: Option<&Result<ChatDelta, ChatError>>) -> &str {
    match item {
        Some(Err(ChatError::BadResponse(message))) => message,
        other => panic!("expected ChatError::BadResponse, got {other:?}"),
    }
}

#[tokio::test]
async fn an_event_that_is_not_json_is_a_bad_response() {
    let server = MockServer::start().await;
    let body = format!(
        "{}data: {{\"choices\": [oops\n\n{}",
        sse_without_done(&[text("Fine so far")]),
        sse(&[text("never seen"), finish("stop")])
    );
    answer_with(&server, event_stream(body)).await;
    let model = model(config(&server));

    let items = answer(model.as_ref(), ask("Hi")).await;

    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0], Ok(ChatDelta::Text("Fine so far".to_owned())));
    let message = bad_response(items.get(1));
    assert!(message.contains("not the expected JSON"), "{message}");
}

#[tokio::test]
async fn an_over_long_line_is_a_bad_response() {
    let server = MockServer::start().await;
    let body = format!(
        "{}data: \"{}\"\n\n",
        sse_without_done(&[text("Fine so far")]),
        "a".repeat(1024 * 1024 + 16)
    );
    answer_with(&server, event_stream(body)).await;
    let model = model(config(&server));

    let items = answer(model.as_ref(), ask("Hi")).await;

    assert_eq!(items.len(), 2, "{:?}", items.first());
    let message = bad_response(items.get(1));
    assert!(message.contains("longer than"), "{message}");
}

#[tokio::test]
async fn an_error_inside_the_stream_is_a_provider_error() {
    let server = MockServer::start().await;
    let body = sse(&[
        text("Part"),
        json!({ "error": { "message": "The server had an error while processing your request.", "type": "server_error" } }),
    ]);
    answer_with(&server, event_stream(body)).await;
    let model = model(config(&server));

    let items = answer(model.as_ref(), ask("Hi")).await;

    assert_eq!(
        items,
        vec![
            Ok(ChatDelta::Text("Part".to_owned())),
            Err(ChatError::Provider(
                "The server had an error while processing your request.".to_owned()
            )),
        ]
    );
}

#[tokio::test]
async fn a_json_answer_to_a_streamed_request_fails_before_the_stream() {
    let server = MockServer::start().await;
    answer_with(
        &server,
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": "whole" } }],
        })),
    )
    .await;
    let model = model(config(&server));

    let result = model.stream(ask("Hi")).await;

    let Err(ChatError::BadResponse(message)) = result else {
        panic!("expected ChatError::BadResponse");
    };
    assert!(message.contains("expected an event stream"), "{message}");
}

/// A server that answers one request with the head of an event stream and `first` as the first
/// piece of its body, then sends nothing more, or only a keep-alive comment every `ping`. The
/// receiver hears when the client hangs up.
fn stalling_server(first: &str, ping: Option<Duration>) -> (String, mpsc::Receiver<()>) {
    const PING: &str = ": ping\n\n";
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let first = first.to_owned();
    let (hung_up, hears) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut seen = Vec::new();
        let mut buffer = [0_u8; 4096];
        while !seen.windows(4).any(|window| window == b"\r\n\r\n") {
            match socket.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(read) => seen.extend_from_slice(&buffer[..read]),
            }
        }
        write!(
            socket,
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{first}\r\n",
            first.len()
        )
        .unwrap();
        socket.flush().unwrap();
        let tick = ping.unwrap_or(Duration::from_millis(50));
        socket.set_read_timeout(Some(tick)).unwrap();
        // Whatever else the client sends is dropped; a read of 0 bytes, or a failed write, is
        // the hang-up.
        loop {
            match socket.read(&mut buffer) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if ping.is_some() && write!(socket, "{:x}\r\n{PING}\r\n", PING.len()).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = hung_up.send(());
    });
    (base, hears)
}

async fn hears_hang_up(hears: mpsc::Receiver<()>) -> bool {
    tokio::task::spawn_blocking(move || hears.recv_timeout(Duration::from_secs(5)).is_ok())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_stream_silent_for_the_idle_timeout_times_out() {
    let (base, hears) = stalling_server(&sse_without_done(&[text("Thinking")]), None);
    let mut config = config_at(&base);
    config.stream_idle_timeout = Duration::from_millis(300);
    let model = model(config);

    let started = Instant::now();
    let items = answer(model.as_ref(), ask("Hi")).await;

    let elapsed = started.elapsed();
    assert_eq!(
        items,
        vec![
            Ok(ChatDelta::Text("Thinking".to_owned())),
            Err(ChatError::Timeout),
        ]
    );
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert!(hears_hang_up(hears).await, "the connection stayed open");
}

#[tokio::test]
async fn keep_alive_comments_do_not_hold_the_stream_open() {
    let (base, hears) = stalling_server(
        &sse_without_done(&[text("Thinking")]),
        Some(Duration::from_millis(50)),
    );
    let mut config = config_at(&base);
    config.stream_idle_timeout = Duration::from_millis(400);
    let model = model(config);

    let started = Instant::now();
    let items = answer(model.as_ref(), ask("Hi")).await;

    let elapsed = started.elapsed();
    assert_eq!(
        items,
        vec![
            Ok(ChatDelta::Text("Thinking".to_owned())),
            Err(ChatError::Timeout),
        ]
    );
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert!(hears_hang_up(hears).await, "the connection stayed open");
}

#[tokio::test]
async fn dropping_the_stream_closes_the_connection() {
    let (base, hears) = stalling_server(&sse_without_done(&[text("Once upon")]), None);
    let model = model(config_at(&base));

    let mut stream = model.stream(ask("Tell a story")).await.unwrap();
    assert_eq!(
        stream.next().await,
        Some(Ok(ChatDelta::Text("Once upon".to_owned())))
    );
    drop(stream);

    // The model (and its connection pool) is still alive: only the stream was dropped.
    assert!(hears_hang_up(hears).await, "the connection stayed open");
    assert_eq!(model.context_window(), 128_000);
}

#[tokio::test]
async fn describes_the_model_as_configured() {
    let server = MockServer::start().await;
    let mut config = config(&server);
    config.context_window = 8192;
    let model = model(config);

    assert!(model.supports_tools());
    assert_eq!(model.context_window(), 8192);
    assert_eq!(model.count_tokens(""), 0);
    assert_eq!(model.count_tokens("hello world"), 2);
    assert_eq!(model.count_tokens("tiktoken is great!"), 6);
}

#[test]
fn rejects_unusable_chat_configurations() {
    let base = || {
        OpenAiChatConfig::new(
            "http://127.0.0.1:9/v1",
            SecretString::from(KEY.to_owned()),
            MODEL,
        )
    };
    let error = |config: OpenAiChatConfig| OpenAiChat::new(config).unwrap_err();
    assert!(OpenAiChat::new(base()).is_ok());

    let mut config = base();
    config.model = " ".to_owned();
    assert!(matches!(error(config), ConfigError::EmptyModel));

    let mut config = base();
    config.context_window = 0;
    assert!(matches!(error(config), ConfigError::ContextWindow));

    let mut config = base();
    config.stream_idle_timeout = Duration::ZERO;
    assert!(matches!(error(config), ConfigError::IdleTimeout));

    let mut config = base();
    config.client.timeout = Duration::ZERO;
    assert!(matches!(error(config), ConfigError::Timeout));

    let mut config = base();
    config.client.base_url = "ftp://127.0.0.1/v1".to_owned();
    assert!(matches!(error(config), ConfigError::BaseUrl { .. }));

    for key in ["", "line\nbreak"] {
        let mut config = base();
        config.client.api_key = SecretString::from(key.to_owned());
        assert!(matches!(error(config), ConfigError::ApiKey(_)), "{key:?}");
    }
}

#[test]
fn chat_debug_output_never_shows_the_key() {
    let config = OpenAiChatConfig::new(
        "http://127.0.0.1:9/v1",
        SecretString::from(KEY.to_owned()),
        MODEL,
    );
    let config_debug = format!("{config:?}");
    let model_debug = format!("{:?}", OpenAiChat::new(config).unwrap());

    for debug in [config_debug, model_debug] {
        assert!(!debug.contains(KEY), "{debug}");
        assert!(debug.contains(MODEL), "{debug}");
    }
}
