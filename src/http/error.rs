//! The one error type of the HTTP edge and its JSON envelope.
//!
//! Every failure a handler can report is an [`ApiError`]; [`ApiError::into_response`] is the only
//! place that turns one into bytes, so the envelope shape and the stable `code` strings cannot
//! drift between endpoints:
//!
//! ```json
//! {"error": {"code": "BAD_REQUEST", "message": "...", "status": 400,
//!            "requestId": "<id>", "recommendationId": "<id>"}}
//! ```
//!
//! `recommendationId` repeats the request id because the platform we are compatible with names
//! its correlation id that way in error bodies; `requestId` is the name we document.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Method, Response, StatusCode};
use serde::Serialize;

/// A request failure with a stable machine-readable code and a message meant for the caller.
///
/// Messages are shown to clients verbatim, so they must say what to fix and must not contain
/// internal details (paths, backtraces, storage errors); use [`ApiError::internal`] for those.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or fails validation; the message names the field.
    #[error("{0}")]
    BadRequest(String),
    /// 400 with the problems as data in `error.details` (field paths, or a rule file's
    /// located diagnostics), so a client need not parse the message.
    #[error("{message}")]
    Invalid { message: String, details: Details },
    /// 401: no API key, or one we do not know.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated, but not allowed (role, or `X-Tenant-Id` mismatch).
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such resource (also for another tenant's resources).
    #[error("{0}")]
    NotFound(String),
    /// 405: the path exists but not with this method; `allowed` becomes the `Allow` header.
    #[error("{message}")]
    MethodNotAllowed {
        /// What the caller should do instead.
        message: String,
        /// The methods the path does accept.
        allowed: Vec<Method>,
    },
    /// 409: the request conflicts with current state (duplicate name, unpublished flow, ...).
    #[error("{0}")]
    Conflict(String),
    /// 412: a conditional change (`If-Match`, or `version` in the body) for a version the
    /// entity is no longer at.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 413: the body is larger than the endpoint accepts.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: the body is not `application/json`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 408: the client did not finish sending its request body in time.
    #[error("{0}")]
    RequestTimeout(String),
    /// 429: too many requests; `retry_after_secs` becomes the `Retry-After` header.
    #[error("{message}")]
    RateLimited {
        /// What limit was hit.
        message: String,
        /// Seconds the caller should wait before retrying.
        retry_after_secs: u64,
    },
    /// 500: a bug or an infrastructure failure; the message is generic by construction.
    #[error("{0}")]
    Internal(String),
    /// 503: the server cannot take the request now (a tenant that does not answer in
    /// time, the connection limit); retrying later may succeed.
    #[error("{0}")]
    Unavailable(String),
    /// 507: the disk is full; the write was not made. Reads and decisions still work.
    #[error("{0}")]
    InsufficientStorage(String),
}

/// The generic message of internal errors: details go to the log, never to the client.
pub const INTERNAL_MESSAGE: &str = "internal error; the server log has details under this request id";

impl ApiError {
    /// An internal error whose cause is logged (at error level) but not shown to the client.
    pub fn internal(context: &str, cause: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(%cause, "{context}");
        ApiError::Internal(INTERNAL_MESSAGE.to_string())
    }

    /// The HTTP status this error is sent with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Invalid { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
        }
    }

    /// The stable code clients switch on (`BAD_REQUEST`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) | ApiError::Invalid { .. } => "BAD_REQUEST",
            ApiError::Unauthorized(_) => "UNAUTHORIZED",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::MethodNotAllowed { .. } => "METHOD_NOT_ALLOWED",
            ApiError::Conflict(_) => "CONFLICT",
            ApiError::PreconditionFailed(_) => "PRECONDITION_FAILED",
            ApiError::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            ApiError::UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
            ApiError::RequestTimeout(_) => "REQUEST_TIMEOUT",
            ApiError::RateLimited { .. } => "RATE_LIMITED",
            ApiError::Internal(_) => "INTERNAL_ERROR",
            ApiError::Unavailable(_) => "SERVICE_UNAVAILABLE",
            ApiError::InsufficientStorage(_) => "INSUFFICIENT_STORAGE",
        }
    }

    /// The message shown to the client.
    pub fn message(&self) -> &str {
        match self {
            ApiError::BadRequest(m)
            | ApiError::Unauthorized(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::PreconditionFailed(m)
            | ApiError::PayloadTooLarge(m)
            | ApiError::UnsupportedMediaType(m)
            | ApiError::RequestTimeout(m)
            | ApiError::Internal(m)
            | ApiError::Unavailable(m)
            | ApiError::InsufficientStorage(m) => m,
            ApiError::MethodNotAllowed { message, .. }
            | ApiError::RateLimited { message, .. }
            | ApiError::Invalid { message, .. } => message,
        }
    }

    /// The JSON error envelope, with the headers some statuses call for
    /// (`Allow`, `Retry-After`, `WWW-Authenticate`).
    pub fn into_response(self, request_id: &str) -> Response<Full<Bytes>> {
        let body = serde_json::to_vec(&self.envelope(request_id)).unwrap_or_else(|_| fallback_body(self.status()));
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        match &self {
            ApiError::MethodNotAllowed { allowed, .. } => {
                if let Ok(value) = HeaderValue::from_str(&allow_list(allowed)) {
                    headers.insert(ALLOW, value);
                }
            }
            ApiError::RateLimited { retry_after_secs, .. } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::Unauthorized(_) => {
                headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }

    fn envelope<'a>(&'a self, request_id: &'a str) -> Envelope<'a> {
        Envelope {
            error: Body {
                code: self.code(),
                message: self.message(),
                status: self.status().as_u16(),
                request_id,
                recommendation_id: request_id,
                details: match self {
                    ApiError::Invalid { details, .. } => Some(details),
                    _ => None,
                },
            },
        }
    }
}

/// A client sending unparseable JSON gets a 400 naming the position serde reports.
impl From<serde_json::Error> for ApiError {
    fn from(e: serde_json::Error) -> Self {
        ApiError::BadRequest(format!("invalid JSON: {e}"))
    }
}

/// The body of every error response (4XX and 5XX); the OpenAPI document's error schema.
#[derive(Serialize, schemars::JsonSchema)]
#[schemars(rename = "ErrorEnvelope")]
pub struct Envelope<'a> {
    error: Body<'a>,
}

#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "ErrorBody")]
struct Body<'a> {
    code: &'static str,
    message: &'a str,
    status: u16,
    request_id: &'a str,
    recommendation_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a Details>,
}

