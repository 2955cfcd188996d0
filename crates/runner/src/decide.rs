//! Deciding: whether a planned stage is up to date, can be restored from
//! the store, or must run, and why, in words. Reads the store, writes
//! nothing but digests to the memo.

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::Value;

use crate::digest::DigestCache;
use crate::key::flatten;
use crate::manifest::{InputRecord, Manifest};
use crate::plan::{PlannedInputs, StagePlan};
use crate::stage::Input;
use crate::store::Store;

pub(crate) enum Decision {
    /// The current result is up to date.
    Cached(Manifest),
    /// A stored result with this key becomes current again; `reasons`: how
    /// it differs from the current one.
    Restore {
        manifest: Manifest,
        reasons: Vec<String>,
    },
    /// The stage must run.
    Run { reasons: Vec<String> },
    /// Dry runs only: the key is not known yet (an upstream stage would run
    /// first, or an input is not fetched).
    Unknown { reasons: Vec<String> },
    /// A stored input no longer matches its digest (its true digest is now
    /// in the memo): decide again from the stage that produced it.
    RecomputeFrom(CorruptInput),
}

/// Whether `plan`'s stage must run. `previous`: its current result (from
/// `pipeline.lock`). `check_stored_inputs`: before saying "run", re-hash
/// every input taken from the store (not the memo: a flipped byte keeps
/// size and mtime), so a corrupted upstream file never flows silently into
/// a new result. Cheap next to running the stage; skipped by dry runs.
pub(crate) fn decide(
    plan: &StagePlan,
    store: &Store,
    previous: Option<&Manifest>,
    digests: &mut DigestCache,
    forced: bool,
    check_stored_inputs: bool,
) -> Result<Decision> {
    let (key, records, paths) = match &plan.inputs {
        PlannedInputs::Unknown { reasons } => {
            return Ok(Decision::Unknown {
                reasons: reasons.clone(),
            });
        }
        PlannedInputs::Known {
            key,
            records,
            paths,
        } => (key, records, paths),
    };
    let stage = plan.stage;
    let changes = || {
        explain(
            stage.name(),
            previous,
            stage.version(),
            &plan.params,
            records,
        )
    };
    let mut reasons = Vec::new();
    if forced {
        reasons.push("forced".to_string());
    } else if let Some(stored) = store.manifest(stage.name(), key) {
        let damage = store.damage(&stored, digests);
        if damage.is_empty() {
            return Ok(if previous.is_some_and(|p| &p.key == key) {
                Decision::Cached(stored)
            } else {
                Decision::Restore {
                    manifest: stored,
                    reasons: changes(),
                }
            });
        }
        reasons.extend(damage.iter().map(|d| d.to_string()));
    }
    reasons.extend(changes());
    if reasons.is_empty() {
        reasons.push("its stored result is missing".to_string());
    }
    if check_stored_inputs {
        for input in stage.inputs() {
            let Input::Stage {
                stage: upstream, ..
            } = &input
            else {
                continue;
            };
            let name = input.name();
            let actual = crate::digest::hash_file(&paths[&name])?;
            if actual != records[&name].digest {
                digests.remember(&paths[&name], &actual)?;
                return Ok(Decision::RecomputeFrom(CorruptInput {
                    stage: stage.name().to_string(),
                    upstream: upstream.clone(),
                    input: name,
                }));
            }
        }
    }
    Ok(Decision::Run { reasons })
}

/// A stored input whose bytes no longer match its digest, found just
/// before `stage` would have read it. Displayed as the error when it is
/// found again after `upstream` recomputed.
#[derive(Debug)]
pub(crate) struct CorruptInput {
    pub stage: String,
    pub upstream: String,
    pub input: String,
}

impl std::fmt::Display for CorruptInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: stored input {} no longer matches its digest even after recomputing {}; \
             check the disk, or delete the artifacts folder and run again",
            self.stage, self.input, self.upstream
        )
    }
}

impl std::error::Error for CorruptInput {}

/// Differences between the previous result of a stage and what it would
/// be built from now, in words.
fn explain(
    stage: &str,
    previous: Option<&Manifest>,
    version: u32,
    params: &Value,
    inputs: &BTreeMap<String, InputRecord>,
) -> Vec<String> {
    let Some(prev) = previous else {
        return vec!["no previous result".to_string()];
    };
    let mut reasons = Vec::new();
    if prev.version != version {
        reasons.push(format!("code version {} -> {version}", prev.version));
    }
    let (mut old, mut new) = (BTreeMap::new(), BTreeMap::new());
    flatten(stage, &prev.params, &mut old);
    flatten(stage, params, &mut new);
    for (k, v) in &new {
        match old.get(k) {
            Some(o) if o == v => {}
            Some(o) => reasons.push(format!("parameter {k} changed: {o} -> {v}")),
            None => reasons.push(format!("parameter {k} added: {v}")),
        }
    }
    for (k, o) in &old {
        if !new.contains_key(k) {
            reasons.push(format!("parameter {k} removed (was {o})"));
        }
    }
    for (name, record) in inputs {
        match prev.inputs.get(name) {
            Some(p) if p.digest == record.digest => {}
            Some(p) => {
                let moved = match (&p.path, &record.path) {
                    (Some(a), Some(b)) if a != b => format!(" (now read from {b}, was {a})"),
                    _ => String::new(),
                };
                reasons.push(format!("input {name} changed{moved}"));
            }
            None => reasons.push(format!("new input {name}")),
        }
    }
    reasons
}
