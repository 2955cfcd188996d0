//! `cargo xtask bench --scale [ROWS ...]`: every stage run alone at each
//! size, with its wall time, the peak resident memory of its process
//! (`wait4`'s rusage), the bytes it wrote, and its time per row against the
//! smallest size. Printed, never asserted.
//!
//! The data: seeded synthetic rows, each two sentences of the texts CSV
//! (default SST-2 train) joined, with the first one's label. The model: a
//! seeded random BERT of the default's width (H = 384, 12 heads, 1,536
//! intermediate) with one layer, written here as safetensors with the
//! shipped tiny model's tokenizer (BERT's uncased vocabulary) and loaded
//! through `dir:`, so that embedding is cheap and the features are
//! default-sized.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use runner::manifest::LockFile;

/// The sizes run when none are given (10,000,000 on request).
pub const DEFAULT_SIZES: [usize; 3] = [250_000, 1_000_000, 4_000_000];

const STAGES: [&str; 8] = [
    "ingest", "model", "encode", "embed", "head", "audit", "report", "export",
];

pub fn run(texts: Option<&Path>, sizes: &[usize], overrides: &[String]) -> Result<()> {
    let sizes = if sizes.is_empty() {
        DEFAULT_SIZES.to_vec()
    } else {
        sizes.to_vec()
    };
    let texts = match texts {
        Some(p) => p.to_path_buf(),
        None => crate::bench::default_csv()?,
    };
    let sentences = read_texts(&texts)?;
    let keep = std::env::var_os("BENCH_SCALE_KEEP").is_some();
    let work = tempfile::Builder::new()
        .prefix("bench-scale-")
        .tempdir_in(std::env::current_dir()?)?
        .keep();
    let _cleanup = (!keep).then(|| RemoveOnDrop(work.clone()));
    let model = work.join("bert-1-layer-h384");
    write_random_bert(&model)?;
    outln!(
        "bench --scale: {}; rows of two sentences of {} ({} texts) joined; a seeded random \
         BERT, H = 384, 1 layer; head.epochs = 1; each stage alone (`run-pipeline --until \
         STAGE`, its inputs cached)",
        crate::bench::cpu_description(),
        texts.display(),
        sentences.len()
    )?;
    outln!(
        "{:>10}  {:<7} {:>9} {:>10} {:>10} {:>9} {:>8}",
        "rows",
        "stage",
        "wall s",
        "peak MB",
        "output MB",
        "µs/row",
        "vs first"
    )?;
    let mut first_per_row: HashMap<&str, f64> = HashMap::new();
    for &rows in &sizes {
        let project = work.join(format!("rows-{rows}"));
        std::fs::create_dir_all(project.join("data"))?;
        let csv = project.join("data/input.csv");
        write_rows(&csv, &sentences, rows)?;
        let config = project.join("pipeline.toml");
        std::fs::write(
            &config,
            format!(
                "[ingest]\ncsv = \"data/input.csv\"\n[model]\nsource = \"dir:{}\"\n\
                 [embed]\ndevice = \"cpu\"\n[head]\nepochs = 1\n",
                model.display()
            ),
        )?;
        for stage in STAGES {
            let measured = run_stage(&config, stage, overrides)?;
            let lock = LockFile::load(&project.join("artifacts/pipeline.lock"))?;
            let bytes: u64 = lock
                .stages
                .get(stage)
                .map(|m| m.outputs.values().map(|o| o.bytes).sum())
                .unwrap_or(0);
            let per_row = measured.seconds * 1e6 / rows as f64;
            let first = *first_per_row.entry(stage).or_insert(per_row);
            outln!(
                "{rows:>10}  {stage:<7} {:>9.1} {:>10.0} {:>10.1} {:>9.1} {:>7.2}×",
                measured.seconds,
                measured.peak_bytes as f64 / 1e6,
                bytes as f64 / 1e6,
                per_row,
                per_row / first
            )?;
        }
        let artifacts = project.join("artifacts");
        let mb = |files: &Files| files.values().sum::<u64>() as f64 / 1e6;
        let (store, embed) = (
            files_under(&artifacts.join(".cache/embed"))?,
            files_under(&artifacts.join(".store/embed"))?,
        );
        let shared: Files = embed
            .iter()
            .filter(|(inode, _)| store.contains_key(inode))
            .map(|(inode, bytes)| (*inode, *bytes))
            .collect();
        outln!(
            "{rows:>10}  disk: artifacts {:.0} MB (a file with two names counted once; of which \
             the feature store {:.0} MB, .store/embed {:.0} MB, {:.0} MB of it the same files \
             as the store's chunks, .store/encode {:.0} MB); the CSV {:.0} MB",
            mb(&files_under(&artifacts)?),
            mb(&store),
            mb(&embed),
            mb(&shared),
            mb(&files_under(&artifacts.join(".store/encode"))?),
            std::fs::metadata(&csv)?.len() as f64 / 1e6
        )?;
        // The next size's data and artifacts replace these (unless
        // BENCH_SCALE_KEEP is set: to run another build on the same data).
        if keep {
            outln!("{rows:>10}  kept: {}", project.display())?;
        } else {
            std::fs::remove_dir_all(&project)?;
        }
    }
    Ok(())
}

