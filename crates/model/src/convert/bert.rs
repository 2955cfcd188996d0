//! The BERT topology: embeddings, encoder layers (in standard operators or
//! ONNX Runtime's fused kernels), pooler; each size from config.json.

use anyhow::{Result, bail};

use super::builder::{Builder, Dim, GraphSpec, float_attr, int_attr, ints_attr, tensor_info};
use super::weights::Weights;
use super::{GraphInfo, Ops};
use crate::bert_config::{BertConfig, HiddenAct};
use crate::onnx_proto::data_type;

/// Added to attention scores at padded positions (fits fp16 too).
const MASK_BIAS: f32 = -10000.0;

/// `BertModel` as an ONNX graph: inputs `input_ids`, `attention_mask`,
/// `token_type_ids`; outputs `last_hidden_state` and, with pooler weights,
/// `pooler_output`.
/// Returns what to finish the graph with, and what it offers.
pub(super) fn build(
    b: &mut Builder,
    c: &BertConfig,
    w: &Weights,
    ops: Ops,
) -> Result<(GraphSpec, GraphInfo)> {
    let h = c.hidden_size;

    // Embeddings.
    let word = embedding(b, w, "word_embeddings", c.vocab_size, h)?;
    let pos = embedding(b, w, "position_embeddings", c.max_position_embeddings, h)?;
    let types = embedding(b, w, "token_type_embeddings", c.type_vocab_size, h)?;
    let (i0, i1) = (b.int_scalar(0), b.int_scalar(1));
    let we = b.op("Gather", &[&word, "input_ids"], vec![]);
    let shape = b.op("Shape", &["input_ids"], vec![]);
    let seq = b.op("Gather", &[&shape, &i1], vec![int_attr("axis", 0)]);
    let positions = b.op("Range", &[&i0, &seq, &i1], vec![]);
    let pe = b.op("Gather", &[&pos, &positions], vec![]);
    let te = b.op("Gather", &[&types, "token_type_ids"], vec![]);
    let sum = b.op("Add", &[&we, &pe], vec![]);
    let sum = b.op("Add", &[&sum, &te], vec![]);
    let mut x = layer_norm(b, w, &sum, "embeddings.LayerNorm", h, c.layer_norm_eps)?;

    // The attention mask in the form each operator set takes, built once
    // for all layers.
    let mask = match ops {
        // Additive [batch, 1, 1, sequence]: 0 for tokens, MASK_BIAS for padding.
        Ops::Standard => {
            let float_type = b.float_type() as i64;
            let maskf = b.op(
                "Cast",
                &["attention_mask"],
                vec![int_attr("to", float_type)],
            );
            let axes = b.ints(&[1, 2]);
            let mask4 = b.op("Unsqueeze", &[&maskf, &axes], vec![]);
            let one = b.scalar(1.0);
            let inv = b.op("Sub", &[&one, &mask4], vec![]);
            let bias = b.scalar(MASK_BIAS);
            b.op("Mul", &[&inv, &bias], vec![])
        }
        // Each row's token count (int32 [batch]; the pipeline pads on the
        // right): with it ONNX Runtime's CUDA kernel may use its fused
        // attention kernels, which a [batch, sequence] 0/1 mask rules out.
        Ops::Fused => {
            let mask_i32 = b.op(
                "Cast",
                &["attention_mask"],
                vec![int_attr("to", data_type::INT32 as i64)],
            );
            let seq_axis = b.ints(&[1]);
            b.op(
                "ReduceSum",
                &[&mask_i32, &seq_axis],
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
        let cls = b.op("Gather", &[&x, &i0], vec![int_attr("axis", 1)]);
        let dense = linear(b, w, &cls, "pooler.dense", h, h)?;
        let pooled = b.op("Tanh", &[&dense], vec![]);
        b.output(&pooled, "pooler_output");
    }
    let info = GraphInfo {
        hidden_size: h,
        max_positions: c.max_position_embeddings,
        has_pooler,
    };
    Ok((spec(c, has_pooler), info))
}

/// The graph's inputs, outputs and metadata.
fn spec(c: &BertConfig, has_pooler: bool) -> GraphSpec {
    let (batch, seq) = (Dim::Named("batch"), Dim::Named("sequence"));
    let inputs = ["input_ids", "attention_mask", "token_type_ids"]
        .iter()
        .map(|n| {
            tensor_info(
                n,
                data_type::INT64,
                &[Dim::Named("batch"), Dim::Named("sequence")],
            )
        })
        .collect();
    let mut outputs = vec![tensor_info(
        "last_hidden_state",
        data_type::FLOAT,
        &[batch, seq, Dim::Fixed(c.hidden_size)],
    )];
    if has_pooler {
        outputs.push(tensor_info(
            "pooler_output",
            data_type::FLOAT,
            &[Dim::Named("batch"), Dim::Fixed(c.hidden_size)],
        ));
    }
    GraphSpec {
        name: "bert",
        inputs,
        outputs,
        doc: "BertModel converted from safetensors by bert-sentiment",
        metadata: vec![(
            "config".into(),
            serde_json::to_string(c).unwrap_or_default(),
        )],
    }
}

fn embedding(b: &mut Builder, w: &Weights, name: &str, rows: usize, h: usize) -> Result<String> {
    let name = format!("embeddings.{name}.weight");
    let table = w.get(&name, &[rows, h])?;
    Ok(b.weight(&name, &[rows, h], &table))
}

/// One encoder layer in standard ONNX operators (transformers' eager math).
fn standard_layer(
    b: &mut Builder,
    c: &BertConfig,
    w: &Weights,
    l: usize,
    x: &str,
    mask_bias: &str,
) -> Result<String> {
    let h = c.hidden_size;
    let p = format!("encoder.layer.{l}");
    let heads_shape = b.ints(&[0, 0, c.num_attention_heads as i64, c.head_dim() as i64]);
    let heads = |b: &mut Builder, name: &str, perm: &[i64], x: &str| -> Result<String> {
        let y = linear(b, w, x, &format!("{p}.attention.self.{name}"), h, h)?;
        let y = b.op("Reshape", &[&y, &heads_shape], vec![]);
        Ok(b.op("Transpose", &[&y], vec![ints_attr("perm", perm)]))
    };
    let q = heads(b, "query", &[0, 2, 1, 3], x)?;
    let k = heads(b, "key", &[0, 2, 3, 1], x)?;
    let v = heads(b, "value", &[0, 2, 1, 3], x)?;
    let scale = b.scalar((c.head_dim() as f64).sqrt() as f32);
    let scores = b.op("MatMul", &[&q, &k], vec![]);
    let scores = b.op("Div", &[&scores, &scale], vec![]);
    let scores = b.op("Add", &[&scores, mask_bias], vec![]);
    let probs = b.op("Softmax", &[&scores], vec![int_attr("axis", -1)]);
    let ctx = b.op("MatMul", &[&probs, &v], vec![]);
    let ctx = b.op("Transpose", &[&ctx], vec![ints_attr("perm", &[0, 2, 1, 3])]);
    let hidden_shape = b.ints(&[0, 0, h as i64]);
    let ctx = b.op("Reshape", &[&ctx, &hidden_shape], vec![]);
    let attn = linear(b, w, &ctx, &format!("{p}.attention.output.dense"), h, h)?;
    let attn = b.op("Add", &[&attn, x], vec![]);
    let eps = c.layer_norm_eps;
    let attn = layer_norm(
        b,
        w,
        &attn,
        &format!("{p}.attention.output.LayerNorm"),
        h,
        eps,
    )?;
    let inter_size = c.intermediate_size;
    let inter = linear(
        b,
        w,
        &attn,
        &format!("{p}.intermediate.dense"),
        h,
        inter_size,
    )?;
    let inter = activation(b, &inter, c.hidden_act);
    let out = linear(b, w, &inter, &format!("{p}.output.dense"), inter_size, h)?;
    let out = b.op("Add", &[&out, &attn], vec![]);
    layer_norm(b, w, &out, &format!("{p}.output.LayerNorm"), h, eps)
}

/// One encoder layer with ONNX Runtime's fused kernels: packed-QKV
/// Attention, or for int8 MultiHeadAttention after three int8 products
/// (mask = each row's key length, right padding; padded keys get -10000
/// where a kernel applies a filter value, as in the standard graph),
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
    let projections = ["query", "key", "value"];
    let mut qkv_w = Vec::with_capacity(3);
    let mut qkv_b = Vec::with_capacity(3 * h);
    for name in projections {
        let weight = format!("{p}.attention.self.{name}.weight");
        qkv_w.push(w.linear_t(&weight, h, h)?);
        qkv_b.extend(w.get(&format!("{p}.attention.self.{name}.bias"), &[h])?);
    }
    let qkv_b = b.weight(&format!("{p}.attention.qkv.bias"), &[3 * h], &qkv_b);
    let heads = int_attr("num_heads", c.num_attention_heads as i64);
    let filter = float_attr("mask_filter_value", MASK_BIAS);
    let ctx = if b.quantizes() {
        // Q, K and V: int8 products sharing one per-row quantization of x
        // (QAttention would quantize x per tensor, i.e. per batch), then
        // float attention adding the packed bias.
        let qkv: Vec<String> = projections
            .iter()
            .zip(&qkv_w)
            .map(|(name, wt)| {
                let name = format!("{p}.attention.self.{name}.weight_t");
                b.int8_matmul(x, &name, h, h, wt)
            })
            .collect();
        b.ms_op(
            "MultiHeadAttention",
            &[&qkv[0], &qkv[1], &qkv[2], &qkv_b, key_lengths],
            vec![heads, filter],
        )
    } else {
        // [h, 3h]: each input's query, key and value columns side by side.
        let mut packed = vec![0f32; h * 3 * h];
        for (k, wt) in qkv_w.iter().enumerate() {
            for i in 0..h {
                packed[i * 3 * h + k * h..i * 3 * h + (k + 1) * h]
                    .copy_from_slice(&wt[i * h..(i + 1) * h]);
            }
        }
        let packed = b.weight(&format!("{p}.attention.qkv.weight_t"), &[h, 3 * h], &packed);
        b.ms_op(
            "Attention",
            &[x, &packed, &qkv_b, key_lengths],
            vec![heads, filter],
        )
    };
    let eps = c.layer_norm_eps;
    let attn = matmul(b, w, &ctx, &format!("{p}.attention.output.dense"), h, h)?;
    let attn = skip_layer_norm(b, w, &attn, x, &format!("{p}.attention.output"), h, eps)?;
    let inter_size = c.intermediate_size;
    let dense = format!("{p}.intermediate.dense");
    let inter = match c.hidden_act {
        HiddenAct::Gelu => {
            let mm = matmul(b, w, &attn, &dense, h, inter_size)?;
            let bias = bias(b, w, &dense, inter_size)?;
            b.ms_op("BiasGelu", &[&mm, &bias], vec![])
        }
        act => {
            let y = linear(b, w, &attn, &dense, h, inter_size)?;
            activation(b, &y, act)
        }
    };
    let out = matmul(b, w, &inter, &format!("{p}.output.dense"), inter_size, h)?;
    skip_layer_norm(b, w, &out, &attn, &format!("{p}.output"), h, eps)
}

/// `x @ {name}.weight^T + {name}.bias`, a PyTorch Linear.
fn linear(
    b: &mut Builder,
    w: &Weights,
    x: &str,
    name: &str,
    in_dim: usize,
    out_dim: usize,
) -> Result<String> {
    let mm = matmul(b, w, x, name, in_dim, out_dim)?;
    let bias = bias(b, w, name, out_dim)?;
    Ok(b.op("Add", &[&mm, &bias], vec![]))
}

/// `x @ {name}.weight^T`: a Linear whose bias a fused operator adds. In
/// an int8 graph an encoder weight (`encoder.*`) is quantized
/// ([`Builder::int8_matmul`]); anything else stays a float MatMul.
fn matmul(
    b: &mut Builder,
    w: &Weights,
    x: &str,
    name: &str,
    in_dim: usize,
    out_dim: usize,
) -> Result<String> {
    let wt = w.linear_t(&format!("{name}.weight"), out_dim, in_dim)?;
    if b.quantizes() && name.starts_with("encoder.") {
        return Ok(b.int8_matmul(x, &format!("{name}.weight_t"), in_dim, out_dim, &wt));
    }
    let wn = b.weight(&format!("{name}.weight_t"), &[in_dim, out_dim], &wt);
    Ok(b.op("MatMul", &[x, &wn], vec![]))
}

fn bias(b: &mut Builder, w: &Weights, name: &str, dim: usize) -> Result<String> {
    let name = format!("{name}.bias");
    let bias = w.get(&name, &[dim])?;
    Ok(b.weight(&name, &[dim], &bias))
}

/// LayerNorm(x + skip + `{prefix}.dense.bias`) with `{prefix}.LayerNorm`.
fn skip_layer_norm(
    b: &mut Builder,
    w: &Weights,
    x: &str,
    skip: &str,
    prefix: &str,
    h: usize,
    eps: f64,
) -> Result<String> {
    let gamma = ln_param(b, w, &format!("{prefix}.LayerNorm.weight"), h)?;
    let beta = ln_param(b, w, &format!("{prefix}.LayerNorm.bias"), h)?;
    let bias = bias(b, w, &format!("{prefix}.dense"), h)?;
    Ok(b.ms_op(
        "SkipLayerNormalization",
        &[x, skip, &gamma, &beta, &bias],
        vec![float_attr("epsilon", eps as f32)],
    ))
}

fn layer_norm(
    b: &mut Builder,
    w: &Weights,
    x: &str,
    name: &str,
    h: usize,
    eps: f64,
) -> Result<String> {
    let gamma = ln_param(b, w, &format!("{name}.weight"), h)?;
    let beta = ln_param(b, w, &format!("{name}.bias"), h)?;
    Ok(b.op(
        "LayerNormalization",
        &[x, &gamma, &beta],
        vec![int_attr("axis", -1), float_attr("epsilon", eps as f32)],
    ))
}

fn ln_param(b: &mut Builder, w: &Weights, name: &str, h: usize) -> Result<String> {
    let values = w.get(name, &[h])?;
    Ok(b.weight(name, &[h], &values))
}

fn activation(b: &mut Builder, x: &str, act: HiddenAct) -> String {
    match act {
        HiddenAct::Relu => b.op("Relu", &[x], vec![]),
        HiddenAct::Gelu => {
            // 0.5 * x * (1 + erf(x / sqrt 2)), the exact GELU of transformers.
            let sqrt2 = b.scalar(std::f32::consts::SQRT_2);
            let d = b.op("Div", &[x, &sqrt2], vec![]);
            let e = b.op("Erf", &[&d], vec![]);
            half_x_one_plus(b, x, &e)
        }
        HiddenAct::GeluTanh(_) => {
            // 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715 x^3)))
            let k = b.scalar(0.044715);
            let sqrt_2_pi = b.scalar((2.0f64 / std::f64::consts::PI).sqrt() as f32);
            let x3 = b.op("Mul", &[x, x], vec![]);
            let x3 = b.op("Mul", &[&x3, x], vec![]);
            let kx3 = b.op("Mul", &[&x3, &k], vec![]);
            let s = b.op("Add", &[x, &kx3], vec![]);
            let s = b.op("Mul", &[&s, &sqrt_2_pi], vec![]);
            let t = b.op("Tanh", &[&s], vec![]);
            half_x_one_plus(b, x, &t)
        }
    }
}

/// 0.5 * x * (1 + y), the shape both GELUs share (in the order ONNX
/// Runtime's Gelu fusion matches).
fn half_x_one_plus(b: &mut Builder, x: &str, y: &str) -> String {
    let (one, half) = (b.scalar(1.0), b.scalar(0.5));
    let a = b.op("Add", &[y, &one], vec![]);
    let m = b.op("Mul", &[x, &a], vec![]);
    b.op("Mul", &[&m, &half], vec![])
}
