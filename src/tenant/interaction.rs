//! The decision log and responses. Every `/recommend` leaves an interaction record
//! (what was offered — or, for a control-group customer, what would have been — so
//! responses can be attributed); `/respond` links an outcome to one of its offers.
//! Both are event-log records: a kind byte, the tenant, then the rest (postcard).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use std::sync::Arc;

use crate::engine::tape::Recorded;
use crate::engine::{Decision, OfferDecision, RecommendRequest};
use crate::model::{FieldError, ValidationError};
use crate::store::eventlog::Position;
use crate::store::keys::{self, Kind};
use crate::store::{Storage, StoreError};

/// One offer of a logged decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoggedOffer {
    pub rank: u32,
    pub offer_id: String,
    pub offer_name: String,
    pub score: f64,
    #[serde(default)]
    pub category: String,
    /// Under Thompson exploration: the probability the policy showed this offer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show_probability: Option<f64>,
    /// The key of the channel's placement it was shown in, for a decision shared out
    /// between placements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
}

/// A logged decision, as `GET /interactions/{id}` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Interaction {
    pub id: String,
    pub customer_id: String,
    pub decision_flow_key: String,
    pub decision_flow_version: u32,
    pub channel: Option<String>,
    /// The channel as the catalog names it, when the request named a known one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_name: Option<String>,
    pub control_group: bool,
    /// Shown offers; for the control group, the offers it would have been shown.
    pub offers: Vec<LoggedOffer>,
    /// The customer's uplift features when the decision was made (missing ones omitted).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub features: BTreeMap<String, f64>,
    /// The request's `placement`, `limit` and `attributes`, as sent (simulation sends
    /// them again). Attributes over [`MAX_LOGGED_ATTRIBUTES`] bytes of JSON are not
    /// logged (`attributesOmitted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub attributes: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attributes_omitted: bool,
    pub created_at: String,
    /// What deciding it again needs, as the decision read it (`GET /interactions/{id}`;
    /// absent for decisions logged before records carried it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reproduce: Option<super::replay::Reproduce>,
}

/// A logged decision's id: the node that made it (in a cluster; 0 on a single node),
/// where its record is in that node's event log, and a nonce the record repeats, so an id
/// cannot be guessed from another. 24 hex digits on a single node, 32 in a cluster (the
/// node first); time-ordered per node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecisionId {
    pub node: u32,
    pub at: Position,
    pub nonce: u32,
}

impl std::fmt::Display for DecisionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.node != 0 {
            write!(f, "{:08x}", self.node)?;
        }
        write!(f, "{:08x}{:08x}{:08x}", self.at.segment, self.at.offset, self.nonce)
    }
}

impl DecisionId {
    /// A decision this node logged at `at`.
    pub fn here(at: Position, nonce: u32) -> DecisionId {
        DecisionId { node: crate::ids::node_tag(), at, nonce }
    }

    /// An id as [`Display`](std::fmt::Display) writes it; `None` for anything else (such as
    /// the UUID-shaped ids of decisions logged by earlier versions, kept in sled).
    pub fn parse(id: &str) -> Option<DecisionId> {
        if !matches!(id.len(), 24 | 32) || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let (node, rest) = id.split_at(id.len() - 24);
        let part = |i: usize| u32::from_str_radix(&rest[i * 8..(i + 1) * 8], 16).ok();
        let node = if node.is_empty() { 0 } else { u32::from_str_radix(node, 16).ok()? };
        Some(DecisionId { node, at: Position { segment: part(0)?, offset: part(1)? }, nonce: part(2)? })
    }

    /// Whether another node logged it (its record is here as a mirrored copy).
    pub fn is_foreign(&self) -> bool {
        self.node != 0 && self.node != crate::ids::node_tag()
    }
}

/// The decision `id` of `tenant`: one read in the event log (`None` for an id that names
/// nothing, or another tenant's decision). Another node's decision is found through the
/// index its mirrored copy was written with (`keys::mirrored`): a lookup, then the read.
pub fn find_decision(store: &dyn Storage, tenant: &str, id: &str) -> Result<Option<Interaction>, StoreError> {
    Ok(find_receipt(store, tenant, id)?.map(|(i, _)| i))
}

/// The decision `id` of `tenant` as [`find_decision`] finds it, with what replaying it
/// needs (`None` for a decision logged before records carried it, or one whose replay
/// facts do not read back).
pub fn find_receipt(
    store: &dyn Storage,
    tenant: &str,
    id: &str,
) -> Result<Option<(Interaction, Option<ReplayFacts>)>, StoreError> {
    if let Some(d) = DecisionId::parse(id) {
        let read = |at: Position| -> Result<Option<(Interaction, Option<ReplayFacts>)>, StoreError> {
            let Some(payload) = store.events().read(at)? else { return Ok(None) };
            // The whole id must match: the nonce, and the node the record says made it.
            let found = read_decision(&payload, at).filter(|(t, _, i)| t == tenant && i.id == id);
            Ok(found.map(|(_, _, i)| (i, replay_facts(&payload))))
        };
        if !d.is_foreign() {
            if let Some(found) = read(d.at)? {
                return Ok(Some(found));
            }
            if d.node == 0 {
                return Ok(None);
            }
            // This node's own decision, lost from its log by a crash before the log
            // wrote it and mirrored back from the event stream at the restart.
        }
        let local = store.get(&keys::mirrored(d.node, d.at.segment, d.at.offset))?;
        return match local.as_deref().and_then(decode_position) {
            Some(at) => read(at),
            None => Ok(None),
        };
    }
    // Decisions logged by earlier versions are sled records under a random key.
    let legacy = store.get(&keys::key(tenant, Kind::Interaction, &[id]))?;
    Ok(legacy.and_then(|bytes| serde_json::from_slice(&bytes).ok()).map(|i| (i, None)))
}

