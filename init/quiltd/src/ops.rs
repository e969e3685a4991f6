//! The operator's endpoints beyond listing: start, stop or restart a
//! service; a service's output, retained or followed; quilt-init's events
//! as they happen; the A/B slots. Followed output and events are Server-Sent Events
//! streams (`text/event-stream`), one SSE event per control reply, read
//! from quilt-init by [`crate::control::Control::stream`].

use crate::api::{chain, refused, unexpected, ApiError, AppState};
use crate::control::ControlError;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use quilt_proto::{Reply, Request as Ctl, ServiceVerb};
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

/// How long a stream's first reply is awaited before the stream starts
/// (so a refusal is an HTTP error, not an event).
const FIRST_REPLY: Duration = Duration::from_millis(500);

/// `POST /v1/services/{name}/{start|stop|restart}`.
pub async fn service(
    State(state): State<Arc<AppState>>,
    Path((name, action)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let verb = match action.as_str() {
        "start" => ServiceVerb::Start,
        "stop" => ServiceVerb::Stop,
        "restart" => ServiceVerb::Restart,
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no-such-endpoint",
                format!("{other:?} is not start, stop or restart"),
            ))
        }
    };
    match state.control.call(Ctl::Service { name, verb }).await? {
        Reply::ServiceState { name, state } => Ok(Json(json!({"name": name, "state": state}))),
        other => Err(unexpected(other)),
    }
}

/// `GET /v1/slots`: the A/B boot state (grant `slots`).
pub async fn slots(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    match state.control.call(Ctl::Slots).await? {
        Reply::Slots(s) => Ok(Json(json!({
            "booted": s.booted, "trial": s.trial,
            "primary": s.primary, "primary_version": s.primary_version,
            "trying": s.trying, "trying_version": s.trying_version,
            "tries_left": s.tries_left, "failed_version": s.failed_version,
            "fallbacks": s.fallbacks,
        }))),
        other => Err(unexpected(other)),
    }
}

/// `GET /v1/services/{name}/logs` query.
#[derive(Debug, Deserialize)]
pub struct LogsQuery {
    /// Keep the response open and send new output as it comes (SSE).
    #[serde(default)]
    pub follow: bool,
}

fn log_json(missed: u64, data: &[u8]) -> Value {
    json!({"missed": missed, "text": String::from_utf8_lossy(data)})
}

/// `GET /v1/services/{name}/logs[?follow=true]`: the retained output as
/// JSON, or with `follow` an SSE stream of `log` events.
pub async fn logs(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let req = Ctl::Logs {
        name: name.clone(),
        follow: q.follow,
    };
    if !q.follow {
        return match state.control.call(req).await? {
            Reply::Log { missed, data } => {
                let mut v = log_json(missed, &data);
                v["name"] = json!(name);
                Ok(Json(v).into_response())
            }
            other => Err(unexpected(other)),
        };
    }
    sse(state.control.stream(req)?, |r| match r {
        Reply::Log { missed, data } => Some(
            Event::default()
                .event("log")
                .json_data(log_json(missed, &data)),
        ),
        _ => None,
    })
    .await
}

/// `GET /v1/events`: quilt-init's event lines from now on, as an SSE
/// stream of `event` events (`{"line": "quilt: t=… event=…"}`).
pub async fn events(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    sse(state.control.stream(Ctl::Events)?, |r| match r {
        Reply::Event { line } => Some(
            Event::default()
                .event("event")
                .json_data(json!({ "line": line })),
        ),
        _ => None,
    })
    .await
}

/// A control stream as SSE. A refusal that comes first is an HTTP error;
/// one that comes later (or quilt-init going away) is a last `error`
/// event. `event` maps a reply to its SSE event (`None`: an unexpected
/// reply, which ends the stream).
async fn sse(
    mut rx: mpsc::Receiver<Result<Reply, ControlError>>,
    event: fn(Reply) -> Option<Result<Event, axum::Error>>,
) -> Result<Response, ApiError> {
    let first = match tokio::time::timeout(FIRST_REPLY, rx.recv()).await {
        Ok(Some(Ok(Reply::Error { code, message }))) => return Err(refused(code, message)),
        Ok(Some(Err(e))) => return Err(e.into()),
        Ok(Some(Ok(r))) => Some(r),
        Ok(None) | Err(_) => None,
    };
    let error_event = |code: &str, message: String| {
        Event::default()
            .event("error")
            .json_data(json!({"error": code, "message": message}))
    };
    let to_event = move |item: Result<Reply, ControlError>| -> Result<Event, Infallible> {
        let e = match item {
            Ok(Reply::Error { code, message }) => error_event(&format!("{code:?}"), message),
            Ok(r) => event(r).unwrap_or_else(|| error_event("protocol", "unexpected reply".into())),
            Err(e) => error_event("control-unavailable", chain(&e)),
        };
        Ok(e.unwrap_or_else(|_| Event::default().event("error").data("{}")))
    };
    let head = tokio_stream::iter(first.map(Ok));
    let rest = tokio_stream::wrappers::ReceiverStream::new(rx);
    let stream = head.chain(rest).map(to_event);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}
