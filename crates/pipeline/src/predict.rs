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

/// Sentences scored at a time by `predict --csv` and `evaluate`: what
/// bounds their memory (a window's texts, token ids and vectors).
pub const WINDOW: usize = 16_384;

/// The current pipeline's classifier, opened once under the writer's lock
/// (the vectors go into the feature store, and the chain checked here is
/// the chain that scores: no run moves it between), scoring sentences a
/// window at a time ([`Predictor::score`]). A sentence scored before is
/// not embedded again.
pub struct Predictor {
    _writer: runner::RunLock,
    classes: Vec<String>,
    max_len: usize,
    tokenizer: encode::SentenceTokenizer,
    encoder: embed::Encoder,
    params: embed::EmbedParams,
    model_digest: String,
    store: embed::store::FeatureStore,
    head: head::Head,
    shape: head::HeadShape,
    device: head::Device,
    used: embed::through_store::StoreUse,
}

impl Predictor {
    pub fn open(pipeline: &runner::Pipeline, artifacts: &Path) -> Result<Predictor> {
        let writer = runner::RunLock::acquire(artifacts, true)?;
        // Every setting below comes from results that form one chain.
        let lock = crate::trained::trained_chain(pipeline, artifacts)?;
        let classes = trained_classes(artifacts)?;
        let max_len: usize =
            tables::metadata_value(&artifacts.join("encode/train.parquet"), "max_len")?.parse()?;
        let pooling: embed::Pooling =
            serde_json::from_value(lock.stages["embed"].params["pooling"].clone())
                .context("pipeline.lock: embed.pooling")?;
        let tokenizer = encode::SentenceTokenizer::load(&artifacts.join("model/tokenizer.json"))?;
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let (encoder, _) = embed::Encoder::open(
            &artifacts.join("model/model.onnx"),
            pooling,
            embed::Device::Cpu,
            threads,
        )?;
        let (store, warnings) =
            embed::store::FeatureStore::open(&artifacts.join(".cache").join("embed"))?;
        let device = burn_cpu_device();
        let (head, shape) = head::Head::load(&artifacts.join("head/head.safetensors"), &device)?;
        if shape.input != encoder.hidden_size() || shape.classes != classes.len() {
            bail!(
                "the head ({shape:?}) does not fit the model/classes in {}; rerun the pipeline",
                artifacts.display()
            );
        }
        Ok(Predictor {
            _writer: writer,
            classes,
            max_len,
            tokenizer,
            encoder,
            params: embed::EmbedParams {
                pooling,
                ..embed::EmbedParams::default()
            },
            model_digest: lock.stages["model"].outputs["model.onnx"].digest.clone(),
            store,
            head,
            shape,
            device,
            used: embed::through_store::StoreUse {
                warnings,
                ..Default::default()
            },
        })
    }

    /// The trained class names (index = class id).
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// Classifies `sentences` (a window: they are held together).
    pub fn score(&mut self, sentences: &[String]) -> Result<Vec<Prediction>> {
        let full = self.tokenizer.tokenize(sentences)?;
        let tokens = self.tokenizer.truncate(sentences, full, self.max_len)?;
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
        let keys = embed::through_store::keys(&rows, &self.model_digest, &self.params);
        // New sentences are few: always embedded here, never on a cluster.
        let mut local = embed::local::Local {
            encoder: &mut self.encoder,
            params: &self.params,
        };
        let (features, used) = embed::through_store::features(
            &mut local,
            &rows,
            &keys,
            &mut self.store,
            &indicatif::ProgressBar::hidden(),
        )?;
        self.used.add(used);
        let probs =
            self.head
                .probabilities(features, rows.len(), self.shape.input, &self.device)?;
        Ok(probs
            .chunks(self.shape.classes)
            .map(|p| {
                let best = (0..p.len())
                    .max_by(|&a, &b| p[a].total_cmp(&p[b]))
                    .unwrap_or(0);
                Prediction {
                    class: best,
                    label: self.classes[best].clone(),
                    probability: p[best],
                }
            })
            .collect())
    }

    /// What the feature store served, over every window scored.
    pub fn store_use(&self) -> &embed::through_store::StoreUse {
        &self.used
    }
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
