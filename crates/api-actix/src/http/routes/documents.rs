use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use domain::services::Uploaded;
use domain::{CollectionId, DocumentId};

use crate::http::dto::{CreateDocumentRequest, DocumentDto, DocumentForm, List, UploadedDto};
use crate::http::error::ApiResult;
use crate::http::extract::{Caller, ListParams, PageQuery, PathId};
use crate::http::responses::{
    Conflict, Forbidden, Internal, Invalid, NotFound, TooLarge, Unauthorized, Unsupported,
};
use crate::http::routes::lifecycle::lifecycle_routes;
use crate::http::upload::DocumentBody;
use crate::state::AppState;

/// Add a document to a collection; its ingestion runs in the background (202 with the job). The
/// same content twice in one collection is stored once: 200 with the existing document, no job.
#[utoipa::path(
    post, path = "/v1/collections/{id}/documents", tag = "documents",
    params(("id" = uuid::Uuid, Path)),
    request_body(content(
        (CreateDocumentRequest = "application/json"),
        (DocumentForm = "multipart/form-data")
    )),
    responses(
        (status = 202, description = "Stored; ingestion queued", body = UploadedDto),
        (status = 200, description = "The same content was already there", body = UploadedDto),
        Unauthorized, Forbidden, NotFound, Invalid, TooLarge, Unsupported, Internal
    ),
    security(("bearer" = []))
)]
pub async fn upload(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(collection): PathId<CollectionId>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let body = read_document(&req, payload).await?;
    let uploaded = state.documents.upload(&caller, collection, body.0).await?;
    Ok(accepted_or_ok(uploaded))
}

/// Replace a document's content, title and metadata (JSON or a file, as on upload); its current
/// chunks stay searchable until the new ones are ready (202 with the job). The same document
/// again changes nothing: 200, no job.
#[utoipa::path(
    put, path = "/v1/documents/{id}", tag = "documents",
    params(("id" = uuid::Uuid, Path)),
    request_body(content(
        (CreateDocumentRequest = "application/json"),
        (DocumentForm = "multipart/form-data")
    )),
    responses(
        (status = 202, description = "Replaced; ingestion queued", body = UploadedDto),
        (status = 200, description = "Nothing changed", body = UploadedDto),
        Unauthorized, Forbidden, NotFound, Conflict, Invalid, TooLarge, Unsupported, Internal
    ),
    security(("bearer" = []))
)]
pub async fn replace(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<DocumentId>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let body = read_document(&req, payload).await?;
    let uploaded = state.documents.replace(&caller, id, body.0).await?;
    Ok(accepted_or_ok(uploaded))
}

/// Reads a document body only now that the caller is authenticated: actix extracts a handler's
/// arguments side by side, so a body extractor beside `Caller` would buffer up to the document
/// limit for anyone, before the credentials are even looked at.
async fn read_document(req: &HttpRequest, payload: web::Payload) -> ApiResult<DocumentBody> {
    DocumentBody::from_request(req, &mut payload.into_inner()).await
}

fn accepted_or_ok(uploaded: Uploaded) -> HttpResponse {
    let queued = uploaded.job.is_some();
    let body = UploadedDto {
        document: uploaded.document.into(),
        job: uploaded.job.map(Into::into),
    };
    if queued {
        HttpResponse::Accepted().json(body)
    } else {
        HttpResponse::Ok().json(body)
    }
}

/// The documents of a collection, newest first.
#[utoipa::path(
    get, path = "/v1/collections/{id}/documents", tag = "documents",
    params(("id" = uuid::Uuid, Path), PageQuery, ("include_deleted" = Option<bool>, Query, description = "Also list soft-deleted documents (admins)")),
    responses((status = 200, description = "A page of documents", body = List<DocumentDto>), Unauthorized, Forbidden, NotFound, Invalid, Internal),
    security(("bearer" = []))
)]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(collection): PathId<CollectionId>,
    query: web::Query<ListParams>,
) -> ApiResult<web::Json<List<DocumentDto>>> {
    let page = query.page().to_request()?;
    let found = state
        .documents
        .list(&caller, collection, query.include_deleted, page)
        .await?;
    Ok(web::Json(List::from_page(found, DocumentDto::from)))
}

/// A document, with its extracted text.
#[utoipa::path(
    get, path = "/v1/documents/{id}", tag = "documents",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The document", body = DocumentDto), Unauthorized, Forbidden, NotFound, Internal),
    security(("bearer" = []))
)]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<DocumentId>,
) -> ApiResult<web::Json<DocumentDto>> {
    Ok(web::Json(state.documents.get(&caller, id).await?.into()))
}

lifecycle_routes! {
    service: documents,
    id: DocumentId,
    dto: DocumentDto,
    tag: "documents",
    delete: (
        "/v1/documents/{id}",
        "Soft-delete a document: its chunks leave search at once.",
        [Unauthorized, Forbidden, NotFound, Internal]
    ),
    restore: (
        "/v1/documents/{id}/restore",
        "Restore a soft-deleted document; 409 if the same content was uploaded again meanwhile.",
        [Unauthorized, Forbidden, NotFound, Conflict, Internal]
    ),
    purge: (
        "/v1/documents/{id}/purge",
        "Remove a document and its chunks for good (admins).",
        [Unauthorized, Forbidden, NotFound, Internal]
    ),
}
