//! The rule language front-end: `parse` (pest, text → `ast`), `check` (names,
//! references and types against the tenant → `RuleDef`s and `ScoreDef`s in the shared
//! IR, `defs`), `error` (diagnostics and their rendering). Compilation is the engine's: rules
//! from this language and from JSON run through the same closure compiler.

pub mod ast;
pub mod check;
pub mod defs;
pub mod error;
pub mod parse;

pub use check::{check_source, check_syntax, Checked, Context};
pub use defs::{RuleDef, RuleOrigin, ScoreDef, ScoreDefBody, FACTORS};
pub use error::{Diagnostic, Severity};
