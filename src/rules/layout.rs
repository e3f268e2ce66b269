//! The slot layout of a decision: every attribute a rule can read gets a fixed index at
//! compile time, so evaluation indexes an array instead of hashing a name.

use std::collections::HashMap;

use super::ir::{Namespace, Path};
use super::value::Type;

/// Fields of the candidate offer. They are read straight from the compiled offer, not
/// from slots, because they are fixed per offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferField {
    Id,
    Name,
    Category,
    Status,
    Priority,
    BusinessValue,
    RevenueValue,
    Margin,
    Weight,
    Mandatory,
}

impl OfferField {
    pub const ALL: [(&'static str, OfferField, Type); 10] = [
        ("id", OfferField::Id, Type::Str),
        ("name", OfferField::Name, Type::Str),
        ("category", OfferField::Category, Type::Str),
        ("status", OfferField::Status, Type::Str),
        ("priority", OfferField::Priority, Type::Num),
        ("businessValue", OfferField::BusinessValue, Type::Num),
        ("revenueValue", OfferField::RevenueValue, Type::Num),
        ("margin", OfferField::Margin, Type::Num),
        ("weight", OfferField::Weight, Type::Num),
        ("mandatory", OfferField::Mandatory, Type::Bool),
    ];

    pub fn lookup(name: &str) -> Option<(OfferField, Type)> {
        Self::ALL.iter().find(|(n, _, _)| *n == name).map(|(_, f, t)| (*f, *t))
    }
}

/// Request fields that always have a slot, in this order (see `Layout::new`).
pub const REQUEST_SLOTS: [(Namespace, &str); 5] = [
    (Namespace::Request, "customerId"),
    (Namespace::Request, "channel"),
    (Namespace::Request, "placement"),
    (Namespace::Channel, "name"),
    (Namespace::Channel, "type"),
];
pub const SLOT_CUSTOMER_ID: u32 = 0;
pub const SLOT_CHANNEL: u32 = 1;
pub const SLOT_PLACEMENT: u32 = 2;
pub const SLOT_CHANNEL_NAME: u32 = 3;
pub const SLOT_CHANNEL_TYPE: u32 = 4;

#[derive(Debug, Clone)]
pub struct SlotInfo {
    pub path: Path,
    pub ty: Type,
}

/// Name → slot table, built once per compile. Customer fields are declared from the
/// tenant's schemas; request attributes get a slot the first time a rule names one.
#[derive(Debug, Clone)]
pub struct Layout {
    slots: Vec<SlotInfo>,
    index: HashMap<Path, u32>,
}

impl Default for Layout {
    fn default() -> Self {
        Self::new()
    }
}

impl Layout {
    pub fn new() -> Layout {
        let mut layout = Layout { slots: Vec::new(), index: HashMap::new() };
        for (ns, name) in REQUEST_SLOTS {
            layout.declare(Path { ns, name: name.to_string() }, Type::Str);
        }
        layout
    }

    /// Adds a slot (or returns the existing one, keeping the first declared type).
    pub fn declare(&mut self, path: Path, ty: Type) -> u32 {
        if let Some(&slot) = self.index.get(&path) {
            return slot;
        }
        let slot = self.slots.len() as u32;
        self.slots.push(SlotInfo { path: path.clone(), ty });
        self.index.insert(path, slot);
        slot
    }

    pub fn get(&self, path: &Path) -> Option<(u32, Type)> {
        self.index.get(path).map(|&s| (s, self.slots[s as usize].ty))
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn slot(&self, slot: u32) -> &SlotInfo {
        &self.slots[slot as usize]
    }

    /// Known names in one namespace, for "did you mean" suggestions.
    pub fn names(&self, ns: Namespace) -> impl Iterator<Item = &str> {
        self.slots.iter().filter(move |s| s.path.ns == ns).map(|s| s.path.name.as_str())
    }
}
