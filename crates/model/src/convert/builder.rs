//! Writing an ONNX graph: nodes, initializers in the graph's precision,
//! constants and the model envelope. Knows ONNX, not BERT.

use std::collections::HashMap;

use super::Precision;
use crate::onnx_proto::*;

/// The standard ONNX operator set the graph is written against.
pub const OPSET: i64 = 17;
/// ONNX Runtime's contrib operators.
const MS_DOMAIN: &str = "com.microsoft";

pub fn int_attr(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i,
        r#type: attribute_type::INT,
        ..Default::default()
    }
}

pub fn ints_attr(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: ints.to_vec(),
        r#type: attribute_type::INTS,
        ..Default::default()
    }
}

pub fn float_attr(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        f,
        r#type: attribute_type::FLOAT,
        ..Default::default()
    }
}

/// One dimension of a graph input or output.
pub enum Dim<'a> {
    /// Symbolic: any size, the same wherever the name recurs.
    Named(&'a str),
    Fixed(usize),
}

/// A graph input or output: a tensor of `elem_type` ([`data_type`]).
pub fn tensor_info(name: &str, elem_type: i32, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Named(p) => DimValue::Param(p.to_string()),
                Dim::Fixed(v) => DimValue::Value(*v as i64),
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}

/// What [`Builder::finish`] wraps the nodes in.
pub struct GraphSpec {
    pub name: &'static str,
    pub inputs: Vec<ValueInfoProto>,
    pub outputs: Vec<ValueInfoProto>,
    pub doc: &'static str,
    /// `metadata_props` of the model.
    pub metadata: Vec<(String, String)>,
}

pub struct Builder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    counter: usize,
    precision: Precision,
    /// Standard ONNX operators only (`Ops::Standard`): no contrib operator
    /// may be written, not even for int8.
    standard_only: bool,
    /// Constants by type, shape and bytes: each is one initializer however
    /// many nodes read it.
    constants: HashMap<(i32, Vec<usize>, Vec<u8>), String>,
    /// Put before every generated name: nodes appended to another graph
    /// (classifier.rs) must not reuse its names.
    prefix: &'static str,
    /// [`Builder::quantize_rows`]'s results by input name.
    quantized_rows: HashMap<String, (String, String)>,
}

impl Builder {
    pub fn new(precision: Precision, standard_only: bool) -> Builder {
        Builder {
            nodes: Vec::new(),
            initializers: Vec::new(),
            counter: 0,
            precision,
            standard_only,
            constants: HashMap::new(),
            prefix: "",
            quantized_rows: HashMap::new(),
        }
    }

    /// A builder whose generated names all start with `prefix`.
    pub fn with_prefix(precision: Precision, standard_only: bool, prefix: &'static str) -> Builder {
        Builder {
            prefix,
            ..Builder::new(precision, standard_only)
        }
    }

    /// A node of the standard domain whose output is `out`.
    pub fn op_named(&mut self, op: &str, inputs: &[&str], out: &str) -> String {
        self.op_into(op, inputs, vec![], out)
    }

    /// The nodes and initializers written so far (to append to a graph).
    pub fn into_parts(self) -> (Vec<NodeProto>, Vec<TensorProto>) {
        (self.nodes, self.initializers)
    }

