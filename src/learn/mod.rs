//! Learning and measurement (holdout statistics, uplift estimators).
//!
//! Module map — math and in-memory counters; no I/O (the tenant runtime feeds them):
//! * [`stats`] — holdout experiment statistics from per-arm totals: conversion rates,
//!   uplift, pooled z-test, Wilson and Newcombe intervals, incremental revenue.
//! * [`propensity`] — outcome counters (`CounterBank`, atomics shared with compiled
//!   flows) and the adaptive propensity rule.
//! * [`normal`] — `erfc`, the standard normal CDF and two-sided p-values.
//! * [`uplift`] — T-, X- and DR-learner uplift (CATE) models for one offer, the choice
//!   between them on held-out rows, and segments.
//! * [`logistic`] — logistic (Newton/IRLS) and ridge regression the learners are built from.
//! * [`linalg`] — dense row-major matrix and Cholesky solver.
//! * [`rng`] — deterministic splitmix64 (simulations, tests, benchmarks, and the seeded
//!   Thompson draws of live decisions).

pub mod linalg;
pub mod logistic;
pub mod normal;
pub mod propensity;
pub mod rng;
pub mod stats;
pub mod uplift;
