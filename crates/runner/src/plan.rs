//! Planning: the stage graph in dependency order, and for one stage the
//! plan it is decided on (canonical parameters, input digests, key), built
//! once. Nothing here decides or writes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::digest::DigestCache;
use crate::key::{canonical, stage_key};
use crate::manifest::{InputRecord, Manifest};
use crate::run::{Force, RunOptions};
use crate::stage::{Input, Stage};
use crate::store::{Store, is_manifest};

/// The stages, in dependency order.
pub struct Pipeline {
    pub(crate) stages: Vec<Box<dyn Stage>>,
}

impl Pipeline {
    /// Orders the stages topologically (ties keep declaration order) and
    /// checks that every stage input names a declared output upstream.
    pub fn new(stages: Vec<Box<dyn Stage>>) -> Result<Pipeline> {
        let mut by_name: HashMap<String, usize> = HashMap::new();
        for (i, stage) in stages.iter().enumerate() {
            if by_name.insert(stage.name().to_string(), i).is_some() {
                bail!("two stages are named {:?}", stage.name());
            }
            for output in stage.outputs() {
                let plain = Path::new(&output)
                    .file_name()
                    .map(|f| f == output.as_str())
                    .unwrap_or(false);
                if !plain || output.starts_with('.') || is_manifest(&output) {
                    bail!(
                        "stage {} declares output {output:?}; outputs must be plain file names",
                        stage.name()
                    );
                }
            }
        }
        let mut deps: Vec<Vec<usize>> = vec![Vec::new(); stages.len()];
        for (i, stage) in stages.iter().enumerate() {
            for input in stage.inputs() {
                if let Input::Stage { stage: up, output } = &input {
                    let Some(&j) = by_name.get(up) else {
                        bail!(
                            "stage {} reads {}, but there is no stage {up:?}",
                            stage.name(),
                            input.name()
                        );
                    };
                    if !stages[j].outputs().contains(output) {
                        bail!(
                            "stage {} reads {}, which stage {up} does not declare",
                            stage.name(),
                            input.name()
                        );
                    }
                    deps[i].push(j);
                }
            }
        }
        let mut order = Vec::new();
        let mut placed = vec![false; stages.len()];
        while order.len() < stages.len() {
            let next =
                (0..stages.len()).find(|&i| !placed[i] && deps[i].iter().all(|&d| placed[d]));
            let Some(i) = next else {
                bail!("the stages form a cycle")
            };
            placed[i] = true;
            order.push(i);
        }
        let mut slots: Vec<Option<Box<dyn Stage>>> = stages.into_iter().map(Some).collect();
        Ok(Pipeline {
            stages: order
                .into_iter()
                .map(|i| slots[i].take().unwrap())
                .collect(),
        })
    }

    pub fn stage_names(&self) -> Vec<&str> {
        self.stages.iter().map(|s| s.name()).collect()
    }

    pub(crate) fn index_of(&self, name: &str) -> Result<usize> {
        self.stages
            .iter()
            .position(|s| s.name() == name)
            .with_context(|| {
                format!(
                    "unknown stage {name:?}; the stages are: {}",
                    self.stage_names().join(", ")
                )
            })
    }

    /// `name` and everything upstream of it, in order.
    pub(crate) fn ancestors_and_self(&self, name: &str) -> Result<Vec<usize>> {
        let target = self.index_of(name)?;
        let mut wanted = vec![false; self.stages.len()];
        wanted[target] = true;
        for i in (0..=target).rev() {
            if !wanted[i] {
                continue;
            }
            for input in self.stages[i].inputs() {
                if let Input::Stage { stage, .. } = input {
                    wanted[self.index_of(&stage)?] = true;
                }
            }
        }
        Ok((0..self.stages.len()).filter(|&i| wanted[i]).collect())
    }

    /// The stages a run with `options` brings up to date, in order.
    pub(crate) fn selected(&self, options: &RunOptions) -> Result<Vec<usize>> {
        match &options.until {
            Some(name) => self.ancestors_and_self(name),
            None => Ok((0..self.stages.len()).collect()),
        }
    }

    /// The graph as text: each stage, its version, inputs and outputs.
    pub fn dag_text(&self) -> String {
        let mut out = String::new();
        for stage in &self.stages {
            out.push_str(&format!("{} (v{})\n", stage.name(), stage.version()));
            for input in stage.inputs() {
                match input {
                    Input::Stage { stage: up, output } => {
                        out.push_str(&format!("  <- {up}/{output}\n"))
                    }
                    Input::File { name, path } => {
                        out.push_str(&format!("  <- {name}: {}\n", path.display()))
                    }
                    Input::NotFetched { name, from } => {
                        out.push_str(&format!("  <- {name}: not fetched yet (from {from})\n"))
                    }
                }
            }
            for output in stage.outputs() {
                out.push_str(&format!("  -> {}/{output}\n", stage.name()));
            }
        }
        out
    }

    /// Validates stage names given on the command line before anything runs.
    pub fn check_options(&self, options: &RunOptions) -> Result<()> {
        if let Some(until) = &options.until {
            self.index_of(until).context("--until")?;
        }
        if let Force::Stages(names) = &options.force {
            for name in names {
                self.index_of(name).context("--force")?;
            }
        }
        Ok(())
    }
}

