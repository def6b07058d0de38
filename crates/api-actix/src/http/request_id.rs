//! `x-request-id`: kept from the client when it is sane, generated otherwise, echoed on every
//! response and placed in problem details. It lives in a task-local for the request's duration,
//! so error rendering (which has no access to the request) can read it.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled, if any.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

fn acceptable(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = req
        .headers()
        .get(&HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned);
    let header = HeaderValue::from_str(&id).ok();
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.path());
    // The span is attached to the future, so it is entered only while the request is polled:
    // a guard held across `.await` would stay entered on the worker thread whenever the request
    // yields or is dropped (a client that disconnects), and later requests would nest in it.
    let mut response = REQUEST_ID
        .scope(id, next.call(req))
        .instrument(span)
        .await?;
    if let Some(value) = header {
        response.headers_mut().insert(HEADER, value);
    }
    Ok(response)
}
