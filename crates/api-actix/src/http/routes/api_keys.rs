use actix_web::{HttpResponse, web};
use domain::ApiKeyId;

use crate::http::dto::{ApiKeyDto, CreateApiKeyRequest, CreatedApiKeyDto, List};
use crate::http::error::ApiResult;
use crate::http::extract::{Body, Caller, PageQuery, PathId};
use crate::http::responses::{
    Forbidden, Internal, Invalid, NotFound, TooLarge, Unauthorized, Unsupported,
};
use crate::state::AppState;

/// Create an API key (admins). The key is in the answer once; only its hash is stored.
#[utoipa::path(
    post, path = "/v1/api-keys", tag = "api-keys",
    request_body = CreateApiKeyRequest,
    responses(
        (status = 201, description = "Created", body = CreatedApiKeyDto),
        Unauthorized, Forbidden, Invalid, TooLarge, Unsupported, Internal
    ),
    security(("bearer" = []))
)]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: Body<CreateApiKeyRequest>,
) -> ApiResult<HttpResponse> {
    let req = body.0;
    let created = state
        .api_keys
        .create(&caller, &req.name, &req.scopes, req.expires_at)
        .await?;
    Ok(HttpResponse::Created().json(CreatedApiKeyDto {
        api_key: created.key.into(),
        key: created.plaintext,
    }))
}

/// List the tenant's API keys, revoked ones included (admins).
#[utoipa::path(
    get, path = "/v1/api-keys", tag = "api-keys",
    params(PageQuery),
    responses((status = 200, description = "A page of keys", body = List<ApiKeyDto>), Unauthorized, Forbidden, Invalid, Internal),
    security(("bearer" = []))
)]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<List<ApiKeyDto>>> {
    let keys = state.api_keys.list(&caller, query.to_request()?).await?;
    Ok(web::Json(List::from_page(keys, ApiKeyDto::from)))
}

/// Revoke an API key (admins); it stops working at once.
#[utoipa::path(
    delete, path = "/v1/api-keys/{id}", tag = "api-keys",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 204, description = "Revoked"), Unauthorized, Forbidden, NotFound, Internal),
    security(("bearer" = []))
)]
pub async fn revoke(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<ApiKeyId>,
) -> ApiResult<HttpResponse> {
    state.api_keys.revoke(&caller, id).await?;
    Ok(HttpResponse::NoContent().finish())
}
