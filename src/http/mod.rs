//! The HTTP front-end: reusable plumbing the API handlers sit on.
//!
//! Module map, in the order a request meets them:
//! * [`server`] — accept loop on hyper 1 (HTTP/1.1, keep-alive), request ids, panic isolation,
//!   graceful shutdown.
//! * [`router`] — `(method, pattern)` → route id with decoded `{params}`; 404 versus 405.
//! * [`auth`] — API keys: minting, HMAC-SHA256 hashing, header parsing, tenant check, key index.
//! * [`body`] — JSON content-type and size limits; streaming `{"rows": [...]}` reader.
//! * [`pagination`] — `limit`/`cursor` keyset pages and query-string parsing.
//! * [`response`] — JSON and empty success responses.
//! * [`error`] — [`ApiError`] and the one JSON error envelope.
//! * [`metrics`] — Prometheus counters and latency histograms.
//! * [`percent`] — percent-decoding shared by paths and query strings.

pub mod auth;
pub mod body;
pub mod error;
pub mod idle;
pub mod metrics;
pub mod pagination;
pub mod percent;
pub mod response;
pub mod router;
pub mod server;

pub use error::ApiError;
pub use response::HttpResponse;
pub use server::{serve, RequestId};
