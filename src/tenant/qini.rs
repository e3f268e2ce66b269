//! How well a flow's uplift models rank customers: per offer, the customers' segments and
//! the Qini curve over the training sample (the same bounded sample training reads, so a
//! report costs what a training costs, whatever the log's size).
//!
//! The Qini curve orders the sample's customers by predicted effect, highest first, and
//! at each fraction `k` of them counts the incremental conversions the offer would have
//! made if only they got it: `Yt(k) − Yc(k) · Nt(k) / Nc(k)` (treated conversions minus
//! the held-out ones scaled to the treated count). A model that ranks well rises above
//! the diagonal from 0 to the total — what targeting at random gives.

use serde::Serialize;

use super::learning::FlowUplift;
use super::measure::TrainingSample;
use crate::engine::CompiledFlow;
use crate::learn::uplift::{segment, Segment, UpliftRow};

/// Points on each curve: every 5 % of the sample.
const STEPS: usize = 20;

#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpliftCurves {
    pub flow_key: String,
    /// Whether the flow has models yet (`POST /algorithm-models/{id}/train` fits them).
    pub trained: bool,
    /// What the curves are computed on, or how to get them.
    pub note: &'static str,
    pub offers: Vec<OfferCurve>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OfferCurve {
    pub offer_id: String,
    pub offer_name: String,
    pub rows: usize,
    /// Customers of the sample per segment of the offer's chosen model.
    pub segments: Vec<SegmentCount>,
    /// `(fraction of customers targeted, incremental conversions)`, from (0, 0).
    pub qini: Vec<QiniPoint>,
    /// The area between the curve and the random line, over the total's magnitude (0 when
    /// the total is 0): above 0, the model ranks better than chance.
    pub qini_coefficient: f64,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SegmentCount {
    pub segment: &'static str,
    pub customers: usize,
}

#[derive(Debug, Clone, Copy, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QiniPoint {
    pub fraction: f64,
    pub gain: f64,
    /// What targeting the same fraction at random gains.
    pub random: f64,
}

/// Segments and the Qini curve of every offer with a model.
pub fn curves(flow: &CompiledFlow, sample: &TrainingSample, models: &FlowUplift) -> UpliftCurves {
    let names = sample.input_names(flow);
    let mut rows = sample.uplift_rows(&names);
    let mut offers = Vec::new();
    for (id, name) in flow.offer_ids() {
        let (Some(model), Some(rows)) = (models.offers.get(id), rows.remove(&**id)) else { continue };
        let predictions: Vec<(f64, Segment)> = rows
            .iter()
            .map(|r| {
                let p = model.chosen().predict(&r.features);
                (p.tau, segment(p.tau, p.mu_c, p.mu_t))
            })
            .collect();
        let taus: Vec<f64> = predictions.iter().map(|(t, _)| *t).collect();
        let qini = qini(&rows, &taus);
        offers.push(OfferCurve {
            offer_id: id.to_string(),
            offer_name: name.to_string(),
            rows: rows.len(),
            segments: segment_counts(predictions.iter().map(|(_, s)| *s)),
            qini_coefficient: coefficient(&qini),
            qini,
        });
    }
    UpliftCurves {
        flow_key: flow.key.to_string(),
        trained: true,
        note: "in-sample: computed on the training sample the models were fitted on",
        offers,
    }
}

/// What a flow without models answers.
pub fn untrained(flow: &CompiledFlow) -> UpliftCurves {
    UpliftCurves {
        flow_key: flow.key.to_string(),
        trained: false,
        note: "no uplift models yet: they train from a flow with a holdout (POST /algorithm-models/{id}/train)",
        offers: Vec::new(),
    }
}

fn segment_counts(segments: impl Iterator<Item = Segment>) -> Vec<SegmentCount> {
    let all = [Segment::Persuadable, Segment::SureThing, Segment::LostCause, Segment::SleepingDog, Segment::Uncertain];
    let mut counts = [0usize; 5];
    for s in segments {
        counts[all.iter().position(|a| *a == s).expect("every segment is listed")] += 1;
    }
    all.iter().zip(counts).map(|(s, customers)| SegmentCount { segment: s.name(), customers }).collect()
}

/// The Qini curve of `rows` ranked by `taus` (highest first; ties keep the sample order).
pub fn qini(rows: &[UpliftRow], taus: &[f64]) -> Vec<QiniPoint> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| taus[b].total_cmp(&taus[a]));
    let gain_at = |k: usize| {
        let (mut nt, mut nc, mut yt, mut yc) = (0.0, 0.0, 0.0, 0.0);
        for &i in &order[..k] {
            let r = &rows[i];
            let y = if r.converted { 1.0 } else { 0.0 };
            if r.treated {
                (nt, yt) = (nt + 1.0, yt + y);
            } else {
                (nc, yc) = (nc + 1.0, yc + y);
            }
        }
        if nc == 0.0 {
            yt
        } else {
            yt - yc * nt / nc
        }
    };
    let total = gain_at(rows.len());
    (0..=STEPS)
        .map(|step| {
            let fraction = step as f64 / STEPS as f64;
            let k = (fraction * rows.len() as f64).round() as usize;
            QiniPoint { fraction, gain: gain_at(k.min(rows.len())), random: total * fraction }
        })
        .collect()
}

/// The area between the curve and the random line (trapezoids), over |total|.
fn coefficient(points: &[QiniPoint]) -> f64 {
    let total = points.last().map_or(0.0, |p| p.gain);
    if total == 0.0 {
        return 0.0;
    }
    let area: f64 = points
        .windows(2)
        .map(|w| (w[1].fraction - w[0].fraction) * ((w[0].gain - w[0].random) + (w[1].gain - w[1].random)) / 2.0)
        .sum();
    area / total.abs()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(treated: bool, converted: bool) -> UpliftRow {
        UpliftRow { features: vec![], treated, converted }
    }

    #[test]
    fn a_perfect_ranking_rises_above_random_and_a_reversed_one_below() {
        // Four persuadables (convert only when treated) and four who never convert.
        let mut rows = Vec::new();
        let mut taus = Vec::new();
        for i in 0..8 {
            let persuadable = i < 4;
            rows.push(row(i % 2 == 0, persuadable && i % 2 == 0));
            taus.push(if persuadable { 0.5 } else { 0.0 });
        }
        let good = qini(&rows, &taus);
        assert_eq!(good.first().unwrap().gain, 0.0);
        assert_eq!(good.last().unwrap().gain, 2.0);
        assert!(coefficient(&good) > 0.0);
        let reversed: Vec<f64> = taus.iter().map(|t| -t).collect();
        assert!(coefficient(&qini(&rows, &reversed)) < 0.0);
        // Random targeting is the diagonal to the same total.
        assert_eq!(good[10].random, 1.0);
    }
}
