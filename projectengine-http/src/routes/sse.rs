//! `/api/jobs/{id}/stream/`: a job's events as Server-Sent Events, resumable
//! with `Last-Event-ID` (the event id is the seq) or `?after=`.

use std::convert::Infallible;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::{Stream, StreamExt};
use projectengine_core::{EventStream, JobId};

use super::both;
use crate::auth::stream_owner;
use crate::dto::{EventDto, SseMessage, StreamQuery};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiQuery, PathId};
use crate::limits::StreamSlot;
use crate::metrics::OpenGuard;
use crate::ApiState;

/// The SSE route, with and without its trailing slash.
pub(crate) fn routes() -> Router<ApiState> {
    both(Router::new(), "/api/jobs/{id}/stream/", get(stream))
}

/// Streams a job's events as Server-Sent Events.
///
/// Each event has `id` = its seq and `data` = `{job_id, seq, attempt, at, type,
/// data}`; the stream ends after the terminal event. Resume with the
/// `Last-Event-ID` header (browsers send it on reconnect) or `?after=`; a
/// finished job with nothing after that answers 204, which stops an
/// `EventSource` from reconnecting. The token may come as `?token=` for
/// clients that cannot set headers.
#[utoipa::path(
    get, path = "/api/jobs/{id}/stream/", tag = "streams",
    params(
        ("id" = String, Path, format = Uuid, description = "The job id"),
        ("Last-Event-ID" = Option<u64>, Header, nullable = false, minimum = 0, description = "Resume after this seq (wins over `after`)"),
        StreamQuery,
    ),
    responses(
        (status = 200, description = "An event stream: each message has `id` = the seq and `data` = an `EventDto` as JSON", content_type = "text/event-stream", body = SseMessage),
        (status = 204, description = "The job has finished and nothing follows `after`"),
        (status = 400, description = "A parameter is invalid", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such job (or not yours)", body = ErrorBody),
        (status = 429, description = "Too many open streams for this owner", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn stream(State(state): State<ApiState>, req: Request) -> ApiResult<Response> {
    let (mut parts, _body) = req.into_parts();
    let ApiQuery(q) = ApiQuery::<StreamQuery>::from_request_parts(&mut parts, &state).await?;
    let owner = stream_owner(state.authenticator(), &parts, q.token.as_deref(), false).await?;
    let PathId(id) = PathId::<JobId>::from_request_parts(&mut parts, &state).await?;
    let after = match parts.headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            // Seqs are int64 wherever they are stored.
            .filter(|seq| i64::try_from(*seq).is_ok())
            .ok_or_else(|| ApiError::bad_param("Last-Event-ID", "must be a seq (an integer)"))?,
        None => q.after.unwrap_or(0),
    };
    let engine = state.engine();
    let job = engine.get(&owner, id).await?;
    if job.status.is_terminal() && after >= job.last_seq {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let slot = state
        .streams()
        .acquire(&owner, state.config().max_streams_per_owner)?;
    let events = engine
        .watch(&owner, id, after)
        .await?
        .take_until(state.shutdown_token().cancelled_owned())
        .boxed();
    let open = (state.metrics().sse_opened(), slot);
    let body = sse_events(events, state.clone(), open);
    Ok(Sse::new(body)
        .keep_alive(KeepAlive::new().interval(state.config().sse_keep_alive))
        .into_response())
}

/// The watch stream as SSE events; after a store error, one `error` event and the end.
fn sse_events(
    events: EventStream,
    state: ApiState,
    open: (OpenGuard, StreamSlot),
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(
        (Some(events), state, open),
        |(events, state, open)| async move {
            let mut events = events?;
            let event = match events.next().await? {
                Ok(ev) => {
                    let json = serde_json::to_string(&EventDto::from(&ev))
                        .unwrap_or_else(|_| "{}".to_owned());
                    Event::default().id(ev.seq.to_string()).data(json)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "event stream failed");
                    let body = ApiError::from(e).body();
                    let json = serde_json::to_string(&body).unwrap_or_else(|_| "{}".to_owned());
                    let ev = Event::default().event("error").data(json);
                    return Some((Ok(ev), (None, state, open)));
                }
            };
            Some((Ok(event), (Some(events), state, open)))
        },
    )
}
