//! Models: where they come from ([`source`]) and how a safetensors BERT
//! checkpoint becomes an ONNX graph ([`convert`]).

pub mod bert_config;
pub mod convert;
mod onnx_proto;
pub mod prepare;
pub mod pypi;
pub mod source;

pub use convert::{GraphInfo, Ops, Precision, convert, convert_with};
pub use prepare::{OUTPUTS, prepare};
pub use source::{ModelFiles, ModelSource, Weights};