/// What replaying the decision of a record needs, when the record carries it.
fn replay_facts(payload: &[u8]) -> Option<ReplayFacts> {
    let (&kind, rest) = unmirror(payload).1.split_first()?;
    let d = decision_ref(kind, rest)?;
    (kind == REPLAYABLE_DECISION).then(|| postcard::from_bytes(d.replay).ok()).flatten()
}

/// Calls `each` with every logged decision of `tenant`, oldest first: those of earlier
/// versions in sled, then the event log's.
pub fn each_decision(store: &dyn Storage, tenant: &str, mut each: impl FnMut(Interaction)) -> Result<(), StoreError> {
    each_legacy_decision(store, tenant, &mut each)?;
    each_decision_in_log(store, tenant, each)
}

/// The decisions earlier versions logged in sled (under random keys).
pub fn each_legacy_decision(
    store: &dyn Storage,
    tenant: &str,
    mut each: impl FnMut(Interaction),
) -> Result<(), StoreError> {
    super::measure::for_each_record(store, &keys::prefix(tenant, Kind::Interaction), |_, bytes| {
        if let Ok(i) = serde_json::from_slice::<Interaction>(bytes) {
            each(i);
        }
    })
}

/// The tenant's decisions in the event log, oldest first.
pub fn each_decision_in_log(
    store: &dyn Storage,
    tenant: &str,
    mut each: impl FnMut(Interaction),
) -> Result<(), StoreError> {
    store.events().replay(0..u32::MAX, &mut |at, payload| {
        if record_tenant(payload) == Some(tenant) {
            if let Some((_, _, i)) = read_decision(payload, at) {
                each(i);
            }
        }
    })
}

/// The kind tags of the records (the first byte of a payload).
const DECISION: u8 = 1;
const RESPONSE: u8 = 2;
/// A decision record followed by each logged offer's show probability (Thompson
/// exploration). Records of decisions that did not explore keep the `DECISION` form.
const EXPLORED_DECISION: u8 = 3;
/// A decision record, the show probabilities (possibly none), then the request's
/// `placement`, `limit` and `attributes` ([`RequestFacts`]), for a request that sent any.
/// (A binary older than this kind skips these records.)
const REQUESTED_DECISION: u8 = 4;

/// A `REQUESTED_DECISION` record followed by the placement key of each logged offer (in
/// order), for a decision shared out between a channel's placements. (A binary older
/// than this kind skips these records.)
const PLACED_DECISION: u8 = 6;

/// A `PLACED_DECISION` record (the placement keys possibly none) followed by what
/// replaying the decision needs ([`ReplayFacts`]): every decision logged by this version.
/// (A binary older than this kind skips these records.)
const REPLAYABLE_DECISION: u8 = 7;

/// What replaying a logged decision needs besides its request: the flow's inputs, the
/// models, and every volatile read, as recorded (`engine::tape`); whether it explained
/// (explain reads the counters again); the journey action delivered in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayFacts {
    pub explain: bool,
    pub delivered: Option<DeliveredAction>,
    pub recorded: Recorded,
}

/// A journey's channel action put first in a decision (`journeys::place_first`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveredAction {
    pub journey: String,
    pub enrollment: String,
    pub offer_id: String,
    pub offer_name: String,
    pub category: String,
    pub priority: f64,
}

impl DeliveredAction {
    /// The action in `decision`, if one was delivered in it (its first offer says so).
    fn of(decision: &Decision) -> Option<DeliveredAction> {
        let first = decision.decisions.first()?;
        let text = |key: &str| first.personalization.get(key).and_then(|v| v.as_str()).map(str::to_string);
        Some(DeliveredAction {
            journey: text("journeyId")?,
            enrollment: text("enrollmentId")?,
            offer_id: first.offer_id.to_string(),
            offer_name: first.offer_name.to_string(),
            category: first.category.to_string(),
            priority: first.priority,
        })
    }
}

#[derive(Serialize)]
struct ReplayFactsOut<'a> {
    explain: bool,
    delivered: Option<DeliveredAction>,
    recorded: &'a Recorded,
}

/// Another node's record, mirrored into this node's log from the cluster's event stream
/// ([`mirrored_record`]).
const MIRRORED: u8 = 5;

/// The most request attributes a decision record keeps, as JSON text: a record stays
/// small, and a body near the size limit still logs its decision.
pub const MAX_LOGGED_ATTRIBUTES: usize = 4096;

/// What a request sent beyond the customer and channel, logged so that simulation can
/// send the same request again. `attributes` is the JSON text of the request's object,
/// empty when it sent none or when it was over [`MAX_LOGGED_ATTRIBUTES`] (`omitted`).
#[derive(Serialize, Deserialize)]
struct RequestFacts<'a> {
    #[serde(borrow)]
    placement: Option<&'a str>,
    limit: Option<u32>,
    #[serde(borrow)]
    attributes: std::borrow::Cow<'a, str>,
    omitted: bool,
}

