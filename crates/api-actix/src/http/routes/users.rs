use actix_web::{HttpResponse, web};
use domain::UserId;
use domain::services::{UserDraft, UserPatch};

use crate::http::dto::{CreateUserRequest, List, PatchUserRequest, ResetPasswordRequest, UserDto};
use crate::http::error::ApiResult;
use crate::http::extract::{Body, Caller, ListParams, PageQuery, PathId};
use crate::http::responses::{
    Conflict, Forbidden, Internal, Invalid, NotFound, TooLarge, Unauthorized, Unavailable,
    Unsupported,
};
use crate::http::routes::lifecycle::lifecycle_routes;
use crate::state::AppState;

/// Create a user in the caller's tenant (admins).
#[utoipa::path(
    post, path = "/v1/users", tag = "users",
    request_body = CreateUserRequest,
    responses(
        (status = 201, description = "Created", body = UserDto),
        Unauthorized, Forbidden, Conflict, Invalid, TooLarge, Unsupported, Internal
    ),
    security(("bearer" = []))
)]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: Body<CreateUserRequest>,
) -> ApiResult<HttpResponse> {
    let req = body.0;
    let draft = UserDraft {
        email: req.email,
        password: req.password,
        role: req.role,
        name: req.name,
    };
    let user = state.users.create(&caller, draft).await?;
    Ok(HttpResponse::Created().json(UserDto::from(user)))
}

/// List the tenant's users (admins).
#[utoipa::path(
    get, path = "/v1/users", tag = "users",
    params(PageQuery, ("include_deleted" = Option<bool>, Query, description = "Also list soft-deleted users")),
    responses((status = 200, description = "A page of users", body = List<UserDto>), Unauthorized, Forbidden, Invalid, Internal),
    security(("bearer" = []))
)]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ListParams>,
) -> ApiResult<web::Json<List<UserDto>>> {
    let page = query.page().to_request()?;
    let users = state
        .users
        .list(&caller, query.include_deleted, page)
        .await?;
    Ok(web::Json(List::from_page(users, UserDto::from)))
}

/// A user (admins, or the user themselves).
#[utoipa::path(
    get, path = "/v1/users/{id}", tag = "users",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The user", body = UserDto), Unauthorized, Forbidden, NotFound, Internal),
    security(("bearer" = []))
)]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<UserId>,
) -> ApiResult<web::Json<UserDto>> {
    Ok(web::Json(state.users.get(&caller, id).await?.into()))
}

/// Change a user's name, role or status (admins). The last active admin cannot be demoted or
/// disabled (409).
#[utoipa::path(
    patch, path = "/v1/users/{id}", tag = "users",
    params(("id" = uuid::Uuid, Path)),
    request_body = PatchUserRequest,
    responses(
        (status = 200, description = "The user", body = UserDto),
        Unauthorized, Forbidden, NotFound, Conflict, Invalid, TooLarge, Unsupported, Internal
    ),
    security(("bearer" = []))
)]
pub async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<UserId>,
    body: Body<PatchUserRequest>,
) -> ApiResult<web::Json<UserDto>> {
    let req = body.0;
    let patch = UserPatch {
        name: req.name,
        role: req.role,
        status: req.status,
    };
    Ok(web::Json(
        state.users.update(&caller, id, patch).await?.into(),
    ))
}

lifecycle_routes! {
    service: users,
    id: UserId,
    dto: UserDto,
    tag: "users",
    delete: (
        "/v1/users/{id}",
        "Soft-delete a user (admins); their tokens stop working at once.",
        [Unauthorized, Forbidden, NotFound, Conflict, Internal]
    ),
    restore: (
        "/v1/users/{id}/restore",
        "Restore a soft-deleted user (admins); 409 if a live user took the email meanwhile.",
        [Unauthorized, Forbidden, NotFound, Conflict, Internal]
    ),
    purge: (
        "/v1/users/{id}/purge",
        "Remove a user for good (admins).",
        [Unauthorized, Forbidden, NotFound, Conflict, Internal]
    ),
}

/// Set a user's password (admins): every session of that user ends at once.
#[utoipa::path(
    post, path = "/v1/users/{id}/password", tag = "users",
    params(("id" = uuid::Uuid, Path)),
    request_body = ResetPasswordRequest,
    responses(
        (status = 204, description = "Set"),
        Unauthorized, Forbidden, NotFound, Invalid, TooLarge, Unsupported, Unavailable, Internal
    ),
    security(("bearer" = []))
)]
pub async fn reset_password(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<UserId>,
    body: Body<ResetPasswordRequest>,
) -> ApiResult<HttpResponse> {
    state
        .users
        .reset_password(&caller, id, &body.0.new_password)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
