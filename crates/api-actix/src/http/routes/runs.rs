//! Runs: how an answer is being made, its events as Server-Sent Events, and cancelling it.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use domain::RunId;
use domain::entities::Run;
use domain::services::Executor;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::http::error::ApiResult;
use crate::http::execution_dto::RunDto;
use crate::http::extract::{Caller, PathId};
use crate::http::responses::{Forbidden, Internal, Invalid, NotFound, Unauthorized, Unavailable};
use crate::state::AppState;

/// The header naming the run a response started.
pub const RUN_ID_HEADER: &str = "x-run-id";

/// An idle event stream gets a comment this often, so proxies and clients keep it open.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// A run (its status, usage and what went into its prompt).
#[utoipa::path(
    get, path = "/v1/runs/{id}", tag = "runs",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The run", body = RunDto), Unauthorized, Forbidden, NotFound, Internal),
    security(("bearer" = []))
)]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<RunId>,
) -> ApiResult<web::Json<RunDto>> {
    Ok(web::Json(state.executor.run(&caller, id).await?.into()))
}

/// Ask a run to stop: generation stops within a second and the partial answer is stored as
/// `cancelled`. Idempotent; answers the run (ended, unless it took more than two seconds).
#[utoipa::path(
    post, path = "/v1/runs/{id}/cancel", tag = "runs",
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, description = "The run", body = RunDto), Unauthorized, Forbidden, NotFound, Unavailable, Internal),
    security(("bearer" = []))
)]
pub async fn cancel(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<RunId>,
) -> ApiResult<web::Json<RunDto>> {
    Ok(web::Json(state.executor.cancel(&caller, id).await?.into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsParams {
    /// Replay events numbered above this (`Last-Event-ID` takes precedence).
    #[param(minimum = 0)]
    pub after: Option<u64>,
}

/// The run's events as Server-Sent Events (`id: N`, `event: <type>`, `data: <json>`): replays
/// those numbered above `after` (or the `Last-Event-ID` header), then follows live until the
/// run's terminal event (`run.completed`, `run.failed` or `run.cancelled`). Idle connections get
/// a `: ping` comment every 15 s. Events are kept for an hour after the run ends.
#[utoipa::path(
    get, path = "/v1/runs/{id}/events", tag = "runs",
    params(
        ("id" = uuid::Uuid, Path),
        EventsParams,
        ("Last-Event-ID" = Option<u64>, Header, description = "The last event the client saw")
    ),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = String),
        Unauthorized, Forbidden, NotFound, Invalid, Internal
    ),
    security(("bearer" = []))
)]
pub async fn events(
    state: web::Data<AppState>,
    caller: Caller,
    PathId(id): PathId<RunId>,
    query: web::Query<EventsParams>,
    request: HttpRequest,
) -> ApiResult<HttpResponse> {
    let last_seen = request
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let after = last_seen.or(query.after).unwrap_or(0);
    let run = state.executor.run(&caller, id).await?;
    Ok(event_stream(state.executor.clone(), run, after))
}

/// Where a follower of a run stands.
struct Follower {
    executor: Arc<Executor>,
    run: Run,
    after: u64,
    /// The run has ended: what is left to read is already written.
    ended: bool,
    done: bool,
}

/// The run's events after `after`, as an event stream that ends with the run's terminal event.
pub fn event_stream(executor: Arc<Executor>, run: Run, after: u64) -> HttpResponse {
    let run_id = run.id.to_string();
    let follower = Follower {
        ended: run.status.is_terminal(),
        executor,
        run,
        after,
        done: false,
    };
    let body = futures_util::stream::unfold(follower, |mut f| async move {
        if f.done {
            return None;
        }
        let wait = if f.ended { Duration::ZERO } else { KEEPALIVE };
        let chunk = match f.executor.events(&f.run, f.after, 256, wait).await {
            Ok(events) if events.is_empty() => {
                if f.ended {
                    // Ended, and nothing more to read (or its events have expired).
                    return None;
                }
                f.ended = f
                    .executor
                    .stored_run(&f.run)
                    .await
                    .is_ok_and(|r| r.status.is_terminal());
                ": ping\n\n".to_owned()
            }
            Ok(events) => {
                let mut out = String::new();
                for event in events {
                    f.after = event.seq;
                    let _ = write!(
                        out,
                        "id: {}\nevent: {}\ndata: {}\n\n",
                        event.seq,
                        event.kind.as_str(),
                        event.data
                    );
                    if event.kind.is_terminal() {
                        f.done = true;
                        break;
                    }
                }
                out
            }
            Err(err) => {
                tracing::warn!(error = %err, "a run's events could not be read");
                f.done = true;
                "event: error\ndata: {\"code\":\"unavailable\",\"message\":\"the run's events cannot be read now; reconnect with Last-Event-ID\"}\n\n".to_owned()
            }
        };
        Some((Ok::<_, actix_web::Error>(Bytes::from(chunk)), f))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Compression would hold events back until a buffer fills: this stream is sent as is.
        .insert_header((header::CONTENT_ENCODING, "identity"))
        .insert_header(("x-accel-buffering", "no"))
        .insert_header((RUN_ID_HEADER, run_id))
        .streaming(body)
}
