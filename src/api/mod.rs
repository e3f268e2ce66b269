//! The HTTP API: thin handlers that parse, call the tenant, and serialise. The plumbing
//! (server loop, routing, auth, bodies, pagination, metrics, errors) is in `http`.
//!
//! * `routes` — the route table and the role each route needs.
//! * `entity` — the five endpoints of every entity kind, written once.
//! * `handlers` — one small function per endpoint.
//! * `openapi` — the OpenAPI 3 document, generated from the route table.
//! * `errors` — mapping tenant and catalog errors to API errors.
//! * `console` — the web console's page and assets, embedded in the binary.

pub mod console;
pub mod entity;
pub mod errors;
pub mod handlers;
pub mod openapi;
pub mod placements;
pub mod routes;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::Request;

use crate::http::auth::KeyIndex;
use crate::http::metrics::Metrics;
use crate::http::response::HttpResponse;
use crate::http::router::Router;
use crate::http::RequestId;
use crate::tenant::Registry;
use routes::Route;

/// Body limits: ordinary requests, and customer-data loads (streamed row by row; the
/// parsed rows are held until the load is validated whole, a few times the body size).
pub const BODY_LIMIT: usize = 1 << 20;
pub const DATA_LIMIT: usize = 64 << 20;

/// Requests that take at least this long are logged at warn, unless configured otherwise.
pub const SLOW_REQUEST_MS: u64 = 500;

/// Everything handlers share. Built once at start; the parts that change (tenants,
/// keys) are concurrent maps inside.
pub struct App {
    pub registry: Arc<Registry>,
    pub keys: KeyIndex,
    pub metrics: Metrics,
    pub router: Router<Route>,
    /// The operator tenant: its admin keys may create tenants.
    pub default_tenant: String,
    pub body_limit: usize,
    pub data_limit: usize,
    /// Requests that take at least this long are logged at warn.
    pub slow_request: Duration,
    /// In a cluster: the other nodes, and which one owns each customer.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl App {
    pub fn new(registry: Arc<Registry>, keys: KeyIndex, default_tenant: String) -> App {
        App {
            registry,
            keys,
            metrics: Metrics::new(),
            router: routes::router(),
            default_tenant,
            body_limit: BODY_LIMIT,
            data_limit: DATA_LIMIT,
            slow_request: Duration::from_millis(SLOW_REQUEST_MS),
            cluster: None,
        }
    }

    /// Handles one request: route, authenticate, run the handler, shape any error, and
    /// record the request's metrics.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> HttpResponse {
        let start = Instant::now();
        let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let (name, result) = match self.router.match_route(&method, &path) {
            Ok((route, params)) => (route.name(), handlers::dispatch(&self, route, params, req).await),
            Err(e) => ("unmatched", Err(e.into_api_error(&method, &path))),
        };
        let response = result.unwrap_or_else(|e| e.into_response(&request_id));
        let elapsed = start.elapsed();
        self.metrics.record_request(name, &method, response.status(), elapsed);
        if elapsed >= self.slow_request {
            tracing::warn!(
                %method, route = name, status = response.status().as_u16(),
                duration_ms = elapsed.as_millis() as u64, request_id = %request_id,
                "slow request"
            );
        }
        response
    }
}
