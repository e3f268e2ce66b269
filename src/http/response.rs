//! Building success responses, so handlers never hand-assemble headers.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde::Serialize;

use super::error::ApiError;

/// The response type every handler produces: bodies are small and fully built before sending.
pub type HttpResponse = Response<Full<Bytes>>;

/// `value` as a JSON body with `status`. Serialization only fails for values that are not
/// JSON-shaped (maps with non-string keys), which is a bug: a logged 500, not a panic.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Result<HttpResponse, ApiError> {
    let body = serde_json::to_vec(value).map_err(|e| ApiError::internal("serializing a response failed", &e))?;
    Ok(bytes(status, "application/json", Bytes::from(body)))
}

/// `204 No Content`, e.g. for deletes.
pub fn no_content() -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// A body of the given content type (metrics text, OpenAPI document).
pub fn bytes(status: StatusCode, content_type: &'static str, body: Bytes) -> HttpResponse {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn json_sets_status_and_type() {
        let response = json(StatusCode::CREATED, &serde_json::json!({"id": "o1"})).unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(no_content().status(), StatusCode::NO_CONTENT);
    }

    #[test]
    fn unserializable_values_are_internal_errors() {
        let bad: HashMap<(u8, u8), u8> = HashMap::from([((1, 2), 3)]);
        assert_eq!(json(StatusCode::OK, &bad).unwrap_err().code(), "INTERNAL_ERROR");
    }
}