/// Removes the bench's folder when the bench ends, also on an error.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Measured {
    seconds: f64,
    peak_bytes: u64,
}

/// `run-pipeline --until stage` in a child process: its wall time and peak
/// resident memory.
fn run_stage(config: &Path, stage: &str, overrides: &[String]) -> Result<Measured> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["run-pipeline", "--until", stage, "--config"])
        .arg(config);
    for s in overrides {
        cmd.arg("--set").arg(s);
    }
    let started = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run the pipeline")?;
    let pid = child.id() as libc::pid_t;
    // stderr is read to its end first, so the child never blocks on a
    // full pipe; then it is reaped with wait4 for its rusage.
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr {
        use std::io::Read;
        pipe.read_to_string(&mut stderr)?;
    }
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet reaped (Child's own wait is never
    // called: the handle was consumed above).
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    if reaped != pid {
        bail!(
            "wait4 on the pipeline failed: {}",
            std::io::Error::last_os_error()
        );
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("run-pipeline --until {stage} failed:\n{stderr}");
    }
    Ok(Measured {
        seconds,
        // ru_maxrss is in kilobytes on Linux.
        peak_bytes: usage.ru_maxrss as u64 * 1024,
    })
}

/// The texts column of a `sentence,label` CSV, with labels.
fn read_texts(path: &Path) -> Result<Vec<(String, String)>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("{}", path.display()))?;
        if let (Some(text), Some(label)) = (record.get(0), record.get(1)) {
            rows.push((text.to_string(), label.to_string()));
        }
    }
    if rows.is_empty() {
        bail!("{}: no `sentence,label` rows", path.display());
    }
    Ok(rows)
}

/// splitmix64: a seeded stream, the same on every machine.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Uniform in [-a, a).
    fn symmetric(&mut self, a: f32) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * a
    }
}

/// `rows` rows of two joined sentences (seed 27), streamed to `path`.
fn write_rows(path: &Path, sentences: &[(String, String)], rows: usize) -> Result<()> {
    let mut writer = csv::Writer::from_path(path)?;
    writer.write_record(["sentence", "label"])?;
    let mut rng = Seeded(27);
    for _ in 0..rows {
        let (a, label) = &sentences[rng.below(sentences.len())];
        let (b, _) = &sentences[rng.below(sentences.len())];
        writer.write_record([format!("{a} {b}").as_str(), label.as_str()])?;
    }
    writer.flush()?;
    Ok(())
}

