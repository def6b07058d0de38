use actix_web::{HttpResponse, web};
use domain::CollectionId;
use domain::services::CollectionPatch;

use crate::http::dto::{
    CollectionDto, CreateCollectionRequest, List, PatchCollectionRequest, ReembedRequest,
    ReembedResponse, SpaceList,
};
use crate::http::error::ApiResult;
use crate::http::extract::{Body, Caller, ListParams, PageQuery, PathId};
use crate::http::responses::{
    Conflict, Forbidden, Internal, Invalid, NotFound, TooLarge, Unauthorized, Unsupported,
};
use crate::http::routes::lifecycle::lifecycle_routes;
use crate::state::AppState;

/// The embedding spaces this server offers.
#[utoipa::path(
    get, path = "/v1/spaces", tag = "collections",
    responses((status = 200, description = "The spaces", body = SpaceList), Unauthorized, Forbidden, Internal),
    security(("bearer" = []))
)]
pub async fn spaces(state: web::Data<AppState>, caller: Caller) -> ApiResult<web::Json<SpaceList>> {
    let spaces = state.collections.spaces(&caller).await?;
    Ok(web::Json(SpaceList {
        items: spaces.into_iter().map(Into::into).collect(),
    }))
}

/// Create a collection in an embedding space (default: the local MiniLM space).
#[utoipa::path(
    post, path = "/v1/collections", tag = "collections",
    request_body = CreateCollectionRequest,
    responses(
        (status = 201, description = "Created", body = CollectionDto),
        Unauthorized, Forbidden, Invalid, TooLarge, Unsupported, Internal
    ),
    security(("bearer" = []))
)]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: Body<CreateCollectionRequest>,
) -> ApiResult<HttpResponse> {
    let req = body.0;
    let collection = state
        .collections
        .create(
            &caller,
            &req.name,
            req.description.as_deref(),
            req.space_id.as_deref(),
        )
        .await?;
    Ok(HttpResponse::Created().json(CollectionDto::from(collection)))
}

/// List collections, newest first.
#[utoipa::path(
    get, path = "/v1/collections", tag = "collections",
    params(PageQuery, ("include_deleted" = Option<bool>, Query, description = "Also list soft-deleted collections (admins)")),
    responses((status = 200, description = "A page of collections", body = List<CollectionDto>), Unauthorized, Forbidden, Invalid, Internal),
    security(("bearer" = []))
)]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ListParams>,
) -> ApiResult<web::Json<List<CollectionDto>>> {
    let page = query.page().to_request()?;
    let found = state
        .collections
        .list(&caller, query.include_deleted, page)
        .await?;
    Ok(web::Json(List::from_page(found, CollectionDto::from)))
}

/// A collection.
#[utoipa::path(
    get, path = "/v1/collections/{id}", tag = "collections",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The collection", body = CollectionDto), Unauthorized, Forbidden, NotFound, Internal),
    security(("bearer" = []))
)]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<CollectionId>,
) -> ApiResult<web::Json<CollectionDto>> {
    Ok(web::Json(state.collections.get(&caller, id).await?.into()))
}

/// Rename or describe a collection; its space cannot change here (422: re-embed instead).
#[utoipa::path(
    patch, path = "/v1/collections/{id}", tag = "collections",
    params(("id" = uuid::Uuid, Path)),
    request_body = PatchCollectionRequest,
    responses(
        (status = 200, description = "The collection", body = CollectionDto),
        Unauthorized, Forbidden, NotFound, Invalid, TooLarge, Unsupported, Internal
    ),
    security(("bearer" = []))
)]
pub async fn update(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<CollectionId>,
    body: Body<PatchCollectionRequest>,
) -> ApiResult<web::Json<CollectionDto>> {
    let req = body.0;
    let patch = CollectionPatch {
        name: req.name,
        description: req.description,
        space_id: req.space_id,
    };
    Ok(web::Json(
        state.collections.update(&caller, id, patch).await?.into(),
    ))
}

lifecycle_routes! {
    service: collections,
    id: CollectionId,
    dto: CollectionDto,
    tag: "collections",
    delete: (
        "/v1/collections/{id}",
        "Soft-delete a collection; its documents leave search at once.",
        [Unauthorized, Forbidden, NotFound, Internal]
    ),
    restore: (
        "/v1/collections/{id}/restore",
        "Restore a soft-deleted collection.",
        [Unauthorized, Forbidden, NotFound, Internal]
    ),
    purge: (
        "/v1/collections/{id}/purge",
        "Remove a collection and everything in it for good (admins).",
        [Unauthorized, Forbidden, NotFound, Internal]
    ),
}

/// Re-embed a collection into an embedding space (another model, or the same one again). A new
/// generation is built in the background from the stored document texts (progress counts
/// documents); searches read the current one until the collection switches to the new one at
/// once, keeping its id. 409 while another re-embedding of the collection runs.
#[utoipa::path(
    post, path = "/v1/collections/{id}/reembed", tag = "collections",
    params(("id" = uuid::Uuid, Path)),
    request_body = ReembedRequest,
    responses(
        (status = 202, description = "Queued", body = ReembedResponse),
        Unauthorized, Forbidden, NotFound, Conflict, Invalid, TooLarge, Unsupported, Internal
    ),
    security(("bearer" = []))
)]
pub async fn reembed(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<CollectionId>,
    body: Body<ReembedRequest>,
) -> ApiResult<HttpResponse> {
    let job = state
        .collections
        .reembed(&caller, id, &body.0.space_id)
        .await?;
    Ok(HttpResponse::Accepted().json(ReembedResponse { job: job.into() }))
}
