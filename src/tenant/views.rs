//! What the API shows of one customer: the contacts the policies count (held in memory,
//! exact) and its logged decisions, paged from the ids kept in memory.

use serde::Serialize;

use super::interaction::{self, DecisionId, Interaction};
use super::learning::Learning;
use crate::engine::contact::{self, Contact, Key, PolicyInput, Target};
use crate::store::{Storage, StoreError};

/// `GET /customers/{id}/contacts`: every contact the customer's contact policies can
/// count, oldest first. A held-out customer's contacts are those it would have had
/// (caps apply to both arms alike).
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerContacts {
    pub customer_id: String,
    pub count: usize,
    pub contacts: Vec<ContactView>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContactView {
    pub offer_id: String,
    pub category: String,
    /// The channel's name, when the decision named a known channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// RFC 3339, UTC.
    pub at: String,
}

impl From<&Contact> for ContactView {
    fn from(c: &Contact) -> ContactView {
        ContactView {
            offer_id: c.offer_id.to_string(),
            category: c.category.to_string(),
            channel: c.channel.as_deref().map(str::to_string),
            at: crate::ids::rfc3339(c.at, 0),
        }
    }
}

/// `None` when the tenant holds no contact for the customer: an unknown customer (or
/// another tenant's) is not found rather than shown as empty.
pub fn customer_contacts(learning: &Learning, customer_id: &str) -> Option<CustomerContacts> {
    let mut contacts = learning.contacts_of(customer_id);
    if contacts.is_empty() {
        return None;
    }
    contacts.sort_by_key(|c| c.at);
    let contacts: Vec<ContactView> = contacts.iter().map(ContactView::from).collect();
    Some(CustomerContacts { customer_id: customer_id.to_string(), count: contacts.len(), contacts })
}

/// `GET /customers/{id}/suppressions`: what the suppressing policies block for the
/// customer now. A suppression is not a stored record of its own: it follows from the
/// contacts and outcomes the log holds, so it starts, ends and survives a restart
/// exactly as those do.
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerSuppressions {
    pub customer_id: String,
    pub data: Vec<SuppressionView>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SuppressionView {
    /// The policy's id, and what it suppresses (`offer:<id>`, `category:<name>`, `all`).
    pub id: String,
    /// `global`, `offer`, `category` or `channel`.
    pub scope: &'static str,
    /// The offer id, category or channel; `all` for a global one.
    pub scope_id: String,
    pub policy_id: String,
    pub policy_name: String,
    pub policy_type: &'static str,
    pub reason: String,
    /// RFC 3339: the contact or outcome that started it, and when it ends.
    pub created_at: String,
    pub expires_at: String,
    pub is_active: bool,
}

/// `None` when the tenant holds no contact or outcome of the customer (as for contacts:
/// another tenant's customer is not found rather than shown as empty).
pub fn customer_suppressions(
    learning: &Learning,
    flow: Option<&crate::engine::CompiledFlow>,
    customer_id: &str,
) -> Option<CustomerSuppressions> {
    let contacts = learning.contacts_of(customer_id);
    let outcomes = learning.outcomes_of(customer_id);
    if contacts.is_empty() && outcomes.is_empty() {
        return None;
    }
    let now = crate::ids::unix_now();
    let impressions = |_: &str| [0; 3];
    let input = PolicyInput { contacts: &contacts, outcomes: &outcomes, segments: &[], now, impressions: &impressions };
    let found = flow.map(|f| contact::suppressions(f.policies(), &input)).unwrap_or_default();
    let data = found.into_iter().map(|s| view(s, now)).collect();
    Some(CustomerSuppressions { customer_id: customer_id.to_string(), data })
}

fn view(s: contact::Suppression<'_>, now: i64) -> SuppressionView {
    let p = s.policy;
    let (scope, scope_id) = match (&s.key, &p.target) {
        (Some(Key::Offer(id)), _) | (None, Target::Offer(id)) => ("offer", id.to_string()),
        (Some(Key::Category(c)), _) | (None, Target::Category(c)) => ("category", c.to_string()),
        (None, Target::Channel(c)) => ("channel", c.to_string()),
        (None, Target::Global) => ("global", "all".to_string()),
        (None, t @ Target::Any(_)) => ("scopes", t.describe()),
        // `contact::suppressions` lists a group offer by offer; any other is the policy's rest.
        (Some(Key::AllBut(shown)), _) => ("all_but", shown.to_string()),
    };
    let what = if scope == "global" { "all".to_string() } else { format!("{scope}:{scope_id}") };
    SuppressionView {
        id: format!("{}/{what}", p.id),
        scope,
        scope_id,
        policy_id: p.id.to_string(),
        policy_name: p.name.to_string(),
        policy_type: p.rule_type.name(),
        reason: s.block.reason(p),
        created_at: crate::ids::rfc3339(s.since, 0),
        expires_at: crate::ids::rfc3339(s.until, 0),
        is_active: s.until > now,
    }
}

/// `GET /customers/{id}/interactions`: a page of the customer's logged decisions,
/// newest first (of its last `MAX_RECENT_DECISIONS`; ids whose records retention has
/// dropped are skipped).
#[derive(Debug, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomerInteractions {
    pub customer_id: String,
    pub data: Vec<Interaction>,
    pub pagination: crate::http::pagination::PageInfo,
}

/// Why a page of interactions cannot be given.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("`{0}` is not an interaction of this customer's list; start again without a cursor")]
    Cursor(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `None` when the tenant has no logged decision of the customer.
pub fn customer_interactions(
    store: &dyn Storage,
    tenant: &str,
    learning: &Learning,
    customer_id: &str,
    limit: usize,
    cursor: Option<&str>,
) -> Result<Option<CustomerInteractions>, PageError> {
    let ids = learning.decisions_of(customer_id);
    if ids.is_empty() {
        return Ok(None);
    }
    let start = match cursor {
        None => 0,
        Some(c) => {
            let at = DecisionId::parse(c).and_then(|cursor| ids.iter().position(|id| *id == cursor));
            at.map(|i| i + 1).ok_or_else(|| PageError::Cursor(c.into()))?
        }
    };
    let page = &ids[start.min(ids.len())..(start + limit).min(ids.len())];
    let mut data = Vec::with_capacity(page.len());
    for id in page {
        data.extend(interaction::find_decision(store, tenant, &id.to_string())?);
    }
    let has_more = start + page.len() < ids.len();
    let cursor = page.last().filter(|_| has_more).map(ToString::to_string);
    let pagination = crate::http::pagination::PageInfo { limit, cursor, has_more, total: ids.len() };
    Ok(Some(CustomerInteractions { customer_id: customer_id.to_string(), data, pagination }))
}