fn is_decision(kind: u8) -> bool {
    matches!(kind, DECISION | EXPLORED_DECISION | REQUESTED_DECISION | PLACED_DECISION | REPLAYABLE_DECISION)
}

/// A decision as the event log keeps it: compact binary (postcard), the tenant and nonce
/// first so a lookup can refuse another tenant's record without decoding the rest.
#[derive(Serialize)]
struct DecisionRecordOut<'a> {
    /// `DECISION`, `EXPLORED_DECISION` or `REQUESTED_DECISION`: postcard writes a `u8` as
    /// one byte, so it is the payload's first byte.
    kind: u8,
    tenant: &'a str,
    nonce: u32,
    customer_id: &'a str,
    decision_flow_key: &'a str,
    decision_flow_version: u32,
    channel: Option<&'a str>,
    channel_name: Option<&'a str>,
    control_group: bool,
    offers: OffersView<'a>,
    features: FeaturesView<'a>,
    created_ms: i64,
}

/// The event-log record of `decision`, made for `request`, for `tenant`.
pub fn decision_record(tenant: &str, decision: &Decision, request: &RecommendRequest, nonce: u32) -> Vec<u8> {
    let offers = if decision.control_group { &decision.counterfactual } else { &decision.decisions };
    let features = FeaturesView {
        names: &decision.logged_features,
        values: &decision.features,
        category_names: &decision.logged_categories,
        categories: &decision.categories,
    };
    let record = DecisionRecordOut {
        kind: DECISION,
        tenant,
        nonce,
        customer_id: &decision.customer_id,
        decision_flow_key: &decision.decision_flow_key,
        decision_flow_version: decision.decision_flow_version,
        channel: decision.channel.as_deref(),
        channel_name: decision.channel_name.as_deref(),
        control_group: decision.control_group,
        offers: OffersView(offers),
        features,
        created_ms: crate::ids::unix_now_millis(),
    };
    let explored = offers.iter().any(|o| o.show_probability.is_some());
    let placed = decision.placements.as_deref().filter(|_| !decision.control_group);
    let requested = request.limit.is_some() || request.placement.is_some() || !request.attributes.is_empty();
    let kind = match (&decision.recorded, placed.is_some(), requested, explored) {
        (Some(_), ..) => REPLAYABLE_DECISION,
        (None, false, false, false) => return postcard::to_allocvec(&record).expect("a decision record serialises"),
        (None, false, false, true) => EXPLORED_DECISION,
        (None, false, true, _) => REQUESTED_DECISION,
        (None, true, _, _) => PLACED_DECISION,
    };
    let propensities: Vec<f64> =
        offers.iter().filter(|_| explored).map(|o| o.show_probability.unwrap_or(f64::NAN)).collect();
    let bytes = postcard::to_allocvec(&DecisionRecordOut { kind, ..record }).expect("a decision record serialises");
    let bytes = postcard::to_extend(&propensities, bytes).expect("propensities serialise");
    if kind == EXPLORED_DECISION {
        return bytes;
    }
    let mut attributes = if request.attributes.is_empty() {
        String::new()
    } else {
        serde_json::to_string(&request.attributes).expect("JSON values serialise")
    };
    let omitted = attributes.len() > MAX_LOGGED_ATTRIBUTES;
    if omitted {
        attributes.clear();
    }
    let placement = request.placement.as_deref();
    let facts = RequestFacts { placement, limit: request.limit, attributes: attributes.into(), omitted };
    let bytes = postcard::to_extend(&facts, bytes).expect("request facts serialise");
    let keys: Vec<Option<&str>> = match placed {
        Some(placements) => {
            let key_of = |offer: &str| placements.iter().find(|p| p.decisions.iter().any(|o| &*o.offer_id == offer));
            offers.iter().map(|o| key_of(&o.offer_id).map(|p| &*p.key)).collect()
        }
        None if kind == REQUESTED_DECISION => return bytes,
        None => Vec::new(),
    };
    let bytes = postcard::to_extend(&keys, bytes).expect("placement keys serialise");
    let Some(recorded) = decision.recorded.as_deref() else { return bytes };
    let replay =
        ReplayFactsOut { explain: decision.explanation.is_some(), delivered: DeliveredAction::of(decision), recorded };
    postcard::to_extend(&replay, bytes).expect("replay facts serialise")
}

/// The tenant of a decision or response record, read without decoding the rest.
pub fn record_tenant(payload: &[u8]) -> Option<&str> {
    let (&kind, rest) = payload.split_first()?;
    if !is_decision(kind) && kind != RESPONSE && kind != MIRRORED {
        return None;
    }
    postcard::take_from_bytes::<&str>(rest).ok().map(|(tenant, _)| tenant)
}

/// What a record of the event log is, as a replay reads it.
pub enum Record<'a> {
    /// A decision, borrowed from the record: a replay of millions of them copies nothing
    /// it does not keep.
    Decision(DecisionRef<'a>),
    /// A response, and when it was recorded (Unix milliseconds).
    Response(Response, i64),
}

