//! The rule IR and its one evaluator.
//!
//! Pipeline: a front-end builds an [`ir::Expr`] (`json` for platform JSON rules, `dsl`
//! for the rule language) → [`check`] resolves names to slots in a [`layout::Layout`]
//! and assigns types → [`compile`] builds closures over [`compile::Env`].
//!
//! Three-valued logic: a missing attribute makes a comparison *unknown* (`None`), and
//! `and`/`or`/`not` follow Kleene's rules. A qualification rule removes an offer only
//! when its condition is definitely false, which is the platform's "a missing attribute
//! passes" for single conditions and composes the same way for compound ones.

pub mod check;
pub mod compile;
pub mod ir;
pub mod json;
pub mod layout;
pub mod value;

pub use check::{CheckError, Checker, Literals, Typed};
pub use compile::{BoolFn, Compiler, Env, NumFn, OfferFacts};
pub use ir::{Expr, Namespace, Path, Span};
pub use layout::Layout;
pub use value::{Type, Value};
