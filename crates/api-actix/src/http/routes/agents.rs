use actix_web::{HttpResponse, web};
use domain::entities::AgentFilter;
use domain::services::{AgentDraft, AgentPatch};
use domain::{AgentId, CollectionId};
use serde::Deserialize;

use crate::http::dto::{AgentDto, CreateAgentRequest, List, PatchAgentRequest};
use crate::http::error::ApiResult;
use crate::http::extract::{Body, Caller, PageQuery, PathId};
use crate::http::responses::{
    Conflict, Forbidden, Internal, Invalid, NotFound, TooLarge, Unauthorized, Unsupported,
};
use crate::http::routes::lifecycle::lifecycle_routes;
use crate::state::AppState;

/// Create an agent.
#[utoipa::path(
    post, path = "/v1/agents", tag = "agents",
    request_body = CreateAgentRequest,
    responses(
        (status = 201, description = "Created", body = AgentDto),
        Unauthorized, Forbidden, Conflict, Invalid, TooLarge, Unsupported, Internal
    ),
    security(("bearer" = []))
)]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: Body<CreateAgentRequest>,
) -> ApiResult<HttpResponse> {
    let req = body.0;
    let draft = AgentDraft {
        name: req.name,
        slug: req.slug,
        description: req.description,
        system_prompt: req.system_prompt,
        model_provider: req.model.provider,
        model_name: req.model.name,
        temperature: req.temperature,
        max_tokens: req.max_tokens,
        metadata: req.metadata,
        collections: req
            .collections
            .map(|ids| ids.into_iter().map(CollectionId::from_uuid).collect()),
        retrieval: req.retrieval.map(Into::into),
        tools: req.tools.map(|t| t.into_iter().map(String::from).collect()),
    };
    let agent = state.agents.create(&caller, draft).await?;
    Ok(HttpResponse::Created().json(AgentDto::from(agent)))
}

#[derive(Debug, Deserialize)]
pub struct AgentListParams {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub q: Option<String>,
    #[serde(default)]
    pub include_deleted: bool,
}

/// List agents, newest first; `q` matches name or slug.
#[utoipa::path(
    get, path = "/v1/agents", tag = "agents",
    params(
        PageQuery,
        ("q" = Option<String>, Query, description = "Case-insensitive substring of name or slug"),
        ("include_deleted" = Option<bool>, Query, description = "Also list soft-deleted agents (admins)")
    ),
    responses((status = 200, description = "A page of agents", body = List<AgentDto>), Unauthorized, Forbidden, Invalid, Internal),
    security(("bearer" = []))
)]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<AgentListParams>,
) -> ApiResult<web::Json<List<AgentDto>>> {
    let query = query.into_inner();
    crate::http::extract::reject_nul("q", query.q.as_deref())?;
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    }
    .to_request()?;
    let filter = AgentFilter {
        q: query.q.filter(|q| !q.trim().is_empty()),
        include_deleted: query.include_deleted,
    };
    let agents = state.agents.list(&caller, filter, page).await?;
    Ok(web::Json(List::from_page(agents, AgentDto::from)))
}

/// An agent.
#[utoipa::path(
    get, path = "/v1/agents/{id}", tag = "agents",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The agent", body = AgentDto), Unauthorized, Forbidden, NotFound, Internal),
    security(("bearer" = []))
)]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<AgentId>,
) -> ApiResult<web::Json<AgentDto>> {
    Ok(web::Json(state.agents.get(&caller, id).await?.into()))
}

/// Change an agent; absent fields keep their value.
#[utoipa::path(
    patch, path = "/v1/agents/{id}", tag = "agents",
    params(("id" = uuid::Uuid, Path)),
    request_body = PatchAgentRequest,
    responses(
        (status = 200, description = "The agent", body = AgentDto),
        Unauthorized, Forbidden, NotFound, Conflict, Invalid, TooLarge, Unsupported, Internal
    ),
    security(("bearer" = []))
)]
pub async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<AgentId>,
    body: Body<PatchAgentRequest>,
) -> ApiResult<web::Json<AgentDto>> {
    let req = body.0;
    let model = req.model.unwrap_or_default();
    let patch = AgentPatch {
        name: req.name,
        slug: req.slug,
        description: req.description,
        system_prompt: req.system_prompt,
        model_provider: model.provider,
        model_name: model.name,
        temperature: req.temperature,
        max_tokens: req.max_tokens,
        metadata: req.metadata,
        collections: req
            .collections
            .map(|ids| ids.into_iter().map(CollectionId::from_uuid).collect()),
        retrieval: req.retrieval.map(Into::into),
        tools: req.tools.map(|t| t.into_iter().map(String::from).collect()),
    };
    Ok(web::Json(
        state.agents.update(&caller, id, patch).await?.into(),
    ))
}

lifecycle_routes! {
    service: agents,
    id: AgentId,
    dto: AgentDto,
    tag: "agents",
    delete: (
        "/v1/agents/{id}",
        "Soft-delete an agent: it leaves every read and list; its slug is free again.",
        [Unauthorized, Forbidden, NotFound, Internal]
    ),
    restore: (
        "/v1/agents/{id}/restore",
        "Restore a soft-deleted agent; 409 if a live agent has taken its slug meanwhile.",
        [Unauthorized, Forbidden, NotFound, Conflict, Internal]
    ),
    purge: (
        "/v1/agents/{id}/purge",
        "Remove an agent for good (admins).",
        [Unauthorized, Forbidden, NotFound, Internal]
    ),
}
