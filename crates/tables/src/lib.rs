//! Parquet schemas of every artifact, in one place, and the only code that
//! reads or writes them.
//!
//! Every file is written deterministically (fixed `created_by`, no
//! timestamps, rows in the order given) so that equal content gives equal
//! bytes and the stage runner's early cutoff works.

pub mod audit;
pub mod encoded;
pub mod feature_chunks;
pub mod features;
mod io;
pub mod splits;
pub mod sweep;
pub mod task_wire;
pub mod training;

pub use io::{Provenance, metadata_value, read_metadata, row_count};
