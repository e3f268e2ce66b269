//! A tenant's entities (schemas, offers, qualification rules, channels, flows) and its
//! customer rows, with the create/validate/publish operations on them. It has one
//! writer (the tenant) and produces immutable `CompiledFlow`s for the read path.

use std::sync::Arc;

use crate::dsl::{check_source, Context, Diagnostic, RuleDef, RuleOrigin, ScoreDef};
use crate::engine::{self, CompiledFlow, TenantInputs};
use crate::learn::propensity::CounterBank;
use crate::model::flow::{FlowStatus, PublishedVersion};
use crate::model::policy::{
    ContactPolicy, ContactPolicySpec, PolicyRule, PolicyScope, PolicyStatus, MAX_ACTIVE_POLICIES,
};
use crate::model::rule::{RuleStatus, Scope};
use crate::model::{
    Channel, ChannelSpec, DecisionFlow, FieldError, FlowSpec, Meta, Offer, OfferSpec, QualificationRule, RuleSpec,
    Schema, SchemaSpec, ValidationError,
};
use crate::rules::check::{Checker, Literals, Typed};
use crate::rules::json;
use crate::rules::{Layout, Namespace, Path};

pub mod conflicts;
pub mod entity;
pub mod journey;
pub mod retained;

pub use crate::model::condition_error;
pub use crate::model::schema::Table;
pub use entity::Entity;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("{kind} `{id}` not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
}

fn not_found(kind: &'static str, id: &str) -> CatalogError {
    CatalogError::NotFound { kind, id: id.to_string() }
}

/// Cloning is cheap enough for a change-then-check: entities are copied, customer
/// tables are shared.
#[derive(Default, Clone)]
pub struct Catalog {
    pub schemas: Vec<Schema>,
    pub offers: Vec<Offer>,
    pub rules: Vec<QualificationRule>,
    pub channels: Vec<Channel>,
    pub policies: Vec<ContactPolicy>,
    pub flows: Vec<DecisionFlow>,
    pub journeys: Vec<crate::model::journey::Journey>,
    /// Rule-language files, by name, in load order.
    pub plugins: Vec<Plugin>,
    tables: Vec<Arc<Table>>,
    /// Learned outcome counters, shared by every copy of the catalog and handed to the
    /// flows compiled from it, so a decision reads them without a lookup or a lock.
    pub counters: Arc<CounterBank>,
}

/// A checked rule-language file: its source and what it defines.
#[derive(Debug, Clone, PartialEq)]
pub struct Plugin {
    pub name: String,
    pub source: String,
    pub rules: Vec<RuleDef>,
    pub scores: Vec<ScoreDef>,
}

/// Which form of a flow a dry run or simulation decides with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowCandidate {
    /// The unpublished draft.
    Draft,
    /// A published version, by number.
    Version(u32),
}

/// A validated row: its key, its index in the load, its values.
pub type ParsedRow = (String, usize, crate::model::schema::Row);

/// How a row load treats an existing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// The platform's `POST …/data`: existing keys are skipped.
    InsertOrIgnore,
    /// `PUT …/data`: existing keys are replaced.
    Upsert,
}

impl Catalog {
    pub fn new() -> Catalog {
        Catalog::default()
    }

    pub fn add_schema(&mut self, spec: SchemaSpec) -> Result<&Schema, CatalogError> {
        spec.validate()?;
        if self.schemas.iter().any(|s| s.spec.name == spec.name) {
            return Err(CatalogError::Conflict(format!("a schema named `{}` already exists", spec.name)));
        }
        self.check_field_types(&spec)?;
        self.schemas.push(Schema { meta: Meta::new(), spec });
        self.tables.push(Arc::new(Table::new()));
        Ok(self.schemas.last().expect("just pushed"))
    }

    /// `customer.<field>` is one namespace across schemas, so a name must keep one type.
    fn check_field_types(&self, spec: &SchemaSpec) -> Result<(), ValidationError> {
        let mut errors = Vec::new();
        for (i, f) in spec.fields.iter().enumerate() {
            let clash = self.schemas.iter().flat_map(|s| s.spec.fields.iter().map(move |g| (s, g)));
            for (s, g) in clash {
                if g.name == f.name && g.data_type.rule_type() != f.data_type.rule_type() {
                    errors.push(FieldError::new(
                        format!("fields[{i}].dataType"),
                        format!(
                            "`{}` is {} in schema `{}`; customer fields must keep one type",
                            f.name,
                            g.data_type.name(),
                            s.spec.name
                        ),
                    ));
                }
            }
        }
        ValidationError::check(errors)
    }

