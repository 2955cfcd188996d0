//! The Ray executor: the rows the feature store lacks, embedded as tasks
//! on a Ray cluster, a chunk per task.
//!
//! Ray has no Rust client, so a small Python driver (`ray_driver.py`,
//! compiled into this binary and written out for each run) talks to the
//! cluster. This side writes each chunk's token ids (Arrow IPC,
//! `tables::task_wire`) into a job folder beside the feature store and
//! starts the driver with a job description; the driver puts the program
//! (this very binary), ONNX Runtime and the model graph into Ray's object
//! store once (workers keep a copy per digest: no shared filesystem is
//! assumed) and runs one task per chunk: the hidden `embed-chunk` command
//! ([`crate::chunk_task`]), token ids in, feature vectors out. The driver
//! reports each chunk on its stdout as it comes back; this side commits it
//! into the feature store at once, so a failure loses only unfinished
//! chunks and a rerun resumes. Ray retries a task whose worker died up to
//! `max_retries` times; a chunk that still fails fails the stage naming
//! its rows, after every other chunk is in.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;
use serde::Deserialize;
use serde_json::json;
use tables::encoded::EncodedRow;
use tables::feature_chunks::{Chunk, Key};
use tables::task_wire;

use crate::chunk_task::TaskSpec;
use crate::encoder::Device;
use crate::params::EmbedParams;
use crate::through_store::{ChunkDone, Embedder};

/// The Ray release this project is tested with; `cargo xtask setup-ray`
/// installs it. A cluster of another version needs a driver Python of
/// that version (`embed.ray_python`).
pub const RAY_VERSION: &str = "2.60.0";

/// The command that installs Ray for the driver.
pub const SETUP_COMMAND: &str = "cargo xtask setup-ray";

const DRIVER: &str = include_str!("ray_driver.py");

/// The Python `cargo xtask setup-ray` installs Ray into.
pub fn default_python() -> PathBuf {
    model::pypi::cache_dir()
        .join("ray-venv")
        .join("bin")
        .join("python")
}

/// [`Embedder`] on a Ray cluster.
pub struct Ray<'a> {
    params: &'a EmbedParams,
    model: &'a Path,
    /// Job folders and the driver's log go here.
    work_dir: PathBuf,
    /// What ran the model on the workers (`cpu`, `cuda`), from the chunks.
    pub devices: BTreeSet<String>,
    /// What the run did, for the stage's notes.
    pub notes: Vec<String>,
}

impl<'a> Ray<'a> {
    pub fn new(params: &'a EmbedParams, model: &'a Path, work_dir: &Path) -> Ray<'a> {
        Ray {
            params,
            model,
            work_dir: work_dir.to_path_buf(),
            devices: BTreeSet::new(),
            notes: Vec::new(),
        }
    }

    /// The driver's log (Ray's own messages): kept after the run.
    pub fn log_path(&self) -> PathBuf {
        self.work_dir.join("ray-driver.log")
    }

    fn python(&self) -> Result<PathBuf> {
        match &self.params.ray_python {
            Some(python) => Ok(python.clone()),
            None => {
                let python = default_python();
                if !python.is_file() {
                    bail!("{}", no_ray_message(&python, "it is not installed"));
                }
                Ok(python)
            }
        }
    }

    /// The files every task needs: this program, ONNX Runtime, the model.
    fn bundles(&self) -> Result<serde_json::Value> {
        let program = std::env::current_exe().context("cannot find this program's executable")?;
        let library = crate::ortlib::library_path(self.params.gpus_per_task > 0.0)?;
        let library_dir = library.parent().unwrap_or(Path::new("."));
        // Its providers are loaded from its own folder: ship them with it.
        let mut libraries = vec![library.clone()];
        for entry in std::fs::read_dir(library_dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("libonnxruntime_providers") && name.contains(".so") {
                libraries.push(entry.path());
            }
        }
        Ok(json!([
            {"name": "program", "files": [program]},
            {"name": "onnxruntime", "files": libraries},
            {"name": "model", "files": [self.model]},
        ]))
    }

    /// What ran the model: the workers' devices (`cpu`, `cuda`, or both
    /// joined by `+`), or with nothing embedded the device the tasks were
    /// told to use.
    pub fn device(&self) -> String {
        if !self.devices.is_empty() {
            return self.devices.iter().cloned().collect::<Vec<_>>().join("+");
        }
        match self.task_spec().device {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
            Device::Auto => "auto",
        }
        .into()
    }

    fn task_spec(&self) -> TaskSpec {
        let p = self.params;
        TaskSpec {
            pooling: p.pooling,
            // Ray hides GPUs from a task that reserves none.
            device: if p.gpus_per_task == 0.0 {
                Device::Cpu
            } else {
                p.device
            },
            batch_tokens: p.batch_tokens,
            max_batch_rows: p.max_batch_rows,
            threads: (p.cpus_per_task.ceil() as usize).max(1),
        }
    }
}

