//! The OpenAI-compatible routes: `/v1/chat/completions` (an agent by its slug, plain or
//! streamed in OpenAI's chunk format), `/v1/models` (the tenant's agents) and `/v1/embeddings`
//! (the platform's embedding spaces). Errors come in OpenAI's shape ([`openai_errors`]).
//!
//! A completion is a run like any other (metered, held to the quota, visible at
//! `GET /v1/runs/{id}` with no conversation), whose answer comes back to this request through
//! an in-process channel rather than the run's event log; a client that hangs up cancels it.
//!
//! [`openai_errors`]: crate::http::openai::openai_errors

use actix_web::http::{StatusCode, header};
use actix_web::web::Bytes;
use actix_web::{HttpResponse, web};
use base64::Engine as _;
use domain::entities::RunStatus;
use domain::entities::failure_codes;
use domain::error::Resource;
use domain::ports::RunEventKind;
use domain::services::Executor;
use domain::services::completions::{ClientAnswer, ClientTurn, LiveEvent};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Body, Caller};
use crate::http::openai::{
    ChatCompletion, ChatCompletionRequest, CompletionChoice, CompletionMessage, CompletionUsage,
    EmbeddingRequest, OpenAiEmbedding, OpenAiEmbeddingList, OpenAiEmbeddingUsage, OpenAiError,
    OpenAiModel, OpenAiModelList, answer_calls, citations, error_body,
};
use crate::http::routes::runs::RUN_ID_HEADER;
use crate::state::AppState;

/// Chat with an agent through OpenAI's API: `model` is the agent's slug; the client's messages
/// are the history; retrieval searches the last user message. The client's `temperature` and
/// `max_tokens` apply, capped by the agent's. Tools the client sends are offered beside the
/// agent's own: calls to them come back with `finish_reason: "tool_calls"`. With `stream`,
/// `text/event-stream` of `chat.completion.chunk`s ending in `data: [DONE]`. The answer's `id`
/// is `chatcmpl-<run id>`; `citations` is the platform's extra field. Errors use OpenAI's shape.
#[utoipa::path(
    post, path = "/v1/chat/completions", tag = "openai",
    request_body = ChatCompletionRequest,
    responses(
        (status = 200, description = "The answer, or its chunks (`stream: true`)",
            headers(("x-run-id" = uuid::Uuid, description = "The run answering")),
            content(
                (ChatCompletion = "application/json"),
                (String = "text/event-stream")
            )),
        (status = 401, description = "Missing or invalid credentials", body = OpenAiError),
        (status = 403, description = "Not allowed", body = OpenAiError),
        (status = 404, description = "No agent has this slug (`model_not_found`)", body = OpenAiError),
        (status = 413, description = "Body too large", body = OpenAiError),
        (status = 415, description = "Not JSON", body = OpenAiError),
        (status = 422, description = "Invalid request", body = OpenAiError),
        (status = 429, description = "The daily token quota is spent (`quota_exceeded`); `Retry-After` says when it renews", body = OpenAiError),
        (status = 500, description = "Internal error", body = OpenAiError),
        (status = 502, description = "The model failed", body = OpenAiError),
        (status = 503, description = "Busy or unavailable", body = OpenAiError),
        (status = 504, description = "The model did not answer in time", body = OpenAiError),
    ),
    security(("bearer" = []))
)]
pub async fn chat_completions(
    state: web::Data<AppState>,
    caller: Caller,
    body: Body<ChatCompletionRequest>,
) -> ApiResult<HttpResponse> {
    let req = body.0;
    let stream = req.stream;
    let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let model = req.model.clone();
    let (temperature, ceiling) = (req.temperature, req.answer_ceiling());
    let (messages, tools) = req.into_parts()?;
    let (live, mut events) = tokio::sync::mpsc::unbounded_channel();
    let turn = ClientTurn::new(messages, tools, temperature, ceiling, live);
    let (run, job) = state
        .executor
        .start_completion(&caller, &model, turn)
        .await
        .map_err(|e| unknown_model(e, &model, "agent"))?;
    let executor = state.executor.clone();
    actix_web::rt::spawn(async move { executor.execute(job).await });
    let head = Head {
        id: format!("chatcmpl-{}", run.id),
        created: run.created_at.timestamp(),
        model,
        include_usage,
    };
    let run_id = run.id.to_string();
    if stream {
        return stream_answer(&state.executor, head, events, run_id).await;
    }
    let answer = loop {
        match events.recv().await {
            Some(LiveEvent::Ended(answer)) => break answer,
            Some(LiveEvent::Event(..)) => {}
            None => return Err(ended_unseen(&run_id)),
        }
    };
    check(&state.executor, &answer)?;
    let finish_reason = finish_reason(&answer);
    let completion = ChatCompletion {
        id: head.id,
        object: "chat.completion",
        created: head.created,
        model: head.model,
        choices: vec![CompletionChoice {
            index: 0,
            message: CompletionMessage {
                role: "assistant",
                content: (!answer.text.is_empty() || answer.tool_calls.is_empty())
                    .then(|| answer.text.clone()),
                tool_calls: (!answer.tool_calls.is_empty())
                    .then(|| answer_calls(&answer.tool_calls, false)),
            },
            finish_reason,
        }],
        usage: answer.usage.into(),
        citations: citations(answer.citations),
    };
    Ok(HttpResponse::Ok()
        .insert_header((RUN_ID_HEADER, run_id))
        .json(completion))
}

