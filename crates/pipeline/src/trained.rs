//! The results that trained the current head. `predict` and `evaluate` read
//! every setting (tokenizer, model graph, `max_len`, pooling) from them, so
//! they must form one chain: the head's recorded input digests equal the
//! current embed outputs, whose inputs equal encode's and model's outputs,
//! and so on back to ingest ([`runner::Pipeline::chain_break`]). A partial
//! run (`--until encode --set encode.max_len=32`) moves the encode result on
//! without the head; the chain then breaks at embed, and using the links as
//! they are would mix two configurations in silence.

use std::path::Path;

use anyhow::{Result, bail};
use runner::ChainBreak;
use runner::manifest::LockFile;

/// The lock entries of the head and everything it was trained from,
/// refused with what to run if they do not form one chain.
pub fn trained_chain(pipeline: &runner::Pipeline, artifacts: &Path) -> Result<LockFile> {
    current_chain(pipeline, artifacts, "head")
}

/// The lock entries of `stage` and everything upstream of it (`serve`:
/// the export), refused with what to run if they do not form one chain.
pub fn current_chain(
    pipeline: &runner::Pipeline,
    artifacts: &Path,
    stage: &str,
) -> Result<LockFile> {
    // Refuses a link in the store, as every command does.
    runner::store::Store::open_read_only(artifacts)?;
    let lock = LockFile::load(&artifacts.join("pipeline.lock"))?;
    let shown = artifacts.display();
    match pipeline.chain_break(artifacts, &lock, stage)? {
        None => Ok(lock),
        Some(ChainBreak::Missing { stage }) => bail!(
            "the pipeline has not been run in {shown} (no {stage} result); run `cargo xtask run-pipeline` first"
        ),
        Some(ChainBreak::Unlinked { stage, key }) => bail!(
            "{shown}/{stage} does not link to the {stage} result pipeline.lock names (.store/{stage}/{key}); \
             run `cargo xtask run-pipeline` to restore it"
        ),
        Some(ChainBreak::Stale { stage, upstream }) => bail!(
            "the {stage} result in {shown} was made from an earlier {upstream} result, not the \
             current one ({upstream} ran again since, e.g. with --until); using it now \
             would mix two configurations. Run `cargo xtask run-pipeline` to bring \
             {stage} and what follows it up to date"
        ),
    }
}
