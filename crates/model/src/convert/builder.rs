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
    /// Constants by type, shape and bytes: each is one initializer however
    /// many nodes read it.
    constants: HashMap<(i32, Vec<usize>, Vec<u8>), String>,
}

impl Builder {
    pub fn new(precision: Precision) -> Builder {
        Builder {
            nodes: Vec::new(),
            initializers: Vec::new(),
            counter: 0,
            precision,
            constants: HashMap::new(),
        }
    }

    /// A node of the standard domain; returns its (fresh) output name.
    pub fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        self.counter += 1;
        let out = format!("{}_{}", op.to_lowercase(), self.counter);
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
            name: format!("{op}_{}", self.nodes.len()),
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
        let name = format!("const_{}", self.constants.len());
        self.initializer(&name, dims, data_type, id.2.clone());
        self.constants.insert(id, name.clone());
        name
    }

    fn float_bytes(&self, data: &[f32]) -> Vec<u8> {
        match self.precision {
            Precision::Fp32 => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Precision::Fp16 => data
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
        }
    }

    /// The ONNX element type of activations inside the graph.
    pub fn float_type(&self) -> i32 {
        match self.precision {
            Precision::Fp32 => data_type::FLOAT,
            Precision::Fp16 => data_type::FLOAT16,
        }
    }

    /// `x` as the graph output `name` (float32 whatever the precision).
    pub fn output(&mut self, x: &str, name: &str) {
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