    /// Replaces a schema's description. Fields may only be added at the end (existing
    /// fields keep name, type and order), so stored rows stay valid: they simply lack the
    /// new columns.
    pub fn update_schema(&mut self, id: &str, spec: SchemaSpec) -> Result<&Schema, CatalogError> {
        spec.validate()?;
        let i = self.schemas.iter().position(|s| s.meta.id == id).ok_or_else(|| not_found("schema", id))?;
        let old = &self.schemas[i].spec.fields;
        let kept = spec.fields.len() >= old.len()
            && old
                .iter()
                .zip(&spec.fields)
                .all(|(a, b)| a.name == b.name && a.data_type == b.data_type && a.is_unique == b.is_unique);
        if !kept {
            return Err(CatalogError::Conflict(
                "fields may only be added at the end: existing fields keep their names, types and order".into(),
            ));
        }
        let mut others = self.clone();
        others.schemas.remove(i);
        others.check_field_types(&spec)?;
        if self.schemas.iter().any(|s| s.spec.name == spec.name && s.meta.id != id) {
            return Err(CatalogError::Conflict(format!("a schema named `{}` already exists", spec.name)));
        }
        let schema = &mut self.schemas[i];
        schema.spec = spec;
        schema.meta.touch();
        Ok(schema)
    }

    pub fn schema(&self, id: &str) -> Result<(&Schema, &Arc<Table>), CatalogError> {
        let i = self.schemas.iter().position(|s| s.meta.id == id).ok_or_else(|| not_found("schema", id))?;
        Ok((&self.schemas[i], &self.tables[i]))
    }

    /// Loads rows (`rows[i]` errors name the row). All rows are validated before any is
    /// stored, so a bad row changes nothing. Returns how many rows were written.
    pub fn load_rows(
        &mut self,
        schema_id: &str,
        rows: &[serde_json::Value],
        mode: LoadMode,
    ) -> Result<usize, CatalogError> {
        self.load_rows_keyed(schema_id, rows, mode).map(|written| written.len())
    }

    /// As `load_rows`, returning the key and input index of every row written.
    pub fn load_rows_keyed(
        &mut self,
        schema_id: &str,
        rows: &[serde_json::Value],
        mode: LoadMode,
    ) -> Result<Vec<(String, usize)>, CatalogError> {
        let parsed = self.parse_rows(schema_id, rows, mode)?;
        let written = parsed.iter().map(|(key, index, _)| (key.clone(), *index)).collect();
        self.insert_rows(schema_id, parsed)?;
        Ok(written)
    }

    /// Validates every row and returns those to write: (key, input index, values). With
    /// insert-or-ignore, keys already stored (or repeated in `rows`) are left out.
    pub fn parse_rows(
        &self,
        schema_id: &str,
        rows: &[serde_json::Value],
        mode: LoadMode,
    ) -> Result<Vec<ParsedRow>, CatalogError> {
        self.parse_rows_with(schema_id, rows.len(), mode, |i| Ok(std::borrow::Cow::Borrowed(&rows[i])))
    }

    /// As `parse_rows`, from each row's raw JSON as the client sent it: one row's JSON
    /// tree exists at a time, so a large load holds its bytes and its parsed rows, not a
    /// JSON tree of the whole body besides.
    pub fn parse_raw_rows(
        &self,
        schema_id: &str,
        rows: &[bytes::Bytes],
        mode: LoadMode,
    ) -> Result<Vec<ParsedRow>, CatalogError> {
        self.parse_rows_with(schema_id, rows.len(), mode, |i| {
            let row =
                serde_json::from_slice(&rows[i]).map_err(|e| FieldError::new(format!("rows[{i}]"), e.to_string()))?;
            Ok(std::borrow::Cow::Owned(row))
        })
    }

