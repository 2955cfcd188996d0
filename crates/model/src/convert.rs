//! safetensors BERT checkpoint -> ONNX graph, in Rust.
//!
//! The graph is `BertModel` as in transformers (eager attention): inputs
//! `input_ids`, `attention_mask`, `token_type_ids` (int64 [batch, sequence]);
//! outputs `last_hidden_state` [batch, sequence, H] and, when the checkpoint
//! has pooler weights, `pooler_output` [batch, H]. Every size comes from
//! config.json and is checked against the weights. Patterns are the plain
//! ones ONNX Runtime's optimiser fuses (LayerNormalization, Gelu from
//! Div/Erf/Add/Mul/Mul).

use std::path::Path;

use anyhow::{Context, Result, bail};
use prost::Message;
use safetensors::{Dtype, SafeTensors};

use crate::bert_config::BertConfig;
use crate::onnx_proto::*;

/// Added to attention scores at padded positions (fits fp16 too).
const MASK_BIAS: f32 = -10000.0;
pub const OPSET: i64 = 17;
const MS_DOMAIN: &str = "com.microsoft";

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
    let mut b = Builder {
        precision,
        ..Builder::default()
    };
    let info = build_bert(&mut b, &config, &weights, ops)?;
    let model = b.finish(&config, info.has_pooler);
    Ok((model.encode_to_vec(), info))
}

/// Checkpoint tensors by BertModel name, whatever the prefix and the
/// LayerNorm naming (`weight`/`gamma`, `bias`/`beta`) of the file.
struct Weights<'a> {
    tensors: &'a SafeTensors<'a>,
    prefix: &'static str,
    file: String,
}

impl<'a> Weights<'a> {
    fn new(tensors: &'a SafeTensors<'a>, path: &Path) -> Result<Weights<'a>> {
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

    fn has(&self, name: &str) -> bool {
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
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
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
    fn linear_t(&self, name: &str, out_dim: usize, in_dim: usize) -> Result<Vec<f32>> {
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

#[derive(Default)]
struct Builder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    counter: usize,
    precision: Precision,
}

fn int_attr(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i,
        r#type: attribute_type::INT,
        ..Default::default()
    }
}
fn ints_attr(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: ints.to_vec(),
        r#type: attribute_type::INTS,
        ..Default::default()
    }
}
fn float_attr(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        f,
        r#type: attribute_type::FLOAT,
        ..Default::default()
    }
}

