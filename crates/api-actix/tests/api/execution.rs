//! Agent execution over HTTP against a local mock of the OpenAI API: turns, streams and their
//! replay, tool rounds, failures, cancellation, branches, ratings, and who may see what.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::{FakeEmbeddings, Options, TenantFixture, TestApp, assert_problem, json};

/// What the mock chat model does with each request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Script {
    /// Answers `ANSWER` in pieces, then reports usage.
    Answer,
    /// Asks for `knowledge_search {"query": "rocket"}` while fewer than `n` tool results are
    /// in the conversation, then answers.
    ToolCalls(usize),
    /// Answers 500 every time.
    Fail,
    /// Sends part of the answer and closes the stream without finishing.
    Cut,
    /// Answers after this many seconds.
    Slow(u64),
    /// By the last message: `#cut` in it is [`Script::Cut`], `#slow` is [`Script::Slow`] (30 s),
    /// `#weather` with a `get_weather` tool offered calls it; anything else (a tool result
    /// included) is [`Script::Answer`].
    Mixed,
}

pub const ANSWER: &str = "Rockets fly [1]. Nothing says [7].";
pub const PROMPT_TOKENS: u64 = 42;
pub const COMPLETION_TOKENS: u64 = 9;

pub struct FakeChat {
    pub script: Script,
    pub requests: Arc<AtomicUsize>,
}

fn chunk(delta: Value, finish: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": "gpt-test",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
    })
}

fn usage() -> Value {
    json!({
        "id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": "gpt-test",
        "choices": [],
        "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                  "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}
    })
}

fn sse(events: &[Value], done: bool) -> String {
    let mut body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    if done {
        body.push_str("data: [DONE]\n\n");
    }
    body
}

fn answer_events() -> Vec<Value> {
    let mut events: Vec<Value> = ["Rockets ", "fly [1]", ". Nothing", " says [7]."]
        .iter()
        .map(|piece| chunk(json!({"content": piece}), None))
        .collect();
    events.push(chunk(json!({}), Some("stop")));
    events.push(usage());
    events
}

impl Respond for FakeChat {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        let stream =
            |text: String| ResponseTemplate::new(200).set_body_raw(text, "text/event-stream");
        let last = body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .cloned()
            .unwrap_or_default();
        let said = |marker: &str| {
            last["role"] == "user" && last["content"].as_str().is_some_and(|c| c.contains(marker))
        };
        let offered = |name: &str| {
            body["tools"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t["function"]["name"] == name))
        };
        let script = match self.script {
            Script::Mixed if said("#cut") => Script::Cut,
            Script::Mixed if said("#slow") => Script::Slow(30),
            Script::Mixed if said("#weather") && offered("get_weather") => {
                let call = json!({"tool_calls": [{
                    "index": 0, "id": "call_weather", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}
                }]});
                return stream(sse(
                    &[
                        chunk(call, None),
                        chunk(json!({}), Some("tool_calls")),
                        usage(),
                    ],
                    true,
                ));
            }
            Script::Mixed => Script::Answer,
            other => other,
        };
        match script {
            Script::Answer | Script::Mixed => stream(sse(&answer_events(), true)),
            Script::Slow(secs) => {
                stream(sse(&answer_events(), true)).set_delay(Duration::from_secs(secs))
            }
            Script::Fail => ResponseTemplate::new(500).set_body_json(
                json!({"error": {"message": "the model is on fire", "type": "server_error"}}),
            ),
            Script::Cut => stream(sse(
                &[
                    chunk(json!({"content": "Rockets "}), None),
                    chunk(json!({"content": "fly"}), None),
                ],
                false,
            )),
            Script::ToolCalls(n) => {
                let results = body["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|m| m["role"] == "tool")
                    .count();
                if results < n && body.get("tools").is_some() {
                    let call = json!({"tool_calls": [{
                        "index": 0, "id": format!("call_{results}"), "type": "function",
                        "function": {"name": "knowledge_search", "arguments": "{\"query\": \"rocket\"}"}
                    }]});
                    stream(sse(
                        &[
                            chunk(call, None),
                            chunk(json!({}), Some("tool_calls")),
                            usage(),
                        ],
                        true,
                    ))
                } else {
                    stream(sse(&answer_events(), true))
                }
            }
        }
    }
}

