//! The OpenAI-compatible routes, metering and the daily quota, over HTTP against the local mock
//! model: OpenAI's shapes (answers, chunks, errors), the client's tools passed through, usage
//! that adds up to what the model reported (or, where it could not, what the platform counted),
//! a quota that holds under concurrency, and each tenant seeing only its own.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::execution::{
    ANSWER, COMPLETION_TOKENS, PROMPT_TOKENS, Script, World, world, world_with,
};
use crate::helpers::{Options, json};

/// The agent's slug in [`World`].
const MODEL: &str = "rockets";

impl World {
    async fn complete(&self, token: &str, body: Value) -> reqwest::Response {
        self.app.post("/v1/chat/completions", token, body).await
    }

    async fn set_quota(&self, quota: Value) -> Value {
        json(
            self.app
                .patch(
                    &format!("/v1/tenants/{}", self.acme.id),
                    &self.app.platform_key,
                    json!({"daily_token_quota": quota}),
                )
                .await,
            StatusCode::OK,
        )
        .await
    }

    async fn usage(&self, token: &str, group_by: &str) -> Vec<Value> {
        let body = json(
            self.app
                .get(&format!("/v1/usage?group_by={group_by}"), token)
                .await,
            StatusCode::OK,
        )
        .await;
        body["items"].as_array().unwrap().clone()
    }
}

/// An error in OpenAI's shape: `{"error": {message, type, param, code}}`.
async fn assert_openai_error(res: reqwest::Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(res.status(), status);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert_eq!(content_type, "application/json");
    let body: Value = res.json().await.unwrap();
    let error = &body["error"];
    assert_eq!(error["code"], code, "{body}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(error["type"].is_string());
    assert!(error.as_object().unwrap().contains_key("param"));
    body
}

fn question(text: &str) -> Value {
    json!({"model": MODEL, "messages": [
        {"role": "system", "content": "Answer in one line."},
        {"role": "user", "content": text},
    ]})
}

#[tokio::test]
async fn a_completion_is_a_run_answered_in_openais_shape() {
    let w = world(Script::Answer, false).await;
    let res = w.complete(&w.token, question("How do rockets fly?")).await;
    let run_id = res.headers()["x-run-id"].to_str().unwrap().to_owned();
    let body = json(res, StatusCode::OK).await;
    assert_eq!(body["id"], format!("chatcmpl-{run_id}"));
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], MODEL);
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    // The marker of a source that does not exist is dropped, as in a conversation.
    assert_eq!(
        choice["message"]["content"],
        "Rockets fly [1]. Nothing says."
    );
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(body["usage"]["prompt_tokens"], PROMPT_TOKENS);
    assert_eq!(body["usage"]["completion_tokens"], COMPLETION_TOKENS);
    assert_eq!(
        body["usage"]["total_tokens"],
        PROMPT_TOKENS + COMPLETION_TOKENS
    );
    assert_eq!(body["citations"][0]["n"], 1, "{body}");

    // The agent's system prompt (with its sources) comes first, then the client's messages.
    let sent = w.chat_requests().await;
    let messages = sent[0]["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    let system = messages[0]["content"].as_str().unwrap();
    assert!(
        system.starts_with("You answer questions about rockets."),
        "{system}"
    );
    assert!(
        system.contains("Rockets carry their own oxidiser"),
        "{system}"
    );
    assert_eq!(messages[1]["content"], "Answer in one line.");
    assert_eq!(messages[2]["content"], "How do rockets fly?");

    // A run like any other, with neither conversation nor message.
    let run = json(
        w.app.get(&format!("/v1/runs/{run_id}"), &w.token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(run["status"], "completed");
    assert!(
        run["conversation_id"].is_null() && run["message_id"].is_null(),
        "{run}"
    );
    assert_eq!(run["usage"]["prompt_tokens"], PROMPT_TOKENS);
}

#[tokio::test]
async fn the_clients_temperature_and_max_tokens_are_capped_by_the_agents() {
    let w = world(Script::Answer, false).await;
    let mut body = question("Rockets?");
    body["temperature"] = json!(1.9);
    body["max_tokens"] = json!(100_000);
    json(w.complete(&w.token, body).await, StatusCode::OK).await;
    let mut body = question("Rockets?");
    body["max_completion_tokens"] = json!(7);
    json(w.complete(&w.token, body).await, StatusCode::OK).await;
    let sent = w.chat_requests().await;
    let agent = json(
        w.app
            .get(&format!("/v1/agents/{}", w.agent), &w.token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(sent[0]["max_tokens"], agent["max_tokens"]);
    assert!(sent[0]["temperature"].as_f64().unwrap() <= agent["temperature"].as_f64().unwrap());
    assert_eq!(sent[1]["max_tokens"], 7);
}

/// The `data:` payloads of an OpenAI stream, up to and without `[DONE]` (which must be last).
fn openai_chunks(text: &str) -> Vec<Value> {
    let datas: Vec<&str> = text
        .split("\n\n")
        .filter_map(|block| block.strip_prefix("data: "))
        .collect();
    assert_eq!(datas.last(), Some(&"[DONE]"), "{text}");
    datas[..datas.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[tokio::test]
async fn a_streamed_completion_sends_openais_chunks_with_the_usage_last() {
    let w = world(Script::Answer, false).await;
    let mut body = question("Rockets?");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let res = w.complete(&w.token, body).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let run_id = res.headers()["x-run-id"].to_str().unwrap().to_owned();
    let chunks = openai_chunks(&res.text().await.unwrap());
    let id = format!("chatcmpl-{run_id}");
    assert!(
        chunks
            .iter()
            .all(|c| c["id"] == id && c["object"] == "chat.completion.chunk")
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, ANSWER);
    let finish = chunks
        .iter()
        .find(|c| c["choices"][0]["finish_reason"].is_string())
        .unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(finish["citations"][0]["n"], 1);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], COMPLETION_TOKENS);
    assert!(
        chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c["usage"].is_null())
    );

    // Without include_usage, no chunk carries it.
    let mut body = question("Rockets?");
    body["stream"] = json!(true);
    let res = w.complete(&w.token, body).await;
    let chunks = openai_chunks(&res.text().await.unwrap());
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
}

fn weather_tool() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }}])
}

