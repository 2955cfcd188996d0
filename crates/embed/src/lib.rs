//! embed: token tensors -> frozen BERT features through ONNX Runtime.

pub mod batching;
pub mod bench;
pub mod chunk_task;
pub mod encoder;
mod gather;
pub mod local;
pub mod masked_graph;
pub mod ortlib;
pub mod params;
pub mod ray;
pub mod stage;
pub mod store;
pub mod through_store;

pub use encoder::{CudaAttention, Device, Encoder, Pooling};
pub use params::{EmbedParams, Executor, RUN_ONLY_PARAMS};
pub use stage::{EmbedSummary, OUTPUTS, run};