impl Embedder for Ray<'_> {
    fn embed(
        &mut self,
        rows: &[EncodedRow],
        keys: &[Key],
        bar: &ProgressBar,
        done: &mut ChunkDone,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let python = self.python()?;
        std::fs::create_dir_all(&self.work_dir)?;
        // Job folders of a killed run: never read again (the run lock is held).
        for entry in std::fs::read_dir(&self.work_dir)?.flatten() {
            if entry.file_name().to_string_lossy().starts_with("ray-job-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let job = tempfile::Builder::new()
            .prefix("ray-job-")
            .tempdir_in(&self.work_dir)
            .with_context(|| {
                format!("cannot create a job folder in {}", self.work_dir.display())
            })?;
        let ranges = chunk_ranges(rows.len(), self.params.chunk_rows());
        // Where the driver writes each chunk's vectors.
        let outputs: Vec<PathBuf> = (0..ranges.len())
            .map(|i| job.path().join(format!("out-{i:06}.arrow")))
            .collect();
        let mut chunks = Vec::with_capacity(ranges.len());
        for (i, (range, output)) in ranges.iter().zip(&outputs).enumerate() {
            let input = job.path().join(format!("in-{i:06}.arrow"));
            let ids = rows[range.clone()].iter().map(|r| r.ids.as_slice());
            std::fs::write(&input, task_wire::write_token_rows(ids)?)?;
            chunks.push(json!({"input": input, "output": output}));
        }
        let p = self.params;
        let description = json!({
            "address": p.ray_address,
            "ray_version": RAY_VERSION,
            "bundles": self.bundles()?,
            "task_args": ["--spec", serde_json::to_string(&self.task_spec())?],
            "num_cpus": p.cpus_per_task,
            "num_gpus": p.gpus_per_task,
            "max_retries": p.max_retries,
            "chunks": chunks,
        });
        let job_file = job.path().join("job.json");
        std::fs::write(&job_file, serde_json::to_vec_pretty(&description)?)?;
        let driver_file = job.path().join("ray_driver.py");
        std::fs::write(&driver_file, DRIVER)?;

        let log_path = self.log_path();
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let started = Instant::now();
        let child = Command::new(&python)
            .arg(&driver_file)
            .arg(&job_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}",
                    no_ray_message(&python, &format!("it cannot be started: {e}"))
                )
            })?;
        let mut driver = Driver::new(child);
        let stdout = driver.child.stdout.take().expect("piped");

        let mut finished = vec![false; ranges.len()];
        let mut failures: Vec<(usize, String)> = Vec::new();
        let mut fatal: Option<Event> = None;
        let mut first_chunk = None;
        for line in BufReader::new(stdout).lines() {
            let line = line.context("reading the Ray driver's output")?;
            let event: Event = serde_json::from_str(&line)
                .with_context(|| format!("the Ray driver said something unexpected: {line}"))?;
            match event.event.as_str() {
                "started" => self.notes.push(format!(
                    "ray {} on {} (connected in {:.1}s): {} {} of ≤{} rows",
                    event.ray.as_deref().unwrap_or("?"),
                    event.cluster.as_deref().unwrap_or("?"),
                    started.elapsed().as_secs_f64(),
                    ranges.len(),
                    if ranges.len() == 1 { "task" } else { "tasks" },
                    p.chunk_rows(),
                )),
                "chunk" => {
                    let i = event.index.context("a chunk event without its index")?;
                    let range = ranges.get(i).context("a chunk index out of range")?.clone();
                    let path = &outputs[i];
                    let bytes = std::fs::read(path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    let out = task_wire::read_features(&bytes)
                        .with_context(|| format!("chunk {i} came back damaged"))?;
                    if out.rows() != range.len() {
                        bail!(
                            "chunk {i} came back with {} vectors for {} rows",
                            out.rows(),
                            range.len()
                        );
                    }
                    std::fs::remove_file(path)?;
                    first_chunk.get_or_insert(started.elapsed().as_secs_f64());
                    self.devices.insert(out.device);
                    done(Chunk {
                        keys: keys[range.clone()].to_vec(),
                        hidden: out.hidden,
                        features: out.features,
                    })?;
                    finished[i] = true;
                    bar.inc(range.len() as u64);
                }
                "failed" => failures.push((
                    event.index.context("a failure event without its index")?,
                    event.message.unwrap_or_default(),
                )),
                "error" => fatal = Some(event),
                other => bail!("the Ray driver sent an unknown event {other:?}"),
            }
        }
        let status = driver.finish()?;
        if let Some(event) = fatal {
            let message = event.message.unwrap_or_default();
            bail!(
                "{}",
                match event.kind.as_deref() {
                    Some("no-ray") => no_ray_message(&python, &message),
                    Some("unreachable") => format!(
                        "cannot reach the Ray cluster at {}: {message}; check embed.ray_address \
                         (`ray status --address ADDRESS` on this machine must answer), or leave it \
                         unset to start Ray on this machine. Nothing was embedded.",
                        p.ray_address.as_deref().unwrap_or("(local)")
                    ),
                    _ => format!("Ray: {message} (log: {})", log_path.display()),
                }
            );
        }
        let kept = finished.iter().filter(|f| **f).count();
        if !failures.is_empty() {
            let described: Vec<String> = failures
                .iter()
                .map(|(i, message)| {
                    format!(
                        "chunk {i} ({}): {message}",
                        describe_rows(&rows[ranges[*i].clone()])
                    )
                })
                .collect();
            bail!(
                "{} of {} Ray tasks failed after up to {} retries; the {kept} chunks that finished \
                 are in the feature store (a rerun embeds only the rest). {} (log: {})",
                failures.len(),
                ranges.len(),
                p.max_retries,
                described.join("; "),
                log_path.display()
            );
        }
        if !status.success() || kept != ranges.len() {
            bail!(
                "the Ray driver stopped ({status}) with {kept} of {} chunks back; the finished ones \
                 are in the feature store. Its log {} ends:\n{}",
                ranges.len(),
                log_path.display(),
                log_tail(&log_path)
            );
        }
        let seconds = started.elapsed().as_secs_f64();
        self.notes.push(format!(
            "ray: {} rows in {seconds:.2}s ({:.0} rows/s; first chunk back after {:.2}s)",
            rows.len(),
            rows.len() as f64 / seconds,
            first_chunk.unwrap_or(seconds)
        ));
        Ok(())
    }
}