#[tokio::test]
async fn calls_to_the_clients_tools_come_back_and_their_results_are_answered() {
    let w = world(Script::Mixed, true).await;
    let history = json!([{"role": "user", "content": "What is the #weather in Paris?"}]);
    let res = w
        .complete(
            &w.token,
            json!({"model": MODEL, "messages": history, "tools": weather_tool()}),
        )
        .await;
    let body = json(res, StatusCode::OK).await;
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{body}");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["id"], "call_weather");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"city": "Paris"}));
    // The model was offered the agent's own tool beside the client's.
    let offered: Vec<String> = w.chat_requests().await[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(offered, ["knowledge_search", "get_weather"]);

    // The client runs the tool and sends the result back: the model answers from it.
    let follow_up = json!([
        history[0],
        {"role": "assistant", "content": null, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_weather", "content": "Sunny, 21 C"},
    ]);
    let res = w
        .complete(
            &w.token,
            json!({"model": MODEL, "messages": follow_up, "tools": weather_tool()}),
        )
        .await;
    let body = json(res, StatusCode::OK).await;
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let sent = w.chat_requests().await;
    let last = sent.last().unwrap()["messages"].as_array().unwrap().clone();
    assert_eq!(last[last.len() - 1]["role"], "tool");
    assert_eq!(last[last.len() - 1]["tool_call_id"], "call_weather");
    assert_eq!(last[last.len() - 2]["tool_calls"][0]["id"], "call_weather");

    // Streamed, the call comes as a chunk of its own before the finish.
    let res = w
        .complete(
            &w.token,
            json!({"model": MODEL, "messages": history, "tools": weather_tool(), "stream": true}),
        )
        .await;
    let chunks = openai_chunks(&res.text().await.unwrap());
    let call = chunks
        .iter()
        .find_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0).cloned())
        .unwrap();
    assert_eq!(call["index"], 0);
    assert_eq!(call["function"]["name"], "get_weather");
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "tool_calls")
    );

    // A client tool may not take the name of one of the platform's.
    let mut clash = weather_tool();
    clash[0]["function"]["name"] = json!("knowledge_search");
    let res = w
        .complete(
            &w.token,
            json!({"model": MODEL, "messages": history, "tools": clash}),
        )
        .await;
    assert_openai_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[tokio::test]
