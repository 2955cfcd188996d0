//! The `model` stage's work: from resolved model files to the three files
//! every later stage uses: `model.onnx`, `tokenizer.json`, `model.json`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use prost::Message;

use crate::convert::{GraphInfo, Ops, Precision, convert_with};
use crate::onnx_proto::{DimValue, ModelProto};
use crate::source::{ModelFiles, Weights};

pub const OUTPUTS: [&str; 3] = ["model.onnx", "tokenizer.json", "model.json"];

pub fn prepare(
    files: &ModelFiles,
    ops: Ops,
    precision: Precision,
    out_dir: &Path,
) -> Result<GraphInfo> {
    let info = match &files.weights {
        Weights::Safetensors(weights) => {
            let config = files
                .config
                .as_ref()
                .context("a safetensors model needs config.json")?;
            let (bytes, info) = convert_with(config, weights, ops, precision)?;
            std::fs::write(out_dir.join("model.onnx"), bytes)?;
            info
        }
        Weights::Onnx(path) => {
            if precision != Precision::Fp32 {
                bail!(
                    "{}: model.precision = {:?} converts safetensors checkpoints; \
                     a ready ONNX graph is used as it is (leave precision at \"fp32\")",
                    path.display(),
                    format!("{precision:?}").to_lowercase()
                );
            }
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            let info = inspect_onnx(&bytes, files.config.as_deref())
                .with_context(|| format!("{}", path.display()))?;
            std::fs::write(out_dir.join("model.onnx"), bytes)?;
            info
        }
    };
    if let Some(config) = &files.config {
        check_tokenizer_fits(&files.tokenizer, config)?;
    }
    std::fs::copy(&files.tokenizer, out_dir.join("tokenizer.json"))
        .with_context(|| format!("cannot copy {}", files.tokenizer.display()))?;
    std::fs::write(
        out_dir.join("model.json"),
        serde_json::to_vec_pretty(&info)?,
    )?;
    Ok(info)
}

/// A tokenizer with more tokens than the model has embeddings would produce
/// ids the model cannot look up (ONNX Runtime fails, or worse, reads garbage).
fn check_tokenizer_fits(tokenizer: &Path, config: &Path) -> Result<()> {
    let vocab = crate::bert_config::BertConfig::load(config)?.vocab_size;
    let tok = tokenizers::Tokenizer::from_file(tokenizer).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a Hugging Face tokenizer.json: {e}",
            tokenizer.display()
        )
    })?;
    let tokens = tok.get_vocab_size(true);
    if tokens > vocab {
        bail!(
            "{}: the tokenizer has {tokens} tokens but the model has {vocab} token embeddings \
             (vocab_size in {}); ids from {vocab} up could not be looked up. \
             Use the tokenizer.json that was trained with this model",
            tokenizer.display(),
            config.display()
        );
    }
    Ok(())
}

/// Reads a ready ONNX graph's interface: which outputs, which hidden size.
fn inspect_onnx(bytes: &[u8], config: Option<&Path>) -> Result<GraphInfo> {
    let model = ModelProto::decode(bytes).context("not an ONNX model (protobuf decode failed)")?;
    let graph = model.graph.context("the ONNX model has no graph")?;
    for input in ["input_ids", "attention_mask"] {
        if !graph.input.iter().any(|i| i.name == input) {
            bail!(
                "the ONNX model has no {input} input; a BERT encoder needs input_ids, attention_mask (and token_type_ids)"
            );
        }
    }
    let last_dim = |name: &str| -> Option<i64> {
        let out = graph.output.iter().find(|o| o.name == name)?;
        let dims = &out
            .r#type
            .as_ref()?
            .tensor_type
            .as_ref()?
            .shape
            .as_ref()?
            .dim;
        match dims.last()?.value.as_ref()? {
            DimValue::Value(v) => Some(*v),
            DimValue::Param(_) => None,
        }
    };
    let hidden = last_dim("last_hidden_state")
        .or_else(|| last_dim("pooler_output"))
        .context("the ONNX model has neither a last_hidden_state nor a pooler_output output with a fixed hidden size")?;
    let max_positions = match config {
        Some(c) => crate::bert_config::BertConfig::load(c)?.max_position_embeddings,
        None => 512,
    };
    Ok(GraphInfo {
        hidden_size: hidden as usize,
        max_positions,
        has_pooler: graph.output.iter().any(|o| o.name == "pooler_output"),
    })
}