impl Builder {
    fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        self.counter += 1;
        let out = format!("{}_{}", op.to_lowercase(), self.counter);
        self.op_into(op, inputs, attrs, &out)
    }

    /// An operator of ONNX Runtime's contrib domain (`com.microsoft`).
    fn ms_op(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let out = self.op(op, inputs, attrs);
        self.nodes.last_mut().unwrap().domain = MS_DOMAIN.into();
        out
    }

    fn op_into(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        out: &str,
    ) -> String {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.to_string()],
            name: format!("{op}_{}", self.nodes.len()),
            op_type: op.into(),
            attribute: attrs,
            domain: String::new(),
        });
        out.to_string()
    }

    /// A float initializer (weights and constants alike), in the graph's precision.
    fn f32_init(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        let raw = match self.precision {
            Precision::Fp32 => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Precision::Fp16 => data
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
        };
        let float_type = self.float_type();
        self.initializer(name, dims, float_type, raw)
    }

    /// The ONNX element type of activations inside the graph.
    fn float_type(&self) -> i32 {
        match self.precision {
            Precision::Fp32 => data_type::FLOAT,
            Precision::Fp16 => data_type::FLOAT16,
        }
    }

    /// `x` as the graph output `name` (float32 whatever the precision).
    fn output(&mut self, x: &str, name: &str) {
        match self.precision {
            Precision::Fp32 => self.op_into("Identity", &[x], vec![], name),
            Precision::Fp16 => self.op_into(
                "Cast",
                &[x],
                vec![int_attr("to", data_type::FLOAT as i64)],
                name,
            ),
        };
    }

    fn i64_init(&mut self, name: &str, dims: &[usize], data: &[i64]) -> String {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, dims, data_type::INT64, raw)
    }

    fn initializer(
        &mut self,
        name: &str,
        dims: &[usize],
        data_type: i32,
        raw_data: Vec<u8>,
    ) -> String {
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type,
            name: name.into(),
            raw_data,
        });
        name.into()
    }

    fn linear(
        &mut self,
        w: &Weights,
        x: &str,
        name: &str,
        in_dim: usize,
        out_dim: usize,
    ) -> Result<String> {
        let mm = self.matmul_no_bias(w, x, name, in_dim, out_dim)?;
        let bias = w.get(&format!("{name}.bias"), &[out_dim])?;
        let bn = self.f32_init(&format!("{name}.bias"), &[out_dim], &bias);
        Ok(self.op("Add", &[&mm, &bn], vec![]))
    }

    fn matmul_no_bias(
        &mut self,
        w: &Weights,
        x: &str,
        name: &str,
        in_dim: usize,
        out_dim: usize,
    ) -> Result<String> {
        let wt = w.linear_t(&format!("{name}.weight"), out_dim, in_dim)?;
        let wn = self.f32_init(&format!("{name}.weight_t"), &[in_dim, out_dim], &wt);
        Ok(self.op("MatMul", &[x, &wn], vec![]))
    }

    /// LayerNorm(x + skip + `{prefix}.dense.bias`) with `{prefix}.LayerNorm`.
    fn skip_layer_norm(
        &mut self,
        w: &Weights,
        x: &str,
        skip: &str,
        prefix: &str,
        h: usize,
        eps: f64,
    ) -> Result<String> {
        let g = w.get(&format!("{prefix}.LayerNorm.weight"), &[h])?;
        let beta = w.get(&format!("{prefix}.LayerNorm.bias"), &[h])?;
        let bias = w.get(&format!("{prefix}.dense.bias"), &[h])?;
        let g = self.f32_init(&format!("{prefix}.LayerNorm.weight"), &[h], &g);
        let beta = self.f32_init(&format!("{prefix}.LayerNorm.bias"), &[h], &beta);
        let bias = self.f32_init(&format!("{prefix}.dense.bias"), &[h], &bias);
        Ok(self.ms_op(
            "SkipLayerNormalization",
            &[x, skip, &g, &beta, &bias],
            vec![float_attr("epsilon", eps as f32)],
        ))
    }

    fn layer_norm(
        &mut self,
        w: &Weights,
        x: &str,
        name: &str,
        h: usize,
        eps: f64,
    ) -> Result<String> {
        let g = w.get(&format!("{name}.weight"), &[h])?;
        let bias = w.get(&format!("{name}.bias"), &[h])?;
        let gn = self.f32_init(&format!("{name}.weight"), &[h], &g);
        let bn = self.f32_init(&format!("{name}.bias"), &[h], &bias);
        Ok(self.op(
            "LayerNormalization",
            &[x, &gn, &bn],
            vec![int_attr("axis", -1), float_attr("epsilon", eps as f32)],
        ))
    }

    fn activation(&mut self, x: &str, act: &str) -> String {
        match act {
            "relu" => self.op("Relu", &[x], vec![]),
            "gelu" => {
                // 0.5 * x * (1 + erf(x / sqrt 2)), the exact GELU of transformers.
                let d = self.op("Div", &[x, "c_sqrt2"], vec![]);
                let e = self.op("Erf", &[&d], vec![]);
                let a = self.op("Add", &[&e, "c_one"], vec![]);
                let m = self.op("Mul", &[x, &a], vec![]);
                self.op("Mul", &[&m, "c_half"], vec![])
            }
            _ => {
                // tanh approximation: 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715 x^3)))
                let x3 = self.op("Mul", &[x, x], vec![]);
                let x3 = self.op("Mul", &[&x3, x], vec![]);
                let k = self.op("Mul", &[&x3, "c_gelu_k"], vec![]);
                let s = self.op("Add", &[x, &k], vec![]);
                let s = self.op("Mul", &[&s, "c_sqrt_2_pi"], vec![]);
                let t = self.op("Tanh", &[&s], vec![]);
                let a = self.op("Add", &[&t, "c_one"], vec![]);
                let m = self.op("Mul", &[x, &a], vec![]);
                self.op("Mul", &[&m, "c_half"], vec![])
            }
        }
    }

    fn finish(mut self, config: &BertConfig, has_pooler: bool) -> ModelProto {
        // Shared constants are declared up front; keep only those some node reads.
        let used: std::collections::HashSet<&String> =
            self.nodes.iter().flat_map(|n| n.input.iter()).collect();
        let initializers = std::mem::take(&mut self.initializers);
        self.initializers = initializers
            .into_iter()
            .filter(|t| used.contains(&t.name))
            .collect();
        let dim = |p: &str| Dimension {
            value: Some(DimValue::Param(p.into())),
        };
        let fixed = |v: usize| Dimension {
            value: Some(DimValue::Value(v as i64)),
        };
        let value_info = |name: &str, elem: i32, dims: Vec<Dimension>| ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                tensor_type: Some(TensorTypeProto {
                    elem_type: elem,
                    shape: Some(TensorShapeProto { dim: dims }),
                }),
            }),
        };
        let inputs = ["input_ids", "attention_mask", "token_type_ids"]
            .iter()
            .map(|n| value_info(n, data_type::INT64, vec![dim("batch"), dim("sequence")]))
            .collect();
        let mut outputs = vec![value_info(
            "last_hidden_state",
            data_type::FLOAT,
            vec![dim("batch"), dim("sequence"), fixed(config.hidden_size)],
        )];
        if has_pooler {
            outputs.push(value_info(
                "pooler_output",
                data_type::FLOAT,
                vec![dim("batch"), fixed(config.hidden_size)],
            ));
        }
        ModelProto {
            ir_version: 8,
            producer_name: "bert-sentiment".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: "BertModel converted from safetensors by bert-sentiment".into(),
            graph: Some(GraphProto {
                node: self.nodes,
                name: "bert".into(),
                initializer: self.initializers,
                input: inputs,
                output: outputs,
            }),
            opset_import: vec![
                OperatorSetIdProto {
                    domain: String::new(),
                    version: OPSET,
                },
                OperatorSetIdProto {
                    domain: MS_DOMAIN.into(),
                    version: 1,
                },
            ],
            metadata_props: vec![StringStringEntryProto {
                key: "config".into(),
                value: serde_json::to_string(config).unwrap_or_default(),
            }],
        }
    }
}

