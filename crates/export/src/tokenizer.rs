//! The exported `tokenizer.json`: the model's tokenizer with the pipeline's
//! truncation and padding set inside it, so that any client of the
//! `tokenizers` library (Rust, Python, JavaScript) gets the ids the
//! classifier was trained on without knowing `max_len`.

use std::path::Path;

use anyhow::{Result, anyhow};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// Writes `source` with truncation to `max_len` tokens (special tokens
/// included, longest-first from the right: the encode stage's truncation)
/// and padding to the longest text of a batch.
pub fn write(source: &Path, max_len: usize, out: &Path) -> Result<()> {
    let mut tokenizer = Tokenizer::from_file(source)
        .map_err(|e| anyhow!("{}: not a usable tokenizer.json: {e}", source.display()))?;
    // The encode stage's pad id (encode::SentenceTokenizer): the tokenizer's
    // own padding setting, else [PAD] / <pad>, else 0.
    let pad = encode_pad(&tokenizer);
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_len,
            ..Default::default()
        }))
        .map_err(|e| anyhow!("tokenizer truncation to {max_len}: {e}"))?;
    tokenizer.with_padding(Some(PaddingParams {
        strategy: PaddingStrategy::BatchLongest,
        pad_id: pad.0,
        pad_token: pad.1,
        ..Default::default()
    }));
    tokenizer
        .save(out, true)
        .map_err(|e| anyhow!("cannot write {}: {e}", out.display()))
}

fn encode_pad(tokenizer: &Tokenizer) -> (u32, String) {
    if let Some(p) = tokenizer.get_padding() {
        return (p.pad_id, p.pad_token.clone());
    }
    for token in ["[PAD]", "<pad>"] {
        if let Some(id) = tokenizer.token_to_id(token) {
            return (id, token.to_string());
        }
    }
    (0, tokenizer.id_to_token(0).unwrap_or_default())
}