    fn parse_rows_with<'r>(
        &self,
        schema_id: &str,
        count: usize,
        mode: LoadMode,
        row: impl Fn(usize) -> Result<std::borrow::Cow<'r, serde_json::Value>, FieldError>,
    ) -> Result<Vec<ParsedRow>, CatalogError> {
        let (schema, table) = self.schema(schema_id)?;
        if count == 0 {
            return Err(ValidationError::one("rows", "needs at least one row").into());
        }
        let mut parsed = Vec::with_capacity(count);
        let mut errors = Vec::new();
        for i in 0..count {
            let checked = row(i)
                .map_err(|e| vec![e])
                .and_then(|value| schema.parse_row(&format!("rows[{i}]"), &value).map_err(|ValidationError(e)| e));
            match checked {
                Ok((key, values)) => parsed.push((key, i, values)),
                Err(e) => errors.extend(e),
            }
        }
        ValidationError::check(errors)?;
        if mode == LoadMode::InsertOrIgnore {
            let mut seen = std::collections::HashSet::new();
            parsed.retain(|(key, _, _)| !table.contains_key(key.as_str()) && seen.insert(key.clone()));
        }
        Ok(parsed)
    }

    /// Stores parsed rows in the schema's table (seen by the next decision).
    pub fn insert_rows(&self, schema_id: &str, parsed: Vec<ParsedRow>) -> Result<(), CatalogError> {
        let (_, table) = self.schema(schema_id)?;
        for (key, _, values) in parsed {
            table.insert(key.into(), values);
        }
        Ok(())
    }

    pub fn add_offer(&mut self, spec: OfferSpec) -> Result<&Offer, CatalogError> {
        spec.validate()?;
        if self.offers.iter().any(|o| o.spec.name == spec.name) {
            return Err(CatalogError::Conflict(format!("an offer named `{}` already exists", spec.name)));
        }
        self.offers.push(Offer { meta: Meta::new(), spec });
        Ok(self.offers.last().expect("just pushed"))
    }

    pub fn add_channel(&mut self, spec: ChannelSpec) -> Result<&Channel, CatalogError> {
        spec.validate()?;
        if self.channels.iter().any(|c| c.spec.name == spec.name) {
            return Err(CatalogError::Conflict(format!("a channel named `{}` already exists", spec.name)));
        }
        self.channels.push(Channel { meta: Meta::new(), spec });
        Ok(self.channels.last().expect("just pushed"))
    }

    pub fn add_rule(&mut self, mut spec: RuleSpec) -> Result<&QualificationRule, CatalogError> {
        let cond = spec.validate()?;
        self.resolve_scope(&mut spec);
        let mut errors = Vec::new();
        self.check_scope(&spec, &mut errors);
        if let Err(e) = self.check_condition(&cond) {
            errors.extend(e);
        }
        ValidationError::check(errors)?;
        if self.rules.iter().any(|r| r.spec.name == spec.name) {
            return Err(CatalogError::Conflict(format!("a qualification rule named `{}` already exists", spec.name)));
        }
        self.rules.push(QualificationRule { meta: Meta::new(), spec });
        Ok(self.rules.last().expect("just pushed"))
    }

    /// An offer or channel named by name is stored by id, so renaming it later does not
    /// silently detach its rules.
    fn resolve_scope(&self, spec: &mut RuleSpec) {
        let Some(name) = spec.scope_id.clone() else { return };
        let id = match spec.scope {
            Scope::Offer => self.offers.iter().find(|o| o.spec.name == name && o.meta.id != name).map(|o| &o.meta.id),
            Scope::Channel => {
                self.channels.iter().find(|c| c.spec.name == name && c.meta.id != name).map(|c| &c.meta.id)
            }
            _ => None,
        };
        if let Some(id) = id {
            spec.scope_id = Some(id.clone());
        }
    }

    fn check_scope(&self, spec: &RuleSpec, errors: &mut Vec<FieldError>) {
        let id = spec.scope_id.as_deref().unwrap_or_default();
        let found = match spec.scope {
            Scope::Offer => self.offers.iter().any(|o| o.meta.id == id || o.spec.name == id),
            Scope::Channel => self.channels.iter().any(|c| c.meta.id == id || c.spec.name == id),
            _ => true,
        };
        if !found {
            errors.push(FieldError::new("scopeId", format!("no {} with id `{id}`", spec.scope.name())));
        }
    }

    /// Type-checks a JSON condition against the tenant's fields, naming the config key.
    fn check_condition(&self, cond: &crate::model::rule::AttributeCondition) -> Result<(), Vec<FieldError>> {
        self.typed_condition(&cond.attribute, cond.operator, cond.value.as_ref()).map(|_| ())
    }

    fn typed_condition(
        &self,
        attribute: &str,
        operator: json::Operator,
        value: Option<&serde_json::Value>,
    ) -> Result<Typed, Vec<FieldError>> {
        let expr = json::lower(attribute, operator, value)
            .map_err(|e| vec![FieldError::new(format!("config.{}", e.field), e.message)])?;
        let mut layout = self.layout();
        Checker::new(&mut layout, Literals::Lenient)
            .check_predicate(&expr)
            .map_err(|errs| errs.iter().map(|e| condition_error("config", e)).collect())
    }

    /// The slot layout every flow of this tenant starts from: request fields plus every
    /// customer field of every schema.
    pub fn layout(&self) -> Layout {
        let mut layout = Layout::new();
        for schema in &self.schemas {
            for f in &schema.spec.fields {
                layout.declare(Path { ns: Namespace::Customer, name: f.name.clone() }, f.data_type.rule_type());
            }
        }
        layout
    }

    pub fn add_flow(&mut self, spec: FlowSpec) -> Result<&DecisionFlow, CatalogError> {
        spec.validate()?;
        if self.flows.iter().any(|f| f.spec.key == spec.key) {
            return Err(CatalogError::Conflict(format!("a decision flow with key `{}` already exists", spec.key)));
        }
        let flow = DecisionFlow { meta: Meta::new(), spec, status: FlowStatus::Draft, published_versions: Vec::new() };
        self.flows.push(flow);
        Ok(self.flows.last().expect("just pushed"))
    }

    pub fn update_offer(&mut self, id: &str, spec: OfferSpec) -> Result<&Offer, CatalogError> {
        spec.validate()?;
        if self.offers.iter().any(|o| o.spec.name == spec.name && o.meta.id != id) {
            return Err(CatalogError::Conflict(format!("an offer named `{}` already exists", spec.name)));
        }
        let offer = self.offers.iter_mut().find(|o| o.meta.id == id).ok_or_else(|| not_found("offer", id))?;
        offer.spec = spec;
        offer.meta.touch();
        Ok(offer)
    }

    pub fn update_rule(&mut self, id: &str, mut spec: RuleSpec) -> Result<&QualificationRule, CatalogError> {
        let i = self.rules.iter().position(|r| r.meta.id == id).ok_or_else(|| not_found("qualification rule", id))?;
        let cond = spec.validate()?;
        self.resolve_scope(&mut spec);
        let mut errors = Vec::new();
        self.check_scope(&spec, &mut errors);
        if let Err(e) = self.check_condition(&cond) {
            errors.extend(e);
        }
        ValidationError::check(errors)?;
        if self.rules.iter().any(|r| r.spec.name == spec.name && r.meta.id != id) {
            return Err(CatalogError::Conflict(format!("a qualification rule named `{}` already exists", spec.name)));
        }
        let rule = &mut self.rules[i];
        rule.spec = spec;
        rule.meta.touch();
        Ok(rule)
    }

    pub fn add_policy(&mut self, mut spec: ContactPolicySpec) -> Result<&ContactPolicy, CatalogError> {
        self.check_policy(&mut spec, None)?;
        self.policies.push(ContactPolicy { meta: Meta::new(), spec });
        Ok(self.policies.last().expect("just pushed"))
    }

    pub fn update_policy(&mut self, id: &str, mut spec: ContactPolicySpec) -> Result<&ContactPolicy, CatalogError> {
        self.check_policy(&mut spec, Some(id))?;
        let policy =
            self.policies.iter_mut().find(|p| p.meta.id == id).ok_or_else(|| not_found("contact policy", id))?;
        policy.spec = spec;
        policy.meta.touch();
        Ok(policy)
    }

    /// Validates a policy, refuses a duplicate name, and stores an offer or channel
    /// named in `scopeId` by its id.
    fn check_policy(&self, spec: &mut ContactPolicySpec, id: Option<&str>) -> Result<(), CatalogError> {
        match spec.validate()? {
            PolicyRule::Metric { attribute, operator, value } => {
                self.check_metric(&attribute, operator, value.as_ref())?
            }
            PolicyRule::Exclusive { group, .. } => self.resolve_group(spec, &group)?,
            _ => {}
        }
        // Stored with its effective scope, so a reader sees what the policy counts.
        spec.scope = Some(spec.scope());
        if self.policies.iter().any(|p| p.spec.name == spec.name && Some(p.meta.id.as_str()) != id) {
            return Err(CatalogError::Conflict(format!("a contact policy named `{}` already exists", spec.name)));
        }
        let others_active =
            self.policies.iter().filter(|p| p.spec.status == PolicyStatus::Active && Some(p.meta.id.as_str()) != id);
        if spec.status == PolicyStatus::Active && others_active.count() >= MAX_ACTIVE_POLICIES {
            return Err(CatalogError::Conflict(format!(
                "a tenant may have at most {MAX_ACTIVE_POLICIES} active contact policies; pause or archive one first"
            )));
        }
        if let Some(mut scopes) = spec.scopes.take() {
            for (i, s) in scopes.iter_mut().enumerate() {
                s.scope_id = self.policy_scope_id(s.scope, s.scope_id.take(), &format!("scopes[{i}].scopeId"))?;
            }
            spec.scopes = Some(scopes);
        }
        spec.scope_id = self.policy_scope_id(spec.scope(), spec.scope_id.take(), "scopeId")?;
        Ok(())
    }

    /// An offer or channel scope's id, from an id or a name (stored by id).
    fn policy_scope_id(
        &self,
        scope: PolicyScope,
        id: Option<String>,
        path: &str,
    ) -> Result<Option<String>, CatalogError> {
        let Some(wanted) = id else { return Ok(None) };
        let found = match scope {
            PolicyScope::Offer => {
                self.offers.iter().find(|o| o.meta.id == wanted || o.spec.name == wanted).map(|o| &o.meta.id)
            }
            PolicyScope::Channel => {
                self.channels.iter().find(|c| c.meta.id == wanted || c.spec.name == wanted).map(|c| &c.meta.id)
            }
            PolicyScope::Category | PolicyScope::Global => return Ok(Some(wanted)),
        };
        match found {
            Some(id) => Ok(Some(id.clone())),
            None => Err(ValidationError::one(path, format!("no {} with id or name `{wanted}`", scope.name())).into()),
        }
    }

    /// A `metric_condition`'s condition type-checks against the tenant's fields and reads
    /// no offer field: it is evaluated once per decision, not per offer.
    fn check_metric(
        &self,
        attribute: &str,
        operator: json::Operator,
        value: Option<&serde_json::Value>,
    ) -> Result<(), ValidationError> {
        let typed = self.typed_condition(attribute, operator, value).map_err(ValidationError)?;
        if typed.offer_independent_shape().is_none() {
            return Err(ValidationError::one("config.attribute", crate::model::policy::METRIC_READS_OFFER));
        }
        Ok(())
    }

    /// A `mutual_exclusion` group names offers by id or name; it is stored by id.
    fn resolve_group(&self, spec: &mut ContactPolicySpec, group: &[String]) -> Result<(), ValidationError> {
        let mut ids = Vec::with_capacity(group.len());
        for (i, wanted) in group.iter().enumerate() {
            match self.offers.iter().find(|o| o.meta.id == *wanted || o.spec.name == *wanted) {
                Some(o) => ids.push(serde_json::Value::from(o.meta.id.clone())),
                None => {
                    return Err(ValidationError::one(
                        format!("config.offerGroup[{i}]"),
                        format!("no offer with id or name `{wanted}`"),
                    ))
                }
            }
        }
        spec.config["offerGroup"] = serde_json::Value::Array(ids);
        Ok(())
    }

    pub fn update_channel(&mut self, id: &str, spec: ChannelSpec) -> Result<&Channel, CatalogError> {
        spec.validate()?;
        if self.channels.iter().any(|c| c.spec.name == spec.name && c.meta.id != id) {
            return Err(CatalogError::Conflict(format!("a channel named `{}` already exists", spec.name)));
        }
        let channel = self.channels.iter_mut().find(|c| c.meta.id == id).ok_or_else(|| not_found("channel", id))?;
        channel.spec = spec;
        channel.meta.touch();
        Ok(channel)
    }

    /// Replaces a flow's draft (and name/description). Published versions are untouched:
    /// traffic changes only on publish.
    pub fn update_flow(&mut self, id: &str, spec: FlowSpec) -> Result<&DecisionFlow, CatalogError> {
        spec.validate()?;
        if self.flows.iter().any(|f| f.spec.key == spec.key && f.meta.id != id) {
            return Err(CatalogError::Conflict(format!("a decision flow with key `{}` already exists", spec.key)));
        }
        let flow = self.flows.iter_mut().find(|f| f.meta.id == id).ok_or_else(|| not_found("decision flow", id))?;
        if !flow.published_versions.is_empty() && flow.spec.key != spec.key {
            return Err(ValidationError::one("key", "cannot change the key of a published flow").into());
        }
        flow.spec = spec;
        flow.meta.touch();
        Ok(flow)
    }

    /// Removes a schema and its table; refused while a flow enriches from it (409).
    pub fn remove_schema(&mut self, id: &str) -> Result<(), CatalogError> {
        let i = self.schemas.iter().position(|s| s.meta.id == id).ok_or_else(|| not_found("schema", id))?;
        if self.flows.iter().any(|f| flow_mentions(f, id)) {
            return Err(CatalogError::Conflict(format!("schema `{id}` is used by a decision flow's enrich node")));
        }
        self.schemas.remove(i);
        self.tables.remove(i);
        Ok(())
    }

    /// What would silently stop applying if the offer or channel `id` went away: rules
    /// (JSON and rule-file) and contact policies scoped to it, flows whose inventory
    /// lists the offer, and score overrides and rule-file score blocks for the channel.
    pub fn dependants(&self, scope: Scope, id: &str) -> Vec<String> {
        let name = match scope {
            Scope::Offer => self.offers.iter().find(|o| o.meta.id == id).map(|o| &o.spec.name),
            Scope::Channel => self.channels.iter().find(|c| c.meta.id == id).map(|c| &c.spec.name),
            _ => return Vec::new(),
        };
        let names = |s: &str| s == id || name.is_some_and(|n| n == s);
        let mut out = Vec::new();
        for r in self.rules.iter().filter(|r| r.spec.scope == scope && r.spec.scope_id.as_deref().is_some_and(names)) {
            out.push(format!("qualification rule `{}`", r.spec.name));
        }
        for p in &self.plugins {
            for r in p.rules.iter().filter(|r| r.scope == scope && names(&r.scope_id)) {
                out.push(format!("rule `{}` in {}", r.name, p.name));
            }
            if scope == Scope::Channel {
                for sc in p.scores.iter().filter(|sc| sc.channel.as_deref().is_some_and(names)) {
                    out.push(format!("the score block at {}", sc.location));
                }
            }
        }
        // A policy names an entity by its scopes, or (mutual exclusion) in its offer group.
        let policy_names = |p: &&ContactPolicy| {
            let scoped = p
                .spec
                .scope_refs()
                .iter()
                .any(|s| s.scope.name() == scope.name() && s.scope_id.as_deref().is_some_and(names));
            let grouped = scope == Scope::Offer
                && p.spec.config["offerGroup"]
                    .as_array()
                    .is_some_and(|g| g.iter().filter_map(|v| v.as_str()).any(names));
            scoped || grouped
        };
        for p in self.policies.iter().filter(policy_names) {
            out.push(format!("contact policy `{}`", p.spec.name));
        }
        for f in &self.flows {
            if flow_depends_on(f, scope, &names) {
                out.push(format!("decision flow `{}`", f.spec.key));
            }
        }
        for j in self.journeys.iter().filter(|j| journey::names(j, scope, &names)) {
            out.push(format!("journey `{}`", j.spec.name));
        }
        out
    }

    /// Appends a new version equal to an old one and makes it the draft too.
    pub fn rollback(
        &mut self,
        flow_id: &str,
        version: u32,
        notes: Option<String>,
    ) -> Result<Arc<CompiledFlow>, CatalogError> {
        let i =
            self.flows.iter().position(|f| f.meta.id == flow_id).ok_or_else(|| not_found("decision flow", flow_id))?;
        let old = self.flows[i].published_versions.iter().find(|v| v.version == version).cloned().ok_or_else(|| {
            ValidationError::one("version", format!("decision flow has no published version {version}"))
        })?;
        let next = self.flows[i].published_versions.len() as u32 + 1;
        let compiled = self.compile_flow(&self.inputs(), &self.flows[i], &old.config_snapshot, next)?;
        let flow = &mut self.flows[i];
        let note = format!("Rollback to v{version}: {}", notes.unwrap_or_default());
        flow.published_versions.push(Arc::new(PublishedVersion {
            version: next,
            published_at: crate::ids::now_rfc3339(),
            notes: Some(note.trim_end_matches([' ', ':']).to_string()),
            config_snapshot: old.config_snapshot.clone(),
        }));
        flow.spec.draft_config = old.config_snapshot.clone();
        flow.status = FlowStatus::Active;
        flow.meta.touch();
        Ok(Arc::new(compiled))
    }

    /// Compiles the live (latest published) version of every published flow, keyed by
    /// flow key. Used after any change that live flows depend on, and on restart.
    pub fn compile_live(&self) -> (Vec<Arc<CompiledFlow>>, Vec<(String, ValidationError)>) {
        let mut live = Vec::new();
        let mut failed = Vec::new();
        let inputs = self.inputs();
        for flow in &self.flows {
            let Some(v) = flow.published_versions.last() else { continue };
            match self.compile_flow(&inputs, flow, &v.config_snapshot, v.version) {
                Ok(c) => live.push(Arc::new(c)),
                Err(e) => failed.push((flow.spec.key.clone(), e)),
            }
        }
        (live, failed)
    }

    /// Compiles a flow as it would decide without publishing anything: its draft, or
    /// one of its published versions (the version's config against today's offers,
    /// rules and channels), for dry runs and simulation.
    pub fn compile_candidate(&self, key: &str, which: FlowCandidate) -> Result<Arc<CompiledFlow>, CatalogError> {
        let flow = self
            .flows
            .iter()
            .find(|f| f.spec.key == key || f.meta.id == key)
            .ok_or_else(|| not_found("decision flow", key))?;
        let (config, version) = match which {
            FlowCandidate::Draft => (&flow.spec.draft_config, flow.published_versions.len() as u32 + 1),
            FlowCandidate::Version(n) => {
                let v = flow.published_versions.iter().find(|v| v.version == n).ok_or_else(|| {
                    let live = flow.published_versions.len();
                    ValidationError::one(
                        "flowVersion",
                        format!("decision flow `{key}` has versions 1 to {live}, not {n}"),
                    )
                })?;
                (&v.config_snapshot, n)
            }
        };
        Ok(Arc::new(self.compile_flow(&self.inputs(), flow, config, version)?))
    }

    /// Validates and compiles the flow's draft, appends it as the next version, and
    /// returns the compiled flow for the caller to swap in.
    pub fn publish(&mut self, flow_id: &str, notes: Option<String>) -> Result<Arc<CompiledFlow>, CatalogError> {
        let i =
            self.flows.iter().position(|f| f.meta.id == flow_id).ok_or_else(|| not_found("decision flow", flow_id))?;
        let draft = self.flows[i].spec.draft_config.clone();
        let version = self.flows[i].published_versions.len() as u32 + 1;
        let compiled = self.compile_flow(&self.inputs(), &self.flows[i], &draft, version)?;
        let flow = &mut self.flows[i];
        flow.published_versions.push(Arc::new(PublishedVersion {
            version,
            published_at: crate::ids::now_rfc3339(),
            notes,
            config_snapshot: draft,
        }));
        flow.status = FlowStatus::Active;
        flow.meta.touch();
        Ok(Arc::new(compiled))
    }

    /// Every rule the engine compiles: JSON qualification rules (lowered to the IR), then
    /// rule-language rules. Errors name a stored JSON rule whose condition no longer
    /// lowers (it was validated when created).
    pub fn rule_defs(&self) -> (Vec<RuleDef>, Vec<FieldError>) {
        let mut defs = Vec::new();
        let mut errors = Vec::new();
        for rule in self.active_rules() {
            match json_rule_def(rule) {
                Ok(def) => defs.push(def),
                Err(e) => errors.extend(e.0),
            }
        }
        defs.extend(self.plugins.iter().flat_map(|p| p.rules.iter().cloned()));
        (defs, errors)
    }

    pub fn score_defs(&self) -> impl Iterator<Item = &ScoreDef> {
        self.plugins.iter().flat_map(|p| p.scores.iter())
    }

    /// The tenant as the engine compiles against it, assembled once for every flow.
    pub fn inputs(&self) -> TenantInputs<'_> {
        let (rules, rule_errors) = self.rule_defs();
        TenantInputs {
            layout: self.layout(),
            schemas: self.schemas.iter().zip(&self.tables).map(|(s, t)| (s, t.clone())).collect(),
            offers: &self.offers,
            channels: &self.channels,
            policies: &self.policies,
            rules,
            rule_errors,
            scores: self.score_defs().collect(),
            counters: &self.counters,
        }
    }

    fn compile_flow(
        &self,
        inputs: &TenantInputs,
        flow: &DecisionFlow,
        draft: &crate::model::DraftConfig,
        version: u32,
    ) -> Result<CompiledFlow, ValidationError> {
        let mut compiled = engine::compile(inputs, &flow.meta.id, &flow.spec.key, draft, version)?;
        compiled.inputs = self.compile_inputs(&flow.meta.id, &flow.spec.key, draft, version).0;
        Ok(compiled)
    }

    /// What a rule file is checked against: this tenant's attributes, offers (with
    /// their categories), channels and flows.
    pub fn dsl_context(&self) -> Context {
        Context {
            layout: self.layout(),
            offers: self
                .offers
                .iter()
                .map(|o| (o.meta.id.clone(), o.spec.name.clone(), o.spec.category.clone()))
                .collect(),
            channels: self.channels.iter().map(|c| (c.meta.id.clone(), c.spec.name.clone())).collect(),
            flows: self.flows.iter().map(|f| f.spec.key.clone()).collect(),
        }
    }

    /// Checks a rule-language file against this tenant and, when it has no error,
    /// makes it the plugin `name` (replacing an older version). Returns the warnings, or
    /// every diagnostic when rejected; a rejected file changes nothing.
    pub fn put_plugin(&mut self, name: &str, source: &str) -> Result<Vec<Diagnostic>, Vec<Diagnostic>> {
        let checked = check_source(name, source, &self.dsl_context());
        if checked.has_errors() {
            return Err(checked.diagnostics);
        }
        let plugin =
            Plugin { name: name.to_string(), source: source.to_string(), rules: checked.rules, scores: checked.scores };
        self.set_plugin(plugin);
        Ok(checked.diagnostics)
    }

    /// Replaces (or adds) a checked plugin.
    pub fn set_plugin(&mut self, plugin: Plugin) {
        match self.plugins.iter_mut().find(|p| p.name == plugin.name) {
            Some(existing) => *existing = plugin,
            None => self.plugins.push(plugin),
        }
    }

    pub fn remove_plugin(&mut self, name: &str) -> Option<Plugin> {
        let i = self.plugins.iter().position(|p| p.name == name)?;
        Some(self.plugins.remove(i))
    }

    pub fn table(&self, schema_index: usize) -> &Arc<Table> {
        &self.tables[schema_index]
    }

    pub fn active_rules(&self) -> impl Iterator<Item = &QualificationRule> {
        self.rules.iter().filter(|r| r.spec.status == RuleStatus::Active)
    }
}