fn build_bert(b: &mut Builder, c: &BertConfig, w: &Weights, ops: Ops) -> Result<GraphInfo> {
    let h = c.hidden_size;
    b.f32_init("c_one", &[], &[1.0]);
    b.f32_init("c_half", &[], &[0.5]);
    b.f32_init("c_sqrt2", &[], &[std::f32::consts::SQRT_2]);
    b.f32_init("c_gelu_k", &[], &[0.044715]);
    b.f32_init(
        "c_sqrt_2_pi",
        &[],
        &[(2.0f64 / std::f64::consts::PI).sqrt() as f32],
    );
    b.f32_init("c_mask_bias", &[], &[MASK_BIAS]);
    b.f32_init("c_scale", &[], &[(c.head_dim() as f64).sqrt() as f32]);
    b.i64_init("c_i0", &[], &[0]);
    b.i64_init("c_i1", &[], &[1]);
    b.i64_init("c_mask_axes", &[2], &[1, 2]);
    b.i64_init(
        "c_heads_shape",
        &[4],
        &[0, 0, c.num_attention_heads as i64, c.head_dim() as i64],
    );
    b.i64_init("c_hidden_shape", &[3], &[0, 0, h as i64]);

    // Embeddings.
    let word = w.get("embeddings.word_embeddings.weight", &[c.vocab_size, h])?;
    let pos = w.get(
        "embeddings.position_embeddings.weight",
        &[c.max_position_embeddings, h],
    )?;
    let types = w.get(
        "embeddings.token_type_embeddings.weight",
        &[c.type_vocab_size, h],
    )?;
    let word = b.f32_init(
        "embeddings.word_embeddings.weight",
        &[c.vocab_size, h],
        &word,
    );
    let pos = b.f32_init(
        "embeddings.position_embeddings.weight",
        &[c.max_position_embeddings, h],
        &pos,
    );
    let types = b.f32_init(
        "embeddings.token_type_embeddings.weight",
        &[c.type_vocab_size, h],
        &types,
    );
    let we = b.op("Gather", &[&word, "input_ids"], vec![]);
    let shape = b.op("Shape", &["input_ids"], vec![]);
    let seq = b.op("Gather", &[&shape, "c_i1"], vec![int_attr("axis", 0)]);
    let positions = b.op("Range", &["c_i0", &seq, "c_i1"], vec![]);
    let pe = b.op("Gather", &[&pos, &positions], vec![]);
    let te = b.op("Gather", &[&types, "token_type_ids"], vec![]);
    let sum = b.op("Add", &[&we, &pe], vec![]);
    let sum = b.op("Add", &[&sum, &te], vec![]);
    let mut x = b.layer_norm(w, &sum, "embeddings.LayerNorm", h, c.layer_norm_eps)?;

    // The attention mask in the form each operator set takes, built once
    // for all layers (and only for the set in use).
    let mask = match ops {
        // Additive [batch, 1, 1, sequence]: 0 for tokens, MASK_BIAS for padding.
        Ops::Standard => {
            let float_type = b.float_type() as i64;
            let maskf = b.op(
                "Cast",
                &["attention_mask"],
                vec![int_attr("to", float_type)],
            );
            let mask4 = b.op("Unsqueeze", &[&maskf, "c_mask_axes"], vec![]);
            let inv = b.op("Sub", &["c_one", &mask4], vec![]);
            b.op("Mul", &[&inv, "c_mask_bias"], vec![])
        }
        // Each row's token count (int32 [batch]; the pipeline pads on the
        // right): with it ONNX Runtime's CUDA kernel may use its fused
        // attention kernels, which a [batch, sequence] 0/1 mask rules out.
        Ops::Fused => {
            b.i64_init("c_seq_axis", &[1], &[1]);
            let mask_i32 = b.op(
                "Cast",
                &["attention_mask"],
                vec![int_attr("to", data_type::INT32 as i64)],
            );
            b.op(
                "ReduceSum",
                &[&mask_i32, "c_seq_axis"],
                vec![int_attr("keepdims", 0)],
            )
        }
    };
    for l in 0..c.num_hidden_layers {
        x = match ops {
            Ops::Standard => standard_layer(b, c, w, l, &x, &mask)?,
            Ops::Fused => fused_layer(b, c, w, l, &x, &mask)?,
        };
    }
    if w.has(&format!(
        "encoder.layer.{}.attention.self.query.weight",
        c.num_hidden_layers
    )) {
        bail!(
            "{}: the checkpoint has more than the {} layers config.json declares (num_hidden_layers)",
            w.file,
            c.num_hidden_layers
        );
    }
    b.output(&x, "last_hidden_state");

    let has_pooler = w.has("pooler.dense.weight");
    if has_pooler {
        let cls = b.op("Gather", &[&x, "c_i0"], vec![int_attr("axis", 1)]);
        let dense = b.linear(w, &cls, "pooler.dense", h, h)?;
        let pooled = b.op("Tanh", &[&dense], vec![]);
        b.output(&pooled, "pooler_output");
    }
    Ok(GraphInfo {
        hidden_size: h,
        max_positions: c.max_position_embeddings,
        has_pooler,
    })
}

