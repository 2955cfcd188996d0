//! The subset of `onnx.proto` (ONNX IR 8) the converter writes, as prost
//! messages. Field numbers are those of onnx/onnx.proto; nothing else of
//! ONNX is needed, so no protoc and no generated code.

use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(string, tag = "2")]
    pub producer_name: String,
    #[prost(string, tag = "3")]
    pub producer_version: String,
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(int64, tag = "2")]
    pub version: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    #[prost(string, tag = "7")]
    pub domain: String,
}

/// `AttributeProto.AttributeType`.
pub mod attribute_type {
    pub const FLOAT: i32 = 1;
    pub const INT: i32 = 2;
    pub const INTS: i32 = 7;
}

#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(float, tag = "2")]
    pub f: f32,
    #[prost(int64, tag = "3")]
    pub i: i64,
    /// A tensor value (`Constant` nodes of graphs from other exporters).
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

/// `TensorProto.DataType`.
pub mod data_type {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const FLOAT16: i32 = 10;
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TensorTypeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorTypeProto {
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Dimension {
    #[prost(oneof = "DimValue", tags = "1, 2")]
    pub value: Option<DimValue>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum DimValue {
    #[prost(int64, tag = "1")]
    Value(i64),
    #[prost(string, tag = "2")]
    Param(String),
}

/// The first field of `model` (ONNX bytes) that the messages above do not
/// carry, as a path (`graph.node.attribute: field 4`), or `None` when
/// decoding and re-encoding loses nothing. Walks the wire format itself, so
/// it holds whatever encoding (packed or not) the writer chose.
pub fn uncarried_field(model: &[u8]) -> Option<String> {
    walk(model, Kind::Model, "model")
}

#[derive(Clone, Copy)]
enum Kind {
    Model,
    Opset,
    Entry,
    Graph,
    Node,
    Attribute,
    Tensor,
    ValueInfo,
    Type,
    TensorType,
    Shape,
    Dimension,
}

/// For each message kind: its carried fields, and the kind of each
/// message-typed one (`None`: a scalar, string or bytes).
fn carried(kind: Kind, field: u64) -> Option<Option<Kind>> {
    use Kind::*;
    let table: &[(u64, Option<Kind>)] = match kind {
        Model => &[
            (1, None),
            (2, None),
            (3, None),
            (6, None),
            (7, Some(Graph)),
            (8, Some(Opset)),
            (14, Some(Entry)),
        ],
        Opset | Entry => &[(1, None), (2, None)],
        Graph => &[
            (1, Some(Node)),
            (2, None),
            (5, Some(Tensor)),
            (11, Some(ValueInfo)),
            (12, Some(ValueInfo)),
        ],
        Node => &[
            (1, None),
            (2, None),
            (3, None),
            (4, None),
            (5, Some(Attribute)),
            (7, None),
        ],
        Attribute => &[
            (1, None),
            (2, None),
            (3, None),
            (5, Some(Tensor)),
            (8, None),
            (20, None),
        ],
        Tensor => &[(1, None), (2, None), (8, None), (9, None)],
        ValueInfo => &[(1, None), (2, Some(Type))],
        Type => &[(1, Some(TensorType))],
        TensorType => &[(1, None), (2, Some(Shape))],
        Shape => &[(1, Some(Dimension))],
        Dimension => &[(1, None), (2, None)],
    };
    table.iter().find(|(f, _)| *f == field).map(|(_, k)| *k)
}

fn walk(bytes: &[u8], kind: Kind, path: &str) -> Option<String> {
    let mut i = 0;
    let malformed = || Some(format!("{path}: malformed protobuf"));
    while i < bytes.len() {
        let Some(key) = varint(bytes, &mut i) else {
            return malformed();
        };
        let (field, wire) = (key >> 3, key & 7);
        let Some(sub) = carried(kind, field) else {
            return Some(format!("{path}: field {field}"));
        };
        match wire {
            0 => {
                if varint(bytes, &mut i).is_none() {
                    return malformed();
                }
            }
            1 => i += 8,
            5 => i += 4,
            2 => {
                let Some(len) = varint(bytes, &mut i) else {
                    return malformed();
                };
                let end = i.checked_add(len as usize).filter(|&e| e <= bytes.len());
                let Some(end) = end else {
                    return malformed();
                };
                if let Some(sub) = sub {
                    let name = match field {
                        7 => "graph",
                        1 if matches!(kind, Kind::Graph) => "node",
                        5 if matches!(kind, Kind::Graph) => "initializer",
                        5 => "attribute",
                        11 => "input",
                        12 => "output",
                        _ => "",
                    };
                    let inner = if name.is_empty() {
                        format!("{path}.{field}")
                    } else {
                        format!("{path}.{name}")
                    };
                    if let Some(found) = walk(&bytes[i..end], sub, &inner) {
                        return Some(found);
                    }
                }
                i = end;
            }
            _ => return malformed(),
        }
    }
    (i != bytes.len()).then(|| format!("{path}: malformed protobuf"))
}

fn varint(bytes: &[u8], i: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*i)?;
        *i += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}
