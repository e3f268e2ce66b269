//! Messages to a tenant actor, each with its own typed reply. Commands change state and
//! reply once the change is durable; queries read the catalog. The entity messages are
//! generic over [`Entity`], so every entity kind gets create, patch, delete, list and get
//! from its one trait impl.

use std::marker::PhantomData;

use actix::Message;
use serde_json::Value;

use super::TenantError;
use crate::catalog::{Entity, LoadMode};
use crate::model::flow::FlowView;

type Reply<T> = Result<T, TenantError>;

/// Creates an entity from its spec.
pub struct Create<E: Entity>(pub E::Spec);

/// A `PUT`: the fields given replace the stored entity's, the rest stay. The merge
/// happens on the actor, so two concurrent patches to different fields both land. With
/// `if_version` (`If-Match`, or `version` in the body) the patch applies only to that
/// version of the entity, else it is refused (412).
pub struct Patch<E> {
    pub id: String,
    /// A JSON merge patch: the fields to change, as the client sent them.
    pub changes: serde_json::Map<String, Value>,
    pub if_version: Option<u64>,
    pub kind: PhantomData<fn() -> E>,
}

impl<E> Patch<E> {
    pub fn new(id: impl Into<String>, changes: serde_json::Map<String, Value>, if_version: Option<u64>) -> Self {
        Patch { id: id.into(), changes, if_version, kind: PhantomData }
    }
}

/// Deletes an entity; refused (409) while something depends on it.
pub struct Delete<E>(pub String, pub PhantomData<fn() -> E>);

impl<E> Delete<E> {
    pub fn new(id: impl Into<String>) -> Self {
        Delete(id.into(), PhantomData)
    }
}

/// Every entity of a kind, in listing order.
pub struct List<E>(pub PhantomData<fn() -> E>);

impl<E> List<E> {
    pub fn new() -> Self {
        List(PhantomData)
    }
}

impl<E> Default for List<E> {
    fn default() -> Self {
        List::new()
    }
}

/// One entity by id.
pub struct Get<E>(pub String, pub PhantomData<fn() -> E>);

impl<E> Get<E> {
    pub fn new(id: impl Into<String>) -> Self {
        Get(id.into(), PhantomData)
    }
}

impl<E: Entity> Message for Create<E> {
    type Result = Reply<E::View>;
}
impl<E: Entity> Message for Patch<E> {
    type Result = Reply<E::View>;
}
impl<E: Entity> Message for Delete<E> {
    type Result = Reply<()>;
}
impl<E: Entity> Message for List<E> {
    type Result = Reply<Vec<E::View>>;
}
impl<E: Entity> Message for Get<E> {
    type Result = Reply<E::View>;
}

/// Rows for a schema, each row's JSON as sent: parsed one at a time on the actor
/// (`json_rows` makes them from values).
pub struct LoadRows {
    pub schema_id: String,
    pub rows: Vec<bytes::Bytes>,
    pub mode: LoadMode,
}

/// Rows for `LoadRows` from JSON values.
pub fn json_rows(rows: &[Value]) -> Vec<bytes::Bytes> {
    rows.iter().map(|r| serde_json::to_vec(r).expect("JSON values serialise").into()).collect()
}

/// Publishes a flow's draft as its next version.
pub struct Publish {
    pub id: String,
    pub notes: Option<String>,
}

/// Publishes an old version again, as the next version.
pub struct Rollback {
    pub id: String,
    pub version: u32,
    pub notes: Option<String>,
}

/// A rule file from the API (persisted) or from the plugins folder (not persisted: the
/// folder is its source of truth).
pub struct PutPlugin {
    pub name: String,
    pub source: String,
    pub from_disk: bool,
}

/// Records another cluster node wrote for this tenant, now in this node's store: make
/// them live (rows into their tables; anything else reloads the entities), then run
/// `then` (the cluster marks the change applied), before the next command.
pub struct Replicated {
    pub ops: Vec<crate::store::Op>,
    pub then: Box<dyn FnOnce() + Send>,
}

impl Message for Replicated {
    type Result = Reply<()>;
}

pub struct DeletePlugin {
    pub name: String,
    pub from_disk: bool,
}

impl Message for LoadRows {
    type Result = Reply<LoadReply>;
}
impl Message for Publish {
    type Result = Reply<FlowView>;
}
impl Message for Rollback {
    type Result = Reply<FlowView>;
}
impl Message for PutPlugin {
    type Result = Reply<PluginInstalled>;
}
impl Message for DeletePlugin {
    type Result = Reply<()>;
}

/// Rows of a schema, in key order.
pub struct Rows {
    pub schema_id: String,
    pub limit: usize,
    pub offset: usize,
}

/// A page of a flow's versions, oldest first: up to `limit` after version `after`.
pub struct Versions {
    pub flow_id: String,
    pub limit: usize,
    pub after: Option<u32>,
}

/// One published version of a flow, with its config.
pub struct VersionConfig {
    pub flow_id: String,
    pub version: u32,
}

/// One rule file's source.
pub struct Plugin(pub String);

/// A flow's draft or one of its versions compiled, publishing nothing (dry runs,
/// simulation). `flow` is a key or id.
pub struct CompileCandidate {
    pub flow: String,
    pub which: crate::catalog::FlowCandidate,
}

/// Every rule file.
pub struct Plugins;

/// The conflicts among the active contact policies (`POST /policy-conflicts/analyze`).
pub struct AnalyzePolicies;

/// Checks a rule file against the current catalog; installs nothing.
pub struct CheckPlugin {
    pub name: String,
    pub source: String,
}

impl Message for Rows {
    type Result = Reply<RowsPage>;
}
impl Message for Versions {
    type Result = Reply<VersionList>;
}
impl Message for VersionConfig {
    type Result = Result<crate::model::flow::PublishedVersion, TenantError>;
}
impl Message for Plugin {
    type Result = Reply<PluginSource>;
}
impl Message for CompileCandidate {
    type Result = Reply<std::sync::Arc<crate::engine::CompiledFlow>>;
}
impl Message for Plugins {
    type Result = Reply<Vec<PluginSummary>>;
}
impl Message for AnalyzePolicies {
    type Result = Reply<crate::catalog::conflicts::ConflictReport>;
}
impl Message for CheckPlugin {
    type Result = Reply<PluginCheck>;
}

// The replies that are not entities. The handlers serialise these types, and the OpenAPI
// document is generated from the same types, so the two agree.

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
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct RespondReply {
    #[serde(flatten)]
    pub response: super::interaction::Response,
    pub recorded: bool,
    pub duplicate: bool,
}
