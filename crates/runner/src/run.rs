//! Planning and running: the decision procedure for each stage.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::Value;

use crate::digest::DigestCache;
use crate::key::{canonical, flatten, stage_key};
use crate::manifest::{InputRecord, LockFile, Manifest, OutputRecord};
use crate::runlock::RunLock;
use crate::stage::{Input, RunContext, Stage};
use crate::store::{Store, is_manifest};

#[derive(Debug, Clone, Default, PartialEq)]
pub enum Force {
    #[default]
    None,
    All,
    Stages(Vec<String>),
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub force: Force,
    /// Run only this stage and what it depends on.
    pub until: Option<String>,
    /// Decide, report, but change nothing.
    pub dry_run: bool,
    /// Re-hash every file instead of trusting the digest memo.
    pub verify: bool,
    /// When another run holds the store: wait (true) or fail (false).
    pub wait_for_lock: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// The current result is up to date.
    Cached,
    /// An earlier result with this key was in the store and is current again.
    Restored,
    Ran,
    /// Dry run: would be restored from the store.
    WouldRestore,
    /// Dry run: would run.
    WouldRun,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Cached => "cached",
            Outcome::Restored => "restored",
            Outcome::Ran => "ran",
            Outcome::WouldRestore => "would restore",
            Outcome::WouldRun => "would run",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    pub stage: String,
    pub outcome: Outcome,
    /// Why the stage (re)ran or would: each changed parameter, input or
    /// code version, in words. Empty when cached.
    pub reasons: Vec<String>,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Stages in dependency order.
/// Why current results do not form one chain ([`Pipeline::chain_break`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// `stage` has no current result.
    Missing { stage: String },
    /// `artifacts/<stage>` does not link to the result the lock names.
    Unlinked { stage: String, key: String },
    /// The current result of `stage` was made from another result of
    /// `upstream` than its current one (`upstream` ran again since).
    Stale { stage: String, upstream: String },
}

pub struct Pipeline {
    stages: Vec<Box<dyn Stage>>,
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