/// A server whose `openai` provider is the mock chat model, with an `openai-test` space, and a
/// collection in it holding a document about rockets; the tenant's admin token and an agent
/// over that collection.
pub struct World {
    pub app: TestApp,
    pub acme: TenantFixture,
    pub server: MockServer,
    pub token: String,
    pub collection: String,
    pub agent: String,
    pub requests: Arc<AtomicUsize>,
}

pub async fn world(script: Script, tools: bool) -> World {
    world_with(script, tools, Options::default()).await
}

pub async fn world_with(script: Script, tools: bool, options: Options) -> World {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .respond_with(FakeEmbeddings::default())
        .mount(&server)
        .await;
    let requests = Arc::new(AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(FakeChat {
            script,
            requests: requests.clone(),
        })
        .mount(&server)
        .await;
    let app = TestApp::spawn_with(Options {
        openai_base_url: Some(format!("{}/v1", server.uri())),
        spaces: vec![(
            "openai-test".into(),
            "openai".into(),
            "test-embed".into(),
            8,
        )],
        ..options
    })
    .await;
    let acme = app.tenant("acme").await;
    let token = acme.admin_token.clone();
    let collection = app.collection_in(&token, "Rockets", "openai-test").await;
    let uploaded = app
        .upload(
            &token,
            &collection,
            "Rocketry",
            "A rocket flies by throwing mass backwards. Rockets carry their own oxidiser.",
            json!({}),
        )
        .await;
    let job = app
        .wait_for_job(&token, uploaded["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let agent = json(
        app.post(
            "/v1/agents",
            &token,
            json!({
                "name": "Rocket expert", "slug": "rockets",
                "system_prompt": "You answer questions about rockets.",
                "model": {"provider": "openai", "name": "gpt-test"},
                "collections": [collection],
                "retrieval": {"top_k": 3, "mode": "hybrid"},
                "tools": if tools { json!(["knowledge_search"]) } else { json!([]) },
            }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    World {
        app,
        acme,
        server,
        token,
        collection,
        agent: agent["id"].as_str().unwrap().to_owned(),
        requests,
    }
}

impl World {
    pub async fn conversation(&self, token: &str) -> String {
        let conversation = json(
            self.app
                .post_empty(&format!("/v1/agents/{}/conversations", self.agent), token)
                .await,
            StatusCode::CREATED,
        )
        .await;
        conversation["id"].as_str().unwrap().to_owned()
    }

    pub async fn say(&self, token: &str, conversation: &str, body: Value) -> reqwest::Response {
        self.app
            .post(
                &format!("/v1/conversations/{conversation}/messages"),
                token,
                body,
            )
            .await
    }

    /// The chat requests the mock model received.
    pub async fn chat_requests(&self) -> Vec<Value> {
        self.server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == "/v1/chat/completions")
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    }
}

/// The conversation's messages: the current branch, or the whole tree.
pub async fn messages(app: &TestApp, token: &str, conversation: &str, tree: bool) -> Value {
    let view = if tree { "?view=tree" } else { "" };
    json(
        app.get(
            &format!("/v1/conversations/{conversation}/messages{view}"),
            token,
        )
        .await,
        StatusCode::OK,
    )
    .await
}

/// Server-Sent Events as `(id, event, data)`.
pub fn parse_sse(text: &str) -> Vec<(u64, String, Value)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut id = None;
            let mut event = None;
            let mut data = None;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.parse().ok();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    event = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(v).ok();
                }
            }
            Some((id?, event?, data?))
        })
        .collect()
}