async fn errors_come_in_openais_shape() {
    let w = world(Script::Answer, false).await;
    let res = w.complete("ak_not-a-key", question("Hi")).await;
    assert!(res.headers().contains_key("www-authenticate"));
    assert_openai_error(res, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    let res = w
        .app
        .request(reqwest::Method::GET, "/v1/models", None)
        .send()
        .await
        .unwrap();
    assert_openai_error(res, StatusCode::UNAUTHORIZED, "unauthenticated").await;

    let mut body = question("Hi");
    body["model"] = json!("no-such-agent");
    let res = w.complete(&w.token, body).await;
    let error = assert_openai_error(res, StatusCode::NOT_FOUND, "model_not_found").await;
    assert_eq!(error["error"]["type"], "not_found_error");

    let res = w
        .complete(&w.token, json!({"model": MODEL, "messages": []}))
        .await;
    let error =
        assert_openai_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["param"], "messages");
    let res = w
        .complete(
            &w.token,
            json!({"model": MODEL, "messages": [{"role": "wizard", "content": "Hi"}]}),
        )
        .await;
    let error =
        assert_openai_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(error["error"]["param"], "messages[0].role");
    let res = w
        .complete(
            &w.token,
            json!({"model": MODEL, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
        )
        .await;
    assert_openai_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    // A spent quota: 429 with Retry-After up to the next UTC midnight, in OpenAI's shape.
    json(w.complete(&w.token, question("Hi")).await, StatusCode::OK).await;
    w.set_quota(json!(1)).await;
    let res = w.complete(&w.token, question("Hi")).await;
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&retry));
    let error = assert_openai_error(res, StatusCode::TOO_MANY_REQUESTS, "quota_exceeded").await;
    assert_eq!(error["error"]["type"], "rate_limit_error");
    // The native routes answer the same in problem details.
    let conversation = w.conversation(&w.token).await;
    let res = w
        .say(&w.token, &conversation, json!({"content": "Hi"}))
        .await;
    assert!(res.headers().contains_key("retry-after"));
    crate::helpers::assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "quota_exceeded").await;
    w.set_quota(Value::Null).await;
    json(w.complete(&w.token, question("Hi")).await, StatusCode::OK).await;
}

