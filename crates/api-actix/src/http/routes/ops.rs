use actix_web::{HttpResponse, web};

use crate::http::dto::HealthDto;
use crate::state::AppState;

/// Liveness: the process answers. Touches no dependency.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = HealthDto)))]
pub async fn healthz() -> web::Json<HealthDto> {
    web::Json(HealthDto {
        status: "ok".into(),
        postgres: None,
        redis: None,
    })
}

/// Readiness: 200 only when PostgreSQL and Redis answer.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = HealthDto),
        (status = 503, description = "A dependency does not answer", body = HealthDto)
    ))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let (postgres, redis) = tokio::join!(state.store.ping(), state.cache.ping());
    let word = |ok: bool| if ok { "ok" } else { "unavailable" }.to_owned();
    let ready = postgres.is_ok() && redis.is_ok();
    if let Err(e) = &postgres {
        tracing::warn!(error = %e, "postgres not ready");
    }
    if let Err(e) = &redis {
        tracing::warn!(error = %e, "redis not ready");
    }
    let body = HealthDto {
        status: word(ready),
        postgres: Some(word(postgres.is_ok())),
        redis: Some(word(redis.is_ok())),
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