/// Whether a flow's draft or live version lists the offer in its inventory or has a
/// score override for the channel (`names` recognises its id and name).
fn flow_depends_on(flow: &DecisionFlow, scope: Scope, names: &dyn Fn(&str) -> bool) -> bool {
    let configs =
        std::iter::once(&flow.spec.draft_config).chain(flow.published_versions.last().map(|v| &v.config_snapshot));
    configs.into_iter().any(|c| {
        c.nodes.iter().any(|n| match (scope, n.kind.as_str()) {
            (Scope::Offer, "inventory") => {
                n.config["offerIds"].as_array().is_some_and(|ids| ids.iter().any(|i| i.as_str().is_some_and(names)))
            }
            (Scope::Channel, "score") => n.config["overrides"]
                .as_array()
                .is_some_and(|os| os.iter().any(|o| o["scope"] == "channel" && o["value"].as_str().is_some_and(names))),
            _ => false,
        })
    })
}

/// Whether a flow's draft or any published version enriches from a schema.
fn flow_mentions(flow: &DecisionFlow, schema_id: &str) -> bool {
    let configs =
        std::iter::once(&flow.spec.draft_config).chain(flow.published_versions.iter().map(|v| &v.config_snapshot));
    let needle = format!("\"{schema_id}\"");
    configs.into_iter().any(|c| c.nodes.iter().any(|n| n.kind == "enrich" && n.config.to_string().contains(&needle)))
}

