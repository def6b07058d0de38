use actix_web::{HttpResponse, web};

use crate::http::dto::{CreateTenantRequest, CreatedTenantDto, PatchTenantRequest, TenantDto};
use crate::http::error::ApiResult;
use crate::http::extract::{Body, Caller};
use crate::http::responses::{
    Conflict, Forbidden, Internal, Invalid, TooLarge, Unauthorized, Unsupported,
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
            &caller.0,
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
    Ok(web::Json(state.tenants.current(&caller.0).await?.into()))
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
        .update(&caller.0, body.0.name.as_deref())
        .await?;
    Ok(web::Json(tenant.into()))
}
