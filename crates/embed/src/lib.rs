//! embed: token tensors -> frozen BERT features through ONNX Runtime.

pub mod batching;
pub mod bench;
pub mod encoder;
pub mod ortlib;
pub mod stage;
pub mod store;
pub mod through_store;

pub use encoder::{CudaAttention, Device, Encoder, Pooling};
pub use stage::{EmbedParams, EmbedSummary, OUTPUTS, SPEED_ONLY_PARAMS, run};