/// One encoder layer in standard ONNX operators (transformers' eager math).
fn standard_layer(
    b: &mut Builder,
    c: &BertConfig,
    w: &Weights,
    l: usize,
    x: &str,
    bias: &str,
) -> Result<String> {
    let h = c.hidden_size;
    let p = format!("encoder.layer.{l}");
    let heads = |b: &mut Builder, name: &str, perm: &[i64], x: &str| -> Result<String> {
        let y = b.linear(w, x, &format!("{p}.attention.self.{name}"), h, h)?;
        let y = b.op("Reshape", &[&y, "c_heads_shape"], vec![]);
        Ok(b.op("Transpose", &[&y], vec![ints_attr("perm", perm)]))
    };
    let q = heads(b, "query", &[0, 2, 1, 3], x)?;
    let k = heads(b, "key", &[0, 2, 3, 1], x)?;
    let v = heads(b, "value", &[0, 2, 1, 3], x)?;
    let scores = b.op("MatMul", &[&q, &k], vec![]);
    let scores = b.op("Div", &[&scores, "c_scale"], vec![]);
    let scores = b.op("Add", &[&scores, bias], vec![]);
    let probs = b.op("Softmax", &[&scores], vec![int_attr("axis", -1)]);
    let ctx = b.op("MatMul", &[&probs, &v], vec![]);
    let ctx = b.op("Transpose", &[&ctx], vec![ints_attr("perm", &[0, 2, 1, 3])]);
    let ctx = b.op("Reshape", &[&ctx, "c_hidden_shape"], vec![]);
    let attn = b.linear(w, &ctx, &format!("{p}.attention.output.dense"), h, h)?;
    let attn = b.op("Add", &[&attn, &x], vec![]);
    let attn = b.layer_norm(
        w,
        &attn,
        &format!("{p}.attention.output.LayerNorm"),
        h,
        c.layer_norm_eps,
    )?;
    let inter = b.linear(
        w,
        &attn,
        &format!("{p}.intermediate.dense"),
        h,
        c.intermediate_size,
    )?;
    let inter = b.activation(&inter, &c.hidden_act);
    let out = b.linear(
        w,
        &inter,
        &format!("{p}.output.dense"),
        c.intermediate_size,
        h,
    )?;
    let out = b.op("Add", &[&out, &attn], vec![]);
    b.layer_norm(
        w,
        &out,
        &format!("{p}.output.LayerNorm"),
        h,
        c.layer_norm_eps,
    )
}

