//! Search over one collection or several.

use actix_web::web;
use domain::CollectionId;
use domain::services::SearchRequest;

use crate::http::dto::{MultiSearchRequestDto, SearchRequestDto, SearchResponseDto};
use crate::http::error::ApiResult;
use crate::http::extract::{Body, Caller, parse_id};
use crate::http::responses::{
    Forbidden, Internal, Invalid, NotFound, TooLarge, Unauthorized, Unavailable, Unsupported,
};
use crate::state::AppState;

/// Search a collection: vector, full-text, or both fused by reciprocal rank (default).
#[utoipa::path(
    post, path = "/v1/collections/{id}/search", tag = "search",
    params(("id" = uuid::Uuid, Path)),
    request_body = SearchRequestDto,
    responses(
        (status = 200, description = "The best chunks, best first", body = SearchResponseDto),
        Unauthorized, Forbidden, NotFound, Invalid, TooLarge, Unsupported, Unavailable, Internal
    ),
    security(("bearer" = []))
)]
pub async fn search(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: Body<SearchRequestDto>,
) -> ApiResult<web::Json<SearchResponseDto>> {
    let collection: CollectionId = parse_id(&id, "collection")?;
    let req = body.0;
    let request = SearchRequest {
        query: req.query,
        top_k: req.top_k,
        mode: req.mode.map(|m| m.as_str().to_owned()),
        filter: req.filter,
        min_score: req.min_score,
    };
    let hits = state
        .search
        .search(&caller.0, &[collection], request)
        .await?;
    Ok(web::Json(SearchResponseDto {
        results: hits.into_iter().map(Into::into).collect(),
    }))
}

/// Search several collections at once, possibly of different spaces; lists are fused by rank.
#[utoipa::path(
    post, path = "/v1/search", tag = "search",
    request_body = MultiSearchRequestDto,
    responses(
        (status = 200, description = "The best chunks, best first", body = SearchResponseDto),
        Unauthorized, Forbidden, NotFound, Invalid, TooLarge, Unsupported, Unavailable, Internal
    ),
    security(("bearer" = []))
)]
pub async fn search_many(
    state: web::Data<AppState>,
    caller: Caller,
    body: Body<MultiSearchRequestDto>,
) -> ApiResult<web::Json<SearchResponseDto>> {
    let req = body.0;
    let collections: Vec<CollectionId> = req
        .collection_ids
        .into_iter()
        .map(CollectionId::from_uuid)
        .collect();
    let request = SearchRequest {
        query: req.query,
        top_k: req.top_k,
        mode: req.mode.map(|m| m.as_str().to_owned()),
        filter: req.filter,
        min_score: req.min_score,
    };
    let hits = state
        .search
        .search(&caller.0, &collections, request)
        .await?;
    Ok(web::Json(SearchResponseDto {
        results: hits.into_iter().map(Into::into).collect(),
    }))
}
