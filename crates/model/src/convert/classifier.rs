//! The deployable classifier: the model stage's encoder graph with pooling,
//! the trained MLP and a softmax appended, as one ONNX graph.
//!
//! Inputs `input_ids` and `attention_mask` (int64 [batch, sequence]); output
//! `probabilities` (float32 [batch, K]). `token_type_ids` becomes zeros made
//! inside the graph (what the embed stage feeds). The encoder keeps its
//! precision; the appended part is float32, as the encoder's outputs are.
//! Nodes no longer needed for the output (the pooler, for mean pooling) are
//! dropped.

use std::collections::HashSet;

use anyhow::{Context, Result, bail, ensure};
use prost::Message;

use super::Precision;
use super::builder::{Builder, Dim, int_attr, tensor_info};
use crate::onnx_proto::{ModelProto, StringStringEntryProto, data_type};

/// Which encoder output becomes the feature vector (the embed stage's pooling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// `pooler_output`.
    Pooler,
    /// `last_hidden_state` at position 0 ([CLS]).
    Cls,
    /// The mean of `last_hidden_state` over positions whose mask is set.
    Mean,
}

/// The trained head: Linear(input, hidden) → ReLU → Linear(hidden, classes),
/// weights row-major as the head saves them (`fc1_weight` is [input × hidden]).
pub struct Mlp {
    pub input: usize,
    pub hidden: usize,
    pub classes: usize,
    pub fc1_weight: Vec<f32>,
    pub fc1_bias: Vec<f32>,
    pub fc2_weight: Vec<f32>,
    pub fc2_bias: Vec<f32>,
}

/// The name of the classifier's output.
pub const OUTPUT: &str = "probabilities";

/// `encoder` (ONNX bytes of the model stage) with `pool`, `mlp` and a
/// softmax appended; `metadata` goes into the model's `metadata_props`.
pub fn classifier(
    encoder: &[u8],
    pool: Pool,
    mlp: &Mlp,
    metadata: Vec<(String, String)>,
) -> Result<Vec<u8>> {
    ensure!(
        mlp.fc1_weight.len() == mlp.input * mlp.hidden
            && mlp.fc1_bias.len() == mlp.hidden
            && mlp.fc2_weight.len() == mlp.hidden * mlp.classes
            && mlp.fc2_bias.len() == mlp.classes,
        "the head's weights do not have the shapes {}x{}, {}, {}x{}, {}",
        mlp.input,
        mlp.hidden,
        mlp.hidden,
        mlp.hidden,
        mlp.classes,
        mlp.classes
    );
    let mut model = ModelProto::decode(encoder).context("the encoder is not an ONNX model")?;
    // This crate's ONNX types carry what its own converter and common
    // exporters (PyTorch's) write. A graph with more (an `onnx:` source)
    // would lose it silently when re-encoded: refused instead.
    if let Some(field) = crate::onnx_proto::uncarried_field(encoder) {
        bail!(
            "the model graph uses an ONNX field the exporter does not carry ({field}); \
             export a graph converted by this project (a pypi:, hf: or dir: model source)"
        );
    }
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty())
        .map_or(0, |o| o.version);
    ensure!(
        opset >= 13,
        "the model graph's opset is {opset}; exporting needs 13 or later"
    );
    let graph = model
        .graph
        .as_mut()
        .context("the ONNX model has no graph")?;
    let has_output = |name: &str| graph.output.iter().any(|o| o.name == name);
    let features = match pool {
        Pool::Pooler => "pooler_output",
        Pool::Cls | Pool::Mean => "last_hidden_state",
    };
    ensure!(
        has_output(features),
        "the model graph has no {features} output for {pool:?} pooling"
    );
    for input in ["input_ids", "attention_mask"] {
        ensure!(
            graph.input.iter().any(|i| i.name == input),
            "the model graph has no {input} input"
        );
    }

    let mut b = Builder::with_prefix(Precision::Fp32, false, "classifier/");
    if graph.input.iter().any(|i| i.name == "token_type_ids") {
        // Zeros of input_ids' shape, made first: nodes stay in topological order.
        graph.input.retain(|i| i.name != "token_type_ids");
        let mut zeros = Builder::with_prefix(Precision::Fp32, false, "classifier/types/");
        let zero = zeros.int_scalar(0);
        zeros.op_named("Mul", &["input_ids", &zero], "token_type_ids");
        let (nodes, initializers) = zeros.into_parts();
        graph.node.splice(0..0, nodes);
        graph.initializer.extend(initializers);
    }
    let pooled = match pool {
        Pool::Pooler => features.to_string(),
        Pool::Cls => {
            let first = b.int_scalar(0);
            b.op("Gather", &[features, &first], vec![int_attr("axis", 1)])
        }
        Pool::Mean => {
            // Σ_s h[b,s,:]·m[b,s] / max(Σ_s m[b,s], 1e-9), as embed's pool_mean.
            let mask = b.op(
                "Cast",
                &["attention_mask"],
                vec![int_attr("to", data_type::FLOAT as i64)],
            );
            let last = b.ints(&[-1]);
            let mask3 = b.op("Unsqueeze", &[&mask, &last], vec![]);
            let masked = b.op("Mul", &[features, &mask3], vec![]);
            let positions = b.ints(&[1]);
            let sum = b.op(
                "ReduceSum",
                &[&masked, &positions],
                vec![int_attr("keepdims", 0)],
            );
            let count = b.op(
                "ReduceSum",
                &[&mask3, &positions],
                vec![int_attr("keepdims", 0)],
            );
            let floor = b.scalar(1e-9);
            let count = b.op("Max", &[&count, &floor], vec![]);
            b.op("Div", &[&sum, &count], vec![])
        }
    };
    let w1 = b.weight(
        "classifier/fc1.weight",
        &[mlp.input, mlp.hidden],
        &mlp.fc1_weight,
    );
    let b1 = b.weight("classifier/fc1.bias", &[mlp.hidden], &mlp.fc1_bias);
    let w2 = b.weight(
        "classifier/fc2.weight",
        &[mlp.hidden, mlp.classes],
        &mlp.fc2_weight,
    );
    let b2 = b.weight("classifier/fc2.bias", &[mlp.classes], &mlp.fc2_bias);
    let x = b.op("MatMul", &[&pooled, &w1], vec![]);
    let x = b.op("Add", &[&x, &b1], vec![]);
    let x = b.op("Relu", &[&x], vec![]);
    let x = b.op("MatMul", &[&x, &w2], vec![]);
    let logits = b.op("Add", &[&x, &b2], vec![]);
    b.op_named("Softmax", &[&logits], OUTPUT);
    let (nodes, initializers) = b.into_parts();
    graph.node.extend(nodes);
    graph.initializer.extend(initializers);
    graph.output = vec![tensor_info(
        OUTPUT,
        data_type::FLOAT,
        &[Dim::Named("batch"), Dim::Fixed(mlp.classes)],
    )];
    prune(graph);
    model.metadata_props = metadata
        .into_iter()
        .map(|(key, value)| StringStringEntryProto { key, value })
        .collect();
    Ok(model.encode_to_vec())
}