/// A decision record as decoded, borrowed from the payload: a replay of millions of them
/// copies only what it keeps (`read_decision` makes an owned [`Interaction`] of one).
#[derive(Deserialize)]
pub struct DecisionRef<'a> {
    pub tenant: &'a str,
    pub nonce: u32,
    pub customer_id: &'a str,
    pub decision_flow_key: &'a str,
    pub decision_flow_version: u32,
    pub channel: Option<&'a str>,
    pub channel_name: Option<&'a str>,
    pub control_group: bool,
    pub offers: Vec<OfferRef<'a>>,
    pub features: Vec<(&'a str, f64)>,
    pub created_ms: i64,
    /// Each offer's show probability, for an explored decision (empty otherwise).
    #[serde(skip)]
    pub propensities: Vec<f64>,
    /// The request's `placement` and `limit`, when it sent them.
    #[serde(skip)]
    pub placement: Option<&'a str>,
    #[serde(skip)]
    pub limit: Option<u32>,
    /// The request's `attributes` as JSON text (empty when it sent none, or when they
    /// were too large to log: `attributes_omitted`).
    #[serde(skip)]
    pub attributes: &'a str,
    #[serde(skip)]
    pub attributes_omitted: bool,
    /// For a decision shared out between placements: each offer's placement key.
    #[serde(skip)]
    pub placements: Vec<Option<&'a str>>,
    /// What replaying it needs, still encoded ([`ReplayFacts`]; empty for a record
    /// logged before decisions carried it): a scan does not pay to decode it.
    #[serde(skip)]
    pub replay: &'a [u8],
}

/// A string postcard decoded without copying (always, from a payload in memory).
fn borrowed(c: std::borrow::Cow<'_, str>) -> Option<&str> {
    match c {
        std::borrow::Cow::Borrowed(s) => Some(s),
        std::borrow::Cow::Owned(_) => None,
    }
}

/// Decodes a decision record's body (after its kind byte).
fn decision_ref(kind: u8, rest: &[u8]) -> Option<DecisionRef<'_>> {
    let (mut d, tail) = postcard::take_from_bytes::<DecisionRef>(rest).ok()?;
    match kind {
        EXPLORED_DECISION => d.propensities = postcard::from_bytes(tail).ok()?,
        REQUESTED_DECISION | PLACED_DECISION | REPLAYABLE_DECISION => {
            let (propensities, tail) = postcard::take_from_bytes(tail).ok()?;
            let (facts, tail): (RequestFacts<'_>, _) = postcard::take_from_bytes(tail).ok()?;
            (d.propensities, d.placement, d.limit) = (propensities, facts.placement, facts.limit);
            (d.attributes, d.attributes_omitted) = (borrowed(facts.attributes)?, facts.omitted);
            if kind != REQUESTED_DECISION {
                let (placements, tail) = postcard::take_from_bytes(tail).ok()?;
                (d.placements, d.replay) = (placements, tail);
            }
        }
        _ => {}
    }
    Some(d)
}

#[derive(Deserialize)]
pub struct OfferRef<'a> {
    pub rank: u32,
    pub offer_id: &'a str,
    pub offer_name: &'a str,
    pub score: f64,
    pub category: &'a str,
}

/// Where a mirrored record came from: the node that logged it, where, and the stream
/// sequence it came at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub node: u32,
    pub at: Position,
    pub seq: u64,
}

/// The size of a mirrored record's origin: node, segment, offset (`u32`), sequence (`u64`).
const ORIGIN_BYTES: usize = 20;

/// Another node's decision or response record as this node's log keeps it: the kind
/// [`MIRRORED`], the tenant (so [`record_tenant`] reads it as it reads any record), its
/// [`Origin`], then the record as that node wrote it. `None` for a payload that is not a
/// record.
pub fn mirrored_record(origin: Origin, payload: &[u8]) -> Option<Vec<u8>> {
    let tenant = record_tenant(payload)?;
    let mut out = vec![MIRRORED];
    out.extend(postcard::to_allocvec(tenant).ok()?);
    out.extend(origin.node.to_le_bytes());
    out.extend(origin.at.segment.to_le_bytes());
    out.extend(origin.at.offset.to_le_bytes());
    out.extend(origin.seq.to_le_bytes());
    out.extend_from_slice(payload);
    Some(out)
}

