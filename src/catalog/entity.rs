//! Entity kinds as data. Everything the tenant actor and the API need to know about one
//! kind of entity — what a create takes, how it is listed, added, changed, removed and
//! stored — is one [`Entity`] impl. The actor's messages (`tenant::command`) and the
//! HTTP routes (`api::routes::ENTITIES`) are generic over it, so a new kind is this impl
//! plus one route-table row (and its line in `tenant::persist::load_catalog`, which
//! restores kinds in dependency order).

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{not_found, Catalog, CatalogError};
use crate::model::flow::FlowView;
use crate::model::policy::{ContactPolicy, ContactPolicySpec};
use crate::model::rule::Scope;
use crate::model::{
    Channel, ChannelSpec, DecisionFlow, FlowSpec, Meta, Offer, OfferSpec, QualificationRule, RuleSpec, Schema,
    SchemaSpec,
};
use crate::store::keys::{self, Kind};
use crate::store::Batch;

/// Fields a stored entity carries besides its spec; a `PUT` body may send them back
/// (`version` then says which version the change is for; the others are ignored).
pub const STORED_FIELDS: &[&str] = &["id", "version", "createdAt", "updatedAt"];

pub trait Entity: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// What a create takes, and what a `PUT`'s merged body must parse as.
    type Spec: DeserializeOwned + schemars::JsonSchema + Send + 'static;
    /// What the API answers for one.
    type View: Serialize + schemars::JsonSchema + Send + 'static;
    /// In messages: "offer `x` not found".
    const NAME: &'static str;
    /// Its records' kind in storage.
    const RECORD: Kind;
    /// Whether a change can alter what live flows decide (they are then recompiled
    /// against the changed catalog, and the change refused if one no longer compiles).
    const LIVE: bool = true;
    /// Fields of the view that are not the spec's: dropped before a `PUT` is merged.
    const STORED_FIELDS: &'static [&'static str] = STORED_FIELDS;

    /// Every entity of the kind, oldest first.
    fn all(c: &Catalog) -> &[Self];
    fn meta(&self) -> &Meta;
    fn view(&self) -> Self::View;
    fn view_id(view: &Self::View) -> &str;
    fn add(c: &mut Catalog, spec: Self::Spec) -> Result<&Self, CatalogError>;
    fn update<'c>(c: &'c mut Catalog, id: &str, spec: Self::Spec) -> Result<&'c Self, CatalogError>;
    /// Removes one; refused (409) while something depends on it.
    fn remove(c: &mut Catalog, id: &str) -> Result<(), CatalogError>;

    /// The order `GET` lists them in: newest first.
    fn listed(c: &Catalog) -> Vec<&Self> {
        Self::all(c).iter().rev().collect()
    }

    /// Writes its record(s).
    fn store(&self, b: &mut Batch, tenant: &str) {
        b.put(
            keys::key(tenant, Self::RECORD, &[&self.meta().id]),
            serde_json::to_vec(self).expect("entities serialise"),
        );
    }

    /// Records owned by the entity that go when it goes (a schema's rows): their prefix.
    fn owned_records(_tenant: &str, _id: &str) -> Option<Vec<u8>> {
        None
    }

    fn find<'c>(c: &'c Catalog, id: &str) -> Result<&'c Self, CatalogError> {
        Self::all(c).iter().find(|e| e.meta().id == id).ok_or_else(|| not_found(Self::NAME, id))
    }
}

/// The methods of a kind whose API view is the entity itself, kept in `Catalog::$field`.
macro_rules! stored_as_itself {
    ($field:ident) => {
        fn all(c: &Catalog) -> &[Self] {
            &c.$field
        }
        fn meta(&self) -> &Meta {
            &self.meta
        }
        fn view(&self) -> Self {
            self.clone()
        }
        fn view_id(view: &Self) -> &str {
            &view.meta.id
        }
    };
}

/// Removes the entity `id` from `items`.
fn remove_from<E: Entity>(items: &mut Vec<E>, id: &str) -> Result<(), CatalogError> {
    let i = items.iter().position(|x| x.meta().id == id).ok_or_else(|| not_found(E::NAME, id))?;
    items.remove(i);
    Ok(())
}