/// Drops the nodes and initializers the outputs do not depend on.
fn prune(graph: &mut crate::onnx_proto::GraphProto) {
    let mut needed: HashSet<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    let mut keep = vec![false; graph.node.len()];
    for (i, node) in graph.node.iter().enumerate().rev() {
        if node.output.iter().any(|o| needed.contains(o)) {
            keep[i] = true;
            needed.extend(node.input.iter().cloned());
        }
    }
    let mut kept = keep.into_iter();
    graph.node.retain(|_| kept.next().unwrap_or(true));
    graph.initializer.retain(|t| needed.contains(&t.name));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_head_of_the_wrong_shape() {
        let mlp = Mlp {
            input: 4,
            hidden: 3,
            classes: 2,
            fc1_weight: vec![0.0; 11],
            fc1_bias: vec![0.0; 3],
            fc2_weight: vec![0.0; 6],
            fc2_bias: vec![0.0; 2],
        };
        let err = classifier(&[], Pool::Mean, &mlp, vec![]).unwrap_err();
        assert!(err.to_string().contains("4x3"), "{err}");
    }

    #[test]
    fn refuses_a_graph_with_fields_it_would_drop() {
        let mlp = Mlp {
            input: 1,
            hidden: 1,
            classes: 1,
            fc1_weight: vec![0.0],
            fc1_bias: vec![0.0],
            fc2_weight: vec![0.0],
            fc2_bias: vec![0.0],
        };
        // ModelProto field 20 (training_info) is not among the carried ones.
        let mut bytes = ModelProto::default().encode_to_vec();
        bytes.extend([0xa2, 0x01, 0x00]);
        let err = classifier(&bytes, Pool::Mean, &mlp, vec![]).unwrap_err();
        assert!(
            err.to_string().contains("does not carry (model: field 20)"),
            "{err}"
        );
    }

    /// The shared tiny model as PyTorch exported it (its `Constant` nodes
    /// carry tensors; ints attributes unpacked): nothing is left behind.
    #[test]
    fn a_pytorch_exported_graph_is_carried_whole() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/models/bert-tiny-random/model.onnx");
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(crate::onnx_proto::uncarried_field(&bytes), None);
    }
}
