//! `predict`: new sentences through the current pipeline's tokenizer,
//! model, pooling and trained head (the results linked from artifacts/,
//! checked to be the chain that trained the head: `trained.rs`).

use std::path::Path;

use anyhow::{Context, Result, bail};

/// One prediction: class id and name, and its probability.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub class: usize,
    pub label: String,
    pub probability: f32,
}

/// Class names of the current pipeline (index = class id).
pub fn trained_classes(artifacts: &Path) -> Result<Vec<String>> {
    crate::stages::split_classes(&artifacts.join("ingest/train.parquet"))
}

/// What [`predict`] gives back: read under one hold of the run lock, so
/// the classes are those of the head that scored.
pub struct Predicted {
    pub predictions: Vec<Prediction>,
    /// The trained class names (index = class id).
    pub classes: Vec<String>,
    /// What the feature store served.
    pub used: embed::through_store::StoreUse,
}

/// Classifies `sentences`. Their vectors go through the embed stage's
/// feature store (under the run lock: one writer per artifacts folder), so
/// a sentence scored before is not embedded again.
pub fn predict(
    pipeline: &runner::Pipeline,
    artifacts: &Path,
    sentences: &[String],
) -> Result<Predicted> {
    // The writer's lock first (the vectors go into the feature store), so
    // the chain checked here is the chain scored: no run moves it between.
    let _writer = runner::RunLock::acquire(artifacts, true)?;
    // Every setting below comes from results that form one chain.
    let lock = crate::trained::trained_chain(pipeline, artifacts)?;
    let classes = trained_classes(artifacts)?;
    let max_len: usize =
        tables::metadata_value(&artifacts.join("encode/train.parquet"), "max_len")?.parse()?;
    let pooling: embed::Pooling =
        serde_json::from_value(lock.stages["embed"].params["pooling"].clone())
            .context("pipeline.lock: embed.pooling")?;

    let tokenizer = encode::SentenceTokenizer::load(&artifacts.join("model/tokenizer.json"))?;
    let full = tokenizer.tokenize(sentences)?;
    let tokens = tokenizer.truncate(sentences, full, max_len)?;
    let rows: Vec<tables::encoded::EncodedRow> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| tables::encoded::EncodedRow {
            row_id: i as i64,
            label: 0,
            ids: t.ids,
            n_tokens: t.n_tokens,
        })
        .collect();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let (mut encoder, _) = embed::Encoder::open(
        &artifacts.join("model/model.onnx"),
        pooling,
        embed::Device::Cpu,
        threads,
    )?;
    let params = embed::EmbedParams {
        pooling,
        ..embed::EmbedParams::default()
    };
    let model_digest = &lock.stages["model"].outputs["model.onnx"].digest;
    let keys = embed::through_store::keys(&rows, model_digest, &params);
    let (mut store, mut warnings) =
        embed::store::FeatureStore::open(&artifacts.join(".cache").join("embed"))?;
    // New sentences are few: always embedded here, never on a cluster.
    let mut local = embed::local::Local {
        encoder: &mut encoder,
        params: &params,
    };
    let (features, mut used) = embed::through_store::features(
        &mut local,
        &rows,
        &keys,
        &mut store,
        &indicatif::ProgressBar::hidden(),
    )?;
    warnings.append(&mut used.warnings);
    used.warnings = warnings;

    let device = burn_cpu_device();
    let (head, shape) = head::Head::load(&artifacts.join("head/head.safetensors"), &device)?;
    if shape.input != encoder.hidden_size() || shape.classes != classes.len() {
        bail!(
            "the head ({shape:?}) does not fit the model/classes in {}; rerun the pipeline",
            artifacts.display()
        );
    }
    let probs = head.probabilities(features, rows.len(), shape.input, &device)?;
    let predictions = probs
        .chunks(shape.classes)
        .map(|p| {
            let best = (0..p.len())
                .max_by(|&a, &b| p[a].total_cmp(&p[b]))
                .unwrap_or(0);
            Prediction {
                class: best,
                label: classes[best].clone(),
                probability: p[best],
            }
        })
        .collect();
    Ok(Predicted {
        predictions,
        classes,
        used,
    })
}

/// What the feature store served, on stderr (stdout carries the results;
/// `evaluate` says it, `predict` stays quiet for pipes).
pub fn report_store_use(used: &embed::through_store::StoreUse) {
    for warning in &used.warnings {
        eprintln!("warning: {warning}");
    }
    eprintln!("{}", used.summary());
}

fn burn_cpu_device() -> head::Device {
    head::Device::flex()
}