    /// A node of the standard domain; returns its (fresh) output name.
    pub fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        self.counter += 1;
        let out = format!("{}{}_{}", self.prefix, op.to_lowercase(), self.counter);
        self.op_into(op, inputs, attrs, &out)
    }

    /// A node of ONNX Runtime's contrib domain (`com.microsoft`).
    pub fn ms_op(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
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
            name: format!("{}{op}_{}", self.prefix, self.nodes.len()),
            op_type: op.into(),
            attribute: attrs,
            domain: String::new(),
        });
        out.to_string()
    }

    /// A named float initializer (a weight), in the graph's precision.
    pub fn weight(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        let raw = self.float_bytes(data);
        self.initializer(name, dims, self.float_type(), raw)
    }

    /// A float scalar constant, in the graph's precision.
    pub fn scalar(&mut self, value: f32) -> String {
        let raw = self.float_bytes(&[value]);
        self.constant(&[], self.float_type(), raw)
    }

    /// An int64 scalar constant.
    pub fn int_scalar(&mut self, value: i64) -> String {
        self.constant(&[], data_type::INT64, value.to_le_bytes().to_vec())
    }

    /// A 1-D int64 constant (axes, shapes).
    pub fn ints(&mut self, values: &[i64]) -> String {
        let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.constant(&[values.len()], data_type::INT64, raw)
    }

    fn constant(&mut self, dims: &[usize], data_type: i32, raw: Vec<u8>) -> String {
        let id = (data_type, dims.to_vec(), raw);
        if let Some(name) = self.constants.get(&id) {
            return name.clone();
        }
        let name = format!("{}const_{}", self.prefix, self.constants.len());
        self.initializer(&name, dims, data_type, id.2.clone());
        self.constants.insert(id, name.clone());
        name
    }

    /// Whether encoder matrix products take int8 weights.
    pub fn quantizes(&self) -> bool {
        self.precision == Precision::Int8
    }

    /// A weight `data` ([rows × columns], row-major) quantized per column
    /// (output channel), symmetric: int8 values in [-127, 127] and one
    /// float32 scale per column (max |column| / 127). Returns the names of
    /// the int8 initializer `name` and of its scales `name.scale`.
    fn int8_weight(
        &mut self,
        name: &str,
        rows: usize,
        columns: usize,
        data: &[f32],
    ) -> (String, String) {
        let (values, scales) = quantize_per_column(rows, columns, data);
        let raw = values.iter().map(|&v| v as u8).collect();
        let weight = self.initializer(name, &[rows, columns], data_type::INT8, raw);
        let raw = scales.iter().flat_map(|v| v.to_le_bytes()).collect();
        let scale = self.initializer(&format!("{name}.scale"), &[columns], data_type::FLOAT, raw);
        (weight, scale)
    }

    /// `x @ data` ([rows × columns]) with `data` quantized per column to
    /// int8 ([`Builder::int8_weight`]) and `x` quantized per row on the fly
    /// ([`Builder::quantize_rows`]). The integer product is exact, so a
    /// row's result depends on that row alone, never on the rows sharing
    /// its batch. With ONNX Runtime's operators the product and the
    /// per-column scales are one `MatMulIntegerToFloat`; with standard ones
    /// `MatMulInteger` → Cast → × column scales. Either way × row scales.
    pub fn int8_matmul(
        &mut self,
        x: &str,
        name: &str,
        rows: usize,
        columns: usize,
        data: &[f32],
    ) -> String {
        let (x_q, row_scales) = self.quantize_rows(x);
        let (w, w_scale) = self.int8_weight(name, rows, columns, data);
        let zero_point = self.activation_zero_point();
        let product = if self.standard_only {
            let product = self.op("MatMulInteger", &[&x_q, &w, &zero_point], vec![]);
            let product = self.op(
                "Cast",
                &[&product],
                vec![int_attr("to", data_type::FLOAT as i64)],
            );
            self.op("Mul", &[&product, &w_scale], vec![])
        } else {
            // a_scale stays a scalar (1): the operator documents per-tensor
            // and per-column scales for A, not per-row ones.
            let one = self.scalar(1.0);
            self.ms_op(
                "MatMulIntegerToFloat",
                &[&x_q, &w, &one, &w_scale, &zero_point],
                vec![],
            )
        };
        self.op("Mul", &[&product, &row_scales], vec![])
    }

    /// `x` (float, any rank) quantized per row, i.e. per vector along the
    /// last axis, symmetric: scale = max |row| / 127, values round(x /
    /// scale) + 128 as uint8 (zero point 128, so values lie in [1, 255]).
    /// Returns the names of the values and of the scales (`x`'s shape with
    /// a last axis of 1). Unlike `DynamicQuantizeLinear` (one scale per
    /// tensor, i.e. per batch) no row's values depend on another row.
    /// Memoised: every product reading `x` shares one quantization.
    fn quantize_rows(&mut self, x: &str) -> (String, String) {
        if let Some(done) = self.quantized_rows.get(x) {
            return done.clone();
        }
        let last_axis = || vec![ints_attr("axes", &[-1]), int_attr("keepdims", 1)];
        let high = self.op("ReduceMax", &[x], last_axis());
        let low = self.op("ReduceMin", &[x], last_axis());
        let low = self.op("Neg", &[&low], vec![]);
        let abs_max = self.op("Max", &[&high, &low], vec![]);
        // An all-zero row gets a tiny scale (its values all quantize to 0),
        // not a division by zero.
        let tiny = self.scalar(f32::MIN_POSITIVE);
        let abs_max = self.op("Max", &[&abs_max, &tiny], vec![]);
        let steps = self.scalar(127.0);
        let scales = self.op("Div", &[&abs_max, &steps], vec![]);
        // x × (127 / max) then QuantizeLinear with scale 1: one division
        // per row instead of one per value.
        let inverse = self.op("Div", &[&steps, &abs_max], vec![]);
        let scaled = self.op("Mul", &[x, &inverse], vec![]);
        let one = self.scalar(1.0);
        let zero_point = self.activation_zero_point();
        let values = self.op("QuantizeLinear", &[&scaled, &one, &zero_point], vec![]);
        let done = (values, scales);
        self.quantized_rows.insert(x.to_string(), done.clone());
        done
    }

    /// The uint8 zero point of quantized activations: 128.
    fn activation_zero_point(&mut self) -> String {
        self.constant(&[], data_type::UINT8, vec![128])
    }

    fn float_bytes(&self, data: &[f32]) -> Vec<u8> {
        match self.precision {
            Precision::Fp32 | Precision::Int8 => {
                data.iter().flat_map(|v| v.to_le_bytes()).collect()
            }
            Precision::Fp16 => data
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
        }
    }

    /// The ONNX element type of activations inside the graph.
    pub fn float_type(&self) -> i32 {
        match self.precision {
            Precision::Fp32 | Precision::Int8 => data_type::FLOAT,
            Precision::Fp16 => data_type::FLOAT16,
        }
    }

    /// `x` as the graph output `name` (float32 whatever the precision).
    pub fn output(&mut self, x: &str, name: &str) {
        match self.precision {
            Precision::Fp32 | Precision::Int8 => self.op_into("Identity", &[x], vec![], name),
            Precision::Fp16 => self.op_into(
                "Cast",
                &[x],
                vec![int_attr("to", data_type::FLOAT as i64)],
                name,
            ),
        };
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

    pub fn finish(self, spec: GraphSpec) -> ModelProto {
        ModelProto {
            ir_version: 8,
            producer_name: "bert-sentiment".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: spec.doc.into(),
            graph: Some(GraphProto {
                node: self.nodes,
                name: spec.name.into(),
                initializer: self.initializers,
                input: spec.inputs,
                output: spec.outputs,
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
            metadata_props: spec
                .metadata
                .into_iter()
                .map(|(key, value)| StringStringEntryProto { key, value })
                .collect(),
        }
    }
}

/// Symmetric per-column int8 quantization of a [rows × columns] matrix:
/// the values and each column's scale (an all-zero column gets scale 1).
pub fn quantize_per_column(rows: usize, columns: usize, data: &[f32]) -> (Vec<i8>, Vec<f32>) {
    assert_eq!(data.len(), rows * columns, "matrix size");
    let mut scales = vec![0f32; columns];
    for row in data.chunks_exact(columns) {
        for (s, v) in scales.iter_mut().zip(row) {
            *s = s.max(v.abs());
        }
    }
    for s in &mut scales {
        *s = if *s > 0.0 { *s / 127.0 } else { 1.0 };
    }
    let values = data
        .chunks_exact(columns)
        .flat_map(|row| {
            row.iter()
                .zip(&scales)
                .map(|(v, s)| (v / s).round().clamp(-127.0, 127.0) as i8)
        })
        .collect();
    (values, scales)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_column_quantization_is_symmetric_and_bounded() {
        // 2 rows × 3 columns; column 2 is all zeros.
        let data = [1.0, -0.5, 0.0, -2.0, 0.25, 0.0];
        let (values, scales) = quantize_per_column(2, 3, &data);
        assert_eq!(scales, vec![2.0 / 127.0, 0.5 / 127.0, 1.0]);
        assert_eq!(values, vec![64, -127, 0, -127, 64, 0]);
        // Each value is recovered within half a step of its column.
        for (i, (&q, &v)) in values.iter().zip(&data).enumerate() {
            let s = scales[i % 3];
            assert!((q as f32 * s - v).abs() <= s / 2.0 + 1e-7, "{i}");
        }
    }
}
