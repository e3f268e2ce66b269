//! arbiter — a real-time decisioning runtime ("next best offer").
//!
//! Module map (mirrored in ARCHITECTURE.md):
//! * [`model`] — the JSON entities clients send and arbiter stores (schemas, offers,
//!   qualification rules, channels, decision flows) and their validation.
//! * [`rules`] — the one rule IR: expression tree, checker (names → slots, types), and
//!   the closure compiler every rule runs through.
//! * [`catalog`] — one tenant's entities and customer rows; publishes flows.
//! * [`engine`] — compiles a flow into an immutable plan and runs decisions on it.
//! * [`dsl`] — the rule language: parser, checker, diagnostics.
//! * [`cli_check`] — `arbiter check`.
//! * [`demo`] — the cross-sell tutorial built in-process (`arbiter demo`).
//! * [`learn`] — holdout statistics, uplift (CATE) estimators, propensity counters.
//! * [`store`] — the storage interface and sled behind it (group commit).
//! * [`tenant`] — per-tenant actors, snapshots, persistence, plugins folder.
//! * [`http`] — HTTP plumbing: server loop, router, auth, bodies, pagination, metrics.
//! * [`api`] — the endpoints.
//! * [`serve`] — `arbiter serve`.
//! * [`ids`] — ids, hashing and timestamps.

#![forbid(unsafe_code)]

pub mod api;
pub mod catalog;
pub mod cli_check;
pub mod cli_simulate;
pub mod client;
pub mod cluster;
pub mod demo;
pub mod dsl;
pub mod engine;
pub mod http;
pub mod ids;
pub mod learn;
pub mod model;
pub mod rules;
pub mod serve;
pub mod store;
pub mod tenant;
