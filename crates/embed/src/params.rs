//! `[embed]` in pipeline.toml: what decides a vector (pooling, device; in
//! the stage key) and what only decides where and how fast vectors are
//! computed (batching, the executor and its Ray settings; not in the key).

use std::path::PathBuf;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::encoder::{Device, Pooling};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedParams {
    #[serde(default = "default_pooling")]
    pub pooling: Pooling,
    #[serde(default = "default_device")]
    pub device: Device,
    /// Most padded tokens per batch (rows are sorted by length first);
    /// unset: the device's default (see [`EmbedParams::batch_limits`]).
    #[serde(default)]
    pub batch_tokens: Option<usize>,
    /// Most rows per batch; unset: the device's default.
    #[serde(default)]
    pub max_batch_rows: Option<usize>,
    /// Where the rows the feature store lacks are embedded.
    #[serde(default)]
    pub executor: Executor,
    /// Rows per feature-store chunk: what one commit saves (a resume
    /// point), and on Ray what one task embeds; unset: see
    /// [`EmbedParams::chunk_rows`].
    #[serde(default)]
    pub chunk_rows: Option<usize>,
    /// Distinct new rows the stage gathers and hands to the executor at a
    /// time: what bounds its memory; unset: see [`EmbedParams::window_rows`].
    #[serde(default)]
    pub window_rows: Option<usize>,
    /// An existing Ray cluster (`host:port` of its head, or `auto`); unset:
    /// a Ray instance on this machine, started for the run.
    #[serde(default)]
    pub ray_address: Option<String>,
    /// The Python that runs the Ray driver (it must import `ray`, of the
    /// cluster's version); unset: the one `cargo xtask setup-ray` installs.
    #[serde(default)]
    pub ray_python: Option<PathBuf>,
    /// GPUs one Ray task reserves (1 on GPU nodes, 0 on CPU nodes).
    #[serde(default)]
    pub gpus_per_task: f64,
    /// CPUs one Ray task reserves; also ONNX Runtime's threads in it.
    #[serde(default = "default_cpus_per_task")]
    pub cpus_per_task: f64,
    /// How often Ray runs a task again whose worker died (killed, out of
    /// memory) before the chunk counts as failed.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
}

/// Where missing rows are embedded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Executor {
    /// In this process, on its device.
    #[default]
    Local,
    /// As tasks on a Ray cluster, a chunk per task (see `crate::ray`).
    Ray,
}

impl Default for EmbedParams {
    fn default() -> Self {
        EmbedParams {
            pooling: default_pooling(),
            device: default_device(),
            batch_tokens: None,
            max_batch_rows: None,
            executor: Executor::Local,
            chunk_rows: None,
            window_rows: None,
            ray_address: None,
            ray_python: None,
            gpus_per_task: 0.0,
            cpus_per_task: default_cpus_per_task(),
            max_retries: default_max_retries(),
        }
    }
}

/// Parameters that change where and how fast rows are embedded, never a
/// row's vector: left out of the stage key.
pub const RUN_ONLY_PARAMS: [&str; 10] = [
    "batch_tokens",
    "max_batch_rows",
    "executor",
    "chunk_rows",
    "window_rows",
    "ray_address",
    "ray_python",
    "gpus_per_task",
    "cpus_per_task",
    "max_retries",
];

impl EmbedParams {
    /// (most padded tokens, most rows) per batch on `device` ("cpu" or
    /// "cuda", what the session runs on). Measured (BENCHMARKS.md): a CPU
    /// does well with 4096 tokens and 256 rows; on an H200 a row limit
    /// only adds batches (311 instead of 112 for SST-2, warm pass 1.12 s
    /// instead of 0.93 s), and of 8192, 16384, 32768 and 65536 tokens the
    /// smallest gave the fastest first pass (1.19, 1.36, 1.47, 1.56 s).
    pub fn batch_limits(&self, device: &str) -> (usize, usize) {
        let (tokens, rows) = if device == "cuda" {
            (8192, 8192)
        } else {
            (4096, 256)
        };
        (
            self.batch_tokens.unwrap_or(tokens),
            self.max_batch_rows.unwrap_or(rows),
        )
    }

