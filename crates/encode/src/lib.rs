//! encode: sentences -> token ids padded/truncated to `max_len`, with the
//! model's own `tokenizer.json` (Hugging Face `tokenizers`, so ids equal the
//! Python package's).

use std::path::Path;

use anyhow::{Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use tokenizers::{Tokenizer, TruncationParams};

/// `[encode]` in pipeline.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodeParams {
    /// Tokens per row after padding/truncation: a number, or "auto" (the
    /// `auto_percentile` of training-split token counts).
    #[serde(default = "default_max_len")]
    pub max_len: MaxLen,
    #[serde(default = "default_percentile")]
    pub auto_percentile: f64,
    /// Sentences tokenized and written at a time (default
    /// [`DEFAULT_BATCH_ROWS`]): memory, not results, so left out of the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_rows: Option<usize>,
}

/// The encode stage's window: ~8k sentences and their encodings, a few MB.
pub const DEFAULT_BATCH_ROWS: usize = 8192;

/// Parameters that change how the stage runs, never what it writes.
pub const RUN_ONLY_PARAMS: [&str; 1] = ["batch_rows"];

impl Default for EncodeParams {
    fn default() -> Self {
        EncodeParams {
            max_len: default_max_len(),
            auto_percentile: default_percentile(),
            batch_rows: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MaxLen {
    Fixed(usize),
    Auto(AutoWord),
}

/// The literal string "auto".
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AutoWord {
    Auto,
}

fn default_max_len() -> MaxLen {
    MaxLen::Fixed(17)
}
fn default_percentile() -> f64 {
    95.0
}

/// A tokenizer set up for single sentences, no padding, no truncation.
pub struct SentenceTokenizer {
    plain: Tokenizer,
    pad_id: u32,
}

/// One sentence's tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokens {
    /// Ids after truncation to `max_len` (special tokens included), unpadded.
    pub ids: Vec<u32>,
    /// Token count before truncation (special tokens included).
    pub n_tokens: usize,
}

impl SentenceTokenizer {
    pub fn load(path: &Path) -> Result<SentenceTokenizer> {
        let mut plain = Tokenizer::from_file(path)
            .map_err(|e| anyhow!("{}: not a usable tokenizer.json: {e}", path.display()))?;
        let pad_id = plain
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| plain.token_to_id("[PAD]"))
            .or_else(|| plain.token_to_id("<pad>"))
            .unwrap_or(0);
        plain.with_padding(None);
        plain.with_truncation(None).map_err(|e| anyhow!("{e}"))?;
        Ok(SentenceTokenizer { plain, pad_id })
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    pub fn vocab_size(&self) -> usize {
        self.plain.get_vocab_size(true)
    }

    /// Full-length ids of each sentence (special tokens included).
    pub fn tokenize(&self, sentences: &[String]) -> Result<Vec<Vec<u32>>> {
        let encodings = self
            .plain
            .encode_batch(sentences.to_vec(), true)
            .map_err(|e| anyhow!("tokenizer: {e}"))?;
        Ok(encodings
            .into_iter()
            .map(|e| e.get_ids().to_vec())
            .collect())
    }

    /// `full` (from [`Self::tokenize`]) cut to `max_len` exactly as the
    /// tokenizer's own truncation does it (special tokens kept): sentences
    /// that are too long are encoded again with truncation on.
    pub fn truncate(
        &self,
        sentences: &[String],
        full: Vec<Vec<u32>>,
        max_len: usize,
    ) -> Result<Vec<Tokens>> {
        let long: Vec<usize> = (0..full.len())
            .filter(|&i| full[i].len() > max_len)
            .collect();
        let mut truncated = std::collections::HashMap::new();
        if !long.is_empty() {
            let mut t = self.plain.clone();
            t.with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..Default::default()
            }))
            .map_err(|e| anyhow!("tokenizer truncation to {max_len}: {e}"))?;
            let texts: Vec<String> = long.iter().map(|&i| sentences[i].clone()).collect();
            let enc = t
                .encode_batch(texts, true)
                .map_err(|e| anyhow!("tokenizer: {e}"))?;
            for (i, e) in long.iter().zip(enc) {
                truncated.insert(*i, e.get_ids().to_vec());
            }
        }
        Ok(full
            .into_iter()
            .enumerate()
            .map(|(i, ids)| Tokens {
                n_tokens: ids.len(),
                ids: truncated.remove(&i).unwrap_or(ids),
            })
            .collect())
    }
}

