//! The concrete pipeline: its configuration file, the adapters that turn
//! each stage library into a [`runner::Stage`], and the CLI.

pub mod cli;
pub mod compare;
pub mod config;
pub mod embed_bench;
pub mod evaluate;
pub mod feature_gc;
pub mod predict;
pub mod runs;
pub mod served;
mod stages;
pub mod sweep;
pub mod trained;

pub use stages::{ModelFetch, build_pipeline, current_report_params};
