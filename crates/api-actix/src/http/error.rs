//! The one error type of the HTTP edge: RFC 9457 problem details with a stable `code`.
//!
//! Every domain variant is matched explicitly (no catch-all), so a new variant cannot silently
//! become a 500. Internal causes are logged with their chain, never returned.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use domain::Error;
use domain::error::{AuthFailure, FieldError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::request_id;

/// One invalid field of a request.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemField {
    /// Path of the field in the request (`name`, `model.provider`, query `limit`, …).
    pub field: String,
    pub message: String,
}

/// RFC 9457 problem details.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`about:blank`-style: a tag, not a page to fetch).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable, machine-readable code, e.g. `agent_slug_taken`.
    pub code: String,
    pub request_id: String,
    /// Invalid fields (validation errors only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<ProblemField>>,
    /// The agents that name a provider (`provider_in_use` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agents: Option<Vec<ProblemAgent>>,
}

/// An agent a problem is about.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ProblemAgent {
    pub id: uuid::Uuid,
    pub slug: String,
}

/// The lists a problem may carry.
#[derive(Debug, Default)]
struct Lists {
    errors: Option<Vec<ProblemField>>,
    agents: Option<Vec<ProblemAgent>>,
}

/// An error answered as problem+json.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    /// What some problems list (boxed: rare, and every handler's result has room for it).
    lists: Option<Box<Lists>>,
    retry_after: Option<(u32, u64)>,
    /// Headers the answer carries besides the problem's own (`Allow`, `x-run-id`).
    headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            lists: None,
            retry_after: None,
            headers: Vec::new(),
        }
    }

    /// Names the run a failed turn started, so the client can look at it.
    pub fn set_run_id(&mut self, run: domain::RunId) {
        self.headers.push(("x-run-id", run.to_string()));
    }

    pub fn validation(fields: Vec<FieldError>) -> Self {
        let detail = fields
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            lists: Some(Box::new(Lists {
                errors: Some(
                    fields
                        .into_iter()
                        .map(|f| ProblemField {
                            field: f.field,
                            message: f.message,
                        })
                        .collect(),
                ),
                agents: None,
            })),
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                detail,
            )
        }
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError::new(field, message)])
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn method_not_allowed(allow: &'static str) -> Self {
        Self {
            headers: vec![("allow", allow.to_owned())],
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("this resource allows {allow}"),
            )
        }
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "missing, invalid, expired or revoked credentials",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        match err {
            Error::Validation(fields) => Self::validation(fields),
            Error::NotFound(resource) => {
                Self::not_found(format!("{} not found", resource.as_str()))
            }
            Error::Conflict(conflict) => {
                Self::new(StatusCode::CONFLICT, conflict.code(), conflict.message())
            }
            Error::Unauthenticated(failure) => {
                tracing::info!(reason = failure.as_str(), "authentication refused");
                match failure {
                    AuthFailure::BadCredentials => Self::new(
                        StatusCode::UNAUTHORIZED,
                        "invalid_credentials",
                        "tenant, email or password is wrong",
                    ),
                    AuthFailure::MissingCredentials
                    | AuthFailure::MalformedToken
                    | AuthFailure::BadSignature
                    | AuthFailure::UnknownKeyId
                    | AuthFailure::Expired
                    | AuthFailure::WrongTokenType
                    | AuthFailure::Revoked
                    | AuthFailure::UnknownPrincipal
                    | AuthFailure::RefreshReuse => Self::unauthenticated(),
                }
            }
            Error::Forbidden(reason) => Self::new(StatusCode::FORBIDDEN, "forbidden", reason),
            err @ Error::TenantSuspended => {
                Self::new(StatusCode::FORBIDDEN, "tenant_suspended", err.to_string())
            }
            err @ Error::ExtractionLimit(_) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "extraction_limit",
                err.to_string(),
            ),
            err @ Error::Busy => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_busy",
                err.to_string(),
            ),
            Error::TooLarge { limit } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the content exceeds the limit of {limit} bytes"),
            ),
            err @ Error::UnsupportedMediaType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                err.to_string(),
            ),
            Error::Unavailable(reason) => {
                // The reason may name an upstream's answer, a URL or a path: the log gets it (in
                // the request's span, so with its id), the caller a stable code.
                tracing::warn!(%reason, "dependency unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "a service this request needs is unavailable; retry shortly",
                )
            }
            Error::ModelFailed(failure) => {
                let (status, code) = model_failure_status(&failure.code);
                Self::new(status, code, failure.message)
            }
            Error::RateLimited {
                limit,
                retry_after_secs,
            } => Self {
                retry_after: Some((limit, retry_after_secs)),
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!("too many attempts; retry in {retry_after_secs} s"),
                )
            },
            Error::ProviderInUse(agents) => Self {
                lists: Some(Box::new(Lists {
                    errors: None,
                    agents: Some(
                        agents
                            .iter()
                            .map(|(id, slug)| ProblemAgent {
                                id: id.as_uuid(),
                                slug: slug.clone(),
                            })
                            .collect(),
                    ),
                })),
                ..Self::new(
                    StatusCode::CONFLICT,
                    "provider_in_use",
                    format!(
                        "agents name this provider: {}; move them to another model first",
                        agents
                            .iter()
                            .map(|(_, slug)| slug.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            },
            err @ Error::QuotaExceeded { retry_after_secs } => Self {
                headers: vec![("retry-after", retry_after_secs.to_string())],
                ..Self::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "quota_exceeded",
                    err.to_string(),
                )
            },
            Error::Internal(source) => {
                let mut chain = source.to_string();
                let mut cause = source.source();
                while let Some(c) = cause {
                    chain.push_str(": ");
                    chain.push_str(&c.to_string());
                    cause = c.source();
                }
                tracing::error!(error = %chain, "internal error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "an internal error occurred; it has been logged",
                )
            }
        }
    }
}