#[tokio::test]
async fn models_and_embeddings_serve_the_tenants_agents_and_the_platforms_spaces() {
    let w = world(Script::Answer, false).await;
    let models = json(w.app.get("/v1/models", &w.token).await, StatusCode::OK).await;
    assert_eq!(models["object"], "list");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [MODEL]);
    assert_eq!(models["data"][0]["object"], "model");

    let body = json(
        w.app
            .post(
                "/v1/embeddings",
                &w.token,
                json!({"model": "openai-test", "input": ["rockets", "fuel"]}),
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    assert_eq!(body["data"][1]["index"], 1);
    let floats = body["data"][0]["embedding"].as_array().unwrap().clone();
    assert_eq!(floats.len(), 8);
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    // base64: the same floats, little-endian.
    let body = json(
        w.app
            .post(
                "/v1/embeddings",
                &w.token,
                json!({"model": "openai-test", "input": "rockets", "encoding_format": "base64"}),
            )
            .await,
        StatusCode::OK,
    )
    .await;
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f64> = bytes
        .chunks(4)
        .map(|b| f64::from(f32::from_le_bytes(b.try_into().unwrap())))
        .collect();
    let expected: Vec<f64> = floats.iter().map(|f| f.as_f64().unwrap()).collect();
    assert_eq!(decoded.len(), expected.len());
    assert!(
        decoded
            .iter()
            .zip(&expected)
            .all(|(a, b)| (a - b).abs() < 1e-6)
    );

    let res = w
        .app
        .post(
            "/v1/embeddings",
            &w.token,
            json!({"model": "no-such-space", "input": "x"}),
        )
        .await;
    assert_openai_error(res, StatusCode::NOT_FOUND, "model_not_found").await;
    let res = w
        .app
        .post(
            "/v1/embeddings",
            &w.token,
            json!({"model": "openai-test", "input": [1, 2, 3]}),
        )
        .await;
    assert_openai_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let res = w
        .app
        .post(
            "/v1/embeddings",
            &w.token,
            json!({"model": "openai-test", "input": []}),
        )
        .await;
    assert_openai_error(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    // A deleted agent is no model any more.
    w.app
        .delete(&format!("/v1/agents/{}", w.agent), &w.token)
        .await;
    let models = json(w.app.get("/v1/models", &w.token).await, StatusCode::OK).await;
    assert_eq!(models["data"], json!([]));
    let res = w.complete(&w.token, question("Hi")).await;
    assert_openai_error(res, StatusCode::NOT_FOUND, "model_not_found").await;
}

#[tokio::test]
async fn each_tenant_sees_only_its_own_models_runs_and_usage() {
    let w = world(Script::Answer, false).await;
    let res = w.complete(&w.token, question("Rockets?")).await;
    let run_id = res.headers()["x-run-id"].to_str().unwrap().to_owned();
    json(res, StatusCode::OK).await;
    let other = w.app.tenant("globex").await;
    let token = &other.admin_token;
    // Another tenant's agent is no model of this one, its run and its usage are not visible.
    let res = w.complete(token, question("Rockets?")).await;
    assert_openai_error(res, StatusCode::NOT_FOUND, "model_not_found").await;
    let models = json(w.app.get("/v1/models", token).await, StatusCode::OK).await;
    assert_eq!(models["data"], json!([]));
    let res = w.app.get(&format!("/v1/runs/{run_id}"), token).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(w.usage(token, "day").await.is_empty());
    assert!(!w.usage(&w.token, "day").await.is_empty());
    // Only platform keys set quotas; a tenant's admin cannot, not even its own.
    for (path, token) in [
        (format!("/v1/tenants/{}", w.acme.id), &w.token),
        (format!("/v1/tenants/{}", other.id), &w.token),
    ] {
        let res = w
            .app
            .patch(&path, token, json!({"daily_token_quota": 1_000_000}))
            .await;
        crate::helpers::assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    }
    // A member sees their own use only; an admin the tenant's.
    let (_, member) = w.app.user(&w.acme, "member@acme.test", "member").await;
    assert!(w.usage(&member, "day").await.is_empty());
    let (_, read_key) = w.app.api_key(&w.acme, &["read"]).await;
    assert!(w.usage(&read_key, "principal").await.is_empty());
    let res = w.complete(&read_key, question("Rockets?")).await;
    assert_openai_error(res, StatusCode::FORBIDDEN, "forbidden").await;
    let tenant = json(w.app.get("/v1/tenant", &member).await, StatusCode::OK).await;
    assert!(tenant["tokens_used_today"].as_u64().unwrap() >= PROMPT_TOKENS + COMPLETION_TOKENS);
}

/// What the platform counts for a model turn that reported no usage: each message's tokens
/// (`cl100k_base`) plus 4 for its role markers.
fn estimated_prompt(request: &Value) -> u64 {
    let bpe = tiktoken_rs::cl100k_base().unwrap();
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            bpe.encode_ordinary(m["content"].as_str().unwrap_or(""))
                .len() as u64
                + 4
        })
        .sum()
}

