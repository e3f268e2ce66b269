//! What a decision read that no version names: the clock, the customer's rows, the
//! request attributes the rules read, the outcome counters behind each propensity, the
//! customer's contacts and outcomes, offer impressions. A logged decision records them
//! ([`Inputs::Record`]) so that its receipt can decide again from them
//! ([`Inputs::Replay`]) and get the same answer bit for bit, while responses, row loads
//! and other decisions keep changing the live state.
//!
//! Each kind of read is a stream, taken in the order the decision reads it: the same
//! flow on the same request reads the same streams in the same order, so a replay needs
//! no keys, only a cursor per stream.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::contact::{Contact, OutcomeEvent};
use crate::rules::Value;

/// The reads of one decision, in the order it made them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    /// The digest of what the flow was compiled from (`CompiledFlow::inputs`).
    pub inputs: [u8; 16],
    /// The digest of the uplift models the decision's signals served, if any (set by
    /// the tenant, which holds the models).
    pub models: Option<[u8; 16]>,
    /// Unix seconds the decision ran at (periods, cooldowns, the day seeding draws).
    pub now: i64,
    /// The request attributes the rules read, in the flow's attribute-slot order.
    pub attributes: Vec<Taped>,
    /// The request's `segments`, when a `segment_exclusion` policy read them.
    pub segments: Vec<String>,
    /// Per enrich read: the row's copied columns (`None`: no row for the customer;
    /// `Some(None)` for a column: a row stored before the column existed).
    pub rows: Vec<Option<Vec<Option<Taped>>>>,
    /// Each propensity read, as the counters gave it.
    pub propensities: Vec<f64>,
    /// Each Beta posterior read (Thompson exploration).
    pub posteriors: Vec<(f64, f64)>,
    /// Each offer-impression read (day, week, month), for `budget_exhausted` policies.
    pub impressions: Vec<[u32; 3]>,
    /// The customer's contacts as the policies saw them, when the flow has any.
    pub contacts: Vec<Contact>,
    /// The customer's outcomes as `outcome_based` policies saw them.
    pub outcomes: Vec<OutcomeEvent>,
}

/// A slot value as a record keeps it (a `json` column as its text: the binary record
/// format cannot carry a self-describing JSON value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Taped {
    Null,
    Bool(bool),
    Num(f64),
    Str(Arc<str>),
    Json(String),
}

impl From<&Value> for Taped {
    fn from(v: &Value) -> Taped {
        match v {
            Value::Null => Taped::Null,
            Value::Bool(b) => Taped::Bool(*b),
            Value::Num(n) => Taped::Num(*n),
            Value::Str(s) => Taped::Str(s.clone()),
            Value::Json(j) => Taped::Json(j.to_string()),
        }
    }
}

impl From<&Taped> for Value {
    fn from(v: &Taped) -> Value {
        match v {
            Taped::Null => Value::Null,
            Taped::Bool(b) => Value::Bool(*b),
            Taped::Num(n) => Value::Num(*n),
            Taped::Str(s) => Value::Str(s.clone()),
            Taped::Json(text) => serde_json::from_str(text).map_or(Value::Null, |j| Value::Json(Arc::new(j))),
        }
    }
}

/// Where a decision's volatile inputs come from.
pub enum Inputs<'t> {
    /// The live state, unrecorded (dry runs, simulation, the uplift endpoint).
    Live,
    /// The live state, each read recorded.
    Record(RefCell<Recorded>),
    /// A recorded decision's reads, served back in order.
    Replay(Replay<'t>),
}

/// A replay's cursors into a recording.
pub struct Replay<'t> {
    recorded: &'t Recorded,
    rows: Cell<usize>,
    propensities: Cell<usize>,
    posteriors: Cell<usize>,
    impressions: Cell<usize>,
    /// The decision asked for more than the recording holds: it took another path.
    short: Cell<bool>,
}

