//! safetensors BERT checkpoint -> ONNX graph, in Rust: `weights` reads
//! the checkpoint, `bert` lays out the topology, `builder` writes ONNX.
//!
//! The graph is `BertModel` as in transformers (eager attention): inputs
//! `input_ids`, `attention_mask`, `token_type_ids` (int64 [batch, sequence]);
//! outputs `last_hidden_state` [batch, sequence, H] and, when the checkpoint
//! has pooler weights, `pooler_output` [batch, H]. Every size comes from
//! config.json and is checked against the weights. Patterns are the plain
//! ones ONNX Runtime's optimiser fuses (LayerNormalization, Gelu from
//! Div/Erf/Add/Mul/Mul).

mod bert;
mod builder;
pub mod classifier;
mod weights;

use std::path::Path;

use anyhow::{Context, Result};
use prost::Message;
use safetensors::SafeTensors;

use crate::bert_config::BertConfig;
use builder::Builder;
use weights::Weights;

pub use builder::OPSET;

/// Which operators the graph is written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ops {
    /// ONNX Runtime's fused transformer kernels (com.microsoft Attention,
    /// SkipLayerNormalization, BiasGelu): what its own transformer
    /// optimiser produces, and much faster. ONNX Runtime only.
    Fused,
    /// Standard ONNX opset 17 only: portable to any runtime.
    Standard,
}

/// The float type inside the converted graph. Inputs (int64) and outputs
/// (float32) are the same for both: fp16 casts back at the end, so nothing
/// downstream changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    /// Weights and activations in IEEE half precision: for GPUs (tensor
    /// cores); on CPUs ONNX Runtime is slower in fp16 than in fp32.
    Fp16,
    /// For CPUs: the weights of every encoder matrix product in int8 (per
    /// output channel, symmetric), activations quantized on the fly per
    /// row (per token, symmetric), so a text's features never depend on
    /// the texts batched with it (`MatMulIntegerToFloat` with the fused
    /// operators, `MatMulInteger` with the standard ones; Q, K and V share
    /// one quantization of their input). Embeddings, LayerNorm, softmax,
    /// the pooler and pooling stay float32.
    Int8,
}

/// What the converted graph offers, saved beside it as model.json.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GraphInfo {
    pub hidden_size: usize,
    pub max_positions: usize,
    pub has_pooler: bool,
}

/// Converts `model.safetensors` + `config.json` to an fp32 ONNX graph.
pub fn convert(config_path: &Path, weights_path: &Path, ops: Ops) -> Result<(Vec<u8>, GraphInfo)> {
    convert_with(config_path, weights_path, ops, Precision::Fp32)
}

/// Converts `model.safetensors` + `config.json` to ONNX bytes.
pub fn convert_with(
    config_path: &Path,
    weights_path: &Path,
    ops: Ops,
    precision: Precision,
) -> Result<(Vec<u8>, GraphInfo)> {
    let config = BertConfig::load(config_path)?;
    let bytes = std::fs::read(weights_path)
        .with_context(|| format!("cannot read {}", weights_path.display()))?;
    let tensors = SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{} is not a safetensors file", weights_path.display()))?;
    let weights = Weights::new(&tensors, weights_path)?;
    let mut builder = Builder::new(precision, ops == Ops::Standard);
    let (spec, info) = bert::build(&mut builder, &config, &weights, ops)?;
    Ok((builder.finish(spec).encode_to_vec(), info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx_proto::ModelProto;

    fn tiny() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/models/bert-tiny-random")
    }

    fn graph(ops: Ops, precision: Precision) -> ModelProto {
        let dir = tiny();
        let (bytes, _) = convert_with(
            &dir.join("config.json"),
            &dir.join("model.safetensors"),
            ops,
            precision,
        )
        .unwrap();
        ModelProto::decode(&bytes[..]).unwrap()
    }

    fn op_types(model: &ModelProto) -> Vec<(String, String)> {
        let graph = model.graph.as_ref().unwrap();
        graph
            .node
            .iter()
            .map(|n| (n.domain.clone(), n.op_type.clone()))
            .collect()
    }

    #[test]
    fn standard_graphs_use_standard_operators_only_int8_included() {
        for precision in [Precision::Fp32, Precision::Fp16, Precision::Int8] {
            let contrib: Vec<_> = op_types(&graph(Ops::Standard, precision))
                .into_iter()
                .filter(|(domain, _)| !domain.is_empty())
                .collect();
            assert!(contrib.is_empty(), "{precision:?}: {contrib:?}");
        }
    }

    #[test]
    fn int8_quantizes_every_encoder_product_and_nothing_else() {
        let layers = 2; // bert-tiny-random's num_hidden_layers
        let fused = op_types(&graph(Ops::Fused, Precision::Int8));
        let count = |op: &str| fused.iter().filter(|(_, t)| t == op).count();
        // Per layer: query, key, value, attention output, intermediate,
        // output dense.
        assert_eq!(count("MatMulIntegerToFloat"), 6 * layers);
        // Per layer the inputs of QKV (one, shared), attention output,
        // intermediate and output dense; per row, never per tensor.
        assert_eq!(count("QuantizeLinear"), 4 * layers);
        assert_eq!(count("DynamicQuantizeLinear"), 0);
        assert_eq!(count("MultiHeadAttention"), layers);
        assert_eq!(count("Attention"), 0);
        // The pooler stays a float MatMul.
        assert_eq!(count("MatMul"), 1);
        let standard = op_types(&graph(Ops::Standard, Precision::Int8));
        let count = |op: &str| standard.iter().filter(|(_, t)| t == op).count();
        assert_eq!(count("MatMulInteger"), 6 * layers);
        assert_eq!(count("QuantizeLinear"), 4 * layers);
        assert_eq!(count("DynamicQuantizeLinear"), 0);
        // Two float MatMuls per layer (scores, context) and the pooler.
        assert_eq!(count("MatMul"), 2 * layers + 1);
    }
}
