//! What a stage declares to the runner, and what the runner hands it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::Value;

/// One input of a stage. Its content digest (never its path) goes into the key.
#[derive(Debug, Clone)]
pub enum Input {
    /// The output file `output` of the upstream stage `stage`.
    Stage { stage: String, output: String },
    /// A file outside the store, such as the source CSV or a model file.
    File { name: String, path: PathBuf },
    /// An external file that is not on this machine yet: `from` says where
    /// it would be fetched from (e.g. `pypi:<package>`). Only a pipeline
    /// built for looking (status, dag) declares one; a dry run reports the
    /// stage as one that would run, a real run refuses it.
    NotFetched { name: String, from: String },
}

impl Input {
    pub fn stage(stage: &str, output: &str) -> Input {
        Input::Stage {
            stage: stage.to_string(),
            output: output.to_string(),
        }
    }

    pub fn file(name: &str, path: impl Into<PathBuf>) -> Input {
        Input::File {
            name: name.to_string(),
            path: path.into(),
        }
    }

    pub fn not_fetched(name: &str, from: impl Into<String>) -> Input {
        Input::NotFetched {
            name: name.to_string(),
            from: from.into(),
        }
    }

    /// Name under which the input is recorded and looked up: `stage/output`
    /// for stage outputs, the declared name for external files.
    pub fn name(&self) -> String {
        match self {
            Input::Stage { stage, output } => format!("{stage}/{output}"),
            Input::File { name, .. } | Input::NotFetched { name, .. } => name.clone(),
        }
    }
}

/// A pipeline step. The runner decides *whether* to run it; the stage only
/// knows *how*.
pub trait Stage {
    fn name(&self) -> &str;
    /// Bumped whenever the meaning of the stage's output changes.
    fn version(&self) -> u32;
    /// Everything that shapes the output besides input content. Paths of
    /// external inputs belong in [`Stage::inputs`], not here.
    fn params(&self) -> Value;
    fn inputs(&self) -> Vec<Input>;
    /// Plain file names written into the output directory.
    fn outputs(&self) -> Vec<String>;
    fn run(&self, ctx: &mut RunContext) -> Result<()>;
    /// A dry run's extra word on a stage that would run, its inputs known
    /// (e.g. how many rows are new). Reads only; `None` by default.
    fn preview(&self, _inputs: &Preview) -> Result<Option<String>> {
        Ok(None)
    }
}

/// The value of a declared input in `map`; asking for another is a bug in
/// the stage.
fn declared<'m, V>(map: &'m BTreeMap<String, V>, name: &str) -> &'m V {
    map.get(name)
        .unwrap_or_else(|| panic!("stage asked for undeclared input {name:?}"))
}

/// What [`Stage::preview`] may look at: the inputs a run would get, and
/// the stage's cache folder (which may not exist yet).
pub struct Preview<'a> {
    pub(crate) inputs: &'a BTreeMap<String, PathBuf>,
    pub(crate) digests: BTreeMap<String, String>,
    pub(crate) cache_dir: PathBuf,
}

impl Preview<'_> {
    /// Path of a declared input, by [`Input::name`].
    pub fn input(&self, name: &str) -> &Path {
        declared(self.inputs, name).as_path()
    }

    /// Content digest of a declared input.
    pub fn input_digest(&self, name: &str) -> &str {
        declared(&self.digests, name).as_str()
    }

    /// The stage's cache folder ([`RunContext::cache_dir`]); not created.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }
}

/// Handed to [`Stage::run`]: where inputs are, where outputs go.
pub struct RunContext {
    key: String,
    params: Value,
    inputs: BTreeMap<String, PathBuf>,
    digests: BTreeMap<String, String>,
    out_dir: PathBuf,
    cache_dir: PathBuf,
    notes: Vec<String>,
}

impl RunContext {
    pub(crate) fn new(
        key: String,
        params: Value,
        inputs: BTreeMap<String, PathBuf>,
        digests: BTreeMap<String, String>,
        out_dir: PathBuf,
        cache_dir: PathBuf,
    ) -> Self {
        RunContext {
            key,
            params,
            inputs,
            digests,
            out_dir,
            cache_dir,
            notes: Vec::new(),
        }
    }

    /// The stage key (hex blake3), for provenance metadata inside outputs.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The canonical parameters the key was computed from.
    pub fn params(&self) -> &Value {
        &self.params
    }

    /// Path of a declared input, by [`Input::name`].
    pub fn input(&self, name: &str) -> &Path {
        declared(&self.inputs, name).as_path()
    }

    /// Content digest (hex blake3) of a declared input, by [`Input::name`].
    pub fn input_digest(&self, name: &str) -> &str {
        declared(&self.digests, name).as_str()
    }

    /// The stage's own folder for what it keeps across runs
    /// (`artifacts/.cache/<stage>/`): the runner creates it, holds the run
    /// lock while the stage runs, and never reads it. Whatever is there
    /// must be safe to find half-written: the stage commits its own files
    /// (the embed stage's feature store does).
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Path to write a declared output to (inside a private temporary directory).
    pub fn output(&self, name: &str) -> PathBuf {
        self.out_dir.join(name)
    }

    /// The private directory all outputs are written into.
    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    /// A line for the user (e.g. "371 duplicate sentences kept"); recorded
    /// in the lock file with the stage's result.
    pub fn note(&mut self, message: impl Into<String>) {
        self.notes.push(message.into());
    }

    pub(crate) fn into_notes(self) -> Vec<String> {
        self.notes
    }
}
