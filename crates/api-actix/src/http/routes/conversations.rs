//! Conversations, their messages, and the turns that answer them.

use actix_web::{HttpResponse, web};
use domain::services::{MessageView, Parent, RunJob, StartedRun};
use domain::{AgentId, ConversationId, MessageId};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::http::dto::List;
use crate::http::error::ApiResult;
use crate::http::execution_dto::{
    ConversationDto, CreateConversationRequest, FeedbackDto, FeedbackRequest, MessageList,
    PatchConversationRequest, PostMessageRequest, RatingName, RegenerateRequest, TurnDto,
};
use crate::http::extract::{Body, Caller, MaybeBody, PageQuery, PathId};
use crate::http::responses::{
    BadGateway, Conflict, Forbidden, GatewayTimeout, Internal, Invalid, NotFound, TooLarge,
    Unauthorized, Unavailable, Unsupported,
};
use crate::http::routes::lifecycle::lifecycle_routes;
use crate::http::routes::runs::{RUN_ID_HEADER, event_stream};
use crate::state::AppState;

/// Start a conversation with an agent; the caller owns it.
#[utoipa::path(
    post, path = "/v1/agents/{id}/conversations", tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "The agent")),
    request_body(content = Option<CreateConversationRequest>, description = "Optional"),
    responses(
        (status = 201, description = "Created", body = ConversationDto),
        Unauthorized, Forbidden, NotFound, Invalid, TooLarge, Unsupported, Internal
    ),
    security(("bearer" = []))
)]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(agent): PathId<AgentId>,
    body: MaybeBody<CreateConversationRequest>,
) -> ApiResult<HttpResponse> {
    let title = body.0.unwrap_or_default().title;
    let conversation = state.conversations.create(&caller, agent, title).await?;
    Ok(HttpResponse::Created().json(ConversationDto::from(conversation)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConversationListParams {
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<i64>,
    #[param(pattern = "^([A-Za-z0-9_-]{22})?$")]
    pub cursor: Option<String>,
    /// Only this agent's conversations.
    pub agent_id: Option<uuid::Uuid>,
    /// Also list soft-deleted conversations (admins).
    #[serde(default)]
    pub include_deleted: bool,
}

/// The conversations the caller may see, newest first: its own, or every one of the tenant for
/// admins (users of role admin, API keys with the admin scope).
#[utoipa::path(
    get, path = "/v1/conversations", tag = "conversations",
    params(ConversationListParams),
    responses((status = 200, description = "A page of conversations", body = List<ConversationDto>), Unauthorized, Forbidden, Invalid, Internal),
    security(("bearer" = []))
)]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ConversationListParams>,
) -> ApiResult<web::Json<List<ConversationDto>>> {
    let query = query.into_inner();
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    }
    .to_request()?;
    let conversations = state
        .conversations
        .list(
            &caller,
            query.agent_id.map(AgentId::from_uuid),
            query.include_deleted,
            page,
        )
        .await?;
    Ok(web::Json(List::from_page(
        conversations,
        ConversationDto::from,
    )))
}

/// A conversation.
#[utoipa::path(
    get, path = "/v1/conversations/{id}", tag = "conversations",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The conversation", body = ConversationDto), Unauthorized, Forbidden, NotFound, Internal),
    security(("bearer" = []))
)]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<ConversationId>,
) -> ApiResult<web::Json<ConversationDto>> {
    Ok(web::Json(
        state.conversations.get(&caller, id).await?.into(),
    ))
}

/// Rename a conversation.
#[utoipa::path(
    patch, path = "/v1/conversations/{id}", tag = "conversations",
    params(("id" = uuid::Uuid, Path)),
    request_body = PatchConversationRequest,
    responses(
        (status = 200, description = "The conversation", body = ConversationDto),
        Unauthorized, Forbidden, NotFound, Invalid, TooLarge, Unsupported, Internal
    ),
    security(("bearer" = []))
)]
pub async fn rename(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<ConversationId>,
    body: Body<PatchConversationRequest>,
) -> ApiResult<web::Json<ConversationDto>> {
    let conversation = state
        .conversations
        .rename(&caller, id, &body.0.title)
        .await?;
    Ok(web::Json(conversation.into()))
}

#[derive(Clone, Copy, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ViewName {
    /// The path to the newest answer, oldest first.
    #[default]
    Branch,
    /// Every message, oldest first, each naming its parent.
    Tree,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessagesParams {
    /// `branch` (default) or `tree`.
    pub view: Option<ViewName>,
}

/// The conversation's messages: the current branch (the path to its newest leaf), or with
/// `view=tree` every message with its parent. Oldest first.
#[utoipa::path(
    get, path = "/v1/conversations/{id}/messages", tag = "conversations",
    params(("id" = uuid::Uuid, Path), MessagesParams),
    responses((status = 200, description = "Messages", body = MessageList), Unauthorized, Forbidden, NotFound, Invalid, Internal),
    security(("bearer" = []))
)]
pub async fn messages(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<ConversationId>,
    query: web::Query<MessagesParams>,
) -> ApiResult<web::Json<MessageList>> {
    let view = match query.view.unwrap_or_default() {
        ViewName::Branch => MessageView::Branch,
        ViewName::Tree => MessageView::Tree,
    };
    let messages = state.conversations.messages(&caller, id, view).await?;
    Ok(web::Json(MessageList {
        items: messages.into_iter().map(Into::into).collect(),
        next_cursor: None,
    }))
}