    /// Rows per chunk: `chunk_rows` if set, else 4,096 (a resume point
    /// every few seconds on a CPU), or 65,536 for Ray tasks that hold a GPU.
    /// Measured (BENCHMARKS.md, H200, all-MiniLM-L6-v2): a task's process,
    /// CUDA context and session cost about 0.9 s before its first row, and
    /// 4,096 rows then take about 0.1 s; 66,973 rows in one task, 2.1 s.
    pub fn chunk_rows(&self) -> usize {
        self.chunk_rows.unwrap_or(
            if self.executor == Executor::Ray && self.gpus_per_task > 0.0 {
                65_536
            } else {
                crate::store::CHUNK_ROWS
            },
        )
    }

    /// Distinct new rows per window: 262,144 (~65 MB of token ids and
    /// keys), or four chunks if those are larger.
    pub fn window_rows(&self) -> usize {
        self.window_rows
            .unwrap_or_else(|| crate::stage::WINDOW_ROWS.max(4 * self.chunk_rows()))
    }

    /// Refuses values no run could use, naming the parameter.
    pub fn check(&self) -> Result<()> {
        if self.batch_tokens == Some(0) || self.max_batch_rows == Some(0) {
            bail!("embed.batch_tokens and embed.max_batch_rows must be positive");
        }
        if self.chunk_rows == Some(0) || self.window_rows == Some(0) {
            bail!("embed.chunk_rows and embed.window_rows must be positive");
        }
        for (name, value) in [
            ("gpus_per_task", self.gpus_per_task),
            ("cpus_per_task", self.cpus_per_task),
        ] {
            if !value.is_finite() || value < 0.0 {
                bail!("embed.{name} must be a number ≥ 0, not {value}");
            }
        }
        if self.executor == Executor::Ray {
            if self.device == Device::Cuda && self.gpus_per_task == 0.0 {
                bail!(
                    "embed.device = \"cuda\" with executor = \"ray\" needs embed.gpus_per_task > 0 \
                     (Ray hides GPUs from tasks that reserve none)"
                );
            }
            if self.device == Device::Cpu && self.gpus_per_task > 0.0 {
                bail!(
                    "embed.device = \"cpu\" with embed.gpus_per_task = {}: the tasks would hold GPUs \
                     they never use; set gpus_per_task = 0 or device = \"auto\"",
                    self.gpus_per_task
                );
            }
        }
        Ok(())
    }
}

fn default_pooling() -> Pooling {
    Pooling::Pooler
}
fn default_device() -> Device {
    Device::Auto
}
fn default_cpus_per_task() -> f64 {
    1.0
}
fn default_max_retries() -> u32 {
    3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_limits_follow_the_device_unless_set() {
        let unset = EmbedParams::default();
        assert_eq!(unset.batch_limits("cpu"), (4096, 256));
        assert_eq!(unset.batch_limits("cuda"), (8192, 8192));
        let set = EmbedParams {
            batch_tokens: Some(64),
            ..EmbedParams::default()
        };
        assert_eq!(set.batch_limits("cpu"), (64, 256));
        assert_eq!(set.batch_limits("cuda"), (64, 8192));
    }

    #[test]
    fn gpu_tasks_take_larger_chunks_unless_set() {
        let ray = |gpus: f64, chunk_rows: Option<usize>| EmbedParams {
            executor: Executor::Ray,
            gpus_per_task: gpus,
            chunk_rows,
            ..Default::default()
        };
        assert_eq!(EmbedParams::default().chunk_rows(), 4096);
        assert_eq!(ray(0.0, None).chunk_rows(), 4096);
        assert_eq!(ray(1.0, None).chunk_rows(), 65_536);
        assert_eq!(ray(1.0, Some(500)).chunk_rows(), 500);
    }

    #[test]
    fn impossible_settings_are_refused_by_name() {
        let refused = |params: EmbedParams, naming: &str| {
            let e = params.check().unwrap_err().to_string();
            assert!(e.contains(naming), "{e}");
        };
        refused(
            EmbedParams {
                chunk_rows: Some(0),
                ..Default::default()
            },
            "embed.chunk_rows",
        );
        refused(
            EmbedParams {
                cpus_per_task: -1.0,
                ..Default::default()
            },
            "embed.cpus_per_task",
        );
        refused(
            EmbedParams {
                executor: Executor::Ray,
                device: Device::Cuda,
                ..Default::default()
            },
            "gpus_per_task > 0",
        );
        refused(
            EmbedParams {
                executor: Executor::Ray,
                device: Device::Cpu,
                gpus_per_task: 1.0,
                ..Default::default()
            },
            "gpus_per_task = 0",
        );
        // The same CUDA device on the local executor needs no Ray setting.
        EmbedParams {
            device: Device::Cuda,
            ..Default::default()
        }
        .check()
        .unwrap();
    }
}
