//! One ONNX Runtime session over a BERT graph, and pooling of its outputs.

use std::path::Path;

use anyhow::{Context, Result, bail};
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::Tensor;
use serde::{Deserialize, Serialize};

use crate::ortlib;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The model's `pooler_output` (tanh(W·h_CLS + b)), as the tutorial.
    Pooler,
    /// `last_hidden_state` at the first ([CLS]) position.
    Cls,
    /// Mean of `last_hidden_state` over real (unpadded) tokens.
    Mean,
}

impl Pooling {
    /// Its name in pipeline.toml (`pooler`, `cls`, `mean`): what the embed
    /// outputs record and what feature-store keys are made of.
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Pooler => "pooler",
            Pooling::Cls => "cls",
            Pooling::Mean => "mean",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    Cpu,
    /// CUDA execution provider; an error if it cannot be registered.
    Cuda,
    /// CUDA when it registers, else CPU with a warning.
    Auto,
}

/// Which of ONNX Runtime's CUDA attention kernels the fused graph's
/// Attention may use (its `sdpa_kernel` option). Only speed changes (and
/// float rounding); for the GPU benchmark, which compares them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CudaAttention {
    /// ONNX Runtime's own choice for the shape and the card. On an H200 it
    /// picks cuDNN's flash attention, which builds a plan for every new
    /// batch shape: the first pass over SST-2 took 4.1 s instead of 1.3 s.
    Auto,
    /// The unfused path only (GEMM, softmax, GEMM): the default, measured
    /// fastest on an H200 cold and warm (BENCHMARKS.md); BERT's sentences
    /// are short, so the unfused score matrices stay small.
    #[default]
    Math,
    /// TensorRT's fused multi-head attention kernels.
    TrtFused,
    /// cuDNN's flash attention (SDPA).
    CudnnFlash,
    /// CUTLASS memory-efficient attention.
    Efficient,
    /// Flash attention.
    Flash,
}

impl std::str::FromStr for CudaAttention {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "auto" => CudaAttention::Auto,
            "math" => CudaAttention::Math,
            "trt" => CudaAttention::TrtFused,
            "cudnn" => CudaAttention::CudnnFlash,
            "efficient" => CudaAttention::Efficient,
            "flash" => CudaAttention::Flash,
            other => bail!(
                "unknown CUDA attention kernel {other:?}: use auto, math, trt, cudnn, efficient or flash"
            ),
        })
    }
}

impl CudaAttention {
    fn flags(self) -> Option<ort::ep::cuda::AttentionBackend> {
        use ort::ep::cuda::AttentionBackend as B;
        Some(match self {
            CudaAttention::Auto => return None,
            CudaAttention::Math => B::MATH,
            CudaAttention::TrtFused => B::TRT_FUSED_ATTENTION | B::TRT_FLASH_ATTENTION,
            CudaAttention::CudnnFlash => B::CUDNN_FLASH_ATTENTION,
            CudaAttention::Efficient => B::EFFICIENT_ATTENTION,
            CudaAttention::Flash => B::FLASH_ATTENTION,
        })
    }
}

pub struct Encoder {
    session: Session,
    pooling: Pooling,
    hidden: usize,
    /// "cpu" or "cuda": what actually runs.
    pub device: &'static str,
}

impl Encoder {
    /// A session on `model`, and the warnings (a CPU fallback) for the
    /// caller to report, once (the embed stage makes them notes).
    pub fn open(
        model: &Path,
        pooling: Pooling,
        device: Device,
        threads: usize,
    ) -> Result<(Encoder, Vec<String>)> {
        Self::open_with(model, pooling, device, threads, CudaAttention::default())
    }

