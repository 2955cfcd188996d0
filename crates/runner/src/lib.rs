//! The stage runner: decides which stages are stale, runs them into a
//! content-addressed store, and explains every decision.
//!
//! A stage's key is blake3 over its name, code version, canonical parameters
//! and the content digests of its inputs ([`key::stage_key`]). A result is
//! reused when an entry with that key exists in the store and its outputs
//! still match their recorded digests; otherwise the stage runs.

mod chain;
mod decide;
pub mod digest;
mod execute;
mod fsutil;
pub mod key;
pub mod manifest;
mod plan;
mod run;
mod runlock;
pub mod stage;
pub mod store;

pub use chain::ChainBreak;
pub use fsutil::write_atomic;
pub use plan::Pipeline;
pub use run::{Force, Outcome, RunOptions, StageReport};
pub use runlock::RunLock;
pub use stage::{Input, Preview, RunContext, Stage};
