//! The body of a document upload or replacement: JSON with the text inline, or
//! `multipart/form-data` with a file (`.txt`, `.md`, `.html`, `.pdf`).

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::{StatusCode, header};
use actix_web::{FromRequest, HttpRequest, web};
use domain::services::Upload;
use domain::values::ContentType;

use crate::http::dto::{CreateDocumentRequest, TextType};
use crate::http::error::ApiError;
use crate::http::extract::{Body, BodyLimit, too_large};

/// A document as uploaded. Multipart form fields: `file` (required; its type is taken from the
/// part's `Content-Type`, else from the file name), `title` (default: the file name) and
/// `metadata` (a JSON object).
pub struct DocumentBody(pub Upload);

impl FromRequest for DocumentBody {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let is_multipart = content_type
            .split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("multipart/form-data"));
        if !is_multipart {
            let json = Body::<CreateDocumentRequest>::from_request(req, payload);
            return Box::pin(async move {
                let req = json.await?.0;
                // Exactly one of the documented types; any other is 415, as for a file.
                let content_type = match req.content_type {
                    None => TextType::Plain.mime(),
                    Some(declared) => TextType::ALL
                        .into_iter()
                        .map(TextType::mime)
                        .find(|mime| *mime == declared)
                        .ok_or_else(|| {
                            ApiError::new(
                                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                                "unsupported_media_type",
                                "content_type must be text/plain, text/markdown or text/html",
                            )
                        })?,
                };
                Ok(Self(Upload {
                    title: req.title,
                    content_type: content_type.to_owned(),
                    bytes: req.content.into_bytes(),
                    metadata: req.metadata,
                }))
            });
        }
        let limit = req.app_data::<BodyLimit>().map_or(1024 * 1024, |l| l.0);
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            let bytes = bytes.await.map_err(|_| too_large(limit))?;
            if bytes.len() > limit {
                return Err(too_large(limit));
            }
            read_form(&content_type, bytes).await.map(Self)
        })
    }
}

async fn read_form(content_type: &str, body: web::Bytes) -> Result<Upload, ApiError> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|_| ApiError::invalid("body", "multipart/form-data without a boundary"))?;
    let stream = futures_util::stream::once(std::future::ready(Ok::<_, std::io::Error>(body)));
    let mut form = multer::Multipart::new(stream, boundary);
    let malformed = |e: multer::Error| ApiError::invalid("body", format!("malformed form: {e}"));
    let mut file: Option<(Option<String>, Option<String>, Vec<u8>)> = None;
    let mut title = None;
    let mut metadata = None;
    while let Some(field) = form.next_field().await.map_err(malformed)? {
        let name = field.name().unwrap_or("").to_owned();
        match name.as_str() {
            "file" => {
                let file_name = field.file_name().map(str::to_owned);
                let mime = field.content_type().map(ToString::to_string);
                let bytes = field.bytes().await.map_err(malformed)?;
                file = Some((file_name, mime, bytes.to_vec()));
            }
            "title" => {
                title = Some(text_field(
                    "title",
                    field.bytes().await.map_err(malformed)?,
                )?)
            }
            "metadata" => {
                let text = text_field("metadata", field.bytes().await.map_err(malformed)?)?;
                // Form builders send an empty field for an empty input: that is no metadata.
                if !text.trim().is_empty() {
                    metadata =
                        Some(serde_json::from_str(&text).map_err(|e| {
                            ApiError::invalid("metadata", format!("is not JSON: {e}"))
                        })?);
                }
            }
            other => {
                return Err(ApiError::invalid(
                    other,
                    "unknown form field; expected file, title or metadata",
                ));
            }
        }
    }
    let (file_name, mime, bytes) =
        file.ok_or_else(|| ApiError::invalid("file", "a file part is required"))?;
    let content_type = mime
        .filter(|m| ContentType::from_mime(m).is_some())
        .or_else(|| {
            file_name
                .as_deref()
                .and_then(ContentType::from_file_name)
                .map(|t| t.mime().to_owned())
        })
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the file must be .txt, .md, .html or .pdf (text/plain, text/markdown, text/html or application/pdf)",
            )
        })?;
    let title = title
        .or(file_name)
        .ok_or_else(|| ApiError::invalid("title", "is required when the file has no name"))?;
    Ok(Upload {
        title,
        content_type,
        bytes,
        metadata,
    })
}

fn text_field(field: &str, bytes: web::Bytes) -> Result<String, ApiError> {
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::invalid(field, "is not valid UTF-8"))?;
    if text.contains('\0') {
        return Err(ApiError::invalid(field, "must not contain NUL characters"));
    }
    Ok(text)
}