/// What every chunk of one answer repeats.
struct Head {
    id: String,
    created: i64,
    model: String,
    include_usage: bool,
}

impl Head {
    fn chunk(
        &self,
        delta: Value,
        finish_reason: Option<&str>,
        extra: Option<(&str, Value)>,
    ) -> String {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        });
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        if let Some((key, value)) = extra {
            chunk[key] = value;
        }
        format!("data: {chunk}\n\n")
    }

    /// The chunks that end an answer: its calls of the client's tools, the finish (with the
    /// citations), the usage when asked, and `[DONE]`.
    fn ending(&self, answer: ClientAnswer) -> String {
        let mut out = String::new();
        if !answer.tool_calls.is_empty() {
            let calls =
                serde_json::to_value(answer_calls(&answer.tool_calls, true)).unwrap_or(Value::Null);
            out.push_str(&self.chunk(json!({"tool_calls": calls}), None, None));
        }
        let cited =
            serde_json::to_value(citations(answer.citations.clone())).unwrap_or(Value::Null);
        out.push_str(&self.chunk(
            json!({}),
            Some(finish_reason(&answer)),
            Some(("citations", cited)),
        ));
        if self.include_usage {
            let usage = json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": CompletionUsage::from(answer.usage),
            });
            out.push_str(&format!("data: {usage}\n\n"));
        }
        out.push_str("data: [DONE]\n\n");
        out
    }
}

fn finish_reason(answer: &ClientAnswer) -> &'static str {
    if !answer.tool_calls.is_empty() {
        "tool_calls"
    } else if answer.cut_at_max_tokens {
        "length"
    } else {
        "stop"
    }
}

/// A failed answer as the error the client gets.
fn check(executor: &Executor, answer: &ClientAnswer) -> Result<(), ApiError> {
    if answer.status != RunStatus::Failed {
        return Ok(());
    }
    let mut err = match &answer.failure {
        Some(f) if f.code == failure_codes::INVALID_REQUEST => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            failure_codes::INVALID_REQUEST,
            f.message.clone(),
        ),
        failure => ApiError::from(executor.failure_error(failure.clone())),
    };
    err.set_run_id(answer.run);
    Err(err)
}

fn ended_unseen(run_id: &str) -> ApiError {
    tracing::error!(run = run_id, "a completion's run ended without its answer");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the run ended without an answer; it has been logged",
    )
}

