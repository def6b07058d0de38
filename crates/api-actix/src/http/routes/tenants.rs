use actix_web::{HttpResponse, web};
use domain::TenantId;

use crate::http::dto::{
    CreateTenantRequest, CreatedTenantDto, List, PatchTenantRequest, PatchTenantSettingsRequest,
    TenantDto,
};
use crate::http::error::ApiResult;
use crate::http::extract::{Body, Caller, PageQuery, PathId};
use crate::http::responses::{
    Conflict, Forbidden, Internal, Invalid, NotFound, TooLarge, Unauthorized, Unsupported,
};
use crate::state::AppState;

/// Provision a tenant with its first admin (platform keys only).
#[utoipa::path(
    post, path = "/v1/tenants", tag = "tenants",
    request_body = CreateTenantRequest,
    responses(
        (status = 201, description = "Created; the admin password is shown once", body = CreatedTenantDto),
        Unauthorized, Forbidden, Conflict, Invalid, TooLarge, Unsupported, Internal
    ),
    security(("bearer" = []))
)]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: Body<CreateTenantRequest>,
) -> ApiResult<HttpResponse> {
    let req = body.0;
    let made = state
        .tenants
        .create(
            &caller,
            &req.name,
            &req.slug,
            &req.admin_email,
            req.admin_password.as_deref(),
        )
        .await?;
    Ok(HttpResponse::Created().json(CreatedTenantDto {
        tenant: made.tenant.into(),
        admin: made.admin.into(),
        admin_password: made.admin_password,
    }))
}

/// The caller's tenant.
#[utoipa::path(
    get, path = "/v1/tenant", tag = "tenants",
    responses((status = 200, description = "The tenant", body = TenantDto), Unauthorized, Forbidden, Internal),
    security(("bearer" = []))
)]
pub async fn current(
    state: web::Data<AppState>,
    caller: Caller,
) -> ApiResult<web::Json<TenantDto>> {
    let tenant = state.tenants.current(&caller).await?;
    let quota = state.usage.quota(&caller).await?;
    Ok(web::Json(TenantDto {
        tokens_used_today: Some(quota.used_today),
        ..tenant.into()
    }))
}

/// Set or lift a tenant's daily token quota (platform keys only): `{"daily_token_quota": N}`
/// or `null`. Once the day's use reaches it, runs and embedding calls answer 429
/// `quota_exceeded` with `Retry-After` (the next UTC midnight).
#[utoipa::path(
    patch, path = "/v1/tenants/{id}", tag = "tenants",
    params(("id" = uuid::Uuid, Path)),
    request_body = PatchTenantSettingsRequest,
    responses(
        (status = 200, description = "The tenant", body = TenantDto),
        Unauthorized, Forbidden, NotFound, Invalid, TooLarge, Unsupported, Internal
    ),
    security(("bearer" = []))
)]
pub async fn update_settings(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<TenantId>,
    body: Body<PatchTenantSettingsRequest>,
) -> ApiResult<web::Json<TenantDto>> {
    let quota = body.0.daily_token_quota.flatten();
    let tenant = state.tenants.set_quota(&caller, id, quota).await?;
    Ok(web::Json(tenant.into()))
}

/// Rename the caller's tenant (admins).
#[utoipa::path(
    patch, path = "/v1/tenant", tag = "tenants",
    request_body = PatchTenantRequest,
    responses(
        (status = 200, description = "The tenant", body = TenantDto),
        Unauthorized, Forbidden, Invalid, TooLarge, Unsupported, Internal
    ),
    security(("bearer" = []))
)]
pub async fn rename(
    state: web::Data<AppState>,
    caller: Caller,
    body: Body<PatchTenantRequest>,
) -> ApiResult<web::Json<TenantDto>> {
    let tenant = state
        .tenants
        .update(&caller, body.0.name.as_deref())
        .await?;
    Ok(web::Json(tenant.into()))
}

/// Every tenant, newest first (platform keys only).
#[utoipa::path(
    get, path = "/v1/tenants", tag = "tenants",
    params(PageQuery),
    responses((status = 200, description = "A page of tenants", body = List<TenantDto>), Unauthorized, Forbidden, Invalid, Internal),
    security(("bearer" = []))
)]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<List<TenantDto>>> {
    let tenants = state.tenants.list(&caller, query.to_request()?).await?;
    Ok(web::Json(List::from_page(tenants, TenantDto::from)))
}

/// Suspend a tenant (platform keys only): from its next request on, every access token, refresh
/// token and API key of the tenant is refused with 403 `tenant_suspended`, until it is resumed.
/// Suspending a suspended tenant changes nothing.
#[utoipa::path(
    post, path = "/v1/tenants/{id}/suspend", tag = "tenants",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The tenant, suspended", body = TenantDto), Unauthorized, Forbidden, NotFound, Internal),
    security(("bearer" = []))
)]
pub async fn suspend(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<TenantId>,
) -> ApiResult<web::Json<TenantDto>> {
    Ok(web::Json(state.tenants.suspend(&caller, id).await?.into()))
}

/// Let a suspended tenant in again (platform keys only). Resuming an active tenant changes
/// nothing.
#[utoipa::path(
    post, path = "/v1/tenants/{id}/resume", tag = "tenants",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The tenant, active", body = TenantDto), Unauthorized, Forbidden, NotFound, Internal),
    security(("bearer" = []))
)]
pub async fn resume(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<TenantId>,
) -> ApiResult<web::Json<TenantDto>> {
    Ok(web::Json(state.tenants.resume(&caller, id).await?.into()))
}
