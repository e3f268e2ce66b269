//! Tenants at run time. Each tenant has one actix actor ([`actor::TenantActor`]) that
//! owns its catalog and is its only writer: every mutation goes through the mailbox,
//! is persisted, and — when it changes what flows decide — is compiled off the request
//! path and made live with one atomic swap of an immutable [`TenantSnapshot`].
//! `/recommend` reads the current snapshot through `ArcSwap` without locks and never
//! waits on a mailbox; a request that started on the old snapshot finishes on it.
//!
//! * `actor` — the single writer: commands, persistence, recompile and swap.
//! * `command` — the messages the actor takes, each with its typed reply.
//! * `interaction` — the decision log, outcome types and responses.
//! * `respond` — recording a response: off the actor, one append, idempotent.
//! * `retained` — the compile inputs and model sets receipts name, kept for replays.
//! * `replay` — a logged decision decided again from its receipt, and compared.
//! * `idempotency` — the recent idempotency keys and where their responses are.
//! * `checkpoint` — the derived state saved at a log position, restored at start.
//! * `experiment` — holdout experiment aggregates, kept as decisions and outcomes happen.
//! * `learning` — counters, contacts and uplift models shared with the read path.
//! * `impressions` — each offer's impressions across customers per period (budgets).
//! * `measure` — the experiment report and uplift training from a bounded sample of the log.
//! * `journeys` — enrollments and their walk through a journey's steps; the scheduler.
//! * `qini` — per offer, the uplift models' segments and Qini curve over the training sample.
//! * `registry` — all tenants, the actix System thread, restore on start.
//! * `persist` — entity ↔ storage records and rebuilding a catalog from them.
//! * `plugins` — the plugins folder: load at start, watch, hot reload.

pub mod actor;
pub mod checkpoint;
pub mod command;
pub mod experiment;
pub mod idempotency;
pub mod impressions;
pub mod interaction;
pub mod journeys;
pub mod learning;
pub mod measure;
pub mod persist;
pub mod plugins;
pub mod qini;
pub mod registry;
pub mod replay;
pub mod respond;
pub mod retained;
pub mod simulate;
pub mod views;

use std::collections::HashMap;
use std::sync::Arc;

use crate::catalog::CatalogError;
use crate::engine::CompiledFlow;
use crate::store::StoreError;

pub use registry::{Registry, TenantHandle};

/// What requests read: the live compiled flows of one tenant, all compiled from one
/// catalog state, so a decision never mixes the offers of one version with the rules
/// of another.
#[derive(Debug, Default)]
pub struct TenantSnapshot {
    /// Live flows by flow key.
    pub flows: HashMap<Box<str>, Arc<CompiledFlow>>,
    /// Keys of flows that exist but have never been published: a recommend for one is
    /// a 409 ("publish it"), for any other unknown key a 404 — decided here, without
    /// asking the actor.
    pub unpublished: Arc<std::collections::HashSet<Box<str>>>,
    /// Increases with every swap.
    pub generation: u64,
}

/// How a `/recommend` is to be run.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecommendOptions {
    /// Record why every offer left and every factor of each score.
    pub explain: bool,
    /// Decide and record nothing (`?dryRun=true`).
    pub dry_run: bool,
}

/// Why a recommendation could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RecommendError {
    #[error(transparent)]
    Invalid(#[from] crate::model::ValidationError),
    #[error("decision flow `{0}` not found")]
    UnknownFlow(String),
    #[error("decision flow `{0}` has no published version; publish it with POST /api/v1/decision-flows/publish")]
    Unpublished(String),
}

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// A rule file with diagnostics; the text is rendered with locations.
    #[error("{name} has errors:\n{rendered}")]
    Plugin { name: String, rendered: String, diagnostics: Vec<crate::dsl::error::Located> },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A conditional change for a version the entity is no longer at.
    #[error("{0}")]
    VersionMismatch(String),
    #[error("tenant is unavailable: {0}")]
    Unavailable(String),
    /// A bug: the command panicked (and changed nothing).
    #[error("{0}")]
    Internal(String),
}
