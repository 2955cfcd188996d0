//! embed: token tensors -> frozen BERT features through ONNX Runtime.

pub mod batching;
pub mod encoder;
pub mod ortlib;

pub use encoder::{Device, Encoder, Pooling};
