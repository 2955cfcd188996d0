//! The results that trained the current head, found by following the chain
//! of digests in `pipeline.lock`: the head's input digests are the embed
//! result's output digests, whose inputs are encode's and model's outputs,
//! and so on back to ingest. `predict` and `evaluate` read every setting
//! (tokenizer, model graph, `max_len`, pooling) from this chain only.
//! A partial run (`--until encode --set encode.max_len=32`) moves the
//! encode result on without the head; the chain then breaks at embed, and
//! using the links as they are would mix two configurations in silence.

use std::path::Path;

use anyhow::{Result, bail};
use runner::manifest::{LockFile, Manifest};

/// The stages whose results a prediction uses, upstream first.
pub const PREDICTION_STAGES: [&str; 5] = ["ingest", "model", "encode", "embed", "head"];

/// The lock entries of [`PREDICTION_STAGES`], checked to form one chain and
/// to be what `artifacts/<stage>` links to.
pub fn trained_chain(artifacts: &Path) -> Result<LockFile> {
    let lock = LockFile::load(&artifacts.join("pipeline.lock"))?;
    for stage in PREDICTION_STAGES {
        let Some(entry) = lock.stages.get(stage) else {
            bail!(
                "the pipeline has not been run in {} (no {stage} result); run `cargo xtask run-pipeline` first",
                artifacts.display()
            );
        };
        check_link(artifacts, stage, entry)?;
        for (input, record) in &entry.inputs {
            let Some((upstream, output)) = input.split_once('/') else {
                continue; // an external file (the CSV, the model source)
            };
            let Some(produced) = lock.stages.get(upstream).and_then(|u| u.outputs.get(output))
            else {
                continue;
            };
            if produced.digest != record.digest {
                bail!(
                    "the {stage} result in {} was made from an earlier {upstream} result, not the \
                     current one ({upstream} ran again since, e.g. with --until); predicting now \
                     would mix two configurations. Run `cargo xtask run-pipeline` to bring \
                     {stage} and what follows it up to date",
                    artifacts.display()
                );
            }
        }
    }
    Ok(lock)
}

/// `artifacts/<stage>` must link to the stored result the lock names.
fn check_link(artifacts: &Path, stage: &str, entry: &Manifest) -> Result<()> {
    let link = artifacts.join(stage);
    let expected = Path::new(".store").join(stage).join(&entry.key);
    match std::fs::read_link(&link) {
        Ok(target) if target == expected => Ok(()),
        _ => bail!(
            "{} does not link to the {stage} result pipeline.lock names (.store/{stage}/{}); \
             run `cargo xtask run-pipeline` to restore it",
            link.display(),
            entry.key
        ),
    }
}