impl<'t> Inputs<'t> {
    pub fn record() -> Inputs<'static> {
        Inputs::Record(RefCell::new(Recorded::default()))
    }

    pub fn replay(recorded: &'t Recorded) -> Inputs<'t> {
        let zero = || Cell::new(0);
        Inputs::Replay(Replay {
            recorded,
            rows: zero(),
            propensities: zero(),
            posteriors: zero(),
            impressions: zero(),
            short: Cell::new(false),
        })
    }

    /// The recording, once the decision is made (`None` unless recording).
    pub fn into_recorded(self) -> Option<Recorded> {
        match self {
            Inputs::Record(r) => Some(r.into_inner()),
            _ => None,
        }
    }

    /// Whether a replay ran past its recording (the replayed decision then differs).
    pub fn ran_short(&self) -> bool {
        matches!(self, Inputs::Replay(r) if r.short.get())
    }

    pub fn now(&self, live: impl FnOnce() -> i64) -> i64 {
        match self {
            Inputs::Live => live(),
            Inputs::Record(r) => {
                let now = live();
                r.borrow_mut().now = now;
                now
            }
            Inputs::Replay(r) => r.recorded.now,
        }
    }

    /// The request attributes the rules read (`live`, in slot order).
    pub fn attributes(&self, live: impl FnOnce() -> Vec<Value>) -> Vec<Value> {
        match self {
            Inputs::Live => live(),
            Inputs::Record(r) => {
                let values = live();
                r.borrow_mut().attributes = values.iter().map(Taped::from).collect();
                values
            }
            Inputs::Replay(r) => r.recorded.attributes.iter().map(Value::from).collect(),
        }
    }

    pub fn segments(&self, live: impl FnOnce() -> Vec<String>) -> Vec<String> {
        match self {
            Inputs::Live => live(),
            Inputs::Record(r) => {
                let segments = live();
                r.borrow_mut().segments.clone_from(&segments);
                segments
            }
            Inputs::Replay(r) => r.recorded.segments.clone(),
        }
    }

    /// An enrich read: the row's copied columns, or `None` for no row.
    pub fn row(&self, live: impl FnOnce() -> Option<Vec<Option<Value>>>) -> Option<Vec<Option<Value>>> {
        match self {
            Inputs::Live => live(),
            Inputs::Record(r) => {
                let row = live();
                let taped = row.as_ref().map(|cols| cols.iter().map(|c| c.as_ref().map(Taped::from)).collect());
                r.borrow_mut().rows.push(taped);
                row
            }
            Inputs::Replay(r) => {
                let row = r.next(&r.rows, &r.recorded.rows).flatten()?;
                Some(row.iter().map(|c| c.as_ref().map(Value::from)).collect())
            }
        }
    }

    pub fn propensity(&self, live: impl FnOnce() -> f64) -> f64 {
        match self {
            Inputs::Live => live(),
            Inputs::Record(r) => {
                let p = live();
                r.borrow_mut().propensities.push(p);
                p
            }
            Inputs::Replay(r) => r.next(&r.propensities, &r.recorded.propensities).unwrap_or(f64::NAN),
        }
    }

    pub fn posterior(&self, live: impl FnOnce() -> (f64, f64)) -> (f64, f64) {
        match self {
            Inputs::Live => live(),
            Inputs::Record(r) => {
                let p = live();
                r.borrow_mut().posteriors.push(p);
                p
            }
            Inputs::Replay(r) => r.next(&r.posteriors, &r.recorded.posteriors).unwrap_or((1.0, 1.0)),
        }
    }

    pub fn impressions(&self, live: impl FnOnce() -> [u32; 3]) -> [u32; 3] {
        match self {
            Inputs::Live => live(),
            Inputs::Record(r) => {
                let counts = live();
                r.borrow_mut().impressions.push(counts);
                counts
            }
            Inputs::Replay(r) => r.next(&r.impressions, &r.recorded.impressions).unwrap_or_default(),
        }
    }

    /// Calls `visit` with the customer's contacts and outcomes: `live` supplies them
    /// from the tenant (a visitor, as `Signals` does), or the recording does. Contacts
    /// before `since` cannot matter to any policy and are not recorded.
    pub fn history(
        &self,
        since: i64,
        live: impl FnOnce(&mut dyn FnMut(&[Contact], &[OutcomeEvent])),
        visit: &mut dyn FnMut(&[Contact], &[OutcomeEvent]),
    ) {
        match self {
            Inputs::Live => live(visit),
            Inputs::Record(r) => live(&mut |contacts, outcomes| {
                {
                    let mut r = r.borrow_mut();
                    r.contacts = contacts.iter().filter(|c| c.at >= since).cloned().collect();
                    r.outcomes = outcomes.to_vec();
                }
                visit(contacts, outcomes)
            }),
            Inputs::Replay(r) => visit(&r.recorded.contacts, &r.recorded.outcomes),
        }
    }
}

impl Replay<'_> {
    fn next<T: Clone>(&self, cursor: &Cell<usize>, stream: &[T]) -> Option<T> {
        let i = cursor.get();
        cursor.set(i + 1);
        let found = stream.get(i).cloned();
        if found.is_none() {
            self.short.set(true);
        }
        found
    }
}