/// 409 naming what still uses the offer or channel `id`.
fn refuse_if_used(c: &Catalog, scope: Scope, what: &str, id: &str) -> Result<(), CatalogError> {
    let dependants = c.dependants(scope, id);
    if dependants.is_empty() {
        return Ok(());
    }
    Err(CatalogError::Conflict(format!(
        "this {what} is used by {}; change or delete them first",
        dependants.join(", ")
    )))
}

impl Entity for Schema {
    type Spec = SchemaSpec;
    type View = Schema;
    const NAME: &'static str = "schema";
    const RECORD: Kind = Kind::Schema;
    // Flows read rows through the shared tables; a schema's description is not compiled in.
    const LIVE: bool = false;

    stored_as_itself!(schemas);
    fn add(c: &mut Catalog, spec: SchemaSpec) -> Result<&Self, CatalogError> {
        c.add_schema(spec)
    }
    fn update<'c>(c: &'c mut Catalog, id: &str, spec: SchemaSpec) -> Result<&'c Self, CatalogError> {
        c.update_schema(id, spec)
    }
    fn remove(c: &mut Catalog, id: &str) -> Result<(), CatalogError> {
        c.remove_schema(id)
    }
    fn owned_records(tenant: &str, id: &str) -> Option<Vec<u8>> {
        Some(keys::sub_prefix(tenant, Kind::Row, &[id]))
    }
}

impl Entity for Offer {
    type Spec = OfferSpec;
    type View = Offer;
    const NAME: &'static str = "offer";
    const RECORD: Kind = Kind::Offer;

    stored_as_itself!(offers);
    fn add(c: &mut Catalog, spec: OfferSpec) -> Result<&Self, CatalogError> {
        c.add_offer(spec)
    }
    fn update<'c>(c: &'c mut Catalog, id: &str, spec: OfferSpec) -> Result<&'c Self, CatalogError> {
        c.update_offer(id, spec)
    }
    fn remove(c: &mut Catalog, id: &str) -> Result<(), CatalogError> {
        refuse_if_used(c, Scope::Offer, "offer", id)?;
        remove_from(&mut c.offers, id)
    }
}

impl Entity for QualificationRule {
    type Spec = RuleSpec;
    type View = QualificationRule;
    const NAME: &'static str = "qualification rule";
    const RECORD: Kind = Kind::Rule;

    stored_as_itself!(rules);
    fn add(c: &mut Catalog, spec: RuleSpec) -> Result<&Self, CatalogError> {
        c.add_rule(spec)
    }
    fn update<'c>(c: &'c mut Catalog, id: &str, spec: RuleSpec) -> Result<&'c Self, CatalogError> {
        c.update_rule(id, spec)
    }
    fn remove(c: &mut Catalog, id: &str) -> Result<(), CatalogError> {
        remove_from(&mut c.rules, id)
    }
}

impl Entity for Channel {
    type Spec = ChannelSpec;
    type View = Channel;
    const NAME: &'static str = "channel";
    const RECORD: Kind = Kind::Channel;

    stored_as_itself!(channels);
    fn add(c: &mut Catalog, spec: ChannelSpec) -> Result<&Self, CatalogError> {
        c.add_channel(spec)
    }
    fn update<'c>(c: &'c mut Catalog, id: &str, spec: ChannelSpec) -> Result<&'c Self, CatalogError> {
        c.update_channel(id, spec)
    }
    fn remove(c: &mut Catalog, id: &str) -> Result<(), CatalogError> {
        refuse_if_used(c, Scope::Channel, "channel", id)?;
        remove_from(&mut c.channels, id)
    }
}

impl Entity for ContactPolicy {
    type Spec = ContactPolicySpec;
    type View = ContactPolicy;
    const NAME: &'static str = "contact policy";
    const RECORD: Kind = Kind::Policy;

