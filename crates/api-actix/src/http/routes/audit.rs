use actix_web::web;
use domain::entities::AuditFilter;
use serde::Deserialize;

use crate::http::dto::{AuditEntryDto, List};
use crate::http::error::ApiResult;
use crate::http::extract::{Caller, PageQuery};
use crate::http::responses::{Forbidden, Internal, Invalid, Unauthorized};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct AuditParams {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<uuid::Uuid>,
}

/// The tenant's audit log, newest first (admins).
#[utoipa::path(
    get, path = "/v1/audit", tag = "audit",
    params(
        PageQuery,
        ("resource_type" = Option<String>, Query, description = "e.g. `agent`, `user`, `api_key`, `tenant`"),
        ("resource_id" = Option<uuid::Uuid>, Query)
    ),
    responses((status = 200, description = "A page of entries", body = List<AuditEntryDto>), Unauthorized, Forbidden, Invalid, Internal),
    security(("bearer" = []))
)]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<AuditParams>,
) -> ApiResult<web::Json<List<AuditEntryDto>>> {
    let query = query.into_inner();
    crate::http::extract::reject_nul("resource_type", query.resource_type.as_deref())?;
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    }
    .to_request()?;
    let filter = AuditFilter {
        resource_type: query.resource_type,
        resource_id: query.resource_id,
    };
    let records = state.audit.list(&caller, filter, page).await?;
    Ok(web::Json(List::from_page(records, AuditEntryDto::from)))
}