/// One encoder layer with ONNX Runtime's fused kernels: packed-QKV
/// Attention (mask = each row's key length, right padding; padded keys get
/// -10000 where a kernel applies a filter value, as in the standard graph),
/// SkipLayerNormalization (bias + residual + LayerNorm in one), BiasGelu.
fn fused_layer(
    b: &mut Builder,
    c: &BertConfig,
    w: &Weights,
    l: usize,
    x: &str,
    key_lengths: &str,
) -> Result<String> {
    let h = c.hidden_size;
    let p = format!("encoder.layer.{l}");
    let mut qkv_w = vec![0f32; h * 3 * h];
    let mut qkv_b = Vec::with_capacity(3 * h);
    for (k, name) in ["query", "key", "value"].iter().enumerate() {
        let wt = w.linear_t(&format!("{p}.attention.self.{name}.weight"), h, h)?;
        for i in 0..h {
            qkv_w[i * 3 * h + k * h..i * 3 * h + (k + 1) * h]
                .copy_from_slice(&wt[i * h..(i + 1) * h]);
        }
        qkv_b.extend(w.get(&format!("{p}.attention.self.{name}.bias"), &[h])?);
    }
    let qkv_w = b.f32_init(&format!("{p}.attention.qkv.weight_t"), &[h, 3 * h], &qkv_w);
    let qkv_b = b.f32_init(&format!("{p}.attention.qkv.bias"), &[3 * h], &qkv_b);
    let ctx = b.ms_op(
        "Attention",
        &[x, &qkv_w, &qkv_b, key_lengths],
        vec![
            int_attr("num_heads", c.num_attention_heads as i64),
            float_attr("mask_filter_value", MASK_BIAS),
        ],
    );
    let attn = b.matmul_no_bias(w, &ctx, &format!("{p}.attention.output.dense"), h, h)?;
    let attn = b.skip_layer_norm(
        w,
        &attn,
        x,
        &format!("{p}.attention.output"),
        h,
        c.layer_norm_eps,
    )?;
    let inter = if c.hidden_act == "gelu" {
        let mm = b.matmul_no_bias(
            w,
            &attn,
            &format!("{p}.intermediate.dense"),
            h,
            c.intermediate_size,
        )?;
        let bias = w.get(
            &format!("{p}.intermediate.dense.bias"),
            &[c.intermediate_size],
        )?;
        let bias = b.f32_init(
            &format!("{p}.intermediate.dense.bias"),
            &[c.intermediate_size],
            &bias,
        );
        b.ms_op("BiasGelu", &[&mm, &bias], vec![])
    } else {
        let y = b.linear(
            w,
            &attn,
            &format!("{p}.intermediate.dense"),
            h,
            c.intermediate_size,
        )?;
        b.activation(&y, &c.hidden_act)
    };
    let out = b.matmul_no_bias(
        w,
        &inter,
        &format!("{p}.output.dense"),
        c.intermediate_size,
        h,
    )?;
    b.skip_layer_norm(w, &out, &attn, &format!("{p}.output"), h, c.layer_norm_eps)
}
