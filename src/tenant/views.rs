//! What the API shows of one customer and one decision: the contacts the policies
//! count (held in memory, exact) and a logged decision read back from the event log.

use serde::Serialize;

use super::interaction::{self, Interaction};
use super::learning::Learning;
use crate::engine::contact::Contact;
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

/// `GET /interactions/{id}`: the decision as logged, or `None` when the id names no
/// decision of this tenant (another tenant's id is as unknown as a made-up one).
pub fn interaction(store: &dyn Storage, tenant: &str, id: &str) -> Result<Option<Interaction>, StoreError> {
    interaction::find_decision(store, tenant, id)
}
