//! Executing: a stage runs into a private scratch directory; its declared
//! outputs are checked and hashed, and the directory is committed to the
//! store. Only a complete, verified result is ever committed.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, bail};

use crate::digest::DigestCache;
use crate::manifest::{Manifest, OutputRecord};
use crate::plan::{PlannedInputs, StagePlan};
use crate::stage::RunContext;
use crate::store::Store;

/// Runs the planned stage and commits its result; on any error the scratch
/// directory is removed and the store is as before.
pub(crate) fn execute(
    plan: &StagePlan,
    store: &Store,
    digests: &mut DigestCache,
    started: Instant,
) -> Result<Manifest> {
    let scratch = store.scratch_dir(plan.stage.name())?;
    let result = run_and_commit(plan, &scratch, store, digests, started);
    if result.is_err() {
        let _ = fs::remove_dir_all(&scratch);
    }
    result
}

fn run_and_commit(
    plan: &StagePlan,
    scratch: &Path,
    store: &Store,
    digests: &mut DigestCache,
    started: Instant,
) -> Result<Manifest> {
    let PlannedInputs::Known {
        key,
        records,
        paths,
    } = &plan.inputs
    else {
        bail!("{}: cannot run with inputs unknown", plan.stage.name());
    };
    let stage = plan.stage;
    let name = stage.name();
    let mut ctx = RunContext::new(
        key.clone(),
        plan.params.clone(),
        paths.clone(),
        crate::plan::input_digests(records),
        scratch.to_path_buf(),
        store.stage_cache_dir(name)?,
    );
    stage
        .run(&mut ctx)
        .with_context(|| format!("stage {name} failed"))?;

    let declared = stage.outputs();
    let mut outputs = BTreeMap::new();
    for output in &declared {
        let path = scratch.join(output);
        if !path.is_file() {
            bail!("stage {name} finished without writing its declared output {output}");
        }
        let digest = crate::digest::hash_file(&path)?;
        outputs.insert(
            output.clone(),
            OutputRecord {
                digest,
                bytes: fs::metadata(&path)?.len(),
            },
        );
    }
    for entry in fs::read_dir(scratch)? {
        let file = entry?.file_name().to_string_lossy().into_owned();
        if !declared.contains(&file) {
            bail!("stage {name} wrote {file}, which it does not declare as an output");
        }
    }
    let manifest = Manifest {
        stage: name.to_string(),
        version: stage.version(),
        key: key.clone(),
        finished: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        duration_s: crate::run::round_ms(started.elapsed().as_secs_f64()),
        notes: ctx.into_notes(),
        params: plan.params.clone(),
        inputs: records.clone(),
        outputs,
    };
    let entry = store.commit(scratch, &manifest)?;
    for (output, record) in &manifest.outputs {
        digests.remember(&entry.join(output), &record.digest)?;
    }
    Ok(manifest)
}
