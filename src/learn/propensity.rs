//! Adaptive propensity: outcome counters and the resolution rule that turns them into
//! the P factor.
//!
//! Counters are atomics so `/respond` (on the request's task) can update them while
//! decisions read them without a lock. Resolution, as SPEC.md defines it:
//! * the offer has ≥ 50 events → its own positive rate;
//! * 1–49 events → `(pos + k·prior) / (n + k)` with `k = 10` and the prior the category
//!   rate (category ≥ 20 events), else the global rate (global ≥ 10 events), else 0.5;
//! * no events → 0.5.
//!
//! An event is a positive or negative outcome; neutral ones (impressions) do not count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

/// The propensity of an offer nothing is known about.
pub const DEFAULT_PROPENSITY: f64 = 0.5;

pub const OFFER_MATURE: u64 = 50;
pub const CATEGORY_PRIOR_MIN: u64 = 20;
pub const GLOBAL_PRIOR_MIN: u64 = 10;
pub const SMOOTHING: f64 = 10.0;

/// Positive and negative outcomes at one level (offer, category, channel or global).
#[derive(Debug, Default)]
pub struct Counts {
    positive: AtomicU64,
    negative: AtomicU64,
}

impl Counts {
    pub fn new(positive: u64, negative: u64) -> Counts {
        Counts { positive: AtomicU64::new(positive), negative: AtomicU64::new(negative) }
    }

    /// Adds counts kept elsewhere (a checkpoint's).
    pub fn add(&self, positive: u64, negative: u64) {
        self.positive.fetch_add(positive, Ordering::Relaxed);
        self.negative.fetch_add(negative, Ordering::Relaxed);
    }

    pub fn record(&self, positive: bool) {
        let counter = if positive { &self.positive } else { &self.negative };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// (positive, events). Two relaxed loads: a decision may see a count one outcome
    /// old, which changes nothing that matters for a rate.
    pub fn read(&self) -> (u64, u64) {
        let pos = self.positive.load(Ordering::Relaxed);
        (pos, pos + self.negative.load(Ordering::Relaxed))
    }

    fn rate_if(&self, min_events: u64) -> Option<f64> {
        let (pos, n) = self.read();
        (n >= min_events && n > 0).then(|| pos as f64 / n as f64)
    }
}

/// Every counter of a tenant: per offer id, category and channel name, and global.
///
/// Counters are created on first use and never removed, so an `Arc<Counts>` handed to
/// a compiled flow stays the one `record` updates. The map is touched when a flow is
/// compiled and when an outcome is recorded — never by a decision, which holds its
/// offers' `Arc`s directly.
#[derive(Debug, Default)]
pub struct CounterBank {
    offers: DashMap<Box<str>, Arc<Counts>>,
    categories: DashMap<Box<str>, Arc<Counts>>,
    channels: DashMap<Box<str>, Arc<Counts>>,
    global: Arc<Counts>,
}

impl CounterBank {
    pub fn offer(&self, id: &str) -> Arc<Counts> {
        get_or_create(&self.offers, id)
    }

    pub fn category(&self, name: &str) -> Arc<Counts> {
        get_or_create(&self.categories, name)
    }

    pub fn channel(&self, name: &str) -> Arc<Counts> {
        get_or_create(&self.channels, name)
    }

    pub fn global(&self) -> Arc<Counts> {
        self.global.clone()
    }

    /// Counts one positive or negative outcome at every level it belongs to.
    pub fn record(&self, offer: &str, category: &str, channel: Option<&str>, positive: bool) {
        self.offer(offer).record(positive);
        // Uncategorised offers share no prior (they fall back to the global rate).
        if !category.is_empty() {
            self.category(category).record(positive);
        }
        if let Some(channel) = channel {
            self.channel(channel).record(positive);
        }
        self.global.record(positive);
    }

    /// Adds a snapshot's counts (restoring a checkpoint).
    pub fn add(&self, s: &CounterSnapshot) {
        let add = |c: Arc<Counts>, (pos, events): (u64, u64)| c.add(pos, events.saturating_sub(pos));
        for (id, pos, events) in &s.offers {
            add(self.offer(id), (*pos, *events));
        }
        for (name, pos, events) in &s.categories {
            add(self.category(name), (*pos, *events));
        }
        for (name, pos, events) in &s.channels {
            add(self.channel(name), (*pos, *events));
        }
        add(self.global(), s.global);
    }

