//! Messages to a tenant actor. Commands change state and reply once the change is
//! durable; queries read the catalog. Replies are the entities' JSON, as the API
//! returns them.

use actix::Message;
use serde_json::Value;

use super::TenantError;
use crate::catalog::{EntityKind, LoadMode};
use crate::model::policy::ContactPolicySpec;
use crate::model::{ChannelSpec, FlowSpec, OfferSpec, RuleSpec, SchemaSpec};

#[derive(Debug)]
pub enum Command {
    CreateSchema(SchemaSpec),
    UpdateSchema {
        id: String,
        spec: SchemaSpec,
    },
    /// Each row's JSON as sent: parsed one at a time on the actor (`json_rows` makes them
    /// from values).
    LoadRows {
        schema_id: String,
        rows: Vec<bytes::Bytes>,
        mode: LoadMode,
    },
    CreateOffer(OfferSpec),
    UpdateOffer {
        id: String,
        spec: OfferSpec,
    },
    CreateRule(RuleSpec),
    UpdateRule {
        id: String,
        spec: RuleSpec,
    },
    CreateChannel(ChannelSpec),
    UpdateChannel {
        id: String,
        spec: ChannelSpec,
    },
    CreatePolicy(ContactPolicySpec),
    UpdatePolicy {
        id: String,
        spec: ContactPolicySpec,
    },
    CreateFlow(FlowSpec),
    UpdateFlow {
        id: String,
        spec: FlowSpec,
    },
    Delete {
        kind: EntityKind,
        id: String,
    },
    Publish {
        id: String,
        notes: Option<String>,
    },
    Rollback {
        id: String,
        version: u32,
        notes: Option<String>,
    },
    /// A rule file from the API (persisted) or from the plugins folder (not persisted:
    /// the folder is its source of truth).
    PutPlugin {
        name: String,
        source: String,
        from_disk: bool,
    },
    DeletePlugin {
        name: String,
        from_disk: bool,
    },
    /// A `PUT`: the fields given replace the stored entity's, the rest stay. The merge
    /// happens here, on the actor, so two concurrent patches to different fields both
    /// land. With `if_version` (`If-Match`, or `version` in the body) the patch applies
    /// only to that version of the entity, else it is refused (412).
    Patch {
        kind: EntityKind,
        id: String,
        /// A JSON merge patch: the fields to change, as the client sent them.
        changes: serde_json::Map<String, Value>,
        if_version: Option<u64>,
    },
}

/// Rows for `Command::LoadRows` from JSON values.
pub fn json_rows(rows: &[Value]) -> Vec<bytes::Bytes> {
    rows.iter().map(|r| serde_json::to_vec(r).expect("JSON values serialise").into()).collect()
}

/// Fields a stored entity carries besides its spec; a `PUT` body may send them back
/// (`version` then says which version the change is for; the others are ignored).
pub const STORED_FIELDS: &[&str] = &["id", "version", "createdAt", "updatedAt"];
/// A flow's: its status and versions change only by publishing.
pub const STORED_FLOW_FIELDS: &[&str] =
    &["id", "version", "createdAt", "updatedAt", "status", "publishedVersions", "liveVersion", "versionCount"];

impl Message for Command {
    type Result = Result<Value, TenantError>;
}

#[derive(Debug)]
pub enum Query {
    /// Every entity of a kind, newest first.
    List(EntityKind),
    Get(EntityKind, String),
    /// Rows of a schema, in key order.
    Rows {
        schema_id: String,
        limit: usize,
        offset: usize,
    },
    /// A page of a flow's versions, oldest first: up to `limit` after version `after`.
    Versions {
        flow_id: String,
        limit: usize,
        after: Option<u32>,
    },
    Plugin(String),
    Plugins,
    /// Checks a rule file against the current catalog; installs nothing.
    CheckPlugin {
        name: String,
        source: String,
    },
}

impl Message for Query {
    type Result = Result<Value, TenantError>;
}

// The replies that are not entities. The actor serialises these types into its JSON
// reply, and the OpenAPI document is generated from the same types, so the two agree.

/// `POST|PUT /schemas/{id}/data`: how many rows were written (`inserted` for a POST,
/// `upserted` for a PUT).
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadReply {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inserted: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upserted: Option<usize>,
    pub table_name: String,
}

/// `GET /schemas/{id}/data`: one page of rows in key order.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct RowsPage {
    pub total: usize,
    pub limit: usize,
    pub offset: usize,
    /// Each row as column name → value.
    pub rows: Vec<serde_json::Map<String, Value>>,
}

/// `GET /decision-flows/versions`.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionList {
    pub flow_id: String,
    pub versions: Vec<VersionSummary>,
    pub pagination: VersionPage,
}

/// Where the next page of versions starts.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionPage {
    pub limit: usize,
    /// The `cursor` for the next page (the last version of this one); null on the last page.
    pub cursor: Option<String>,
    pub has_more: bool,
    /// Versions in all.
    pub total: usize,
}

#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionSummary {
    pub version: u32,
    pub published_at: String,
    pub notes: Option<String>,
    pub summary: VersionShape,
}

#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionShape {
    pub node_count: usize,
    /// The score node's `method`, as configured (`null` without a score node).
    pub scoring_method: Value,
}

/// An item of `GET /plugins`.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct PluginSummary {
    pub name: String,
    pub rules: usize,
}

/// `GET /plugins/{name}`.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct PluginSource {
    pub name: String,
    pub source: String,
    pub rules: usize,
    pub scores: usize,
}

/// `PUT /plugins/{name}`: the installed file and its warnings.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct PluginInstalled {
    pub name: String,
    pub rules: usize,
    pub scores: usize,
    pub warnings: Vec<crate::dsl::error::Located>,
}

/// `POST /plugins/{name}/check`: the file checked against the tenant, installed nowhere.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct PluginCheck {
    pub name: String,
    /// No errors (warnings allowed).
    pub ok: bool,
    pub rules: usize,
    pub scores: usize,
    pub diagnostics: Vec<crate::dsl::error::Located>,
}

/// `POST /respond`: the recorded response. A replayed idempotency key returns the first
/// reply with `duplicate: true`.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct RespondReply {
    #[serde(flatten)]
    pub response: super::interaction::Response,
    pub recorded: bool,
    pub duplicate: bool,
}
