//! Metering: tokens used, by day, agent, principal or model.

use actix_web::web;
use chrono::NaiveDate;
use domain::ports::{UsageGroup, UsageRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::http::error::ApiResult;
use crate::http::extract::Caller;
use crate::http::responses::{Forbidden, Internal, Invalid, Unauthorized};
use crate::state::AppState;

#[derive(Clone, Copy, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    #[default]
    Day,
    Agent,
    Principal,
    Model,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// First UTC day (`YYYY-MM-DD`); default: 29 days before `to`.
    pub from: Option<NaiveDate>,
    /// Last UTC day, included; default: today.
    pub to: Option<NaiveDate>,
    /// `day` (the default), `agent`, `principal` or `model`.
    pub group_by: Option<GroupBy>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageRowDto {
    /// The day (`YYYY-MM-DD`), the agent id (`none` for embeddings outside runs), the principal
    /// (`user:<id>`, `api_key:<id>`, `platform` for ingestion) or the model (`<provider>/<name>`,
    /// `embedding/<space>`).
    pub key: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Runs (chat) among the calls counted.
    pub runs: u64,
}

impl From<UsageRow> for UsageRowDto {
    fn from(r: UsageRow) -> Self {
        Self {
            key: r.key,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            runs: r.runs,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageList {
    pub items: Vec<UsageRowDto>,
}

/// Tokens used through model and embedding calls, failed and cancelled runs included, over UTC
/// days `from..=to` (at most 366), added up by `group_by`. Admins and admin keys see the
/// tenant's; members and other keys their own. Ingestion's embeddings are listed under the
/// principal `platform` (they do not count against the daily quota).
#[utoipa::path(
    get, path = "/v1/usage", tag = "usage",
    params(UsageParams),
    responses((status = 200, description = "The groups, in key order", body = UsageList), Unauthorized, Forbidden, Invalid, Internal),
    security(("bearer" = []))
)]
pub async fn summary(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<UsageParams>,
) -> ApiResult<web::Json<UsageList>> {
    let group = match query.group_by.unwrap_or_default() {
        GroupBy::Day => UsageGroup::Day,
        GroupBy::Agent => UsageGroup::Agent,
        GroupBy::Principal => UsageGroup::Principal,
        GroupBy::Model => UsageGroup::Model,
    };
    let rows = state
        .usage
        .summary(&caller, query.from, query.to, group)
        .await?;
    Ok(web::Json(UsageList {
        items: rows.into_iter().map(Into::into).collect(),
    }))
}
