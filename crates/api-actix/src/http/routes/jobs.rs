//! Ingestion and re-embedding jobs: list, read, cancel.

use actix_web::web;
use domain::JobId;

use crate::http::dto::{JobDto, List};
use crate::http::error::ApiResult;
use crate::http::extract::{Caller, PageQuery, PathId};
use crate::http::responses::{Forbidden, Internal, Invalid, NotFound, Unauthorized};
use crate::state::AppState;

/// Background jobs of the tenant, newest first.
#[utoipa::path(
    get, path = "/v1/jobs", tag = "documents",
    params(PageQuery),
    responses((status = 200, description = "A page of jobs", body = List<JobDto>), Unauthorized, Forbidden, Invalid, Internal),
    security(("bearer" = []))
)]
pub async fn jobs(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<PageQuery>,
) -> ApiResult<web::Json<List<JobDto>>> {
    let found = state.documents.jobs(&caller, query.to_request()?).await?;
    Ok(web::Json(List::from_page(found, JobDto::from)))
}

/// A job: state, progress (chunks embedded / total), error.
#[utoipa::path(
    get, path = "/v1/jobs/{id}", tag = "documents",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The job", body = JobDto), Unauthorized, Forbidden, NotFound, Internal),
    security(("bearer" = []))
)]
pub async fn job(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<JobId>,
) -> ApiResult<web::Json<JobDto>> {
    Ok(web::Json(state.documents.job(&caller, id).await?.into()))
}

/// Cancel a job: a queued one at once, a running one at its next heartbeat; nothing of a
/// cancelled ingestion is indexed. A finished job is answered as it is.
#[utoipa::path(
    post, path = "/v1/jobs/{id}/cancel", tag = "documents",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The job", body = JobDto), Unauthorized, Forbidden, NotFound, Internal),
    security(("bearer" = []))
)]
pub async fn cancel(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<JobId>,
) -> ApiResult<web::Json<JobDto>> {
    Ok(web::Json(
        state.documents.cancel_job(&caller, id).await?.into(),
    ))
}
