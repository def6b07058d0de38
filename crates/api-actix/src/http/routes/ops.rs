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
        vector_indexes: None,
    })
}

/// Readiness: 200 only when PostgreSQL and Redis answer and every registered space's vector index
/// is there and valid. A database whose backends crash (a pgvector built for another CPU, say)
/// leaves indexes missing or invalid: that is reported here rather than hidden behind slow,
/// exact searches.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = HealthDto),
        (status = 503, description = "A dependency does not answer, or a vector index is missing or not valid", body = HealthDto)
    ))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let (postgres, redis) = tokio::join!(state.store.ping(), state.cache.ping());
    let indexes = match postgres {
        Ok(()) => state.store.vector_index_problems().await,
        Err(_) => Ok(Vec::new()),
    };
    let word = |ok: bool| if ok { "ok" } else { "unavailable" }.to_owned();
    if let Err(e) = &postgres {
        tracing::warn!(error = %e, "postgres not ready");
    }
    if let Err(e) = &redis {
        tracing::warn!(error = %e, "redis not ready");
    }
    let indexes_ok = match &indexes {
        Ok(problems) => {
            for problem in problems {
                tracing::warn!(%problem, "vector index not ready: searches there scan every chunk");
            }
            problems.is_empty()
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not read the state of the vector indexes");
            false
        }
    };
    let ready = postgres.is_ok() && redis.is_ok() && indexes_ok;
    let body = HealthDto {
        status: word(ready),
        postgres: Some(word(postgres.is_ok())),
        redis: Some(word(redis.is_ok())),
        vector_indexes: postgres.is_ok().then(|| word(indexes_ok)),
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