/// One line of the driver's stdout.
#[derive(Debug, Deserialize)]
struct Event {
    event: String,
    index: Option<usize>,
    kind: Option<String>,
    message: Option<String>,
    cluster: Option<String>,
    ray: Option<String>,
}

/// The driver process; stopped when dropped (its stdin closes, which it
/// takes as the signal to shut down; killed if it does not).
struct Driver {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Driver {
    fn new(mut child: Child) -> Driver {
        let stdin = child.stdin.take();
        Driver { child, stdin }
    }

    fn finish(&mut self) -> Result<std::process::ExitStatus> {
        self.stdin.take();
        Ok(self.child.wait()?)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
            drop(stdin);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `[0, n)` cut into ranges of at most `size`.
fn chunk_ranges(n: usize, size: usize) -> Vec<Range<usize>> {
    (0..n)
        .step_by(size.max(1))
        .map(|start| start..(start + size).min(n))
        .collect()
}

/// "N rows, CSV data rows 12, 57, … 1999" (a row's first occurrence).
fn describe_rows(rows: &[EncodedRow]) -> String {
    let ids: Vec<String> = rows.iter().map(|r| r.row_id.to_string()).collect();
    let shown = if ids.len() > 8 {
        format!("{}, … {}", ids[..6].join(", "), ids[ids.len() - 1])
    } else {
        ids.join(", ")
    };
    format!("{} rows, data rows {shown}", rows.len())
}

fn no_ray_message(python: &Path, why: &str) -> String {
    format!(
        "embed.executor = \"ray\" needs Python with Ray {RAY_VERSION} at {}, but {why}. Run \
         `{SETUP_COMMAND}` (installs ray=={RAY_VERSION} into that venv), or set embed.ray_python \
         to a Python that imports ray (of your cluster's version)",
        python.display()
    )
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_row_once() {
        assert_eq!(chunk_ranges(10, 4), vec![0..4, 4..8, 8..10]);
        assert_eq!(chunk_ranges(8, 4), vec![0..4, 4..8]);
        assert_eq!(chunk_ranges(0, 4), Vec::<Range<usize>>::new());
    }

    #[test]
    fn a_failed_chunk_is_named_by_its_rows() {
        let rows: Vec<EncodedRow> = (0..10)
            .map(|i| EncodedRow {
                row_id: 100 + i,
                label: 0,
                ids: vec![],
                n_tokens: 0,
            })
            .collect();
        assert_eq!(
            describe_rows(&rows),
            "10 rows, data rows 100, 101, 102, 103, 104, 105, … 109"
        );
        assert_eq!(describe_rows(&rows[..2]), "2 rows, data rows 100, 101");
    }
}