/// Restoring stored state: entities come back with their ids and times, in creation
/// order, without re-running create-time checks (they passed when first stored).
impl Catalog {
    pub fn restore_schema(&mut self, schema: Schema) {
        self.schemas.push(schema);
        self.tables.push(Arc::new(Table::new()));
    }

    /// Restores a stored row; a row that no longer fits its schema is skipped and reported.
    pub fn restore_row(&mut self, schema_id: &str, row: &serde_json::Value) -> Result<(), CatalogError> {
        let (schema, table) = self.schema(schema_id)?;
        let (key, values) = schema.parse_row("row", row)?;
        table.insert(key.into(), values);
        Ok(())
    }

    /// After the entities were reloaded from the store (a change another cluster node
    /// made): every schema `old` had keeps its customer table, rows included, and the
    /// learned counters stay shared. Returns the ids of the schemas that are new.
    pub fn keep_tables(&mut self, old: &Catalog) -> Vec<String> {
        self.counters = old.counters.clone();
        let mut fresh = Vec::new();
        for (schema, table) in self.schemas.iter().zip(self.tables.iter_mut()) {
            match old.schemas.iter().position(|o| o.meta.id == schema.meta.id) {
                Some(j) => *table = old.tables[j].clone(),
                None => fresh.push(schema.meta.id.clone()),
            }
        }
        fresh
    }