    /// `(positive, events)` at each level, for reports.
    pub fn snapshot(&self) -> CounterSnapshot {
        let read = |m: &DashMap<Box<str>, Arc<Counts>>| {
            let mut v: Vec<(String, u64, u64)> =
                m.iter().map(|e| (e.key().to_string(), e.value().read().0, e.value().read().1)).collect();
            v.sort();
            v
        };
        CounterSnapshot {
            offers: read(&self.offers),
            categories: read(&self.categories),
            channels: read(&self.channels),
            global: self.global.read(),
        }
    }
}

/// Counter values at one moment: `(key, positive, events)` per level.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CounterSnapshot {
    pub offers: Vec<(String, u64, u64)>,
    pub categories: Vec<(String, u64, u64)>,
    pub channels: Vec<(String, u64, u64)>,
    pub global: (u64, u64),
}

fn get_or_create(map: &DashMap<Box<str>, Arc<Counts>>, key: &str) -> Arc<Counts> {
    if let Some(c) = map.get(key) {
        return c.clone();
    }
    map.entry(key.into()).or_default().clone()
}

/// The Beta posterior `(α, β)` of an offer's response rate, on the same prior chain as
/// [`resolve`] (close to its propensity, not equal to it):
/// `Beta(pos + k·prior, n − pos + k·(1 − prior))` while the offer is young,
/// `Beta(pos + 1, n − pos + 1)` once it is mature (what Thompson sampling draws from).
pub fn posterior(offer: &Counts, category: Option<&Counts>, global: &Counts) -> (f64, f64) {
    let (pos, n) = offer.read();
    let (pos, neg) = (pos as f64, n.saturating_sub(pos) as f64);
    if n >= OFFER_MATURE {
        return (pos + 1.0, neg + 1.0);
    }
    let prior = category
        .and_then(|c| c.rate_if(CATEGORY_PRIOR_MIN))
        .or_else(|| global.rate_if(GLOBAL_PRIOR_MIN))
        .unwrap_or(DEFAULT_PROPENSITY)
        .clamp(0.01, 0.99);
    (pos + SMOOTHING * prior, neg + SMOOTHING * (1.0 - prior))
}

/// The propensity of an offer from its own, its category's and the global counts.
pub fn resolve(offer: &Counts, category: Option<&Counts>, global: &Counts) -> f64 {
    let (pos, n) = offer.read();
    if n >= OFFER_MATURE {
        return pos as f64 / n as f64;
    }
    if n == 0 {
        return DEFAULT_PROPENSITY;
    }
    let prior = category
        .and_then(|c| c.rate_if(CATEGORY_PRIOR_MIN))
        .or_else(|| global.rate_if(GLOBAL_PRIOR_MIN))
        .unwrap_or(DEFAULT_PROPENSITY);
    (pos as f64 + SMOOTHING * prior) / (n as f64 + SMOOTHING)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn no_events_is_the_default() {
        close(resolve(&Counts::default(), None, &Counts::default()), 0.5);
    }

    #[test]
    fn a_mature_offer_uses_its_own_rate() {
        close(resolve(&Counts::new(10, 40), Some(&Counts::new(90, 10)), &Counts::default()), 0.2);
    }

    #[test]
    fn an_immature_offer_blends_toward_the_category() {
        // 3 of 5 positive; category 30 of 100 → (3 + 10·0.3) / (5 + 10) = 0.4
        close(resolve(&Counts::new(3, 2), Some(&Counts::new(30, 70)), &Counts::new(1, 1)), 0.4);
    }

    #[test]
    fn a_thin_category_falls_back_to_global_then_default() {
        let thin = Counts::new(5, 5); // 10 events < 20
                                      // global 2 of 10 → (1 + 10·0.2) / (2 + 10) = 0.25
        close(resolve(&Counts::new(1, 1), Some(&thin), &Counts::new(2, 8)), 0.25);
        // global 9 events < 10 → prior 0.5 → (1 + 5) / 12
        close(resolve(&Counts::new(1, 1), Some(&thin), &Counts::new(2, 7)), 0.5);
    }

    #[test]
    fn counts_record_and_read() {
        let c = Counts::default();
        c.record(true);
        c.record(false);
        c.record(true);
        assert_eq!(c.read(), (2, 3));
    }
}
