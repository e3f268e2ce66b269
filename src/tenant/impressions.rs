//! Each offer's impressions across all customers in the current UTC day, week and month:
//! what `budget_exhausted` policies read (an offer's delivery budget).
//!
//! Counted as treated decisions show offers (live, in a replay and in a mirror); kept in
//! the checkpoint. A count belongs to the period its start names, so a count of an earlier
//! period reads as 0 and is restarted by the next impression.

use dashmap::DashMap;

use crate::engine::contact::period_starts;

/// Every decision that shows an offer counts here, so an offer's entry is found under the
/// map's shared (read) lock and only its own counts are locked: decisions for popular
/// offers do not queue on a shard's write lock.
#[derive(Default)]
pub struct Impressions {
    by_offer: DashMap<Box<str>, parking_lot::Mutex<Counts>>,
}

/// Per period (day, week, month): its start (Unix seconds) and the impressions in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub starts: [i64; 3],
    pub counts: [u32; 3],
}

impl Counts {
    fn add(&mut self, at: i64) {
        for (i, start) in period_starts(at).into_iter().enumerate() {
            if start > self.starts[i] {
                (self.starts[i], self.counts[i]) = (start, 0);
            }
            if start == self.starts[i] {
                self.counts[i] += 1;
            }
        }
    }

    /// The counts of the periods `now` is in.
    fn at(&self, now: i64) -> [u32; 3] {
        let starts = period_starts(now);
        std::array::from_fn(|i| if self.starts[i] == starts[i] { self.counts[i] } else { 0 })
    }
}

impl Impressions {
    /// One impression of `offer` at `at` (Unix seconds).
    pub fn add(&self, offer: &str, at: i64) {
        match self.by_offer.get(offer) {
            Some(c) => c.lock().add(at),
            None => self.by_offer.entry(offer.into()).or_default().lock().add(at),
        }
    }

    /// The offer's impressions this day, week and month.
    pub fn of(&self, offer: &str, now: i64) -> [u32; 3] {
        self.by_offer.get(offer).map_or([0; 3], |c| c.lock().at(now))
    }

    pub fn export(&self) -> Vec<(String, Counts)> {
        self.by_offer.iter().map(|e| (e.key().to_string(), *e.value().lock())).collect()
    }

    pub fn import(&self, offer: String, counts: Counts) {
        self.by_offer.insert(offer.into(), parking_lot::Mutex::new(counts));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-23 (a Monday) 12:00 UTC.
    const NOW: i64 = 1_795_392_000 + 12 * 3600;
    const DAY: i64 = 86_400;

    #[test]
    fn counts_belong_to_their_periods() {
        let i = Impressions::default();
        i.add("a", NOW - DAY); // Sunday: last week, this month.
        i.add("a", NOW - 60);
        i.add("a", NOW);
        assert_eq!(i.of("a", NOW), [2, 2, 3]);
        assert_eq!(i.of("b", NOW), [0, 0, 0]);
        // Next day: the day's count reads 0, the week's stays.
        assert_eq!(i.of("a", NOW + DAY), [0, 2, 3]);
        i.add("a", NOW + DAY);
        assert_eq!(i.of("a", NOW + DAY), [1, 3, 4]);
    }
}