/// Post a message and get the agent's answer. The message and the run are stored before the
/// model is called; the run goes on if the client goes away (follow it at
/// `/v1/runs/{id}/events`, named by the `x-run-id` header). With `stream: true` the answer is
/// the run's events as Server-Sent Events; otherwise the turn once the run has ended, or 502/504
/// when the model failed (the failed answer is stored).
#[utoipa::path(
    post, path = "/v1/conversations/{id}/messages", tag = "conversations",
    params(("id" = uuid::Uuid, Path)),
    request_body = PostMessageRequest,
    responses(
        (status = 200, description = "The turn, or its events (`stream: true`)",
            headers(("x-run-id" = uuid::Uuid, description = "The run answering")),
            content(
                (TurnDto = "application/json"),
                (String = "text/event-stream")
            )),
        Unauthorized, Forbidden, NotFound, Conflict, Invalid, TooLarge, Unsupported, Internal,
        BadGateway, Unavailable, GatewayTimeout
    ),
    security(("bearer" = []))
)]
pub async fn post_message(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<ConversationId>,
    body: Body<PostMessageRequest>,
) -> ApiResult<HttpResponse> {
    let req = body.0;
    let parent = match req.parent_id {
        None => Parent::Latest,
        Some(None) => Parent::Root,
        Some(Some(parent)) => Parent::Message(MessageId::from_uuid(parent)),
    };
    let (started, job) = state
        .executor
        .post(&caller, id, &req.content, parent)
        .await?;
    answer_turn(&state, &caller, started, job, req.stream).await
}

/// Answer the question of an assistant message again: a new sibling answer. Same answers as
/// posting a message (the turn's `message` is null).
#[utoipa::path(
    post, path = "/v1/messages/{id}/regenerate", tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "An assistant message")),
    request_body(content = Option<RegenerateRequest>, description = "Optional"),
    responses(
        (status = 200, description = "The turn, or its events (`stream: true`)",
            headers(("x-run-id" = uuid::Uuid, description = "The run answering")),
            content(
                (TurnDto = "application/json"),
                (String = "text/event-stream")
            )),
        Unauthorized, Forbidden, NotFound, Conflict, Invalid, TooLarge, Unsupported, Internal,
        BadGateway, Unavailable, GatewayTimeout
    ),
    security(("bearer" = []))
)]
pub async fn regenerate(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<MessageId>,
    body: MaybeBody<RegenerateRequest>,
) -> ApiResult<HttpResponse> {
    let stream = body.0.unwrap_or_default().stream;
    let (started, job) = state.executor.regenerate(&caller, id).await?;
    answer_turn(&state, &caller, started, job, stream).await
}

/// Detaches the run, then streams its events or waits for its end.
async fn answer_turn(
    state: &web::Data<AppState>,
    caller: &Caller,
    started: StartedRun,
    job: RunJob,
    stream: bool,
) -> ApiResult<HttpResponse> {
    let run_id = started.run.id;
    let executor = state.executor.clone();
    // Detached: a client that goes away leaves the run to finish (dropping the handle does not
    // stop it).
    let execution = actix_web::rt::spawn(async move { executor.execute(job).await });
    if stream {
        return Ok(event_stream(state.executor.clone(), started.run, 0));
    }
    // A panicked execution answers nothing: what is stored and the run's events then tell.
    let executed_here = async move { execution.await.ok().flatten() };
    let finished = state
        .executor
        .finished(caller, &started, executed_here)
        .await;
    let mut response = HttpResponse::Ok();
    response.insert_header((RUN_ID_HEADER, run_id.to_string()));
    match finished {
        Ok(finished) => Ok(response.json(TurnDto::from(finished))),
        Err(err) => {
            let mut err = crate::http::error::ApiError::from(err);
            err.set_run_id(run_id);
            Err(err)
        }
    }
}

/// Rate an answer: one rating per principal per message, replaced by the next.
#[utoipa::path(
    post, path = "/v1/messages/{id}/feedback", tag = "conversations",
    params(("id" = uuid::Uuid, Path, description = "An assistant message")),
    request_body = FeedbackRequest,
    responses(
        (status = 200, description = "The caller's rating", body = FeedbackDto),
        Unauthorized, Forbidden, NotFound, Invalid, TooLarge, Unsupported, Internal
    ),
    security(("bearer" = []))
)]
pub async fn feedback(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<MessageId>,
    body: Body<FeedbackRequest>,
) -> ApiResult<web::Json<FeedbackDto>> {
    let req = body.0;
    let rating = match req.rating {
        RatingName::Up => domain::entities::Rating::Up,
        RatingName::Down => domain::entities::Rating::Down,
    };
    let feedback = state
        .conversations
        .rate(&caller, id, rating, req.comment)
        .await?;
    Ok(web::Json(feedback.into()))
}

lifecycle_routes! {
    service: conversations,
    id: ConversationId,
    dto: ConversationDto,
    tag: "conversations",
    delete: (
        "/v1/conversations/{id}",
        "Soft-delete a conversation: it leaves every read and list.",
        [Unauthorized, Forbidden, NotFound, Internal]
    ),
    restore: (
        "/v1/conversations/{id}/restore",
        "Restore a soft-deleted conversation.",
        [Unauthorized, Forbidden, NotFound, Internal]
    ),
    purge: (
        "/v1/conversations/{id}/purge",
        "Remove a conversation with its messages, runs and ratings for good (admins).",
        [Unauthorized, Forbidden, NotFound, Internal]
    ),
}