impl EncodeParams {
    /// Refuses values that cannot work, naming the key, the value and what
    /// is allowed (before any stage runs); `model_max` is the model's
    /// position count when the model is at hand.
    pub fn batch_rows(&self) -> usize {
        self.batch_rows.unwrap_or(DEFAULT_BATCH_ROWS)
    }

    pub fn check(&self, model_max: Option<usize>) -> Result<()> {
        if self.batch_rows == Some(0) {
            bail!("encode.batch_rows = 0; must be at least 1");
        }
        if let MaxLen::Fixed(n) = self.max_len {
            if n < 2 {
                bail!("encode.max_len = {n}; it must leave room for [CLS] and [SEP] (at least 2)");
            }
            if let Some(max) = model_max
                && n > max
            {
                bail!(
                    "encode.max_len = {n}; the model has {max} positions, so at most {max} \
                     (or \"auto\", which stops at the longest training sentence)"
                );
            }
        }
        let p = self.auto_percentile;
        if !(p > 0.0 && p <= 100.0) {
            bail!("encode.auto_percentile = {p}; it must be in (0, 100]");
        }
        Ok(())
    }
}

/// `max_len` from the parameters and the training split's token counts,
/// capped at what the model's position embeddings allow. Returns the value
/// and the rule that produced it (for the output metadata).
pub fn choose_max_len(
    params: &EncodeParams,
    train_lengths: &[usize],
    model_max: usize,
) -> Result<(usize, String)> {
    params.check(Some(model_max))?;
    let (len, rule) = match params.max_len {
        MaxLen::Fixed(n) => (n, format!("fixed {n}")),
        MaxLen::Auto(_) => {
            let p = params.auto_percentile;
            let mut sorted = train_lengths.to_vec();
            sorted.sort_unstable();
            if sorted.is_empty() {
                bail!("encode.max_len = \"auto\" needs a non-empty training split");
            }
            // Nearest-rank percentile.
            let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
            let n = sorted[rank - 1].max(2);
            (
                n,
                format!("auto: p{p} of {} training token counts = {n}", sorted.len()),
            )
        }
    };
    if len > model_max {
        return Ok((
            model_max,
            format!("{rule}, capped at the model's {model_max} positions"),
        ));
    }
    Ok((len, rule))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_max_len_is_a_percentile_and_capped() {
        let params = EncodeParams {
            max_len: MaxLen::Auto(AutoWord::Auto),
            auto_percentile: 50.0,
            ..Default::default()
        };
        assert_eq!(choose_max_len(&params, &[3, 9, 5, 7, 4], 512).unwrap().0, 5);
        let params = EncodeParams {
            max_len: MaxLen::Auto(AutoWord::Auto),
            auto_percentile: 100.0,
            ..Default::default()
        };
        assert_eq!(choose_max_len(&params, &[3, 900], 512).unwrap().0, 512);
        assert!(
            choose_max_len(
                &EncodeParams {
                    max_len: MaxLen::Fixed(1),
                    ..Default::default()
                },
                &[],
                512
            )
            .is_err()
        );
    }

    #[test]
    fn params_accept_a_number_or_auto() {
        #[derive(Deserialize)]
        struct W {
            encode: EncodeParams,
        }
        let w: W = toml_like(r#"{"encode": {"max_len": "auto"}}"#);
        assert_eq!(w.encode.max_len, MaxLen::Auto(AutoWord::Auto));
        let w: W = toml_like(r#"{"encode": {"max_len": 32}}"#);
        assert_eq!(w.encode.max_len, MaxLen::Fixed(32));
    }

    fn toml_like<T: serde::de::DeserializeOwned>(json: &str) -> T {
        serde_json::from_str(json).unwrap()
    }
}

pub const OUTPUTS: [&str; 4] = [
    "train.parquet",
    "val.parquet",
    "test.parquet",
    "length_histogram.parquet",
];

/// What the encode stage did.
#[derive(Debug, Default)]
pub struct EncodeSummary {
    pub max_len: usize,
    pub notes: Vec<String>,
}

/// The encode stage: each ingest split -> token ids, plus the training
/// split's token-length histogram. Streams: sentences are read, tokenized
/// and written `params.batch_rows` at a time, so what is held is one window
/// of sentences and encodings, and one row group of output (plus, with
/// `max_len = "auto"`, each training row's token count: a first pass over
/// the training split decides `max_len` before anything is written).
pub fn run(
    params: &EncodeParams,
    splits: [&Path; 3],
    tokenizer: &Path,
    model_max_positions: usize,
    out_dir: &Path,
    provenance: tables::Provenance,
) -> Result<EncodeSummary> {
    let tok = SentenceTokenizer::load(tokenizer)?;
    let window = params.batch_rows();
    let train_lengths = match params.max_len {
        MaxLen::Auto(_) => token_counts(&tok, splits[0], window)?,
        MaxLen::Fixed(_) => Vec::new(),
    };
    let (max_len, rule) = choose_max_len(params, &train_lengths, model_max_positions)?;
    drop(train_lengths);
    let provenance = provenance
        .with("max_len", max_len.to_string())
        .with("max_len_rule", rule.clone())
        .with("pad_id", tok.pad_id().to_string());
    let mut summary = EncodeSummary {
        max_len,
        notes: vec![format!("max_len {max_len} ({rule})")],
    };
    let mut histogram = std::collections::BTreeMap::new();
    for (i, split) in splits.iter().enumerate() {
        let mut writer = tables::encoded::EncodedWriter::create(
            &out_dir.join(OUTPUTS[i]),
            max_len,
            &provenance,
        )?;
        let (mut rows, mut total, mut truncated) = (0usize, 0usize, 0usize);
        for batch in tables::splits::read_batched(split, window)? {
            let batch = batch?;
            let texts: Vec<String> = batch.iter().map(|r| r.sentence.clone()).collect();
            let full = tok.tokenize(&texts)?;
            if i == 0 {
                for ids in &full {
                    *histogram.entry(ids.len()).or_insert(0usize) += 1;
                }
            }
            let tokens = tok.truncate(&texts, full, max_len)?;
            truncated += tokens.iter().filter(|t| t.n_tokens > max_len).count();
            let encoded: Vec<tables::encoded::EncodedRow> = batch
                .iter()
                .zip(tokens)
                .map(|(r, t)| tables::encoded::EncodedRow {
                    row_id: r.row_id,
                    label: r.label,
                    ids: t.ids,
                    n_tokens: t.n_tokens,
                })
                .collect();
            rows += encoded.len();
            total += encoded.iter().map(|r| r.n_tokens).sum::<usize>();
            writer.write(&encoded)?;
        }
        writer.finish()?;
        summary.notes.push(format!(
            "{}: {rows} rows, {total} tokens, {truncated} truncated to {max_len}",
            OUTPUTS[i].trim_end_matches(".parquet"),
        ));
    }
    let counts: Vec<(usize, usize)> = histogram.into_iter().collect();
    tables::encoded::write_histogram(&out_dir.join(OUTPUTS[3]), &counts, &provenance)?;
    Ok(summary)
}

/// Each row's token count (special tokens included) in the split at
/// `path`, tokenized `window` rows at a time.
fn token_counts(tok: &SentenceTokenizer, path: &Path, window: usize) -> Result<Vec<usize>> {
    let mut lengths = Vec::new();
    for batch in tables::splits::read_batched(path, window)? {
        let texts: Vec<String> = batch?.into_iter().map(|r| r.sentence).collect();
        lengths.extend(tok.tokenize(&texts)?.iter().map(Vec::len));
    }
    Ok(lengths)
}