    stored_as_itself!(policies);
    fn add(c: &mut Catalog, spec: ContactPolicySpec) -> Result<&Self, CatalogError> {
        c.add_policy(spec)
    }
    fn update<'c>(c: &'c mut Catalog, id: &str, spec: ContactPolicySpec) -> Result<&'c Self, CatalogError> {
        c.update_policy(id, spec)
    }
    fn remove(c: &mut Catalog, id: &str) -> Result<(), CatalogError> {
        remove_from(&mut c.policies, id)
    }
    /// As the platform lists them: highest priority first, then newest first.
    fn listed(c: &Catalog) -> Vec<&Self> {
        let mut p: Vec<&ContactPolicy> = c.policies.iter().collect();
        p.sort_by(|a, b| a.spec.priority.cmp(&b.spec.priority).then_with(|| a.meta.created_at.cmp(&b.meta.created_at)));
        p.reverse();
        p
    }
}

impl Entity for crate::model::journey::Journey {
    type Spec = crate::model::journey::JourneySpec;
    type View = crate::model::journey::Journey;
    const NAME: &'static str = "journey";
    const RECORD: Kind = Kind::Journey;
    // Journeys are walked by the tenant's journey runtime, not compiled into flows.
    const LIVE: bool = false;

    stored_as_itself!(journeys);
    fn add(c: &mut Catalog, spec: Self::Spec) -> Result<&Self, CatalogError> {
        c.add_journey(spec)
    }
    fn update<'c>(c: &'c mut Catalog, id: &str, spec: Self::Spec) -> Result<&'c Self, CatalogError> {
        c.update_journey(id, spec)
    }
    fn remove(c: &mut Catalog, id: &str) -> Result<(), CatalogError> {
        remove_from(&mut c.journeys, id)
    }
    /// Its enrollments go with it.
    fn owned_records(tenant: &str, id: &str) -> Option<Vec<u8>> {
        Some(keys::sub_prefix(tenant, Kind::Enrollment, &[id]))
    }
}

/// Fields of a flow's view that only publishing changes.
pub const STORED_FLOW_FIELDS: &[&str] =
    &["id", "version", "createdAt", "updatedAt", "status", "publishedVersions", "liveVersion", "versionCount"];

impl Entity for DecisionFlow {
    type Spec = FlowSpec;
    type View = FlowView;
    const NAME: &'static str = "decision flow";
    const RECORD: Kind = Kind::Flow;
    // A draft does not change what live flows decide; publishing does.
    const LIVE: bool = false;
    const STORED_FIELDS: &'static [&'static str] = STORED_FLOW_FIELDS;

    fn all(c: &Catalog) -> &[Self] {
        &c.flows
    }
    fn meta(&self) -> &Meta {
        &self.meta
    }
    fn view(&self) -> FlowView {
        DecisionFlow::view(self)
    }
    fn view_id(view: &FlowView) -> &str {
        &view.meta.id
    }
    fn add(c: &mut Catalog, spec: FlowSpec) -> Result<&Self, CatalogError> {
        c.add_flow(spec)
    }
    fn update<'c>(c: &'c mut Catalog, id: &str, spec: FlowSpec) -> Result<&'c Self, CatalogError> {
        c.update_flow(id, spec)
    }
    fn remove(c: &mut Catalog, id: &str) -> Result<(), CatalogError> {
        let flow = Self::find(c, id)?;
        if !flow.published_versions.is_empty() {
            return Err(CatalogError::Conflict(format!(
                "decision flow `{}` is published and protected",
                flow.spec.key
            )));
        }
        remove_from(&mut c.flows, id)
    }
    fn store(&self, b: &mut Batch, tenant: &str) {
        put_flow(b, tenant, self, false);
    }
}

/// A flow is stored as its record without versions, plus one record per published
/// version written once at publish: a publish writes one small record, however many
/// versions the flow already has.
pub fn put_flow(batch: &mut Batch, tenant: &str, flow: &DecisionFlow, new_version: bool) {
    let id = &flow.meta.id;
    let record = DecisionFlow { published_versions: Vec::new(), ..flow.clone() };
    batch.put(keys::key(tenant, Kind::Flow, &[id]), serde_json::to_vec(&record).expect("json"));
    if let (true, Some(latest)) = (new_version, flow.published_versions.last()) {
        batch.put(version_key(tenant, id, u64::from(latest.version)), serde_json::to_vec(&**latest).expect("json"));
    }
}

fn version_key(tenant: &str, flow_id: &str, version: u64) -> Vec<u8> {
    keys::key(tenant, Kind::Flow, &[flow_id, "v", &format!("{version:010}")])
}
