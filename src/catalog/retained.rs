//! What a compiled flow was compiled from, as one self-contained document: the tenant's
//! schemas (without rows), offers, rules, channels, policies, flows, rule files, and the
//! config and version of the flow itself. Its SHA-256 digest names the compiled flow's
//! inputs ([`CompiledFlow::inputs`]); a decision's receipt names the digest, and a replay
//! compiles the document again into the same flow, whatever changed since.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{Catalog, CatalogError};
use crate::engine::CompiledFlow;
use crate::model::flow::{FlowSpec, FlowStatus};
use crate::model::policy::ContactPolicy;
use crate::model::{Channel, DecisionFlow, DraftConfig, Meta, Offer, QualificationRule, Schema, ValidationError};

/// The first 16 bytes of a SHA-256: what names retained inputs and models.
pub type Digest = [u8; 16];

pub fn digest(bytes: &[u8]) -> Digest {
    Sha256::digest(bytes)[..16].try_into().expect("16 of 32 bytes")
}

pub fn hex(d: &Digest) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// A compiled flow's inputs (borrowed to write, owned to read back).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompileInputs<'a> {
    flow_id: std::borrow::Cow<'a, str>,
    flow_key: std::borrow::Cow<'a, str>,
    version: u32,
    config: std::borrow::Cow<'a, DraftConfig>,
    schemas: std::borrow::Cow<'a, [Schema]>,
    offers: std::borrow::Cow<'a, [Offer]>,
    rules: std::borrow::Cow<'a, [QualificationRule]>,
    channels: std::borrow::Cow<'a, [Channel]>,
    policies: std::borrow::Cow<'a, [ContactPolicy]>,
    /// The flows' keys: what rule files are checked against. (Not the flows: their
    /// meta and drafts change without changing what this flow compiles to.)
    flow_keys: Vec<std::borrow::Cow<'a, str>>,
    /// Rule files, name and source, in load order (rule order follows it).
    plugins: Vec<(std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>)>,
}

impl Catalog {
    /// The document of what `flow_id` at `version` with `config` compiles from in this
    /// catalog, and its digest.
    pub fn compile_inputs(
        &self,
        flow_id: &str,
        flow_key: &str,
        config: &DraftConfig,
        version: u32,
    ) -> (Digest, Vec<u8>) {
        use std::borrow::Cow::Borrowed;
        let inputs = CompileInputs {
            flow_id: Borrowed(flow_id),
            flow_key: Borrowed(flow_key),
            version,
            config: Borrowed(config),
            schemas: Borrowed(&self.schemas),
            offers: Borrowed(&self.offers),
            rules: Borrowed(&self.rules),
            channels: Borrowed(&self.channels),
            policies: Borrowed(&self.policies),
            flow_keys: self.flows.iter().map(|f| Borrowed(&*f.spec.key)).collect(),
            plugins: self.plugins.iter().map(|p| (Borrowed(&*p.name), Borrowed(&*p.source))).collect(),
        };
        let bytes = serde_json::to_vec(&inputs).expect("entities serialise");
        (digest(&bytes), bytes)
    }

    /// The document `flow` was compiled from, when this catalog still has its flow and
    /// version (live, or the next one, a draft being published).
    pub fn inputs_of(&self, flow: &CompiledFlow) -> Option<(Digest, Vec<u8>)> {
        let f = self.flows.iter().find(|f| *f.meta.id == *flow.flow_id)?;
        let config = match f.published_versions.iter().find(|v| v.version == flow.version) {
            Some(v) => &v.config_snapshot,
            None => &f.spec.draft_config,
        };
        Some(self.compile_inputs(&f.meta.id, &f.spec.key, config, flow.version))
    }
}

/// A flow that is only its key, as rule files see the tenant's other flows.
fn key_only(key: &str) -> DecisionFlow {
    DecisionFlow {
        meta: Meta { id: key.to_string(), version: 1, created_at: String::new(), updated_at: String::new() },
        spec: FlowSpec {
            key: key.to_string(),
            name: key.to_string(),
            description: None,
            draft_config: Default::default(),
        },
        status: FlowStatus::Draft,
        published_versions: Vec::new(),
    }
}

/// Compiles a retained document again: a catalog of its entities (no rows, no counters:
/// a replay reads those from the decision's recording), then the flow.
pub fn compile_retained(bytes: &[u8]) -> Result<CompiledFlow, CatalogError> {
    let inputs: CompileInputs<'static> = serde_json::from_slice(bytes)
        .map_err(|e| ValidationError::one("inputs", format!("retained inputs do not read back: {e}")))?;
    let mut catalog = Catalog::new();
    for schema in inputs.schemas.into_owned() {
        catalog.restore_schema(schema);
    }
    catalog.offers = inputs.offers.into_owned();
    catalog.rules = inputs.rules.into_owned();
    catalog.channels = inputs.channels.into_owned();
    catalog.policies = inputs.policies.into_owned();
    catalog.flows = inputs.flow_keys.iter().map(|key| key_only(key)).collect();
    for (name, source) in &inputs.plugins {
        catalog.put_plugin(name, source).map_err(|diags| {
            let first = diags.first().map(|d| d.message.clone()).unwrap_or_default();
            ValidationError::one("inputs", format!("retained rule file {name} no longer checks: {first}"))
        })?;
    }
    let inputs_digest = digest(bytes);
    let mut flow =
        crate::engine::compile(&catalog.inputs(), &inputs.flow_id, &inputs.flow_key, &inputs.config, inputs.version)?;
    flow.inputs = inputs_digest;
    Ok(flow)
}