#[tokio::test]
async fn a_turn_is_answered_with_citations_to_its_sources_and_the_providers_usage() {
    let w = world(Script::Answer, false).await;
    let conversation = w.conversation(&w.token).await;
    let res = w
        .say(
            &w.token,
            &conversation,
            json!({"content": "How does a rocket fly?"}),
        )
        .await;
    let run_id = res.headers()["x-run-id"].to_str().unwrap().to_owned();
    let turn = json(res, StatusCode::OK).await;
    assert_eq!(turn["run"]["id"], run_id.as_str());
    assert_eq!(turn["run"]["status"], "completed");
    let answer = &turn["answer"];
    // The marker of a source that does not exist is gone; the one that exists is cited.
    assert_eq!(answer["content"], "Rockets fly [1]. Nothing says.");
    assert_eq!(answer["status"], "complete");
    let citations = answer["citations"].as_array().unwrap();
    assert_eq!(citations.len(), 1, "{answer}");
    assert_eq!(citations[0]["n"], 1);
    assert_eq!(
        (citations[0]["start"].as_u64(), citations[0]["end"].as_u64()),
        (Some(12), Some(15))
    );
    assert_eq!(citations[0]["collection_id"], w.collection.as_str());
    assert_eq!(citations[0]["document_title"], "Rocketry");
    assert!(
        citations[0]["snippet"]
            .as_str()
            .unwrap()
            .contains("rocket flies")
    );
    let chunk_ids = turn["run"]["context"]["chunk_ids"].as_array().unwrap();
    assert_eq!(
        citations[0]["chunk_id"], chunk_ids[0],
        "source 1 is the first chunk retrieved"
    );
    // The provider reported usage: it is stored on the answer and the run.
    let usage = json!({"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS});
    assert_eq!(answer["usage"], usage);
    assert_eq!(turn["run"]["usage"], usage);
    assert!(
        turn["run"]["context"]["tokens"]["sources"]
            .as_u64()
            .unwrap()
            > 0
    );
    // What the model saw: the agent's prompt and the numbered source, then the question.
    let sent = &w.chat_requests().await[0];
    let system = sent["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.starts_with("You answer questions about rockets."),
        "{system}"
    );
    assert!(system.contains("[1] Rocketry"), "{system}");
    assert_eq!(sent["messages"][1]["content"], "How does a rocket fly?");
    assert_eq!(sent["stream_options"]["include_usage"], true);
    // The run and the branch read back as stored.
    let run = json(
        w.app.get(&format!("/v1/runs/{run_id}"), &w.token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(run["status"], "completed");
    // The run's end was the conversation's last activity.
    let listed = json(
        w.app
            .get(&format!("/v1/conversations/{conversation}"), &w.token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(listed["last_active_at"], run["ended_at"], "{listed}");
    // The day's counter holds every record of the run, stored together: its answer's tokens
    // and its query's embedding (the document's ingestion is recorded but not counted).
    let by_model = json(
        w.app.get("/v1/usage?group_by=model", &w.token).await,
        StatusCode::OK,
    )
    .await;
    let tokens_of = |key: &str| {
        let row = by_model["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["key"] == key)
            .unwrap_or_else(|| panic!("no {key} in {by_model}"));
        row["prompt_tokens"].as_u64().unwrap() + row["completion_tokens"].as_u64().unwrap()
    };
    let recorded = tokens_of("openai/gpt-test") + tokens_of("embedding/retrieval");
    let tenant = json(w.app.get("/v1/tenant", &w.token).await, StatusCode::OK).await;
    assert_eq!(tenant["tokens_used_today"], recorded, "{tenant} {by_model}");
    let branch = messages(&w.app, &w.token, &conversation, false).await;
    let roles: Vec<&str> = branch["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant"]);
    // A later turn carries the history.
    let second = json(
        w.say(&w.token, &conversation, json!({"content": "And in space?"}))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        second["run"]["context"]["kept_message_ids"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let sent = &w.chat_requests().await[1];
    let roles: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
}

#[tokio::test]
async fn a_streamed_turn_can_be_replayed_from_any_event_and_the_model_runs_once() {
    let w = world(Script::Answer, false).await;
    let conversation = w.conversation(&w.token).await;
    let res = w
        .say(
            &w.token,
            &conversation,
            json!({"content": "Rockets?", "stream": true}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let run_id = res.headers()["x-run-id"].to_str().unwrap().to_owned();
    let events = parse_sse(&res.text().await.unwrap());
    let kinds: Vec<&str> = events.iter().map(|(_, k, _)| k.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"run.started"));
    assert_eq!(kinds.last(), Some(&"run.completed"));
    assert!(kinds.contains(&"citations"));
    assert_eq!(kinds.iter().filter(|k| k.starts_with("run.")).count(), 2);
    let ids: Vec<u64> = events.iter().map(|(id, _, _)| *id).collect();
    assert!(ids.windows(2).all(|w| w[1] > w[0]), "{ids:?}");
    assert_eq!(events[0].2["run_id"], run_id.as_str());
    let text: String = events
        .iter()
        .filter(|(_, k, _)| k == "message.delta")
        .map(|(_, _, d)| d["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, ANSWER);

    // A client that dropped after event 2 gets the rest, from the header or the query.
    let replay = w
        .app
        .request(
            reqwest::Method::GET,
            &format!("/v1/runs/{run_id}/events"),
            Some(&w.token),
        )
        .header("Last-Event-ID", "2")
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), StatusCode::OK);
    let rest = parse_sse(&replay.text().await.unwrap());
    assert_eq!(rest, events[2..].to_vec());
    let from_query = w
        .app
        .get(&format!("/v1/runs/{run_id}/events?after=0"), &w.token)
        .await;
    assert_eq!(parse_sse(&from_query.text().await.unwrap()), events);
    assert_eq!(w.requests.load(Ordering::SeqCst), 1, "the model ran once");
}

#[tokio::test]
async fn tool_rounds_search_the_collection_and_a_repeated_call_is_refused() {
    // The model asks for the same search three times before answering.
    let w = world(Script::ToolCalls(3), true).await;
    let conversation = w.conversation(&w.token).await;
    let res = w
        .say(
            &w.token,
            &conversation,
            json!({"content": "Rockets?", "stream": true}),
        )
        .await;
    let events = parse_sse(&res.text().await.unwrap());
    let results: Vec<&Value> = events
        .iter()
        .filter(|(_, k, _)| k == "tool.result")
        .map(|(_, _, d)| d)
        .collect();
    assert_eq!(
        events.iter().filter(|(_, k, _)| k == "tool.call").count(),
        3
    );
    assert_eq!(results.len(), 3);
    assert!(
        results[0]["content"]
            .as_str()
            .unwrap()
            .contains("[1] Rocketry")
    );
    for repeated in &results[1..] {
        assert!(
            repeated["content"]
                .as_str()
                .unwrap()
                .contains("already made"),
            "{repeated}"
        );
    }
    assert_eq!(events.last().unwrap().1, "run.completed");
    // The tree holds the tool turns between the question and the answer; the answer cites the
    // source the first search found.
    let branch = messages(&w.app, &w.token, &conversation, false).await;
    let items = branch["items"].as_array().unwrap();
    let roles: Vec<&str> = items.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles,
        [
            "user",
            "assistant",
            "tool",
            "assistant",
            "tool",
            "assistant",
            "tool",
            "assistant"
        ]
    );
    assert_eq!(items[1]["tool_calls"][0]["name"], "knowledge_search");
    assert_eq!(items[2]["tool_call_id"], "call_0");
    let answer = items.last().unwrap();
    assert_eq!(answer["citations"][0]["n"], 1);
    // What the model was sent: tools offered, the tool result answering its call.
    let sent = w.chat_requests().await;
    assert_eq!(sent.len(), 4);
    assert_eq!(sent[0]["tools"][0]["function"]["name"], "knowledge_search");
    let last: &Vec<Value> = sent[3]["messages"].as_array().unwrap();
    assert!(
        last.iter()
            .any(|m| m["role"] == "tool" && m["tool_call_id"] == "call_0")
    );
    // Usage adds up over the rounds.
    assert_eq!(answer["usage"]["prompt_tokens"], PROMPT_TOKENS * 4);
}

#[tokio::test]
async fn a_failing_model_fails_the_run_with_a_reason_and_keeps_the_question() {
    let w = world(Script::Fail, false).await;
    let conversation = w.conversation(&w.token).await;
    let res = w
        .say(&w.token, &conversation, json!({"content": "Rockets?"}))
        .await;
    let run_id = res.headers()["x-run-id"].to_str().unwrap().to_owned();
    let problem = assert_problem(res, StatusCode::BAD_GATEWAY, "model_error").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("500"),
        "{problem}"
    );
    let run = json(
        w.app.get(&format!("/v1/runs/{run_id}"), &w.token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["error"]["code"], "model_error");
    let tree = messages(&w.app, &w.token, &conversation, true).await;
    let items = tree["items"].as_array().unwrap();
    assert_eq!(items[0]["content"], "Rockets?");
    assert_eq!(items[1]["status"], "failed");
    assert_eq!(items[1]["error"]["code"], "model_error");
    // The next question follows the failed answer; the failed answer is not sent as history.
    w.say(&w.token, &conversation, json!({"content": "Again?"}))
        .await;
    let sent = w.chat_requests().await;
    let last = sent.last().unwrap()["messages"].as_array().unwrap().clone();
    assert!(last.iter().all(|m| m["role"] != "assistant"), "{last:?}");
}

#[tokio::test]
async fn a_stream_cut_mid_way_keeps_the_partial_answer_as_failed() {
    let w = world(Script::Cut, false).await;
    let conversation = w.conversation(&w.token).await;
    let res = w
        .say(
            &w.token,
            &conversation,
            json!({"content": "Rockets?", "stream": true}),
        )
        .await;
    let events = parse_sse(&res.text().await.unwrap());
    let (_, last, data) = events.last().unwrap();
    assert_eq!(last, "run.failed");
    assert_eq!(data["error"]["code"], "model_bad_response");
    let tree = messages(&w.app, &w.token, &conversation, false).await;
    let answer = &tree["items"][1];
    assert_eq!(answer["content"], "Rockets fly");
    assert_eq!(answer["status"], "failed");
    // The platform counted the tokens itself: the provider never said.
    assert!(
        answer["usage"]["completion_tokens"].as_u64().unwrap() >= 2,
        "{answer}"
    );
    assert!(
        answer["usage"]["prompt_tokens"].as_u64().unwrap() > 10,
        "{answer}"
    );
}

#[tokio::test]
async fn rate_limits_are_retried_before_the_first_token_and_timeouts_answer_504() {
    let w = world_with(
        Script::Slow(5),
        false,
        Options {
            openai_timeout_secs: 1,
            ..Options::default()
        },
    )
    .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&w.server)
        .await;
    let conversation = w.conversation(&w.token).await;
    let res = w
        .say(&w.token, &conversation, json!({"content": "Rockets?"}))
        .await;
    assert_problem(res, StatusCode::GATEWAY_TIMEOUT, "model_timeout").await;
    let attempts = w.chat_requests().await.len();
    assert!(attempts >= 2, "the 429 was retried ({attempts} requests)");
}

#[tokio::test]
async fn a_run_is_cancelled_at_once_and_cancelling_again_changes_nothing() {
    let w = world(Script::Slow(30), false).await;
    let conversation = w.conversation(&w.token).await;
    let request = w
        .app
        .request(
            reqwest::Method::POST,
            &format!("/v1/conversations/{conversation}/messages"),
            Some(&w.token),
        )
        .json(&json!({"content": "Rockets?"}));
    let turn = tokio::spawn(async move { request.send().await.unwrap() });
    // Find the run through the conversation's answer.
    let mut run_id = None;
    for _ in 0..100 {
        let tree = messages(&w.app, &w.token, &conversation, true).await;
        if let Some(id) = tree["items"][1]["run_id"].as_str() {
            run_id = Some(id.to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let run_id = run_id.expect("the run started");
    let started = std::time::Instant::now();
    let run = json(
        w.app
            .post_empty(&format!("/v1/runs/{run_id}/cancel"), &w.token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(run["status"], "cancelled", "{run}");
    assert!(started.elapsed() < Duration::from_secs(2));
    let again = json(
        w.app
            .post_empty(&format!("/v1/runs/{run_id}/cancel"), &w.token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(again["status"], "cancelled");
    assert_eq!(again["ended_at"], run["ended_at"]);
    let answered = turn.await.unwrap();
    let body = json(answered, StatusCode::OK).await;
    assert_eq!(body["answer"]["status"], "cancelled");
    let events = parse_sse(
        &w.app
            .get(&format!("/v1/runs/{run_id}/events"), &w.token)
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(events.last().unwrap().1, "run.cancelled");
}

#[tokio::test]
async fn regenerating_and_editing_make_branches_and_the_newest_branch_is_current() {
    let w = world(Script::Answer, false).await;
    let conversation = w.conversation(&w.token).await;
    let first = json(
        w.say(&w.token, &conversation, json!({"content": "Rockets?"}))
            .await,
        StatusCode::OK,
    )
    .await;
    let question = first["message"]["id"].as_str().unwrap().to_owned();
    let answer = first["answer"]["id"].as_str().unwrap().to_owned();
    // Regenerate: a sibling answer to the same question.
    let again = json(
        w.app
            .post_empty(&format!("/v1/messages/{answer}/regenerate"), &w.token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert!(again["message"].is_null());
    assert_eq!(again["answer"]["parent_id"], question.as_str());
    assert_ne!(again["answer"]["id"], answer.as_str());
    // Edit the first question: a new root.
    let edited = json(
        w.say(
            &w.token,
            &conversation,
            json!({"content": "Rockets, really?", "parent_id": null}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert!(edited["message"]["parent_id"].is_null());
    let branch = messages(&w.app, &w.token, &conversation, false).await;
    let ids: Vec<&str> = branch["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            edited["message"]["id"].as_str().unwrap(),
            edited["answer"]["id"].as_str().unwrap()
        ]
    );
    let tree = messages(&w.app, &w.token, &conversation, true).await;
    assert_eq!(tree["items"].as_array().unwrap().len(), 5);
    // A question cannot follow a question, nor a message of another conversation.
    let res = w
        .say(
            &w.token,
            &conversation,
            json!({"content": "x", "parent_id": question}),
        )
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let other = w.conversation(&w.token).await;
    let res = w
        .say(
            &w.token,
            &other,
            json!({"content": "x", "parent_id": answer}),
        )
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    // Regenerating a question is refused.
    let res = w
        .app
        .post_empty(&format!("/v1/messages/{question}/regenerate"), &w.token)
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[tokio::test]
async fn a_rating_is_one_per_principal_and_replaceable() {
    let w = world(Script::Answer, false).await;
    let conversation = w.conversation(&w.token).await;
    let turn = json(
        w.say(&w.token, &conversation, json!({"content": "Rockets?"}))
            .await,
        StatusCode::OK,
    )
    .await;
    let answer = turn["answer"]["id"].as_str().unwrap();
    let up = json(
        w.app
            .post(
                &format!("/v1/messages/{answer}/feedback"),
                &w.token,
                json!({"rating": "up"}),
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(up["rating"], "up");
    let down = json(
        w.app
            .post(
                &format!("/v1/messages/{answer}/feedback"),
                &w.token,
                json!({"rating": "down", "comment": "too short"}),
            )
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(down["rating"], "down");
    assert_eq!(down["created_at"], up["created_at"]);
    let platform = w.app.platform_connection().await;
    use sea_orm::ConnectionTrait;
    let row = platform
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!("SELECT count(*) AS n FROM message_feedback WHERE message_id = '{answer}'"),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.try_get::<i64>("", "n").unwrap(),
        1,
        "one rating per principal"
    );
    let question = turn["message"]["id"].as_str().unwrap();
    let res = w
        .app
        .post(
            &format!("/v1/messages/{question}/feedback"),
            &w.token,
            json!({"rating": "up"}),
        )
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let res = w
        .app
        .post(
            &format!("/v1/messages/{answer}/feedback"),
            &w.token,
            json!({"rating": "meh"}),
        )
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[tokio::test]
async fn messages_are_checked_before_anything_is_stored() {
    let w = world(Script::Answer, false).await;
    let conversation = w.conversation(&w.token).await;
    for content in [json!(""), json!("   "), json!("x".repeat(32_001)), json!(7)] {
        let res = w
            .say(&w.token, &conversation, json!({"content": content}))
            .await;
        assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    }
    // The longest message is taken.
    let res = w
        .say(
            &w.token,
            &conversation,
            json!({"content": "é".repeat(32_000)}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    // A deleted agent answers no more; its conversations stay readable.
    let res = w
        .app
        .delete(&format!("/v1/agents/{}", w.agent), &w.token)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = w
        .say(&w.token, &conversation, json!({"content": "Rockets?"}))
        .await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let res = w
        .app
        .post_empty(&format!("/v1/agents/{}/conversations", w.agent), &w.token)
        .await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let tree = messages(&w.app, &w.token, &conversation, true).await;
    assert_eq!(tree["items"].as_array().unwrap().len(), 2);
    // Agents name only models this server has.
    for (model, field) in [
        (
            json!({"provider": "acme-ai", "name": "x"}),
            "model.provider",
        ),
        (
            json!({"provider": "local", "name": "not-installed"}),
            "model",
        ),
    ] {
        let res = w
            .app
            .post(
                "/v1/agents",
                &w.token,
                json!({"name": "X", "slug": "x", "model": model}),
            )
            .await;
        let problem =
            assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let res = w
        .app
        .post(
            "/v1/agents",
            &w.token,
            json!({"name": "X", "slug": "x", "model": {"provider": "openai", "name": "gpt-test"},
                   "collections": [uuid::Uuid::now_v7()], "tools": ["knowledge_search"]}),
        )
        .await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(problem["errors"][0]["field"], "collections", "{problem}");
}

#[tokio::test]
async fn conversations_and_runs_are_their_owners_and_their_tenants() {
    let w = world(Script::Answer, false).await;
    let app = &w.app;
    let (_, alice) = app.user(&w.acme, "alice@acme.test", "member").await;
    let (_, bob) = app.user(&w.acme, "bob@acme.test", "member").await;
    let other = app.tenant("globex").await;
    let conversation = w.conversation(&alice).await;
    let turn = json(
        w.say(&alice, &conversation, json!({"content": "Rockets?"}))
            .await,
        StatusCode::OK,
    )
    .await;
    let run = turn["run"]["id"].as_str().unwrap().to_owned();
    let answer = turn["answer"]["id"].as_str().unwrap().to_owned();
    let paths = [
        ("GET", format!("/v1/conversations/{conversation}")),
        ("GET", format!("/v1/conversations/{conversation}/messages")),
        ("POST", format!("/v1/conversations/{conversation}/messages")),
        ("PATCH", format!("/v1/conversations/{conversation}")),
        ("DELETE", format!("/v1/conversations/{conversation}")),
        ("POST", format!("/v1/conversations/{conversation}/restore")),
        ("GET", format!("/v1/runs/{run}")),
        ("GET", format!("/v1/runs/{run}/events")),
        ("POST", format!("/v1/runs/{run}/cancel")),
        ("POST", format!("/v1/messages/{answer}/regenerate")),
        ("POST", format!("/v1/messages/{answer}/feedback")),
    ];
    // Another member of the tenant and another tenant's admin: as if nothing were there.
    for token in [&bob, &other.admin_token] {
        for (verb, path) in &paths {
            let body = match *verb {
                "PATCH" => json!({"title": "mine"}),
                _ if path.ends_with("/feedback") => json!({"rating": "up"}),
                _ if path.ends_with("/messages") => json!({"content": "hi"}),
                _ => json!({}),
            };
            let res = app
                .request(
                    reqwest::Method::from_bytes(verb.as_bytes()).unwrap(),
                    path,
                    Some(token),
                )
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::NOT_FOUND, "{verb} {path}");
        }
    }
    let listed = json(app.get("/v1/conversations", &bob).await, StatusCode::OK).await;
    assert!(listed["items"].as_array().unwrap().is_empty());
    let listed = json(
        app.get("/v1/conversations", &other.admin_token).await,
        StatusCode::OK,
    )
    .await;
    assert!(listed["items"].as_array().unwrap().is_empty());
    // The tenant's admin sees it; its owner lists it.
    json(
        app.get(&format!("/v1/runs/{run}"), &w.token).await,
        StatusCode::OK,
    )
    .await;
    let listed = json(app.get("/v1/conversations", &alice).await, StatusCode::OK).await;
    assert_eq!(listed["items"][0]["id"], conversation.as_str());
    assert_eq!(listed["items"][0]["owner"]["kind"], "user");
    // A read-only key reads nothing of Alice's, and may not write.
    let (_, reader) = app.api_key(&w.acme, &["read"]).await;
    let res = app
        .get(&format!("/v1/conversations/{conversation}"), &reader)
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app
        .post_empty(&format!("/v1/agents/{}/conversations", w.agent), &reader)
        .await;
    assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    // A writing key owns its own conversations.
    let (_, writer) = app.api_key(&w.acme, &["read", "write"]).await;
    let own = w.conversation(&writer).await;
    let listed = json(app.get("/v1/conversations", &writer).await, StatusCode::OK).await;
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [own.as_str()]);
    // Soft delete hides, restore brings back, purge (admins) removes.
    let res = app
        .delete(&format!("/v1/conversations/{conversation}"), &alice)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app
        .get(
            &format!("/v1/conversations/{conversation}/messages"),
            &alice,
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app
        .post(
            &format!("/v1/messages/{answer}/feedback"),
            &alice,
            json!({"rating": "up"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    json(
        app.post_empty(&format!("/v1/conversations/{conversation}/restore"), &alice)
            .await,
        StatusCode::OK,
    )
    .await;
    let res = app
        .delete(&format!("/v1/conversations/{conversation}/purge"), &alice)
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = app
        .delete(&format!("/v1/conversations/{conversation}/purge"), &w.token)
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app.get(&format!("/v1/runs/{run}"), &w.token).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_run_whose_process_died_ends_incomplete_keeping_what_it_wrote() {
    let w = world(Script::Answer, false).await;
    let conversation = w.conversation(&w.token).await;
    json(
        w.say(&w.token, &conversation, json!({"content": "Rockets?"}))
            .await,
        StatusCode::OK,
    )
    .await;
    // A run another process had started and stopped heartbeating: its lease ran out a minute ago.
    // As the platform role: the owner is bound by row-level security like everyone else.
    let owner = w.app.platform_connection().await;
    use sea_orm::ConnectionTrait;
    let (run, message) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    owner
        .execute_unprepared(&format!(
            "INSERT INTO messages (tenant_id, id, conversation_id, parent_id, role, content, status, run_id, created_at)
             SELECT tenant_id, '{message}', conversation_id, id, 'assistant', 'Rockets fly by', 'streaming', '{run}', now()
             FROM messages WHERE conversation_id = '{conversation}' AND role = 'user';
             INSERT INTO runs (tenant_id, id, conversation_id, message_id, user_message_id, agent_id,
                               started_by_kind, started_by_id, model_provider, model_name, status,
                               created_at, started_at, lease_until)
             SELECT m.tenant_id, '{run}', m.conversation_id, '{message}', m.parent_id, c.agent_id,
                    c.owner_kind, c.owner_id, 'openai', 'gpt-test', 'in_progress', now(), now(),
                    now() - interval '1 minute'
             FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE m.id = '{message}';"
        ))
        .await
        .unwrap();
    let mut status = Value::Null;
    for _ in 0..100 {
        let found = json(
            w.app.get(&format!("/v1/runs/{run}"), &w.token).await,
            StatusCode::OK,
        )
        .await;
        status = found["status"].clone();
        if status == "failed" {
            assert_eq!(found["error"]["code"], "incomplete");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "failed", "the reaper ended the run");
    let tree = messages(&w.app, &w.token, &conversation, true).await;
    let answer = tree["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == message.to_string().as_str())
        .unwrap()
        .clone();
    assert_eq!(answer["status"], "failed");
    assert_eq!(answer["content"], "Rockets fly by");
    let events = parse_sse(
        &w.app
            .get(&format!("/v1/runs/{run}/events"), &w.token)
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(events.last().unwrap().1, "run.failed");
}

/// The offline default end to end: SmolLM2 (GGUF, on the CPU) answers over a collection of this
/// project's own README, with the local embedder. Needs `just models`.
#[tokio::test]
async fn the_local_model_answers_from_the_collection_it_was_given() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;
    let collection = app.collection(t, "Project docs").await;
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("the README");
    let uploaded = app
        .upload(t, &collection, "README", &readme, json!({}))
        .await;
    let job = app
        .wait_for_job(t, uploaded["job"]["id"].as_str().unwrap())
        .await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let agent = json(
        app.post(
            "/v1/agents",
            t,
            json!({
                "name": "Guide", "slug": "guide",
                "system_prompt": "You answer questions about the Agentic Platform.",
                "model": {"provider": "local", "name": "smollm2"},
                "temperature": 0, "max_tokens": 40,
                "collections": [collection],
                "retrieval": {"top_k": 3},
            }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let conversation = json(
        app.post_empty(
            &format!("/v1/agents/{}/conversations", agent["id"].as_str().unwrap()),
            t,
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let turn = json(
        app.post(
            &format!(
                "/v1/conversations/{}/messages",
                conversation["id"].as_str().unwrap()
            ),
            t,
            json!({"content": "How do I run the tests?"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let answer = &turn["answer"];
    assert_eq!(answer["status"], "complete", "{turn}");
    assert!(
        !answer["content"].as_str().unwrap().trim().is_empty(),
        "{turn}"
    );
    let usage = &turn["run"]["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 50, "{usage}");
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!((1..=40).contains(&completion), "{usage}");
    assert_eq!(answer["usage"], *usage);
    // The sources are chunks of the collection, and every citation points into them.
    let chunk_ids: Vec<&str> = turn["run"]["context"]["chunk_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(!chunk_ids.is_empty() && chunk_ids.len() <= 3, "{turn}");
    let platform = app.platform_connection().await;
    use sea_orm::ConnectionTrait;
    let row = platform
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            format!(
                "SELECT count(*) AS n FROM chunks WHERE collection_id = '{collection}' AND id::text IN ({})",
                chunk_ids.iter().map(|c| format!("'{c}'")).collect::<Vec<_>>().join(", ")
            ),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.try_get::<i64>("", "n").unwrap() as usize,
        chunk_ids.len()
    );
    for citation in answer["citations"].as_array().unwrap() {
        assert!(
            chunk_ids.contains(&citation["chunk_id"].as_str().unwrap()),
            "{citation}"
        );
        assert_eq!(citation["collection_id"], collection.as_str());
    }
}