/// The data behind a 400: `{"fields": [{"path", "message"}]}` for a body that fails
/// validation, `{"diagnostics": [{"file", "line", "column", "code", "message", …}]}` for a
/// rule file with errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Details {
    Fields(Vec<crate::model::FieldError>),
    Diagnostics(Vec<crate::dsl::error::Located>),
}

/// `GET, POST` — the `Allow` header value.
fn allow_list(methods: &[Method]) -> String {
    methods.iter().map(Method::as_str).collect::<Vec<_>>().join(", ")
}

/// Serializing the envelope cannot fail for these field types; this keeps the edge panic-free
/// anyway.
fn fallback_body(status: StatusCode) -> Vec<u8> {
    format!(r#"{{"error":{{"code":"INTERNAL_ERROR","message":"internal error","status":{}}}}}"#, status.as_u16())
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn body_json(response: Response<Full<Bytes>>) -> serde_json::Value {
        let bytes = block_on(response.into_body().collect()).unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Collects a `Full` body on a throwaway current-thread runtime.
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(future)
    }

    #[test]
    fn every_variant_has_its_status_and_code() {
        let s = || "m".to_string();
        let cases = [
            (ApiError::BadRequest(s()), 400, "BAD_REQUEST"),
            (ApiError::Unauthorized(s()), 401, "UNAUTHORIZED"),
            (ApiError::Forbidden(s()), 403, "FORBIDDEN"),
            (ApiError::NotFound(s()), 404, "NOT_FOUND"),
            (ApiError::MethodNotAllowed { message: s(), allowed: vec![] }, 405, "METHOD_NOT_ALLOWED"),
            (ApiError::Conflict(s()), 409, "CONFLICT"),
            (ApiError::PreconditionFailed(s()), 412, "PRECONDITION_FAILED"),
            (ApiError::PayloadTooLarge(s()), 413, "PAYLOAD_TOO_LARGE"),
            (ApiError::UnsupportedMediaType(s()), 415, "UNSUPPORTED_MEDIA_TYPE"),
            (ApiError::RateLimited { message: s(), retry_after_secs: 1 }, 429, "RATE_LIMITED"),
            (ApiError::Internal(s()), 500, "INTERNAL_ERROR"),
            (ApiError::RequestTimeout(s()), 408, "REQUEST_TIMEOUT"),
            (ApiError::Unavailable(s()), 503, "SERVICE_UNAVAILABLE"),
            (ApiError::InsufficientStorage(s()), 507, "INSUFFICIENT_STORAGE"),
        ];
        for (error, status, code) in cases {
            assert_eq!(error.status().as_u16(), status, "{code}");
            assert_eq!(error.code(), code);
            assert_eq!(error.message(), "m");
            assert_eq!(error.to_string(), "m");
        }
    }

    #[test]
    fn envelope_carries_code_message_status_and_request_id() {
        let response = ApiError::BadRequest("customerId is required".into()).into_response("req-1");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        let json = body_json(response);
        assert_eq!(
            json,
            serde_json::json!({"error": {"code": "BAD_REQUEST", "message": "customerId is required",
                "status": 400, "requestId": "req-1", "recommendationId": "req-1"}})
        );
    }

    #[test]
    fn status_specific_headers() {
        let response = ApiError::RateLimited { message: "slow down".into(), retry_after_secs: 7 }.into_response("r");
        assert_eq!(response.headers()[RETRY_AFTER], "7");
        let allowed = vec![Method::GET, Method::POST];
        let response = ApiError::MethodNotAllowed { message: "no".into(), allowed }.into_response("r");
        assert_eq!(response.headers()[ALLOW], "GET, POST");
        let response = ApiError::Unauthorized("who?".into()).into_response("r");
        assert_eq!(response.headers()[WWW_AUTHENTICATE], "Bearer");
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let error = ApiError::internal("sled write failed", &"/var/lib/arbiter/db: disk full");
        let json = body_json(error.into_response("r"));
        let message = json["error"]["message"].as_str().unwrap();
        assert!(!message.contains("disk"), "{message}");
        assert_eq!(json["error"]["code"], "INTERNAL_ERROR");
    }

    #[test]
    fn json_syntax_errors_are_bad_requests() {
        let error: ApiError = serde_json::from_str::<serde_json::Value>("{").unwrap_err().into();
        assert_eq!(error.code(), "BAD_REQUEST");
        assert!(error.message().starts_with("invalid JSON"), "{}", error.message());
    }
}
