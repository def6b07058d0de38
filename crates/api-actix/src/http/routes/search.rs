//! Search over one collection or several.

use actix_web::web;
use domain::CollectionId;

use crate::http::dto::{MultiSearchRequestDto, SearchRequestDto, SearchResponseDto};
use crate::http::error::ApiResult;
use crate::http::extract::{BodyWithNul, Caller, PathId};
use crate::http::responses::{
    Forbidden, Internal, Invalid, NotFound, TooLarge, Unauthorized, Unavailable, Unsupported,
};
use crate::state::AppState;

/// Search a collection: vector, full text (BM25), or both fused (default). Queries of any length
/// are searched; a long one is cut (`query_truncated`).
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
    PathId(collection): PathId<CollectionId>,
    body: BodyWithNul<SearchRequestDto>,
) -> ApiResult<web::Json<SearchResponseDto>> {
    let found = state
        .search
        .search(&caller, &[collection], body.0.into())
        .await?;
    Ok(web::Json(found.into()))
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
    body: BodyWithNul<MultiSearchRequestDto>,
) -> ApiResult<web::Json<SearchResponseDto>> {
    let (collections, request) = body.0.split();
    let found = state.search.search(&caller, &collections, request).await?;
    Ok(web::Json(found.into()))
}