/// A mirrored record's origin and the record inside it; any other record as it is.
pub fn unmirror(payload: &[u8]) -> (Option<Origin>, &[u8]) {
    let inner = || {
        let (&MIRRORED, rest) = payload.split_first()? else { return None };
        let (_, rest) = postcard::take_from_bytes::<&str>(rest).ok()?;
        let (origin, record) = rest.split_at_checked(ORIGIN_BYTES)?;
        let word = |i: usize| u32::from_le_bytes(origin[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
        let seq = u64::from_le_bytes(origin[12..20].try_into().expect("8 bytes"));
        let at = Position { segment: word(1), offset: word(2) };
        Some((Origin { node: word(0), at, seq }, record))
    };
    match inner() {
        Some((origin, record)) => (Some(origin), record),
        None => (None, payload),
    }
}

/// The id of the decision whose record (`payload`) is at `at` in this node's log: its own
/// position here, or the origin's of a mirrored copy.
pub fn decision_id(payload: &[u8], at: Position, nonce: u32) -> DecisionId {
    match unmirror(payload).0 {
        Some(o) => DecisionId { node: o.node, at: o.at, nonce },
        None => DecisionId::here(at, nonce),
    }
}

/// A position as the mirror index stores it (segment, offset, little-endian).
pub fn encode_position(at: Position) -> [u8; 8] {
    let mut out = [0; 8];
    out[..4].copy_from_slice(&at.segment.to_le_bytes());
    out[4..].copy_from_slice(&at.offset.to_le_bytes());
    out
}

/// A position as [`encode_position`] wrote it.
pub fn decode_position(bytes: &[u8]) -> Option<Position> {
    let bytes: [u8; 8] = bytes.try_into().ok()?;
    let word = |i: usize| u32::from_le_bytes(bytes[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
    Some(Position { segment: word(0), offset: word(1) })
}

/// A decision or response record, with its tenant (a mirrored one as the record inside).
pub fn read_record(payload: &[u8]) -> Option<(&str, Record<'_>)> {
    let payload = unmirror(payload).1;
    let (&kind, rest) = payload.split_first()?;
    match kind {
        DECISION | EXPLORED_DECISION | REQUESTED_DECISION | PLACED_DECISION | REPLAYABLE_DECISION => {
            decision_ref(kind, rest).map(|d| (d.tenant, Record::Decision(d)))
        }
        RESPONSE => {
            let tenant = record_tenant(payload)?;
            read_response(payload).map(|(_, r, ms)| (tenant, Record::Response(r, ms)))
        }
        _ => None,
    }
}

/// A response as the event log keeps it (the same fields as [`Response`], borrowed).
#[derive(Serialize)]
struct ResponseRecordOut<'a> {
    kind: u8,
    tenant: &'a str,
    recorded_ms: i64,
    response_id: &'a str,
    interaction_id: &'a str,
    customer_id: &'a str,
    offer_id: &'a str,
    category: &'a str,
    channel: Option<&'a str>,
    rank: u32,
    outcome: &'a str,
    classification: Classification,
    control_group: bool,
    decision_flow_key: &'a str,
    conversion_value: Option<f64>,
    timestamp: &'a str,
    idempotency_key: &'a str,
}

#[derive(Deserialize)]
struct ResponseRecordIn {
    tenant: String,
    recorded_ms: i64,
    response_id: String,
    interaction_id: String,
    customer_id: String,
    offer_id: String,
    category: String,
    channel: Option<String>,
    rank: u32,
    outcome: String,
    classification: Classification,
    control_group: bool,
    decision_flow_key: String,
    conversion_value: Option<f64>,
    timestamp: String,
    idempotency_key: String,
}

/// The event-log record of a response of `tenant`, recorded at `recorded_ms`.
pub fn response_record(tenant: &str, r: &Response, recorded_ms: i64) -> Vec<u8> {
    let record = ResponseRecordOut {
        kind: RESPONSE,
        tenant,
        recorded_ms,
        response_id: &r.response_id,
        interaction_id: &r.interaction_id,
        customer_id: &r.customer_id,
        offer_id: &r.offer_id,
        category: &r.category,
        channel: r.channel.as_deref(),
        rank: r.rank,
        outcome: &r.outcome,
        classification: r.classification,
        control_group: r.control_group,
        decision_flow_key: &r.decision_flow_key,
        conversion_value: r.conversion_value,
        timestamp: &r.timestamp,
        idempotency_key: &r.idempotency_key,
    };
    postcard::to_allocvec(&record).expect("a response record serialises")
}

/// A response record: its tenant, the response and when it was recorded.
pub fn read_response(payload: &[u8]) -> Option<(String, Response, i64)> {
    let (&kind, rest) = unmirror(payload).1.split_first()?;
    if kind != RESPONSE {
        return None;
    }
    let r: ResponseRecordIn = postcard::from_bytes(rest).ok()?;
    let response = Response {
        response_id: r.response_id,
        interaction_id: r.interaction_id,
        customer_id: r.customer_id,
        offer_id: r.offer_id,
        category: r.category,
        channel: r.channel,
        rank: r.rank,
        outcome: r.outcome,
        classification: r.classification,
        control_group: r.control_group,
        decision_flow_key: r.decision_flow_key,
        conversion_value: r.conversion_value,
        timestamp: r.timestamp,
        idempotency_key: r.idempotency_key,
    };
    Some((r.tenant, response, r.recorded_ms))
}

/// Calls `each` with every recorded response of `tenant`: those earlier versions kept in
/// sled (until they are moved to the log at start), then the event log's.
pub fn each_response(store: &dyn Storage, tenant: &str, mut each: impl FnMut(Response)) -> Result<(), StoreError> {
    each_legacy_response(store, tenant, |_, r| each(r))?;
    store.events().replay(0..u32::MAX, &mut |_, payload| {
        if record_tenant(payload) == Some(tenant) {
            if let Some((_, r, _)) = read_response(payload) {
                each(r);
            }
        }
    })
}

/// The responses earlier versions kept in sled, with their keys.
pub fn each_legacy_response(
    store: &dyn Storage,
    tenant: &str,
    mut each: impl FnMut(&[u8], Response),
) -> Result<(), StoreError> {
    super::measure::for_each_record(store, &keys::prefix(tenant, Kind::Response), |key, value| {
        if let Ok(r) = serde_json::from_slice::<Response>(value) {
            each(key, r);
        }
    })
}

/// A decision record at `at` as an [`Interaction`], with its tenant and nonce.
pub fn read_decision(payload: &[u8], at: Position) -> Option<(String, u32, Interaction)> {
    let (&kind, rest) = unmirror(payload).1.split_first()?;
    if !is_decision(kind) {
        return None;
    }
    let r = decision_ref(kind, rest)?;
    let id = decision_id(payload, at, r.nonce).to_string();
    let created_at = crate::ids::rfc3339(r.created_ms.div_euclid(1000), r.created_ms.rem_euclid(1000) as u32);
    let offers = r.offers.iter().enumerate().map(|(i, o)| LoggedOffer {
        rank: o.rank,
        offer_id: o.offer_id.to_string(),
        offer_name: o.offer_name.to_string(),
        score: o.score,
        category: o.category.to_string(),
        show_probability: r.propensities.get(i).copied().filter(|p| !p.is_nan()),
        placement: r.placements.get(i).copied().flatten().map(str::to_string),
    });
    let interaction = Interaction {
        id,
        customer_id: r.customer_id.to_string(),
        decision_flow_key: r.decision_flow_key.to_string(),
        decision_flow_version: r.decision_flow_version,
        channel: r.channel.map(str::to_string),
        channel_name: r.channel_name.map(str::to_string),
        control_group: r.control_group,
        offers: offers.collect(),
        features: r.features.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
        placement: r.placement.map(str::to_string),
        limit: r.limit,
        attributes: serde_json::from_str(r.attributes).unwrap_or_default(),
        attributes_omitted: r.attributes_omitted,
        created_at,
        reproduce: None,
    };
    Some((r.tenant.to_string(), r.nonce, interaction))
}

struct OffersView<'a>(&'a [OfferDecision]);

impl Serialize for OffersView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Offer<'a> {
            rank: u32,
            offer_id: &'a str,
            offer_name: &'a str,
            score: f64,
            category: &'a str,
        }
        s.collect_seq(self.0.iter().map(|o| Offer {
            rank: o.rank,
            offer_id: &o.offer_id,
            offer_name: &o.offer_name,
            score: o.score,
            category: &o.category,
        }))
    }
}

