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

pub fn predict(
    pipeline: &runner::Pipeline,
    artifacts: &Path,
    sentences: &[String],
) -> Result<Vec<Prediction>> {
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
    let features = embed::stage::embed_rows(
        &mut encoder,
        &rows,
        &embed::EmbedParams::default(),
        &indicatif::ProgressBar::hidden(),
    )?;

    let device = burn_cpu_device();
    let (head, shape) = head::Head::load(&artifacts.join("head/head.safetensors"), &device)?;
    if shape.input != encoder.hidden_size() || shape.classes != classes.len() {
        bail!(
            "the head ({shape:?}) does not fit the model/classes in {}; rerun the pipeline",
            artifacts.display()
        );
    }
    let probs = head.probabilities(features, rows.len(), shape.input, &device)?;
    Ok(probs
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
        .collect())
}

fn burn_cpu_device() -> head::Device {
    head::Device::flex()
}