    fn index_of(&self, name: &str) -> Result<usize> {
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
    fn ancestors_and_self(&self, name: &str) -> Result<Vec<usize>> {
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

    /// Where the current results of `stage` and of every stage it reads
    /// from stop forming one chain (upstream first), or `None` if they form
    /// one: each result present in `lock` and linked from `artifacts/`, and
    /// each recorded input digest equal to the current upstream output's.
    /// Follows the declared inputs, so it holds for any stage graph.
    pub fn chain_break(
        &self,
        artifacts: &Path,
        lock: &LockFile,
        stage: &str,
    ) -> Result<Option<ChainBreak>> {
        for i in self.ancestors_and_self(stage)? {
            let name = self.stages[i].name().to_string();
            let Some(entry) = lock.stages.get(&name) else {
                return Ok(Some(ChainBreak::Missing { stage: name }));
            };
            if !crate::store::links_to(artifacts, &name, &entry.key) {
                let key = entry.key.clone();
                return Ok(Some(ChainBreak::Unlinked { stage: name, key }));
            }
            for input in self.stages[i].inputs() {
                let Input::Stage { stage: up, output } = &input else {
                    continue;
                };
                let recorded = entry.inputs.get(&input.name()).map(|r| &r.digest);
                let current = lock.stages[up].outputs.get(output).map(|o| &o.digest);
                if recorded != current {
                    return Ok(Some(ChainBreak::Stale {
                        stage: name,
                        upstream: up.clone(),
                    }));
                }
            }
        }
        Ok(None)
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

    /// Brings the selected stages up to date (or, with `dry_run`, says what
    /// that would do). `on_report` is called as each stage is decided.
    pub fn run(
        &self,
        artifacts: &Path,
        options: &RunOptions,
        on_report: &mut dyn FnMut(&StageReport),
    ) -> Result<Vec<StageReport>> {
        self.check_options(options)?;
        let _lock = if options.dry_run {
            None
        } else {
            Some(RunLock::acquire(artifacts, options.wait_for_lock)?)
        };
        let store = Store::open(artifacts)?;
        if !options.dry_run {
            // Scratch left by a killed run: never trusted, safe to drop now
            // that we hold the lock.
            for leftover in store.scratch_leftovers() {
                let _ = fs::remove_dir_all(&leftover).or_else(|_| fs::remove_file(&leftover));
            }
        }
        let mut lock = LockFile::load(&store.lock_file_path())?;
        let mut digests = DigestCache::load(store.digest_memo_path(), options.verify);
        let selected = match &options.until {
            Some(name) => self.ancestors_and_self(name)?,
            None => (0..self.stages.len()).collect(),
        };

        let mut current: HashMap<String, Manifest> = HashMap::new();
        let mut reports: Vec<StageReport> = Vec::new();
        let mut redone: Vec<String> = Vec::new();
        let mut position = 0;
        while position < selected.len() {
            let stage = self.stages[selected[position]].as_ref();
            let result = self.decide(stage, &store, &mut lock, &mut digests, &current, options);
            // Persist digests even when a stage fails: they are still true.
            digests.save()?;
            let (report, manifest) = match result {
                Err(e) => match e.downcast_ref::<CorruptInput>() {
                    // A stored upstream output was found corrupt just before
                    // use (its true digest is now in the memo): decide again
                    // from that upstream stage, which will now recompute.
                    Some(corrupt) if !redone.contains(&corrupt.upstream) => {
                        let upstream = corrupt.upstream.clone();
                        let back = selected
                            .iter()
                            .position(|&j| self.stages[j].name() == upstream)
                            .context("corrupt input of a stage outside this run")?;
                        for &j in &selected[back..] {
                            let later = self.stages[j].name();
                            current.remove(later);
                            reports.retain(|r| r.stage != later);
                        }
                        redone.push(upstream);
                        position = back;
                        continue;
                    }
                    _ => return Err(e),
                },
                Ok(decided) => decided,
            };
            on_report(&report);
            reports.push(report);
            if let Some(m) = manifest {
                current.insert(stage.name().to_string(), m);
            }
            position += 1;
        }
        digests.prune();
        digests.save()?;
        Ok(reports)
    }

    fn decide(
        &self,
        stage: &dyn Stage,
        store: &Store,
        lock: &mut LockFile,
        digests: &mut DigestCache,
        current: &HashMap<String, Manifest>,
        options: &RunOptions,
    ) -> Result<(StageReport, Option<Manifest>)> {
        let name = stage.name();
        let started = Instant::now();
        let params = canonical(&stage.params());
        let previous = lock.stages.get(name).cloned();

        // Input digests: external files are (memo-)hashed, stage inputs come
        // from the upstream result chosen earlier in this run.
        let mut records = BTreeMap::new();
        let mut paths = BTreeMap::new();
        let mut pending_upstream = Vec::new();
        let mut not_fetched = Vec::new();
        for input in stage.inputs() {
            match &input {
                Input::NotFetched {
                    name: input_name,
                    from,
                } => {
                    if !options.dry_run {
                        bail!(
                            "{name}: input {input_name} is not fetched yet (from {from}); \
                             this pipeline was built for looking, not for running"
                        );
                    }
                    not_fetched.push((input_name.as_str().to_owned(), from.clone()));
                }
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
                    let digest = digests.digest(path)?;
                    let shown = path.display().to_string();
                    records.insert(
                        input.name(),
                        InputRecord {
                            digest,
                            path: Some(shown),
                        },
                    );
                    paths.insert(input.name(), path.clone());
                }
                Input::Stage { stage: up, output } => match current.get(up) {
                    Some(m) => {
                        records.insert(
                            input.name(),
                            InputRecord {
                                digest: m.outputs[output].digest.clone(),
                                path: None,
                            },
                        );
                        paths.insert(input.name(), store.entry_dir(up, &m.key).join(output));
                    }
                    None => {
                        if !pending_upstream.contains(up) {
                            pending_upstream.push(up.clone());
                        }
                    }
                },
            }
        }
        if !pending_upstream.is_empty() || !not_fetched.is_empty() {
            // Only in dry runs: upstream would run, or an input is not here
            // yet, so the key is unknown.
            let mut reasons = not_fetched_reasons(&not_fetched);
            reasons.extend(
                pending_upstream
                    .iter()
                    .map(|up| format!("upstream {up} would run first")),
            );
            let report = report(name, Outcome::WouldRun, reasons, started, None, Vec::new());
            return Ok((report, None));
        }

        let input_digests: BTreeMap<String, String> = records
            .iter()
            .map(|(k, r)| (k.clone(), r.digest.clone()))
            .collect();
        let key = stage_key(name, stage.version(), &params, &input_digests);
        let forced = match &options.force {
            Force::None => false,
            Force::All => true,
            Force::Stages(names) => names.iter().any(|n| n == name),
        };

        let mut reasons = Vec::new();
        if !forced {
            if let Some(stored) = store.manifest(name, &key) {
                let damage = store.damage(&stored, digests);
                if damage.is_empty() {
                    let is_current = previous.as_ref().map(|p| p.key == key).unwrap_or(false);
                    let outcome = match (is_current, options.dry_run) {
                        (true, _) => Outcome::Cached,
                        (false, true) => Outcome::WouldRestore,
                        (false, false) => Outcome::Restored,
                    };
                    let why = if is_current {
                        Vec::new()
                    } else {
                        explain(name, previous.as_ref(), stage.version(), &params, &records)
                    };
                    if !options.dry_run {
                        store.point_current(name, &key)?;
                        if !is_current {
                            lock.stages.insert(name.to_string(), stored.clone());
                            lock.save(&store.lock_file_path())?;
                        }
                    }
                    let report = report(name, outcome, why, started, Some(key), Vec::new());
                    return Ok((report, Some(stored)));
                }
                reasons.extend(damage.iter().map(|d| d.to_string()));
            }
        } else {
            reasons.push("forced".to_string());
        }
        reasons.extend(explain(
            name,
            previous.as_ref(),
            stage.version(),
            &params,
            &records,
        ));
        if reasons.is_empty() {
            reasons.push("its stored result is missing".to_string());
        }
        if options.dry_run {
            return Ok((
                report(
                    name,
                    Outcome::WouldRun,
                    reasons,
                    started,
                    Some(key),
                    Vec::new(),
                ),
                None,
            ));
        }

        // Run into scratch; only a complete, verified result is committed.
        let scratch = store.scratch_dir(name)?;
        let outcome = execute(
            stage, &key, &params, paths, &scratch, &records, digests, store, started,
        );
        let manifest = match outcome {
            Ok(m) => m,
            Err(e) => {
                let _ = fs::remove_dir_all(&scratch);
                return Err(e);
            }
        };
        store.point_current(name, &key)?;
        lock.stages.insert(name.to_string(), manifest.clone());
        lock.save(&store.lock_file_path())?;
        let notes = manifest.notes.clone();
        Ok((
            report(name, Outcome::Ran, reasons, started, Some(key), notes),
            Some(manifest),
        ))
    }
}

/// A stored input whose bytes no longer match its digest, found just
/// before `stage` would have read it.
#[derive(Debug)]
struct CorruptInput {
    stage: String,
    upstream: String,
    input: String,
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

#[allow(clippy::too_many_arguments)]
fn execute(
    stage: &dyn Stage,
    key: &str,
    params: &Value,
    paths: BTreeMap<String, PathBuf>,
    scratch: &Path,
    records: &BTreeMap<String, InputRecord>,
    digests: &mut DigestCache,
    store: &Store,
    started: Instant,
) -> Result<Manifest> {
    let name = stage.name();
    // An input read from the store must still be what its digest says: a
    // corrupted upstream file must never flow silently into a new result.
    // Re-hashed here, not taken from the memo: a flipped byte keeps size and
    // mtime. Cheap next to running the stage.
    for input in stage.inputs() {
        let Input::Stage {
            stage: upstream, ..
        } = &input
        else {
            continue;
        };
        let input = input.name();
        let actual = crate::digest::hash_file(&paths[&input])?;
        if actual != records[&input].digest {
            digests.remember(&paths[&input], &actual)?;
            return Err(CorruptInput {
                stage: name.to_string(),
                upstream: upstream.clone(),
                input,
            }
            .into());
        }
    }
    let mut ctx = RunContext::new(
        key.to_string(),
        params.clone(),
        paths,
        scratch.to_path_buf(),
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
        key: key.to_string(),
        finished: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        duration_s: round_ms(started.elapsed().as_secs_f64()),
        notes: ctx.into_notes(),
        params: params.clone(),
        inputs: records.clone(),
        outputs,
    };
    let entry = store.commit(scratch, &manifest)?;
    for (output, record) in &manifest.outputs {
        digests.remember(&entry.join(output), &record.digest)?;
    }
    Ok(manifest)
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

fn report(
    stage: &str,
    outcome: Outcome,
    reasons: Vec<String>,
    started: Instant,
    key: Option<String>,
    notes: Vec<String>,
) -> StageReport {
    StageReport {
        stage: stage.to_string(),
        outcome,
        reasons,
        seconds: round_ms(started.elapsed().as_secs_f64()),
        key,
        notes,
    }
}

fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}