/// A decision's logged features as `(name, value)` pairs, written straight from the
/// decision: numeric ones by name (missing, non-finite values left out), then each
/// categorical one present as `name=value` with 1.0 — the same format, and training
/// finds the values it one-hot encodes by the prefix. Nothing is allocated on the
/// request path (postcard formats `name=value` in place).
struct FeaturesView<'a> {
    names: &'a [Arc<str>],
    values: &'a [f64],
    category_names: &'a [Arc<str>],
    categories: &'a [Option<Arc<str>>],
}

impl FeaturesView<'_> {
    fn present(&self) -> impl Iterator<Item = (&str, f64)> {
        self.names.iter().zip(self.values).filter(|(_, v)| v.is_finite()).map(|(n, v)| (&**n, *v))
    }

    fn present_categories(&self) -> impl Iterator<Item = (&str, &str)> {
        self.category_names.iter().zip(self.categories).filter_map(|(n, v)| v.as_deref().map(|v| (&**n, v)))
    }
}

impl Serialize for FeaturesView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let len = self.present().count() + self.present_categories().count();
        let mut seq = s.serialize_seq(Some(len))?;
        for pair in self.present() {
            seq.serialize_element(&pair)?;
        }
        for (name, value) in self.present_categories() {
            seq.serialize_element(&(Joined(name, value), 1.0))?;
        }
        seq.end()
    }
}

/// `name=value`, serialised as one string.
struct Joined<'a>(&'a str, &'a str);

impl std::fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.0, self.1)
    }
}

impl Serialize for Joined<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

pub use crate::model::outcome::{outcome_types, Classification, OutcomeCategory, OutcomeType};

/// A `/respond` body (and each item of `/respond/bulk`). Unknown fields are refused.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("required" = ["customerId", "outcome"]))]
pub struct RespondInput {
    /// Required; defaulted so that its absence is a named 400 with the other problems.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub customer_id: String,
    #[serde(default)]
    pub recommendation_id: Option<String>,
    #[serde(default)]
    pub interaction_id: Option<String>,
    #[serde(default)]
    pub rank: Option<u32>,
    #[serde(default)]
    pub offer_id: Option<String>,
    /// Required: one of the `GET /outcome-types` keys.
    #[serde(default, alias = "interactionType")]
    #[schemars(length(min = 1))]
    pub outcome: String,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub conversion_value: Option<f64>,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub context: Option<serde_json::Value>,
    // The platform's documented optional fields, accepted so its clients keep working and
    // not used yet: the response is attributed through the logged decision instead.
    #[serde(default)]
    pub creative_id: Option<String>,
    #[serde(default)]
    pub treatment_id: Option<String>,
    #[serde(default)]
    pub direction: Option<String>,
    #[serde(default)]
    pub channel_id: Option<String>,
    #[serde(default)]
    pub placement_id: Option<String>,
    #[serde(default)]
    pub outcome_details: Option<serde_json::Value>,
    #[serde(default)]
    pub attributes: Option<serde_json::Map<String, serde_json::Value>>,
}

