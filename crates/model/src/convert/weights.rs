//! Reading a safetensors BERT checkpoint: tensors by `BertModel` name,
//! whatever the file's prefix and LayerNorm naming, as f32, each checked
//! against the shape config.json implies.

use std::path::Path;

use anyhow::{Context, Result, bail};
use safetensors::{Dtype, SafeTensors};

/// Checkpoint tensors by BertModel name, whatever the prefix and the
/// LayerNorm naming (`weight`/`gamma`, `bias`/`beta`) of the file.
pub(super) struct Weights<'a> {
    tensors: &'a SafeTensors<'a>,
    prefix: &'static str,
    pub file: String,
}

impl<'a> Weights<'a> {
    pub fn new(tensors: &'a SafeTensors<'a>, path: &Path) -> Result<Weights<'a>> {
        let file = path.display().to_string();
        for prefix in ["", "bert.", "model."] {
            if tensors
                .tensor(&format!("{prefix}embeddings.word_embeddings.weight"))
                .is_ok()
            {
                return Ok(Weights {
                    tensors,
                    prefix,
                    file,
                });
            }
        }
        bail!("{file}: no embeddings.word_embeddings.weight; is this a BERT checkpoint?")
    }

    pub fn has(&self, name: &str) -> bool {
        self.candidates(name)
            .iter()
            .any(|n| self.tensors.tensor(n).is_ok())
    }

    fn candidates(&self, name: &str) -> Vec<String> {
        let mut names = vec![format!("{}{name}", self.prefix)];
        if let Some(stem) = name.strip_suffix("LayerNorm.weight") {
            names.push(format!("{}{stem}LayerNorm.gamma", self.prefix));
        }
        if let Some(stem) = name.strip_suffix("LayerNorm.bias") {
            names.push(format!("{}{stem}LayerNorm.beta", self.prefix));
        }
        names
    }

    /// The tensor as f32, checked against the shape config.json implies.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let view = self
            .candidates(name)
            .iter()
            .find_map(|n| self.tensors.tensor(n).ok())
            .with_context(|| format!("{}: tensor {}{name} is missing", self.file, self.prefix))?;
        if view.shape() != shape {
            bail!(
                "{}: {}{name} has shape {:?} but config.json implies {:?}; the config does not describe these weights",
                self.file,
                self.prefix,
                view.shape(),
                shape
            );
        }
        let data = view.data();
        Ok(match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => bail!(
                "{}: {name} has dtype {other:?}; expected F32, F16 or BF16",
                self.file
            ),
        })
    }

    /// A PyTorch Linear weight [out, in], transposed to [in, out] for MatMul.
    pub fn linear_t(&self, name: &str, out_dim: usize, in_dim: usize) -> Result<Vec<f32>> {
        let w = self.get(name, &[out_dim, in_dim])?;
        let mut t = vec![0f32; w.len()];
        for o in 0..out_dim {
            for i in 0..in_dim {
                t[i * out_dim + o] = w[o * in_dim + i];
            }
        }
        Ok(t)
    }
}
