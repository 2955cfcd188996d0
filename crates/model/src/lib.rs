//! Models: where they come from (`source`) and how a safetensors BERT
//! checkpoint becomes an ONNX graph (`convert`).

pub mod bert_config;
pub mod convert;
mod onnx_proto;

pub use convert::{GraphInfo, convert};