impl RespondInput {
    /// An outcome for one offer of a logged decision, keyed by the (decision, offer) pair
    /// so that sending it again records it once.
    pub fn for_offer(d: &Decision, offer: &OfferDecision, outcome: &str) -> RespondInput {
        RespondInput {
            customer_id: d.customer_id.clone(),
            recommendation_id: Some(d.recommendation_id.clone()),
            offer_id: Some(offer.offer_id.to_string()),
            outcome: outcome.into(),
            idempotency_key: Some(format!("{}:{}", d.recommendation_id, offer.offer_id)),
            ..RespondInput::default()
        }
    }

    /// Checks the fields that do not need the log; returns the interaction id to load.
    pub fn validate(&self) -> Result<String, ValidationError> {
        let mut errors = Vec::new();
        if self.customer_id.trim().is_empty() {
            errors.push(FieldError::new("customerId", "is required"));
        }
        if self.outcome.trim().is_empty() {
            errors.push(FieldError::new("outcome", "is required"));
        } else if !outcome_types().iter().any(|o| o.key == self.outcome) {
            let keys: Vec<&str> = outcome_types().iter().map(|o| o.key).collect();
            errors.push(FieldError::new(
                "outcome",
                format!("unknown outcome `{}`; expected one of {}", self.outcome, keys.join(", ")),
            ));
        }
        if self.idempotency_key.as_deref().is_none_or(|k| k.trim().is_empty()) {
            errors.push(FieldError::new("idempotencyKey", "is required (or send an Idempotency-Key header)"));
        } else if self.idempotency_key.as_ref().is_some_and(|k| k.len() > 200) {
            errors.push(FieldError::new("idempotencyKey", "must be at most 200 characters"));
        }
        if self.rank.is_none() && self.offer_id.is_none() {
            errors.push(FieldError::new("rank", "give `rank` or `offerId` to say which offer the outcome is for"));
        }
        if let Some(v) = self.conversion_value {
            if !v.is_finite() || v < 0.0 {
                errors.push(FieldError::new("conversionValue", format!("must be a non-negative number, got {v}")));
            }
        }
        let id = self.recommendation_id.clone().or_else(|| self.interaction_id.clone());
        if id.as_deref().is_none_or(|i| i.trim().is_empty()) {
            errors.push(FieldError::new("recommendationId", "is required (or interactionId)"));
        }
        ValidationError::check(errors)?;
        Ok(id.unwrap_or_default())
    }
}

/// A recorded response, as stored and returned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub response_id: String,
    pub interaction_id: String,
    pub customer_id: String,
    pub offer_id: String,
    #[serde(default)]
    pub category: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    pub rank: u32,
    pub outcome: String,
    pub classification: Classification,
    pub control_group: bool,
    pub decision_flow_key: String,
    pub conversion_value: Option<f64>,
    pub timestamp: String,
    pub idempotency_key: String,
}

/// Resolves which logged offer a response is for.
pub fn resolve_offer<'i>(
    input: &RespondInput,
    interaction: &'i Interaction,
) -> Result<&'i LoggedOffer, ValidationError> {
    if input.customer_id != interaction.customer_id {
        return Err(ValidationError::one("customerId", "does not match the recommendation's customer"));
    }
    let found = match (&input.offer_id, input.rank) {
        (Some(id), _) => interaction.offers.iter().find(|o| &o.offer_id == id),
        (None, Some(rank)) => interaction.offers.iter().find(|o| o.rank == rank),
        (None, None) => None,
    };
    found.ok_or_else(|| match input.rank {
        Some(rank) if input.offer_id.is_none() => ValidationError::one(
            "rank",
            format!("the recommendation has {} offer(s); rank {rank} is not one of them", interaction.offers.len()),
        ),
        _ => ValidationError::one("offerId", "is not one of the recommendation's offers"),
    })
}

/// The bit of an outcome type in a set of outcomes (0 for an unknown outcome): its
/// position in [`outcome_types`].
pub fn outcome_bit(outcome: &str) -> u16 {
    crate::model::outcome::ordinal(outcome).map_or(0, |i| 1 << i)
}

/// Whether `outcome` is one of the conversion outcomes in `conversions` (a mask).
pub fn converts(outcome: &str, conversions: u16) -> bool {
    outcome_bit(outcome) & conversions != 0
}

/// The outcome bits of a list of outcome keys.
pub fn outcome_mask<S: AsRef<str>>(outcomes: &[S]) -> u16 {
    outcomes.iter().fold(0, |m, o| m | outcome_bit(o.as_ref()))
}

/// The outcome bits of a flow's `conversionOutcomes`.
pub fn conversion_mask(flow: &crate::engine::CompiledFlow) -> u16 {
    outcome_mask(&flow.conversion_outcomes)
}

/// `convert`'s bit: the conversion outcomes of a flow that names none.
pub const DEFAULT_CONVERSIONS: u16 = 1 << 3;

#[cfg(test)]
#[test]
fn the_default_conversions_are_convert() {
    assert_eq!(DEFAULT_CONVERSIONS, outcome_bit("convert"));
    assert_eq!(outcome_mask(&crate::model::flow::DEFAULT_CONVERSION_OUTCOMES), DEFAULT_CONVERSIONS);
    assert_eq!(outcome_bit("teleport"), 0);
}