/// The answer's chunks as they come. The head is sent once the first token (or the end) is
/// here, so that a run failing before its first token is answered with an error status.
async fn stream_answer(
    executor: &Executor,
    head: Head,
    mut events: UnboundedReceiver<LiveEvent>,
    run_id: String,
) -> ApiResult<HttpResponse> {
    let first = loop {
        match events.recv().await {
            Some(LiveEvent::Event(RunEventKind::Delta, data)) => {
                break head.chunk(
                    json!({"role": "assistant", "content": delta_text(&data)}),
                    None,
                    None,
                );
            }
            Some(LiveEvent::Event(..)) => {}
            Some(LiveEvent::Ended(answer)) => {
                check(executor, &answer)?;
                let role = head.chunk(json!({"role": "assistant", "content": ""}), None, None);
                break role + &head.ending(answer);
            }
            None => return Err(ended_unseen(&run_id)),
        }
    };
    struct Follow {
        head: Head,
        events: UnboundedReceiver<LiveEvent>,
        first: Option<String>,
        done: bool,
    }
    let follow = Follow {
        done: first.ends_with("data: [DONE]\n\n"),
        head,
        events,
        first: Some(first),
    };
    let body = futures_util::stream::unfold(follow, |mut f| async move {
        if let Some(first) = f.first.take() {
            return Some((Ok::<_, actix_web::Error>(Bytes::from(first)), f));
        }
        if f.done {
            return None;
        }
        let chunk = loop {
            match f.events.recv().await {
                Some(LiveEvent::Event(RunEventKind::Delta, data)) => {
                    break f
                        .head
                        .chunk(json!({"content": delta_text(&data)}), None, None);
                }
                Some(LiveEvent::Event(..)) => {}
                Some(LiveEvent::Ended(answer)) => {
                    f.done = true;
                    if answer.status == RunStatus::Failed {
                        let failure = answer.failure.unwrap_or_else(|| {
                            domain::entities::Failure::new("internal", "the run failed")
                        });
                        let error = error_body(
                            StatusCode::BAD_GATEWAY,
                            &failure.message,
                            &failure.code,
                            None,
                        );
                        break format!("data: {error}\n\ndata: [DONE]\n\n");
                    }
                    break f.head.ending(answer);
                }
                None => {
                    f.done = true;
                    let error = error_body(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the run ended without an answer",
                        "internal",
                        None,
                    );
                    break format!("data: {error}\n\ndata: [DONE]\n\n");
                }
            }
        };
        Some((Ok(Bytes::from(chunk)), f))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Compression would hold chunks back until a buffer fills: this stream is sent as is.
        .insert_header((header::CONTENT_ENCODING, "identity"))
        .insert_header(("x-accel-buffering", "no"))
        .insert_header((RUN_ID_HEADER, run_id))
        .streaming(body))
}

fn delta_text(data: &Value) -> &str {
    data.get("text").and_then(Value::as_str).unwrap_or("")
}

/// An unknown agent or space is OpenAI's `model_not_found`.
fn unknown_model(err: domain::Error, model: &str, what: &str) -> ApiError {
    match err {
        domain::Error::NotFound(Resource::Agent | Resource::Space) => ApiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!("the model {model:?} does not exist: it names no {what} of this tenant"),
        ),
        other => other.into(),
    }
}

/// The tenant's live agents as models, by slug (newest first, at most 1,000).
#[utoipa::path(
    get, path = "/v1/models", tag = "openai",
    responses(
        (status = 200, description = "The agents", body = OpenAiModelList),
        (status = 401, description = "Missing or invalid credentials", body = OpenAiError),
        (status = 403, description = "Not allowed", body = OpenAiError),
        (status = 500, description = "Internal error", body = OpenAiError),
    ),
    security(("bearer" = []))
)]
pub async fn models(
    state: web::Data<AppState>,
    caller: Caller,
) -> ApiResult<web::Json<OpenAiModelList>> {
    let agents = state.agents.models(&caller).await?;
    Ok(web::Json(OpenAiModelList {
        object: "list",
        data: agents
            .into_iter()
            .map(|a| OpenAiModel {
                id: a.slug.to_string(),
                object: "model",
                created: a.created_at.timestamp(),
                owned_by: a.tenant_id.to_string(),
            })
            .collect(),
    }))
}

/// Embed texts in one of the platform's embedding spaces (`model` is its id; local spaces
/// included). Metered, and held to the daily quota.
#[utoipa::path(
    post, path = "/v1/embeddings", tag = "openai",
    request_body = EmbeddingRequest,
    responses(
        (status = 200, description = "The vectors, in the order of the inputs", body = OpenAiEmbeddingList),
        (status = 401, description = "Missing or invalid credentials", body = OpenAiError),
        (status = 403, description = "Not allowed", body = OpenAiError),
        (status = 404, description = "No space has this id (`model_not_found`)", body = OpenAiError),
        (status = 413, description = "Body too large", body = OpenAiError),
        (status = 415, description = "Not JSON", body = OpenAiError),
        (status = 422, description = "Invalid request", body = OpenAiError),
        (status = 429, description = "The daily token quota is spent", body = OpenAiError),
        (status = 500, description = "Internal error", body = OpenAiError),
        (status = 503, description = "The space's embedder is unavailable", body = OpenAiError),
    ),
    security(("bearer" = []))
)]
pub async fn embeddings(
    state: web::Data<AppState>,
    caller: Caller,
    body: Body<EmbeddingRequest>,
) -> ApiResult<web::Json<OpenAiEmbeddingList>> {
    let req = body.0;
    let model = req.model.clone();
    let (inputs, base64) = req.into_parts()?;
    let embedded = state
        .embeddings
        .embed(&caller, &model, inputs)
        .await
        .map_err(|e| unknown_model(e, &model, "embedding space"))?;
    let data = embedded
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, vector)| OpenAiEmbedding {
            object: "embedding",
            index,
            embedding: if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            },
        })
        .collect();
    Ok(web::Json(OpenAiEmbeddingList {
        object: "list",
        data,
        model,
        usage: OpenAiEmbeddingUsage {
            prompt_tokens: embedded.prompt_tokens,
            total_tokens: embedded.prompt_tokens,
        },
    }))
}
