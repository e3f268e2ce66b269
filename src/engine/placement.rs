//! Placements: how many offers a decision on a channel shows, and how the ranked offers
//! are shared out between the channel's placements (`hero_banner`, `sidebar` …).
//!
//! A request on a channel with placements that names none fills every active placement
//! in the channel's order, each with up to its `maxSlots` of the ranked offers, so no
//! offer is in two. When one is left empty, `atomic` coupling (the flow's
//! `couplingOverride`, else the channel's `couplingMode`) empties all of them: a page
//! whose hero has nothing to show ships no half-filled siblings. `partial` ships the
//! filled ones. A request that names a placement decides that one alone.

use std::sync::Arc;

use super::compile::{ChannelInfo, PlacementInfo};
use super::response::{ChannelCoupling, FlowExplanation, Meta, OfferDecision, PlacementDecisions, Removal};
use super::RecommendRequest;

/// What a decision fills: a list of up to `limit` offers, or all of `channel`'s placements.
pub(super) struct SlotPlan<'f> {
    pub limit: usize,
    pub channel: Option<&'f ChannelInfo>,
}

/// The slots a request asks for on `channel` (the catalog's channel it named, if any).
pub(super) fn plan<'f>(
    channel: Option<&'f ChannelInfo>,
    req: &RecommendRequest,
    warnings: &mut Vec<String>,
) -> SlotPlan<'f> {
    let flat = SlotPlan { limit: req.limit(), channel: None };
    let Some(info) = channel.filter(|c| !c.placements.is_empty()) else { return flat };
    let Some(requested) = &req.placement else {
        let limit = info.placements.iter().map(|p| p.max_slots as usize).sum();
        return SlotPlan { limit, channel: Some(info) };
    };
    match find(&info.placements, requested) {
        Some(p) => SlotPlan { limit: req.limit.map_or(p.max_slots, |l| l.min(p.max_slots)) as usize, channel: None },
        None => {
            warnings.push(format!(
                "unknown placement `{requested}` on channel `{}`: up to `limit` offers are shown",
                info.name
            ));
            flat
        }
    }
}

/// A placement by key, or else by name.
fn find<'p>(placements: &'p [PlacementInfo], requested: &str) -> Option<&'p PlacementInfo> {
    placements.iter().find(|p| &*p.key == requested).or_else(|| placements.iter().find(|p| &*p.name == requested))
}

/// Shares `ranked` out between `info`'s placements and applies its coupling: returns the
/// offers shipped (in rank order) and each placement's. An empty placement is noted in
/// `meta.channelCoupling`; under atomic coupling the offers it takes back are explained.
pub(super) fn fill(
    info: &ChannelInfo,
    ranked: Vec<OfferDecision>,
    meta: &mut Meta,
    mut log: Option<&mut FlowExplanation>,
) -> (Vec<OfferDecision>, Vec<PlacementDecisions>) {
    let mut offers = ranked.into_iter();
    let mut filled: Vec<PlacementDecisions> = info
        .placements
        .iter()
        .map(|p| PlacementDecisions {
            key: p.key.clone(),
            name: p.name.clone(),
            decisions: offers.by_ref().take(p.max_slots as usize).collect(),
        })
        .collect();
    if let Some(empty) = filled.iter().find(|p| p.decisions.is_empty()) {
        let empty = empty.key.clone();
        meta.channel_coupling.push(ChannelCoupling {
            channel: info.name.clone(),
            cascaded: info.atomic,
            empty_placement: empty.clone(),
        });
        if info.atomic {
            let reason = format!("coupling: placement `{empty}` of channel `{}` is empty (atomic)", info.name);
            for p in &mut filled {
                let taken = std::mem::take(&mut p.decisions);
                if let Some(log) = &mut log {
                    log.removed.extend(taken.into_iter().map(|d| coupled_out(d, &reason)));
                }
            }
        }
    }
    let shipped = filled.iter().flat_map(|p| p.decisions.iter().cloned()).collect();
    (shipped, filled)
}

fn coupled_out(d: OfferDecision, reason: &str) -> Removal {
    Removal {
        offer_id: d.offer_id,
        offer_name: d.offer_name,
        node_id: Arc::from("coupling"),
        node_type: "coupling",
        rule: None,
        policy: None,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(atomic: bool, slots: &[u32]) -> ChannelInfo {
        let placement = |(i, &max_slots): (usize, &u32)| PlacementInfo {
            key: format!("p{i}").into(),
            name: format!("P{i}").into(),
            max_slots,
        };
        ChannelInfo {
            id: "ch".into(),
            name: "web".into(),
            kind: "web".into(),
            placements: slots.iter().enumerate().map(placement).collect(),
            atomic,
        }
    }

    fn ranked(n: usize) -> Vec<OfferDecision> {
        (0..n)
            .map(|i| OfferDecision {
                offer_id: format!("o{i}").into(),
                offer_name: format!("O{i}").into(),
                score: 1.0 - i as f64 / 10.0,
                rank: i as u32 + 1,
                priority: 50.0,
                personalization: serde_json::Map::new(),
                explanation: None,
                show_probability: None,
                category: "".into(),
            })
            .collect()
    }

    /// One named row per case: coupling, each placement's slots, offers ranked; then the
    /// offer ids each placement gets and the empty placement noted (None: all filled).
    #[test]
    fn placements_fill_in_order_and_coupling_applies() {
        type Row =
            (&'static str, bool, &'static [u32], usize, &'static [&'static [&'static str]], Option<&'static str>);
        let rows: &[Row] = &[
            ("every placement filled", true, &[1, 2], 3, &[&["o0"], &["o1", "o2"]], None),
            ("more offers than slots", false, &[1, 1], 5, &[&["o0"], &["o1"]], None),
            ("a slot short is not empty", true, &[1, 2], 2, &[&["o0"], &["o1"]], None),
            ("partial ships the filled ones", false, &[1, 1, 1], 2, &[&["o0"], &["o1"], &[]], Some("p2")),
            ("atomic empties them all", true, &[1, 1, 1], 2, &[&[], &[], &[]], Some("p2")),
            ("nothing ranked, partial", false, &[2], 0, &[&[]], Some("p0")),
            ("nothing ranked, atomic", true, &[1, 1], 0, &[&[], &[]], Some("p0")),
        ];
        for &(name, atomic, slots, n, expected, empty) in rows {
            assert_eq!(slots.len(), expected.len(), "{name}: a malformed row");
            let info = channel(atomic, slots);
            let (mut meta, mut log) = (Meta::default(), FlowExplanation::default());
            let (shipped, filled) = fill(&info, ranked(n), &mut meta, Some(&mut log));
            let got: Vec<Vec<&str>> =
                filled.iter().map(|p| p.decisions.iter().map(|d| &*d.offer_id).collect()).collect();
            assert_eq!(got, expected, "{name}");
            let flat: Vec<&str> = got.iter().flatten().copied().collect();
            assert_eq!(shipped.iter().map(|d| &*d.offer_id).collect::<Vec<_>>(), flat, "{name}: shipped");
            let noted: Vec<(bool, &str)> =
                meta.channel_coupling.iter().map(|c| (c.cascaded, &*c.empty_placement)).collect();
            assert_eq!(noted, empty.map(|e| (atomic, e)).into_iter().collect::<Vec<_>>(), "{name}: channelCoupling");
            let taken_back = if atomic && empty.is_some() { n.min(slots.iter().sum::<u32>() as usize) } else { 0 };
            assert_eq!(log.removed.len(), taken_back, "{name}: explained removals");
        }
    }
}
