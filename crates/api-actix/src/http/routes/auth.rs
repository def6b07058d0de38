use actix_web::{HttpRequest, HttpResponse, web};
use domain::Principal;

use crate::http::dto::{
    CallerKeyDto, ChangePasswordRequest, LoginRequest, LogoutRequest, MeDto, RefreshRequest,
    TokensDto, scope_names,
};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Body, Caller, MaybeBody, client_address};
use crate::http::responses::{
    Forbidden, Internal, Invalid, RateLimited, TooLarge, Unauthorized, Unavailable, Unsupported,
};
use crate::state::AppState;

/// Sign in with a password; answers an access and a refresh token.
#[utoipa::path(
    post, path = "/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = TokensDto),
        Unauthorized, Forbidden, Invalid, TooLarge, Unsupported, RateLimited, Unavailable, Internal
    )
)]
pub async fn login(
    state: web::Data<AppState>,
    http: HttpRequest,
    body: Body<LoginRequest>,
) -> ApiResult<web::Json<TokensDto>> {
    let req = body.0;
    let pair = state
        .auth
        .login(
            &req.tenant,
            &req.email,
            &req.password,
            &client_address(&http),
        )
        .await?;
    Ok(web::Json(pair.into()))
}

/// Rotate a refresh token: the presented one dies; presenting it again revokes its whole family.
#[utoipa::path(
    post, path = "/v1/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = TokensDto),
        Unauthorized, Forbidden, Invalid, TooLarge, Unsupported, Internal
    )
)]
pub async fn refresh(
    state: web::Data<AppState>,
    body: Body<RefreshRequest>,
) -> ApiResult<web::Json<TokensDto>> {
    let pair = state.auth.refresh(&body.0.refresh_token).await?;
    Ok(web::Json(pair.into()))
}

/// Revoke the access token in use and its refresh family (and the family of `refresh_token`).
#[utoipa::path(
    post, path = "/v1/auth/logout", tag = "auth",
    request_body(content = Option<LogoutRequest>, description = "Optional; `{}` or no body"),
    responses(
        (status = 204, description = "Signed out"),
        Unauthorized, Forbidden, Invalid, TooLarge, Unsupported, Internal
    ),
    security(("bearer" = []))
)]
pub async fn logout(
    state: web::Data<AppState>,
    caller: Caller,
    body: MaybeBody<LogoutRequest>,
) -> ApiResult<HttpResponse> {
    let request = body.0.unwrap_or_default();
    state
        .auth
        .logout(&caller, request.refresh_token.as_deref())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// End every session of the calling user, this one included: its access tokens are refused from
/// the next request on, its refresh tokens for good.
#[utoipa::path(
    post, path = "/v1/auth/logout-all", tag = "auth",
    responses((status = 204, description = "Every session ended"), Unauthorized, Forbidden, Internal),
    security(("bearer" = []))
)]
pub async fn logout_all(state: web::Data<AppState>, caller: Caller) -> ApiResult<HttpResponse> {
    state.auth.logout_everywhere(&caller).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Change the caller's password (the current one is required). Every other session of the caller
/// ends; this one goes on.
#[utoipa::path(
    post, path = "/v1/me/password", tag = "auth",
    request_body = ChangePasswordRequest,
    responses(
        (status = 204, description = "Changed"),
        Unauthorized, Forbidden, Invalid, TooLarge, Unsupported, RateLimited, Unavailable, Internal
    ),
    security(("bearer" = []))
)]
pub async fn change_password(
    state: web::Data<AppState>,
    caller: Caller,
    body: Body<ChangePasswordRequest>,
) -> ApiResult<HttpResponse> {
    let req = body.0;
    state
        .auth
        .change_password(&caller, &req.current_password, &req.new_password)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Who am I: the user or API key behind the credentials, and its tenant.
#[utoipa::path(
    get, path = "/v1/me", tag = "auth",
    responses((status = 200, description = "The caller", body = MeDto), Unauthorized, Forbidden, Internal),
    security(("bearer" = []))
)]
pub async fn me(state: web::Data<AppState>, caller: Caller) -> ApiResult<web::Json<MeDto>> {
    let who = caller.0;
    let tenant = state.tenants.current(&who).await?;
    let me = match &who {
        Principal::User { user, .. } => MeDto {
            user: Some(state.users.get(&who, *user).await?.into()),
            api_key: None,
            tenant: tenant.into(),
        },
        Principal::ApiKey { key, .. } => MeDto {
            user: None,
            api_key: Some(CallerKeyDto {
                id: key.as_uuid(),
                scopes: scope_names(&who),
            }),
            tenant: tenant.into(),
        },
        Principal::Platform { .. } => {
            return Err(ApiError::from(domain::Error::Forbidden(
                "platform keys have no tenant",
            )));
        }
    };
    Ok(web::Json(me))
}
