//! Shared by the custom-harness benchmarks (`store`, `learn`).

use std::time::Duration;

/// The latency at quantile `q` of sorted `latencies` (nearest rank).
pub fn percentile(latencies: &[Duration], q: f64) -> Duration {
    if latencies.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * latencies.len() as f64).ceil() as usize;
    latencies[rank.clamp(1, latencies.len()) - 1]
}

pub fn millis(duration: Duration) -> String {
    format!("{:.2}ms", duration.as_secs_f64() * 1000.0)
}
