//! Features of rows through the feature store: the vectors it holds are
//! taken from it, the others embedded (a repeated input once) and committed
//! to it a chunk at a time. What the embed stage and `predict` share.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use anyhow::Result;
use indicatif::ProgressBar;
use tables::encoded::EncodedRow;
use tables::feature_chunks::{Chunk, Key};

use crate::encoder::Encoder;
use crate::stage::{EmbedParams, embed_rows_with};
use crate::store::{self, FeatureStore};

/// What one pass through the store did.
#[derive(Debug, Default)]
pub struct StoreUse {
    pub rows: usize,
    /// Rows whose vector was computed now (repeats included).
    pub embedded: usize,
    /// Distinct inputs computed now.
    pub distinct: usize,
    pub from_store: usize,
    /// Real tokens of the distinct inputs computed now.
    pub tokens: usize,
    pub embed_seconds: f64,
    /// Damaged chunks dropped on the way.
    pub warnings: Vec<String>,
}

impl StoreUse {
    /// "R rows: N embedded now (D distinct inputs), S from the feature store".
    pub fn summary(&self) -> String {
        format!(
            "{} rows: {} embedded now ({} distinct inputs), {} from the feature store",
            self.rows, self.embedded, self.distinct, self.from_store
        )
    }
}

/// The key of each row under `model_digest` (of `model.onnx`) and the
/// encoder's pooling.
pub fn keys(rows: &[EncodedRow], model_digest: &str, params: &EmbedParams) -> Vec<Key> {
    rows.iter()
        .map(|r| store::row_key(model_digest, params.pooling.name(), &r.ids))
        .collect()
}

/// Features of `rows` ([rows × hidden], in their order), `keys` being
/// theirs ([`keys`]).
pub fn features(
    encoder: &mut Encoder,
    rows: &[EncodedRow],
    keys: &[Key],
    params: &EmbedParams,
    store: &mut FeatureStore,
    bar: &ProgressBar,
) -> Result<(Vec<f32>, StoreUse)> {
    let hidden = encoder.hidden_size();
    let (stored, warnings) = store.fetch(keys)?;
    let mut seen = HashSet::new();
    let (new_rows, new_keys): (Vec<EncodedRow>, Vec<Key>) = rows
        .iter()
        .zip(keys)
        .filter(|(_, key)| !stored.contains_key(*key) && seen.insert(**key))
        .map(|(row, key)| (row.clone(), *key))
        .unzip();
    bar.set_length(new_rows.len() as u64);
    let empty = || Chunk {
        keys: Vec::new(),
        hidden,
        features: Vec::new(),
    };
    let started = Instant::now();
    let mut pending = empty();
    let new_features = embed_rows_with(encoder, &new_rows, params, bar, &mut |batch, out| {
        for (k, &i) in batch.iter().enumerate() {
            pending.keys.push(new_keys[i]);
            pending
                .features
                .extend_from_slice(&out[k * hidden..(k + 1) * hidden]);
        }
        if pending.keys.len() >= store::CHUNK_ROWS {
            store.commit(std::mem::replace(&mut pending, empty()))?;
        }
        Ok(())
    })?;
    store.commit(pending)?;

    let new_index: HashMap<Key, usize> =
        new_keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
    let mut features = Vec::with_capacity(rows.len() * hidden);
    for key in keys {
        match stored.get(key) {
            Some(vector) => features.extend_from_slice(vector),
            None => {
                let i = new_index[key];
                features.extend_from_slice(&new_features[i * hidden..(i + 1) * hidden]);
            }
        }
    }
    let from_store = keys.iter().filter(|k| stored.contains_key(*k)).count();
    let used = StoreUse {
        rows: rows.len(),
        embedded: rows.len() - from_store,
        distinct: new_rows.len(),
        from_store,
        tokens: new_rows.iter().map(|r| r.ids.len()).sum(),
        embed_seconds: started.elapsed().as_secs_f64(),
        warnings,
    };
    Ok((features, used))
}
