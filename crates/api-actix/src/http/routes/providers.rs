//! A tenant's own model providers (admins): OpenAI-compatible servers its agents may name as
//! `model.provider`. The API key is write-only: stored sealed, never returned, never logged.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use domain::ProviderId;
use domain::ports::Provider;
use domain::services::{ProviderDraft, ProviderPatch};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::dto::{List, double_option};
use crate::http::error::ApiResult;
use crate::http::extract::{Body, Caller, PageQuery, PathId};
use crate::http::responses::{
    Conflict, Forbidden, Internal, Invalid, NotFound, TooLarge, Unauthorized, Unavailable,
    Unsupported,
};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderDto {
    pub id: Uuid,
    /// What agents name as `model.provider`.
    pub name: String,
    pub base_url: String,
    /// The model of agents that name `default` as their model.
    pub default_model: Option<String>,
    pub supports_tools: bool,
    /// Its wait for an answer to start, per attempt, in seconds (null: the server's default).
    pub timeout_secs: Option<u32>,
    /// Its extra attempts on 429, 5xx and timeouts before an answer starts (null: 3).
    pub max_retries: Option<u32>,
    /// Which of the platform's secret keys sealed its API key (changes with `agentic keys rotate`).
    pub key_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Provider> for ProviderDto {
    fn from(p: Provider) -> Self {
        Self {
            id: p.id.as_uuid(),
            name: p.name,
            base_url: p.base_url,
            default_model: p.default_model,
            supports_tools: p.supports_tools,
            timeout_secs: p.timeout_secs,
            max_retries: p.max_retries,
            key_id: p.key_id,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// No `Debug`: the key it carries must not reach a log.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProviderRequest {
    /// 1 to 50 lowercase letters, digits, `-` or `_`, starting with a letter; not `local` or
    /// `openai`.
    #[schema(pattern = "^[a-z][a-z0-9_-]{0,49}$")]
    pub name: String,
    /// The OpenAI-compatible API's base, e.g. `https://llm.example/v1` (http or https).
    #[schema(max_length = 2048)]
    pub base_url: String,
    /// Write-only.
    #[schema(min_length = 1, max_length = 4096)]
    pub api_key: String,
    #[schema(min_length = 1, max_length = 200)]
    pub default_model: Option<String>,
    /// Whether its models take tools (function calling); default true.
    pub supports_tools: Option<bool>,
    /// Its own wait for an answer to start, per attempt (default: the server's).
    #[schema(minimum = 1, maximum = 600)]
    pub timeout_secs: Option<u32>,
    /// Its own extra attempts on 429, 5xx and timeouts before an answer starts (default 3).
    #[schema(minimum = 0, maximum = 5)]
    pub max_retries: Option<u32>,
}

/// No `Debug`: the key it may carry must not reach a log.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchProviderRequest {
    #[schema(max_length = 2048)]
    pub base_url: Option<String>,
    /// A new key (sealed anew); write-only.
    #[schema(min_length = 1, max_length = 4096)]
    pub api_key: Option<String>,
    /// null clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 200)]
    pub default_model: Option<Option<String>>,
    pub supports_tools: Option<bool>,
    /// null: the server's default.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 600)]
    pub timeout_secs: Option<Option<u32>>,
    /// null: the default (3).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>, minimum = 0, maximum = 5)]
    pub max_retries: Option<Option<u32>>,
}

/// Add a model provider (admins). Its `api_key` is sealed with the platform's secret key and
/// never shown again.
#[utoipa::path(
    post, path = "/v1/providers", tag = "providers",
    request_body = CreateProviderRequest,
    responses(
        (status = 201, description = "Created", body = ProviderDto),
        Unauthorized, Forbidden, Conflict, Invalid, TooLarge, Unsupported, Unavailable, Internal
    ),
    security(("bearer" = []))
)]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: Body<CreateProviderRequest>,
) -> ApiResult<HttpResponse> {
    let req = body.0;
    let provider = state
        .providers
        .create(
            &caller,
            ProviderDraft {
                name: req.name,
                base_url: req.base_url,
                api_key: req.api_key,
                default_model: req.default_model,
                supports_tools: req.supports_tools,
                timeout_secs: req.timeout_secs,
                max_retries: req.max_retries,
            },
        )
        .await?;
    Ok(HttpResponse::Created().json(ProviderDto::from(provider)))
}

/// The tenant's providers, newest first (admins).
#[utoipa::path(
    get, path = "/v1/providers", tag = "providers",
    params(PageQuery),
    responses((status = 200, description = "A page of providers", body = List<ProviderDto>), Unauthorized, Forbidden, Invalid, Internal),
    security(("bearer" = []))
)]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<List<ProviderDto>>> {
    let page = state.providers.list(&caller, query.to_request()?).await?;
    Ok(web::Json(List::from_page(page, ProviderDto::from)))
}

/// A provider (admins).
#[utoipa::path(
    get, path = "/v1/providers/{id}", tag = "providers",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The provider", body = ProviderDto), Unauthorized, Forbidden, NotFound, Internal),
    security(("bearer" = []))
)]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<ProviderId>,
) -> ApiResult<web::Json<ProviderDto>> {
    Ok(web::Json(state.providers.get(&caller, id).await?.into()))
}

/// Change a provider's URL, key, default model or `supports_tools` (admins); its name stays.
#[utoipa::path(
    patch, path = "/v1/providers/{id}", tag = "providers",
    params(("id" = uuid::Uuid, Path)),
    request_body = PatchProviderRequest,
    responses(
        (status = 200, description = "The provider", body = ProviderDto),
        Unauthorized, Forbidden, NotFound, Invalid, TooLarge, Unsupported, Unavailable, Internal
    ),
    security(("bearer" = []))
)]
pub async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<ProviderId>,
    body: Body<PatchProviderRequest>,
) -> ApiResult<web::Json<ProviderDto>> {
    let req = body.0;
    let provider = state
        .providers
        .update(
            &caller,
            id,
            ProviderPatch {
                base_url: req.base_url,
                api_key: req.api_key,
                default_model: req.default_model,
                supports_tools: req.supports_tools,
                timeout_secs: req.timeout_secs,
                max_retries: req.max_retries,
            },
        )
        .await?;
    Ok(web::Json(provider.into()))
}

/// Remove a provider for good (admins). 409 `provider_in_use` while agents (live or deleted)
/// name it, listing them in `agents`.
#[utoipa::path(
    delete, path = "/v1/providers/{id}", tag = "providers",
    params(("id" = uuid::Uuid, Path)),
    responses(
        (status = 204, description = "Removed"),
        Unauthorized, Forbidden, NotFound, Conflict, Internal
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<ProviderId>,
) -> ApiResult<HttpResponse> {
    state.providers.delete(&caller, id).await?;
    Ok(HttpResponse::NoContent().finish())
}
