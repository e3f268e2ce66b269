//! Learning and measurement (holdout statistics, uplift estimators).