    /// Sorts restored entities into creation order.
    pub fn finish_restore(&mut self) {
        fn order<T>(items: &mut [T], meta: impl Fn(&T) -> &Meta) {
            items.sort_by(|a, b| (&meta(a).created_at, &meta(a).id).cmp(&(&meta(b).created_at, &meta(b).id)));
        }
        let mut paired: Vec<(Schema, Arc<Table>)> = self.schemas.drain(..).zip(self.tables.drain(..)).collect();
        paired.sort_by(|a, b| (&a.0.meta.created_at, &a.0.meta.id).cmp(&(&b.0.meta.created_at, &b.0.meta.id)));
        (self.schemas, self.tables) = paired.into_iter().unzip();
        order(&mut self.offers, |o| &o.meta);
        order(&mut self.rules, |r| &r.meta);
        order(&mut self.channels, |c| &c.meta);
        order(&mut self.flows, |f| &f.meta);
        order(&mut self.journeys, |j| &j.meta);
    }
}

/// Lowers a stored JSON qualification rule into the shared rule definition.
fn json_rule_def(rule: &QualificationRule) -> Result<RuleDef, ValidationError> {
    let prefix = format!("qualification rule `{}` ({})", rule.spec.name, rule.meta.id);
    let named = |ValidationError(e)| {
        ValidationError(e.into_iter().map(|e| FieldError::new(format!("{prefix}.{}", e.path), e.message)).collect())
    };
    let cond = rule.spec.validate().map_err(named)?;
    let expr = json::lower(&cond.attribute, cond.operator, cond.value.as_ref())
        .map_err(|e| ValidationError::one(format!("{prefix}.config.{}", e.field), e.message))?;
    Ok(RuleDef {
        id: rule.meta.id.as_str().into(),
        name: rule.spec.name.as_str().into(),
        scope: rule.spec.scope,
        scope_id: rule.spec.scope_id.clone().unwrap_or_default(),
        stage: rule.spec.stage,
        multiplier: cond.multiplier.unwrap_or(crate::model::rule::DEFAULT_MATCH_MULTIPLIER),
        priority: rule.spec.priority,
        expr,
        literals: Literals::Lenient,
        origin: RuleOrigin::Json { attribute: cond.attribute, operator: cond.operator, expected: cond.value },
    })
}

/// A tenant description for `arbiter check --context FILE`: the same bodies the API
/// takes for schemas, offers and channels, and flow keys (see `tests/data/context.json`).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fixture {
    #[serde(default, rename = "about")]
    _about: Option<String>,
    #[serde(default)]
    schemas: Vec<SchemaSpec>,
    #[serde(default)]
    offers: Vec<OfferSpec>,
    #[serde(default)]
    channels: Vec<ChannelSpec>,
    #[serde(default)]
    flows: Vec<String>,
}

/// The rule-file check context of a fixture file's JSON.
pub fn fixture_context(json: &[u8]) -> Result<Context, CatalogError> {
    let fixture: Fixture = crate::model::parse_json(json)?;
    let mut catalog = Catalog::new();
    for s in fixture.schemas {
        catalog.add_schema(s)?;
    }
    for o in fixture.offers {
        catalog.add_offer(o)?;
    }
    for c in fixture.channels {
        catalog.add_channel(c)?;
    }
    let mut ctx = catalog.dsl_context();
    ctx.flows = fixture.flows;
    Ok(ctx)
}
