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

    /// A node of the standard domain with `n` outputs; their fresh names.
    pub fn op_outputs(&mut self, op: &str, inputs: &[&str], n: usize) -> Vec<String> {
        self.counter += 1;
        let outputs: Vec<String> = (0..n)
            .map(|i| format!("{}{}_{}_{i}", self.prefix, op.to_lowercase(), self.counter))
            .collect();
        self.op_into(op, inputs, vec![], &outputs[0]);
        self.nodes.last_mut().unwrap().output = outputs.clone();
        outputs
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
    pub fn int8_weight(
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
    /// int8 and `x` quantized on the fly: ONNX Runtime's
    /// `DynamicQuantizeMatMul`, or with standard operators only
    /// `DynamicQuantizeLinear` → `MatMulInteger` → float × scales (which
    /// ONNX Runtime fuses into the same kernel).
    pub fn int8_matmul(
        &mut self,
        x: &str,
        name: &str,
        rows: usize,
        columns: usize,
        data: &[f32],
    ) -> String {
        let (w, w_scale) = self.int8_weight(name, rows, columns, data);
        if !self.standard_only {
            return self.ms_op("DynamicQuantizeMatMul", &[x, &w, &w_scale], vec![]);
        }
        let x_q = self.op_outputs("DynamicQuantizeLinear", &[x], 3);
        let product = self.op("MatMulInteger", &[&x_q[0], &w, &x_q[2]], vec![]);
        let product = self.op(
            "Cast",
            &[&product],
            vec![int_attr("to", data_type::FLOAT as i64)],
        );
        let product = self.op("Mul", &[&product, &x_q[1]], vec![]);
        self.op("Mul", &[&product, &w_scale], vec![])
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