/// One stage, ready to be decided: what its key is made of.
pub(crate) struct StagePlan<'a> {
    pub stage: &'a dyn Stage,
    /// Canonical parameters ([`canonical`]).
    pub params: Value,
    pub inputs: PlannedInputs,
}

pub(crate) enum PlannedInputs {
    /// Every input's digest is known, so is the key.
    Known {
        key: String,
        /// Digest (and, for external files, path) of each input, by name.
        records: BTreeMap<String, InputRecord>,
        /// Where the stage reads each input, by name.
        paths: BTreeMap<String, PathBuf>,
    },
    /// Only in dry runs: an upstream stage would run first, or an external
    /// input is not fetched yet. Each reason says which.
    Unknown { reasons: Vec<String> },
}

impl<'a> StagePlan<'a> {
    /// The stage key, once every input digest is known.
    pub fn key(&self) -> Option<&str> {
        match &self.inputs {
            PlannedInputs::Known { key, .. } => Some(key),
            PlannedInputs::Unknown { .. } => None,
        }
    }

    /// Digests every input: external files through the memo, stage inputs
    /// from `current`, the upstream results already chosen in this run.
    pub fn new(
        stage: &'a dyn Stage,
        store: &Store,
        digests: &mut DigestCache,
        current: &HashMap<String, Manifest>,
        dry_run: bool,
    ) -> Result<StagePlan<'a>> {
        let name = stage.name();
        let params = canonical(&stage.params());
        let mut records = BTreeMap::new();
        let mut paths = BTreeMap::new();
        let mut pending_upstream: Vec<&str> = Vec::new();
        let mut not_fetched: Vec<(String, String)> = Vec::new();
        let inputs = stage.inputs();
        for input in &inputs {
            match input {
                Input::File {
                    name: input_name,
                    path,
                } => {
                    if !path.is_file() {
                        bail!(
                            "{name}: input {input_name} not found: {} (check `{name}` in the pipeline config)",
                            path.display()
                        );
                    }
                    let record = InputRecord {
                        digest: digests.digest(path)?,
                        path: Some(path.display().to_string()),
                    };
                    records.insert(input.name(), record);
                    paths.insert(input.name(), path.clone());
                }
                Input::NotFetched {
                    name: input_name,
                    from,
                } => {
                    if !dry_run {
                        bail!(
                            "{name}: input {input_name} is not fetched yet (from {from}); \
                             this pipeline was built for looking, not for running"
                        );
                    }
                    not_fetched.push((input_name.clone(), from.clone()));
                }
                Input::Stage { stage: up, output } => match current.get(up) {
                    Some(m) => {
                        let record = InputRecord {
                            digest: m.outputs[output].digest.clone(),
                            path: None,
                        };
                        records.insert(input.name(), record);
                        paths.insert(input.name(), store.entry_dir(up, &m.key).join(output));
                    }
                    // Only in dry runs: a real run stops at a failing stage.
                    None if !pending_upstream.contains(&up.as_str()) => pending_upstream.push(up),
                    None => {}
                },
            }
        }
        let inputs = if pending_upstream.is_empty() && not_fetched.is_empty() {
            PlannedInputs::Known {
                key: stage_key(name, stage.version(), &params, &input_digests(&records)),
                records,
                paths,
            }
        } else {
            let mut reasons = not_fetched_reasons(&not_fetched);
            reasons.extend(
                pending_upstream
                    .iter()
                    .map(|up| format!("upstream {up} would run first")),
            );
            PlannedInputs::Unknown { reasons }
        };
        Ok(StagePlan {
            stage,
            params,
            inputs,
        })
    }
}

impl StagePlan<'_> {
    /// The stage's [`Stage::preview`] of a run with these inputs.
    pub fn preview(&self, store: &Store) -> Result<Option<String>> {
        let PlannedInputs::Known { records, paths, .. } = &self.inputs else {
            return Ok(None);
        };
        let preview = crate::stage::Preview {
            inputs: paths,
            digests: input_digests(records),
            cache_dir: store.stage_cache_path(self.stage.name()),
        };
        self.stage.preview(&preview)
    }
}

/// Input name -> content digest: what the key is made of, and what a
/// stage may ask for ([`crate::RunContext::input_digest`]).
pub(crate) fn input_digests(records: &BTreeMap<String, InputRecord>) -> BTreeMap<String, String> {
    records
        .iter()
        .map(|(name, r)| (name.clone(), r.digest.clone()))
        .collect()
}

/// One reason per origin: "inputs a, b are not fetched yet (...)".
fn not_fetched_reasons(inputs: &[(String, String)]) -> Vec<String> {
    let mut by_origin: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, from) in inputs {
        by_origin.entry(from).or_default().push(name);
    }
    by_origin
        .into_iter()
        .map(|(from, names)| {
            let (noun, verb, them) = match names.len() {
                1 => ("input", "is", "it"),
                _ => ("inputs", "are", "them"),
            };
            format!(
                "{noun} {} {verb} not fetched yet (a run fetches {them} from {from})",
                names.join(", ")
            )
        })
        .collect()
}
