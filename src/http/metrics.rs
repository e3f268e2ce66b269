//! Prometheus metrics, exposed in the text format at the metrics endpoint.
//!
//! Label values are `&'static str` wherever possible (route names, methods, status classes),
//! so recording a request allocates nothing and label cardinality stays bounded by the route
//! table — a client cannot mint new series by inventing paths.

use std::time::Duration;

use hyper::{Method, StatusCode};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Latency buckets in seconds, 50 µs to 5 s: decisions land in the first few, slow storage
/// writes and bulk loads in the last.
const LATENCY_BUCKETS: [f64; 16] =
    [0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// The content type of [`Metrics::render`]'s output (prometheus-client writes OpenMetrics
/// text, which Prometheus scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FlowLabels {
    flow: String,
}

/// The process's metrics; share one behind an `Arc`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram>,
    decisions: Family<FlowLabels, Counter>,
    publishes: Counter,
    tenants: Gauge,
    event_log_syncs: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All metrics registered under the `arbiter_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("arbiter");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RequestLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let decisions = Family::<FlowLabels, Counter>::default();
        let publishes = Counter::default();
        let tenants = Gauge::default();
        let event_log_syncs = Counter::default();
        registry.register("http_requests", "HTTP requests by route, method and status class", requests.clone());
        registry.register_with_unit(
            "http_request_duration",
            "HTTP request latency by route, method and status class",
            Unit::Seconds,
            latency.clone(),
        );
        registry.register("decisions", "Decisions made, by decision flow", decisions.clone());
        registry.register("publishes", "Decision flow versions published (including rollbacks)", publishes.clone());
        registry.register("tenants", "Tenants loaded in memory", tenants.clone());
        registry.register(
            "event_log_syncs",
            "fdatasyncs of the event log: one per group commit of acknowledged appends",
            event_log_syncs.clone(),
        );
        Metrics { registry, requests, latency, decisions, publishes, tenants, event_log_syncs }
    }

    /// Counts one request and observes its latency. `route` is the router's name for the
    /// endpoint (use a fixed name such as `"unmatched"` for 404s).
    pub fn record_request(&self, route: &'static str, method: &Method, status: StatusCode, duration: Duration) {
        let labels = RequestLabels { route, method: method_label(method), status: status_class(status) };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(duration.as_secs_f64());
    }

    /// Counts one decision made by `flow`.
    pub fn record_decision(&self, flow: &str) {
        self.decisions.get_or_create(&FlowLabels { flow: flow.to_string() }).inc();
    }

    /// Counts one publish (or rollback).
    pub fn record_publish(&self) {
        self.publishes.inc();
    }

    /// Sets how many tenants are loaded.
    pub fn set_tenants(&self, count: i64) {
        self.tenants.set(count);
    }

    /// Brings the event-log sync counter up to `total` (the log counts; this mirrors it).
    pub fn set_event_log_syncs(&self, total: u64) {
        let seen = self.event_log_syncs.get();
        self.event_log_syncs.inc_by(total.saturating_sub(seen));
    }

    /// Everything in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an error would only come from a broken encoder.
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Standard methods by name; anything else is folded into `other` to bound cardinality.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn status_class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_with_labels() {
        let metrics = Metrics::new();
        metrics.record_request("recommend", &Method::POST, StatusCode::OK, Duration::from_micros(80));
        metrics.record_request("recommend", &Method::POST, StatusCode::CONFLICT, Duration::from_millis(2));
        metrics.record_decision("cross-sell");
        metrics.record_publish();
        metrics.set_tenants(3);
        let text = metrics.render();
        for expected in [
            r#"arbiter_http_requests_total{route="recommend",method="POST",status="2xx"} 1"#,
            r#"arbiter_http_requests_total{route="recommend",method="POST",status="4xx"} 1"#,
            r#"arbiter_http_request_duration_seconds_bucket{le="0.0001",route="recommend",method="POST",status="2xx"} 1"#,
            r#"arbiter_http_request_duration_seconds_bucket{le="5.0",route="recommend",method="POST",status="4xx"} 1"#,
            r#"arbiter_decisions_total{flow="cross-sell"} 1"#,
            "arbiter_publishes_total 1",
            "arbiter_tenants 3",
            "# EOF",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
        assert_eq!(status_class(StatusCode::from_u16(599).unwrap()), "5xx");
        assert_eq!(status_class(StatusCode::CONTINUE), "1xx");
    }
}
