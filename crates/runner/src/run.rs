//! Running: each selected stage is planned ([`crate::plan`]), decided
//! ([`crate::decide`]) and, if it must, executed ([`crate::execute`]);
//! then its result becomes current (link, `pipeline.lock`) and is reported.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::decide::{CorruptInput, Decision, decide};
use crate::digest::DigestCache;
use crate::execute::execute;
use crate::manifest::{LockFile, Manifest};
use crate::plan::{Pipeline, StagePlan};
use crate::runlock::RunLock;
use crate::stage::Stage;
use crate::store::Store;

#[derive(Debug, Clone, Default, PartialEq)]
pub enum Force {
    #[default]
    None,
    All,
    Stages(Vec<String>),
}

impl Force {
    fn includes(&self, stage: &str) -> bool {
        match self {
            Force::None => false,
            Force::All => true,
            Force::Stages(names) => names.iter().any(|n| n == stage),
        }
    }
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

/// What one stage's turn produced.
enum Step {
    Done(StageReport, Option<Manifest>),
    /// Go back to the stage that produced a corrupt input.
    RecomputeFrom(CorruptInput),
}

/// What a run carries from stage to stage.
struct RunState<'o> {
    options: &'o RunOptions,
    store: Store,
    lock: LockFile,
    digests: DigestCache,
    /// The result each stage decided so far in this run stands on.
    current: HashMap<String, Manifest>,
}

impl Pipeline {
    /// Brings the selected stages up to date (or, with `dry_run`, says what
    /// that would do). `on_report` is called as each stage is decided.
    pub fn run(
        &self,
        artifacts: &Path,
        options: &RunOptions,
        on_report: &mut dyn FnMut(&StageReport),
    ) -> Result<Vec<StageReport>> {
        self.check_options(options)?;
        if options.dry_run {
            // Looks only: no lock, nothing created, nothing saved.
            let store = Store::open_read_only(artifacts)?;
            return self.run_in(store, options, on_report);
        }
        let lock = RunLock::acquire(artifacts, options.wait_for_lock)?;
        self.run_holding(&lock, artifacts, options, on_report)
    }

    /// [`Pipeline::run`] for a caller that already holds the run lock and
    /// reads the results before letting go of it (`sweep` measures each
    /// variant inside the same lock, so no other run can move them first).
    pub fn run_holding(
        &self,
        _lock: &RunLock,
        artifacts: &Path,
        options: &RunOptions,
        on_report: &mut dyn FnMut(&StageReport),
    ) -> Result<Vec<StageReport>> {
        self.check_options(options)?;
        anyhow::ensure!(!options.dry_run, "a dry run takes no lock");
        let store = Store::open(artifacts)?;
        // Scratch left by a killed run: never trusted, safe to drop now
        // that we hold the lock.
        for leftover in store.scratch_leftovers() {
            let _ = fs::remove_dir_all(&leftover).or_else(|_| fs::remove_file(&leftover));
        }
        self.run_in(store, options, on_report)
    }

    fn run_in(
        &self,
        store: Store,
        options: &RunOptions,
        on_report: &mut dyn FnMut(&StageReport),
    ) -> Result<Vec<StageReport>> {
        let mut state = RunState {
            options,
            lock: LockFile::load(&store.lock_file_path())?,
            digests: DigestCache::load(store.digest_memo_path(), options.verify),
            store,
            current: HashMap::new(),
        };
        let selected = self.selected(options)?;
        let mut reports: Vec<StageReport> = Vec::new();
        let mut recomputed: Vec<String> = Vec::new();
        let mut position = 0;
        while position < selected.len() {
            let stage = self.stages[selected[position]].as_ref();
            let step = state.step(stage);
            // Persist digests even when a stage fails: they are still true.
            // A dry run saves nothing (it holds no lock).
            if !options.dry_run {
                state.digests.save()?;
            }
            match step? {
                Step::Done(report, manifest) => {
                    on_report(&report);
                    reports.push(report);
                    if let Some(m) = manifest {
                        state.current.insert(stage.name().to_string(), m);
                    }
                    position += 1;
                }
                // Once per upstream stage: corrupt again after it
                // recomputed points at the disk, not at the store.
                Step::RecomputeFrom(corrupt) if recomputed.contains(&corrupt.upstream) => {
                    return Err(corrupt.into());
                }
                Step::RecomputeFrom(corrupt) => {
                    let back = selected
                        .iter()
                        .position(|&j| self.stages[j].name() == corrupt.upstream)
                        .context("corrupt input of a stage outside this run")?;
                    for &j in &selected[back..] {
                        let later = self.stages[j].name();
                        state.current.remove(later);
                        reports.retain(|r| r.stage != later);
                    }
                    recomputed.push(corrupt.upstream);
                    position = back;
                }
            }
        }
        if !options.dry_run {
            state.digests.prune();
            state.digests.save()?;
        }
        Ok(reports)
    }
}

impl RunState<'_> {
    /// Plans, decides and (unless a dry run) acts on one stage.
    fn step(&mut self, stage: &dyn Stage) -> Result<Step> {
        let started = Instant::now();
        let name = stage.name();
        let dry_run = self.options.dry_run;
        let plan = StagePlan::new(
            stage,
            &self.store,
            &mut self.digests,
            &self.current,
            dry_run,
        )?;
        let decision = decide(
            &plan,
            &self.store,
            self.lock.stages.get(name),
            &mut self.digests,
            self.options.force.includes(name),
            !dry_run,
        )?;
        let done = |outcome, reasons, notes, manifest| {
            let report = StageReport {
                stage: name.to_string(),
                outcome,
                reasons,
                seconds: round_ms(started.elapsed().as_secs_f64()),
                key: plan.key().map(str::to_string),
                notes,
            };
            Step::Done(report, manifest)
        };
        Ok(match decision {
            Decision::RecomputeFrom(corrupt) => Step::RecomputeFrom(corrupt),
            Decision::Unknown { reasons } => done(Outcome::WouldRun, reasons, vec![], None),
            Decision::Cached(manifest) => {
                if !dry_run {
                    // Repairs a link that was removed or replaced.
                    self.store.point_current(name, &manifest.key)?;
                }
                done(Outcome::Cached, vec![], vec![], Some(manifest))
            }
            Decision::Restore { manifest, reasons } if dry_run => {
                done(Outcome::WouldRestore, reasons, vec![], Some(manifest))
            }
            Decision::Restore { manifest, reasons } => {
                self.make_current(&manifest)?;
                done(Outcome::Restored, reasons, vec![], Some(manifest))
            }
            Decision::Run { mut reasons } if dry_run => {
                reasons.extend(plan.preview(&self.store)?);
                done(Outcome::WouldRun, reasons, vec![], None)
            }
            Decision::Run { reasons } => {
                let manifest = execute(&plan, &self.store, &mut self.digests, started)?;
                self.make_current(&manifest)?;
                let notes = manifest.notes.clone();
                done(Outcome::Ran, reasons, notes, Some(manifest))
            }
        })
    }

    /// Links `artifacts/<stage>` to the result, then records it in
    /// `pipeline.lock` (each an atomic rename).
    fn make_current(&mut self, manifest: &Manifest) -> Result<()> {
        self.store.point_current(&manifest.stage, &manifest.key)?;
        self.lock
            .stages
            .insert(manifest.stage.clone(), manifest.clone());
        self.lock.save(&self.store.lock_file_path())
    }
}

pub(crate) fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}
