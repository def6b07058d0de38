//! Documented error responses, composed into each route's `responses(...)` so the OpenAPI
//! document lists every status a route can answer.

#![allow(dead_code)] // these types exist for the OpenAPI document only

use utoipa::IntoResponses;

use crate::http::error::Problem;

#[derive(IntoResponses)]
#[response(
    status = 401,
    description = "Missing, invalid, expired or revoked credentials",
    content_type = "application/problem+json",
    headers(("WWW-Authenticate" = String, description = "Always `Bearer`"))
)]
pub struct Unauthorized(#[to_schema] Problem);

#[derive(IntoResponses)]
#[response(
    status = 403,
    description = "The caller may not do this (role, scope, disabled account)",
    content_type = "application/problem+json"
)]
pub struct Forbidden(#[to_schema] Problem);

#[derive(IntoResponses)]
#[response(
    status = 404,
    description = "No such resource in the caller's tenant",
    content_type = "application/problem+json"
)]
pub struct NotFound(#[to_schema] Problem);

#[derive(IntoResponses)]
#[response(
    status = 409,
    description = "A uniqueness or state rule was violated",
    content_type = "application/problem+json"
)]
pub struct Conflict(#[to_schema] Problem);

#[derive(IntoResponses)]
#[response(
    status = 413,
    description = "The body is larger than the server accepts",
    content_type = "application/problem+json"
)]
pub struct TooLarge(#[to_schema] Problem);

#[derive(IntoResponses)]
#[response(
    status = 415,
    description = "The body is not application/json",
    content_type = "application/problem+json"
)]
pub struct Unsupported(#[to_schema] Problem);

#[derive(IntoResponses)]
#[response(
    status = 422,
    description = "Invalid input; `errors` names each field",
    content_type = "application/problem+json"
)]
pub struct Invalid(#[to_schema] Problem);

#[derive(IntoResponses)]
#[response(
    status = 429,
    description = "Too many attempts",
    content_type = "application/problem+json",
    headers(
        ("Retry-After" = u64, description = "Seconds to wait"),
        ("RateLimit-Limit" = u32),
        ("RateLimit-Remaining" = u32),
        ("RateLimit-Reset" = u64)
    )
)]
pub struct RateLimited(#[to_schema] Problem);

#[derive(IntoResponses)]
#[response(
    status = 500,
    description = "A dependency failed; details are logged, not returned",
    content_type = "application/problem+json"
)]
pub struct Internal(#[to_schema] Problem);

#[derive(IntoResponses)]
#[response(
    status = 503,
    description = "A dependency is down (`unavailable`) or the server is at capacity for this work \
        (`server_busy`); retry after `Retry-After` seconds",
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Seconds to wait"))
)]
pub struct Unavailable(#[to_schema] Problem);

#[derive(IntoResponses)]
#[response(
    status = 502,
    description = "The model failed (`model_error`, `model_unavailable`, `model_bad_response`, \
        `incomplete`); the failed answer is stored and `x-run-id` names its run",
    content_type = "application/problem+json",
    headers(("x-run-id" = uuid::Uuid, description = "The run that failed"))
)]
pub struct BadGateway(#[to_schema] Problem);

#[derive(IntoResponses)]
#[response(
    status = 504,
    description = "The model did not answer in time (`model_timeout`); the failed answer is stored",
    content_type = "application/problem+json",
    headers(("x-run-id" = uuid::Uuid, description = "The run that failed"))
)]
pub struct GatewayTimeout(#[to_schema] Problem);
