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
    LoadRows {
        schema_id: String,
        rows: Vec<Value>,
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
    /// An outcome for a logged decision; replayed idempotency keys return the first result.
    /// Boxed: the body carries the platform's optional fields, and is much larger than
    /// the other commands.
    Respond(Box<super::interaction::RespondInput>),
}

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
    Versions {
        flow_id: String,
    },
    Plugin(String),
    Plugins,
}

impl Message for Query {
    type Result = Result<Value, TenantError>;
}