/// A BERT of all-MiniLM-L6-v2's width with one layer, weights uniform in
/// ±0.035 (about the 0.02 standard deviation BERT initialises with), layer
/// norms at one and zero; config, tokenizer and safetensors in `dir`.
fn write_random_bert(dir: &Path) -> Result<()> {
    let (hidden, intermediate, vocab, positions) = (384usize, 1536usize, 30522usize, 512usize);
    std::fs::create_dir_all(dir)?;
    let tiny = tiny_model_dir()?;
    std::fs::copy(tiny.join("tokenizer.json"), dir.join("tokenizer.json"))?;
    let config = serde_json::json!({
        "architectures": ["BertModel"], "model_type": "bert", "vocab_size": vocab,
        "hidden_size": hidden, "num_hidden_layers": 1, "num_attention_heads": 12,
        "intermediate_size": intermediate, "hidden_act": "gelu",
        "max_position_embeddings": positions, "type_vocab_size": 2,
        "layer_norm_eps": 1e-12, "pad_token_id": 0,
    });
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config)?)?;
    let mut rng = Seeded(384);
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut random = |name: &str, shape: Vec<usize>| {
        let n = shape.iter().product();
        let values = (0..n).map(|_| rng.symmetric(0.035)).collect();
        tensors.push((name.to_string(), shape, values));
    };
    random("embeddings.word_embeddings.weight", vec![vocab, hidden]);
    random(
        "embeddings.position_embeddings.weight",
        vec![positions, hidden],
    );
    random("embeddings.token_type_embeddings.weight", vec![2, hidden]);
    let layer = "encoder.layer.0";
    for part in ["query", "key", "value"] {
        random(
            &format!("{layer}.attention.self.{part}.weight"),
            vec![hidden, hidden],
        );
    }
    random(
        &format!("{layer}.attention.output.dense.weight"),
        vec![hidden, hidden],
    );
    random(
        &format!("{layer}.intermediate.dense.weight"),
        vec![intermediate, hidden],
    );
    random(
        &format!("{layer}.output.dense.weight"),
        vec![hidden, intermediate],
    );
    random("pooler.dense.weight", vec![hidden, hidden]);
    let mut constant = |name: String, n: usize, value: f32| {
        tensors.push((name, vec![n], vec![value; n]));
    };
    for norm in [
        "embeddings.LayerNorm".to_string(),
        format!("{layer}.attention.output.LayerNorm"),
        format!("{layer}.output.LayerNorm"),
    ] {
        constant(format!("{norm}.weight"), hidden, 1.0);
        constant(format!("{norm}.bias"), hidden, 0.0);
    }
    for (bias, n) in [
        (format!("{layer}.attention.self.query.bias"), hidden),
        (format!("{layer}.attention.self.key.bias"), hidden),
        (format!("{layer}.attention.self.value.bias"), hidden),
        (format!("{layer}.attention.output.dense.bias"), hidden),
        (format!("{layer}.intermediate.dense.bias"), intermediate),
        (format!("{layer}.output.dense.bias"), hidden),
        ("pooler.dense.bias".to_string(), hidden),
    ] {
        constant(bias, n, 0.0);
    }
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, shape, values)| {
            let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name, shape, raw)
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, shape, raw)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), raw)?;
            Ok((name.clone(), view))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors"))?;
    Ok(())
}

fn tiny_model_dir() -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/models/bert-tiny-random");
    if !dir.join("tokenizer.json").is_file() {
        bail!(
            "{} not found: the scale bench takes its tokenizer from ../shared/models",
            dir.display()
        );
    }
    Ok(dir)
}

/// Regular files by (device, inode): a file with two names (an embed
/// output that is also a feature-store chunk) is one entry.
type Files = std::collections::HashMap<(u64, u64), u64>;

/// The regular files under `dir` (none if it is missing), with their sizes.
fn files_under(dir: &Path) -> Result<Files> {
    use std::os::unix::fs::MetadataExt;
    let mut files = Files::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(files);
    };
    for entry in entries.flatten() {
        let kind = entry.file_type()?;
        if kind.is_dir() {
            files.extend(files_under(&entry.path())?);
        } else if kind.is_file() {
            let m = entry.metadata()?;
            files.insert((m.dev(), m.ino()), m.len());
        }
    }
    Ok(files)
}