    /// [`Encoder::open`], restricting the CUDA attention kernels.
    pub fn open_with(
        model: &Path,
        pooling: Pooling,
        device: Device,
        threads: usize,
        attention: CudaAttention,
    ) -> Result<(Encoder, Vec<String>)> {
        let mut warnings = Vec::new();
        // `auto` only looks for CUDA where an NVIDIA driver is present, so a
        // CPU machine never fetches the (large) GPU build of ONNX Runtime.
        let try_cuda = match device {
            Device::Cpu => false,
            Device::Cuda => true,
            Device::Auto => nvidia_driver_present(),
        };
        if device == Device::Auto && !try_cuda {
            warnings.push(
                "warning: embed.device = \"auto\" found no NVIDIA GPU; embedding on the CPU"
                    .to_string(),
            );
        }
        let env = ortlib::environment(try_cuda)?;
        let cuda = Some(attention);
        let (session, used) = match (device, try_cuda) {
            (_, false) => (build_session(env, model, threads, None)?, "cpu"),
            (Device::Cuda, true) => (
                build_session(env, model, threads, cuda)
                    .context("embed.device = \"cuda\" but the CUDA execution provider could not be used; use \"cpu\" or \"auto\"")?,
                "cuda",
            ),
            (_, true) => match build_session(env, model, threads, cuda) {
                Ok(s) => (s, "cuda"),
                Err(e) => {
                    warnings.push(format!(
                        "warning: no usable CUDA ({}); embedding on the CPU",
                        first_line(&format!("{e:#}"))
                    ));
                    (build_session(env, model, threads, None)?, "cpu")
                }
            },
        };
        let outputs: Vec<String> = session
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        let needed = if pooling == Pooling::Pooler {
            "pooler_output"
        } else {
            "last_hidden_state"
        };
        if !outputs.iter().any(|o| o == needed) {
            bail!(
                "{}: the model has no {needed} output (it has: {}); {}",
                model.display(),
                outputs.join(", "),
                if pooling == Pooling::Pooler {
                    "use embed.pooling = \"cls\" or \"mean\""
                } else {
                    "is this a BERT encoder?"
                }
            );
        }
        let hidden = hidden_size(&session, needed)?;
        Ok((
            Encoder {
                session,
                pooling,
                hidden,
                device: used,
            },
            warnings,
        ))
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// Features [batch × hidden] for one padded batch of `ids` / `mask`
    /// (row-major [batch × seq]).
    pub fn embed(
        &mut self,
        ids: Vec<i64>,
        mask: Vec<i64>,
        batch: usize,
        seq: usize,
    ) -> Result<Vec<f32>> {
        match self.pooling {
            Pooling::Pooler => self.run(ids, mask, batch, seq, "pooler_output"),
            Pooling::Cls => {
                let states = self.run(ids, mask, batch, seq, "last_hidden_state")?;
                Ok(pool_cls(&states, batch, seq, self.hidden))
            }
            Pooling::Mean => {
                let states = self.run(ids, mask.clone(), batch, seq, "last_hidden_state")?;
                Ok(pool_mean(&states, &mask, batch, seq, self.hidden))
            }
        }
    }

    /// `last_hidden_state` [batch × seq × hidden].
    pub fn last_hidden_state(
        &mut self,
        ids: Vec<i64>,
        mask: Vec<i64>,
        batch: usize,
        seq: usize,
    ) -> Result<Vec<f32>> {
        self.run(ids, mask, batch, seq, "last_hidden_state")
    }

    fn run(
        &mut self,
        ids: Vec<i64>,
        mask: Vec<i64>,
        batch: usize,
        seq: usize,
        output: &str,
    ) -> Result<Vec<f32>> {
        let types = vec![0i64; batch * seq];
        let shape = [batch, seq];
        let inputs = ort::inputs![
            "input_ids" => Tensor::from_array((shape, ids))?,
            "attention_mask" => Tensor::from_array((shape, mask))?,
            "token_type_ids" => Tensor::from_array((shape, types))?,
        ];
        let outputs = self.session.run(inputs)?;
        Ok(outputs[output].try_extract_tensor::<f32>()?.1.to_vec())
    }
}

fn pool_cls(states: &[f32], batch: usize, seq: usize, h: usize) -> Vec<f32> {
    (0..batch)
        .flat_map(|b| states[b * seq * h..b * seq * h + h].iter().copied())
        .collect()
}

/// Mean over positions whose mask is set (sentence-transformers' pooling).
fn pool_mean(states: &[f32], mask: &[i64], batch: usize, seq: usize, h: usize) -> Vec<f32> {
    let mut out = vec![0f32; batch * h];
    for b in 0..batch {
        let row = &mut out[b * h..(b + 1) * h];
        let mut count = 0f32;
        for s in 0..seq {
            if mask[b * seq + s] != 0 {
                count += 1.0;
                let token = &states[(b * seq + s) * h..(b * seq + s + 1) * h];
                row.iter_mut().zip(token).for_each(|(r, t)| *r += t);
            }
        }
        let denom = count.max(1e-9);
        row.iter_mut().for_each(|r| *r /= denom);
    }
    out
}

pub(crate) fn build_session(
    env: &ort::environment::Environment,
    model: &Path,
    threads: usize,
    cuda: Option<CudaAttention>,
) -> Result<Session> {
    let err = |e: ort::Error| anyhow::anyhow!("{e}");
    let mut builder = Session::builder(env)
        .map_err(err)?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_intra_threads(threads.max(1))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(attention) = cuda {
        let mut ep = ort::ep::CUDA::default();
        if let Some(flags) = attention.flags() {
            ep = ep.with_attention_backend(flags);
        }
        builder = builder
            .with_execution_providers([ep.build().error_on_failure()])
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    builder.commit_from_file(model).map_err(|e| {
        anyhow::anyhow!(
            "{}: ONNX Runtime cannot load the model: {e}",
            model.display()
        )
    })
}

fn hidden_size(session: &Session, output: &str) -> Result<usize> {
    let outlet = session
        .outputs()
        .iter()
        .find(|o| o.name() == output)
        .unwrap();
    let dims: Vec<i64> = match outlet.dtype() {
        ort::value::ValueType::Tensor { shape, .. } => shape.iter().copied().collect(),
        other => bail!("output {output} is {other:?}, not a tensor"),
    };
    match dims.last() {
        Some(&h) if h > 0 => Ok(h as usize),
        _ => bail!("output {output} has no fixed hidden size (shape {dims:?})"),
    }
}

fn nvidia_driver_present() -> bool {
    std::path::Path::new("/proc/driver/nvidia/version").exists()
        || std::path::Path::new("/dev/nvidia0").exists()
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
