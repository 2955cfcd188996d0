//! Features of rows through the feature store: the vectors it holds are
//! taken from it, the others embedded (a repeated input once) and committed
//! to it a chunk at a time. What the embed stage and `predict` share.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use indicatif::ProgressBar;
use tables::encoded::EncodedRow;
use tables::feature_chunks::{Chunk, Key};

use crate::params::EmbedParams;
use crate::store::{self, FeatureStore};

/// What one pass through the store did.
#[derive(Debug, Default, Clone)]
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
    /// Width of the vectors.
    pub hidden: usize,
    /// Damaged chunks dropped on the way.
    pub warnings: Vec<String>,
}

impl StoreUse {
    /// Adds another pass's figures to these (the width kept once known).
    pub fn add(&mut self, other: StoreUse) {
        self.rows += other.rows;
        self.embedded += other.embedded;
        self.distinct += other.distinct;
        self.from_store += other.from_store;
        self.tokens += other.tokens;
        self.embed_seconds += other.embed_seconds;
        if self.hidden == 0 {
            self.hidden = other.hidden;
        }
        self.warnings.extend(other.warnings);
    }

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

/// Called with each chunk of new vectors as it is finished.
pub type ChunkDone<'a> = dyn FnMut(Chunk) -> Result<()> + 'a;

/// Computes the vectors of rows the feature store lacks: the local
/// executor ([`crate::local::Local`]) or Ray tasks ([`crate::ray::Ray`]).
pub trait Embedder {
    /// Embeds `rows` (`keys[i]` is `rows[i]`'s key), handing every finished
    /// chunk to `done` as soon as it is finished, in any order, and
    /// advancing `bar` by the rows done. On an error, the chunks handed
    /// over before it stay handed over.
    fn embed(
        &mut self,
        rows: &[EncodedRow],
        keys: &[Key],
        bar: &ProgressBar,
        done: &mut ChunkDone,
    ) -> Result<()>;
}

/// Features of `rows` ([rows × hidden], in their order), `keys` being
/// theirs ([`keys`]): those the store holds are taken from it, the others
/// computed by `embedder` (a repeated input once) and committed to the
/// store a chunk at a time, as each chunk is finished.
pub fn features(
    embedder: &mut dyn Embedder,
    rows: &[EncodedRow],
    keys: &[Key],
    store: &mut FeatureStore,
    bar: &ProgressBar,
) -> Result<(Vec<f32>, StoreUse)> {
    let (stored, warnings) = store.fetch(keys)?;
    let mut seen = HashSet::new();
    let (new_rows, new_keys): (Vec<EncodedRow>, Vec<Key>) = rows
        .iter()
        .zip(keys)
        .filter(|(_, key)| !stored.contains_key(*key) && seen.insert(**key))
        .map(|(row, key)| (row.clone(), *key))
        .unzip();
    bar.set_length(new_rows.len() as u64);
    let new_index: HashMap<Key, usize> =
        new_keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
    let mut hidden = stored.values().next().map(Vec::len);
    let mut new_features = Vec::new();
    let started = Instant::now();
    embedder.embed(&new_rows, &new_keys, bar, &mut |chunk| {
        let h = *hidden.get_or_insert(chunk.hidden);
        ensure!(
            chunk.hidden == h && chunk.features.len() == chunk.keys.len() * h,
            "a chunk of {}-wide vectors among {h}-wide ones",
            chunk.hidden
        );
        if new_features.is_empty() {
            new_features = vec![0f32; new_rows.len() * h];
        }
        for (j, key) in chunk.keys.iter().enumerate() {
            let i = *new_index
                .get(key)
                .context("a chunk holds a row that was not asked for")?;
            new_features[i * h..(i + 1) * h].copy_from_slice(&chunk.features[j * h..(j + 1) * h]);
        }
        store.commit(chunk)
    })?;
    let embed_seconds = started.elapsed().as_secs_f64();
    let hidden = hidden.unwrap_or(0); // 0 only for no rows at all
    ensure!(
        new_features.len() == new_rows.len() * hidden,
        "the executor returned no vectors for {} new rows",
        new_rows.len()
    );

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
        embed_seconds,
        hidden,
        warnings,
    };
    Ok((features, used))
}
