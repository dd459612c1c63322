//! Building responses: JSON, bincode, streams and errors.

use checkraft_proto::{codec, ApiError, ErrorKind, WriteOutcome};
use serde::Serialize;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

use crate::error::Error;

/// Content type of bincode bodies.
pub const BINCODE: &str = "application/x-checkraft-bincode";
/// Content type of the change stream (length-prefixed bincode frames).
pub const FRAMES: &str = "application/x-checkraft-frames";

fn with_body(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let body = serde_json::to_vec(value).expect("wire types serialize to JSON");
    with_body(status, "application/json", body)
}

/// A bincode response.
pub fn bincode<T: Serialize>(status: StatusCode, value: &T) -> Response {
    with_body(status, BINCODE, codec::encode(value))
}

/// A plain-text response.
pub fn text(status: StatusCode, body: &str) -> Response {
    with_body(
        status,
        "text/plain; charset=utf-8",
        body.as_bytes().to_vec(),
    )
}

/// The HTTP status of an error class.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error as a JSON [`ApiError`] with its status.
pub fn error(e: &Error) -> Response {
    let kind = e.kind();
    let mut response = json(
        status_of(kind),
        &ApiError {
            kind,
            message: e.to_string(),
        },
    );
    if kind == ErrorKind::Unauthorized {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// A write outcome with its status: 200 applied, 409 rejected, 421 forward
/// (503 when no leader is known).
pub fn outcome(outcome: &WriteOutcome) -> Response {
    let status = match outcome {
        WriteOutcome::Applied { .. } | WriteOutcome::MetaApplied { .. } => StatusCode::OK,
        WriteOutcome::Rejected { .. } => StatusCode::CONFLICT,
        WriteOutcome::ForwardToLeader {
            leader_id: Some(_), ..
        } => StatusCode::MISDIRECTED_REQUEST,
        WriteOutcome::ForwardToLeader {
            leader_id: None, ..
        } => StatusCode::SERVICE_UNAVAILABLE,
    };
    json(status, outcome)
}