fn last_user_message(request: &Value) -> String {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn usage_adds_up_to_what_the_model_reported_or_the_platform_counted() {
    let w = world(Script::Mixed, false).await;
    let conversation = w.conversation(&w.token).await;
    // Completed: a turn, a completion, and a streamed turn whose client hung up at once (the
    // run goes on without it).
    json(
        w.say(&w.token, &conversation, json!({"content": "Rockets?"}))
            .await,
        StatusCode::OK,
    )
    .await;
    json(
        w.complete(&w.token, question("Rockets?")).await,
        StatusCode::OK,
    )
    .await;
    let res = w
        .say(
            &w.token,
            &conversation,
            json!({"content": "And fuel?", "stream": true}),
        )
        .await;
    let streamed_run = res.headers()["x-run-id"].to_str().unwrap().to_owned();
    drop(res);
    // Failed: the model's stream is cut after two pieces, without usage.
    let conversation_2 = w.conversation(&w.token).await;
    let res = w
        .say(&w.token, &conversation_2, json!({"content": "Cut me #cut"}))
        .await;
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    // Cancelled while the model thinks.
    let conversation_3 = w.conversation(&w.token).await;
    let slow = w.say(
        &w.token,
        &conversation_3,
        json!({"content": "Take your time #slow", "stream": true}),
    );
    let res = slow.await;
    let slow_run = res.headers()["x-run-id"].to_str().unwrap().to_owned();
    drop(res);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let run = json(
        w.app
            .post_empty(&format!("/v1/runs/{slow_run}/cancel"), &w.token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(run["status"], "cancelled", "{run}");
    // The streamed run ends on its own.
    for _ in 0..100 {
        let run = json(
            w.app
                .get(&format!("/v1/runs/{streamed_run}"), &w.token)
                .await,
            StatusCode::OK,
        )
        .await;
        if run["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // What the test adds up: the mock's own report where it made one, else the prompt it
    // received and the text it sent, counted as the platform counts.
    let bpe = tiktoken_rs::cl100k_base().unwrap();
    let (mut prompt, mut completion) = (0u64, 0u64);
    let requests = w.chat_requests().await;
    assert_eq!(requests.len(), 5);
    for request in &requests {
        let asked = last_user_message(request);
        if asked.contains("#cut") {
            prompt += estimated_prompt(request);
            completion += bpe.encode_ordinary("Rockets fly").len() as u64;
        } else if asked.contains("#slow") {
            prompt += estimated_prompt(request);
        } else {
            prompt += PROMPT_TOKENS;
            completion += COMPLETION_TOKENS;
        }
    }
    let by_model = w.usage(&w.token, "model").await;
    let chat = by_model
        .iter()
        .find(|row| row["key"] == "openai/gpt-test")
        .unwrap();
    assert_eq!(chat["prompt_tokens"], prompt, "{by_model:?}");
    assert_eq!(chat["completion_tokens"], completion, "{by_model:?}");
    assert_eq!(chat["runs"], 5);
    // Embeddings are metered too: the ingestion's (the platform's, not counted against a quota)
    // and the retrieval's (the caller's).
    assert!(
        by_model
            .iter()
            .any(|row| row["key"] == "embedding/openai-test")
    );
    assert!(
        by_model
            .iter()
            .any(|row| row["key"] == "embedding/retrieval")
    );
    let by_principal = w.usage(&w.token, "principal").await;
    let keys: Vec<&str> = by_principal
        .iter()
        .map(|row| row["key"].as_str().unwrap())
        .collect();
    assert!(keys.contains(&"platform"), "{keys:?}");
    assert!(
        keys.contains(&format!("user:{}", w.acme.admin_id).as_str()),
        "{keys:?}"
    );
    let by_agent = w.usage(&w.token, "agent").await;
    let agent_row = by_agent
        .iter()
        .find(|row| row["key"] == w.agent.as_str())
        .unwrap();
    assert_eq!(agent_row["runs"], 5);
    let days = w.usage(&w.token, "day").await;
    assert_eq!(days.len(), 1);
    let res = w
        .app
        .get("/v1/usage?from=2026-12-08&to=2026-12-01", &w.token)
        .await;
    crate::helpers::assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
        .await;
    let res = w.app.get("/v1/usage?group_by=planet", &w.token).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_quota_holds_under_32_concurrent_runs() {
    // The model takes a second, so all 32 runs are in progress at once.
    let w = world_with(
        Script::Slow(1),
        false,
        Options {
            runs_per_tenant: 64,
            ..Options::default()
        },
    )
    .await;
    let agent = json(
        w.app
            .patch(
                &format!("/v1/agents/{}", w.agent),
                &w.token,
                json!({"max_tokens": 16}),
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(agent["max_tokens"], 16);
    // Room for a few answers of PROMPT_TOKENS + COMPLETION_TOKENS each, not for 32.
    let quota = 5 * (PROMPT_TOKENS + COMPLETION_TOKENS);
    let tenant = w.set_quota(json!(quota)).await;
    assert_eq!(tenant["daily_token_quota"], quota);
    let calls = (0..32).map(|i| {
        let request = w
            .app
            .request(
                reqwest::Method::POST,
                "/v1/chat/completions",
                Some(&w.token),
            )
            .json(&question(&format!("Rockets {i}?")));
        tokio::spawn(async move { request.send().await.unwrap().status() })
    });
    let mut statuses = Vec::new();
    for call in calls {
        statuses.push(call.await.unwrap());
    }
    let answered = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(answered + refused, 32, "{statuses:?}");
    assert!(answered >= 1 && refused >= 1, "{statuses:?}");
    let tenant = json(w.app.get("/v1/tenant", &w.token).await, StatusCode::OK).await;
    let used = tenant["tokens_used_today"].as_u64().unwrap();
    // Runs and the retrieval's query embeddings together; at most one answer beyond the quota.
    assert!(used <= quota + 16, "used {used} of {quota}");
    // Spent: nothing starts any more.
    let res = w.complete(&w.token, question("One more?")).await;
    if used >= quota {
        assert_openai_error(res, StatusCode::TOO_MANY_REQUESTS, "quota_exceeded").await;
    }
}