pub fn classification_of(outcome: &str) -> Classification {
    crate::model::outcome::classification(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The binary record gives back what the decision logged, under the id its position
    /// and nonce make, and names its tenant.
    #[test]
    fn a_decision_record_reads_back_as_its_interaction() {
        let t = crate::demo::tutorial().unwrap();
        let d = t.flow.decide(&crate::demo::request(), &crate::engine::NoSignals, false);
        assert!(!d.logged_features.is_empty(), "the tutorial flow runs a holdout, so features are logged");
        let record = decision_record("acme", &d, &crate::demo::request(), 0xfeed);
        let at = Position { segment: 3, offset: 4096 };
        assert_eq!(record_tenant(&record), Some("acme"));
        let (tenant, nonce, i) = read_decision(&record, at).unwrap();
        assert_eq!((tenant.as_str(), nonce), ("acme", 0xfeed));
        assert_eq!(i.id, "00000003000010000000feed");
        assert_eq!(DecisionId::parse(&i.id), Some(DecisionId { node: 0, at, nonce: 0xfeed }));
        assert_eq!(i.customer_id, d.customer_id);
        assert_eq!(
            (i.decision_flow_key.as_str(), i.decision_flow_version),
            (&*d.decision_flow_key, d.decision_flow_version)
        );
        assert_eq!(i.control_group, d.control_group);
        let shown = if d.control_group { &d.counterfactual } else { &d.decisions };
        let names: Vec<&str> = i.offers.iter().map(|o| o.offer_name.as_str()).collect();
        assert_eq!(names, shown.iter().map(|o| &*o.offer_name).collect::<Vec<_>>());
        assert_eq!(i.features.get("tenureMonths"), Some(&36.0));
        assert_eq!(i.offers[0].category, "cross-sell");
        assert!(crate::ids::parse_rfc3339(&i.created_at).is_some(), "{}", i.created_at);
        assert_eq!(DecisionId::parse("not-an-id"), None);
        assert_eq!((i.limit, i.attributes.len()), (None, 0), "the demo request sends neither");
    }

    /// A request's limit and attributes are logged with its decision, for simulation to
    /// send again; the record's other fields read as before.
    #[test]
    fn a_requests_limit_and_attributes_read_back() {
        let t = crate::demo::tutorial().unwrap();
        let mut req = crate::demo::request();
        req.limit = Some(1);
        req.placement = Some("hero".into());
        req.attributes = serde_json::json!({"page": "home", "basket": 42.5, "vip": true}).as_object().unwrap().clone();
        let d = t.flow.decide(&req, &crate::engine::NoSignals, false);
        let record = decision_record("acme", &d, &req, 7);
        let (_, _, i) = read_decision(&record, Position { segment: 0, offset: 0 }).unwrap();
        assert_eq!((i.limit, &i.attributes, i.placement.as_deref()), (Some(1), &req.attributes, Some("hero")));
        assert!(!i.attributes_omitted);
        // Attributes too large to log are left out, and the record says so.
        let big = "x".repeat(MAX_LOGGED_ATTRIBUTES);
        req.attributes = serde_json::json!({"note": big}).as_object().unwrap().clone();
        let (_, _, i) =
            read_decision(&decision_record("acme", &d, &req, 7), Position { segment: 0, offset: 0 }).unwrap();
        assert!(i.attributes.is_empty() && i.attributes_omitted, "{i:?}");
        assert_eq!(i.limit, Some(1));
        assert_eq!(i.offers.len(), d.count);
        let Some((_, Record::Decision(r))) = read_record(&record) else { panic!("a decision record") };
        assert_eq!((r.limit, r.customer_id), (Some(1), "cust_42"));
    }

    /// Another node's record, mirrored here, reads as that node logged it: the same
    /// interaction under that node's id (32 hex digits, the node first), the same tenant.
    #[test]
    fn a_mirrored_record_reads_back_under_its_origins_id() {
        let t = crate::demo::tutorial().unwrap();
        let d = t.flow.decide(&crate::demo::request(), &crate::engine::NoSignals, false);
        let record = decision_record("acme", &d, &crate::demo::request(), 0xfeed);
        let origin = Origin { node: 0xabcd_0001, at: Position { segment: 2, offset: 512 }, seq: 99 };
        let mirrored = mirrored_record(origin, &record).unwrap();
        assert_eq!(record_tenant(&mirrored), Some("acme"));
        assert_eq!(unmirror(&mirrored), (Some(origin), record.as_slice()));
        assert_eq!(unmirror(&record), (None, record.as_slice()));
        let here = Position { segment: 7, offset: 64 };
        let (_, _, i) = read_decision(&mirrored, here).unwrap();
        assert_eq!(i.id, "abcd000100000002000002000000feed");
        let id = DecisionId::parse(&i.id).unwrap();
        assert_eq!(id, DecisionId { node: 0xabcd_0001, at: origin.at, nonce: 0xfeed });
        assert_eq!(decision_id(&mirrored, here, 0xfeed), id);
        assert_eq!(id.to_string(), i.id);
        // On a single node, an id is the position and nonce alone.
        assert_eq!(decision_id(&record, here, 1).to_string(), "000000070000004000000001");
        let Some((_, Record::Decision(r))) = read_record(&mirrored) else { panic!("a decision record") };
        assert_eq!(r.nonce, 0xfeed);
    }
}
