//! The web console at `/console`: one page, a script and a style sheet, all compiled into
//! the binary and served by it, so the console works with no network beyond this server
//! (no CDN, no font or script from elsewhere; its content security policy allows only
//! this origin). The page signs in with an API key kept for the tab only
//! (`sessionStorage`) and calls the same `/api/v1` endpoints as any client, so the API's
//! own roles and answers apply: what the role may not do is disabled, and a refusal is
//! shown as the API gave it.

use hyper::header::{HeaderValue, CACHE_CONTROL};
use hyper::StatusCode;

use crate::http::error::ApiError;
use crate::http::response::{bytes, HttpResponse};

const PAGE: &str = include_str!("console/index.html");
const SCRIPT: &str = include_str!("console/app.js");
const STYLE: &str = include_str!("console/app.css");

/// Only this origin: the console loads nothing from elsewhere and sends its requests here.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                      connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn page() -> HttpResponse {
    served(bytes(StatusCode::OK, "text/html; charset=utf-8", PAGE.into()))
}

pub fn asset(name: &str) -> Result<HttpResponse, ApiError> {
    let (content_type, body) = match name {
        "app.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "app.css" => ("text/css; charset=utf-8", STYLE),
        _ => return Err(ApiError::NotFound(format!("the console has no asset `{name}`"))),
    };
    Ok(served(bytes(StatusCode::OK, content_type, body.into())))
}

fn served(mut response: HttpResponse) -> HttpResponse {
    let headers = response.headers_mut();
    headers.insert("content-security-policy", HeaderValue::from_static(POLICY));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    // The assets change with the binary: revalidate rather than run an old script.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