/// The status and code a failed run answers with, by its failure's code. The platform's own
/// failures are `run_failed` (the stored answer says more); a code this does not know (stored
/// by a later version, say) is a model's failure.
fn model_failure_status(failure: &str) -> (StatusCode, &'static str) {
    use domain::entities::failure_codes as codes;
    match failure {
        codes::MODEL_TIMEOUT => (StatusCode::GATEWAY_TIMEOUT, codes::MODEL_TIMEOUT),
        codes::SERVER_BUSY => (StatusCode::SERVICE_UNAVAILABLE, codes::SERVER_BUSY),
        codes::CONTEXT_EXCEEDED => (StatusCode::UNPROCESSABLE_ENTITY, codes::CONTEXT_EXCEEDED),
        codes::INVALID_REQUEST => (StatusCode::UNPROCESSABLE_ENTITY, codes::INVALID_REQUEST),
        codes::QUOTA_EXCEEDED => (StatusCode::TOO_MANY_REQUESTS, codes::QUOTA_EXCEEDED),
        codes::MODEL_UNAVAILABLE => (StatusCode::BAD_GATEWAY, codes::MODEL_UNAVAILABLE),
        codes::MODEL_BAD_RESPONSE => (StatusCode::BAD_GATEWAY, codes::MODEL_BAD_RESPONSE),
        codes::INCOMPLETE => (StatusCode::BAD_GATEWAY, codes::INCOMPLETE),
        codes::INTERNAL | codes::MODEL_INTERNAL => (StatusCode::BAD_GATEWAY, "run_failed"),
        _ => (StatusCode::BAD_GATEWAY, codes::MODEL_ERROR),
    }
}

pub const PROBLEM_JSON: &str = "application/problem+json";

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let problem = Problem {
            kind: format!("urn:agentic:problem:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.to_owned(),
            request_id: request_id::current().unwrap_or_default(),
            errors: self
                .lists
                .as_ref()
                .and_then(|l| l.errors.as_ref())
                .map(|fields| {
                    fields
                        .iter()
                        .map(|f| ProblemField {
                            field: f.field.clone(),
                            message: f.message.clone(),
                        })
                        .collect()
                }),
            agents: self.lists.as_ref().and_then(|l| l.agents.clone()),
        };
        let mut response = HttpResponse::build(self.status);
        response.content_type(PROBLEM_JSON);
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // A dependency that is down (a database restarting, say) is usually back in seconds.
            response.insert_header((header::RETRY_AFTER, "5"));
        }
        for (name, value) in &self.headers {
            response.insert_header((*name, value.as_str()));
        }
        if let Some((limit, retry)) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, retry.to_string()));
            response.insert_header(("RateLimit-Limit", limit.to_string()));
            response.insert_header(("RateLimit-Remaining", "0"));
            response.insert_header(("RateLimit-Reset", retry.to_string()));
        }
        response.json(problem)
    }
}

/// The result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use domain::entities::failure_codes;

    use super::*;

    #[test]
    fn every_failure_code_has_a_status_of_its_own() {
        for code in failure_codes::ALL {
            let (status, answered) = model_failure_status(code);
            match code {
                failure_codes::INTERNAL | failure_codes::MODEL_INTERNAL => {
                    assert_eq!(answered, "run_failed");
                }
                _ => assert_eq!(answered, code, "{code} is answered as itself"),
            }
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{code}: {status}"
            );
        }
        assert_eq!(
            model_failure_status("from_a_later_version"),
            (StatusCode::BAD_GATEWAY, "model_error")
        );
    }
}
