//! The command line: `cargo xtask <command>` (thin binaries call [`main`]).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand};
use runner::{Force, Outcome, RunOptions, StageReport};

use crate::ModelFetch;
use crate::config;

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Sentiment classifier on frozen BERT features: a cached pipeline"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes: which pipeline, which variant, where.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Pipeline file (default: the nearest pipeline.toml here or above).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override one parameter, e.g. --set ingest.seed=7 (repeatable).
    #[arg(long = "set", global = true, value_name = "STAGE.KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Artifacts directory (default: artifacts/ beside the pipeline file).
    #[arg(long, global = true, value_name = "DIR")]
    pub artifacts: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every stale stage, in dependency order.
    RunPipeline {
        /// Rerun STAGE even if cached (all stages when no STAGE is given).
        #[arg(long, value_name = "STAGE", num_args = 0..=1)]
        force: Option<Option<String>>,
        /// Stop after STAGE (runs only it and what it depends on).
        #[arg(long, value_name = "STAGE")]
        until: Option<String>,
        /// Say what would run, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Re-hash every input and stored output instead of trusting the digest memo.
        #[arg(long)]
        verify: bool,
        /// Fail at once if another run holds the artifacts directory (default: wait).
        #[arg(long)]
        no_wait: bool,
    },
    /// What would rerun and why, without running anything.
    Status {
        #[arg(long)]
        json: bool,
        #[arg(long)]
        verify: bool,
    },
    /// Classify sentences with the current pipeline's model and trained head.
    Predict {
        /// A sentence (repeatable).
        #[arg(long = "text", value_name = "SENTENCE")]
        texts: Vec<String>,
        /// A CSV whose `ingest.text_column` column holds the sentences.
        #[arg(long, value_name = "FILE")]
        csv: Option<PathBuf>,
    },
    /// Serve the exported classifier (artifacts/export) over HTTP:
    /// POST /predict {"texts": [...]}, GET /health, /metadata, /stats.
    /// Stops on SIGTERM or Ctrl-C after answering what it has received.
    Serve {
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// 0: any free port (the address is printed on stderr).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Texts one request may carry.
        #[arg(long, default_value_t = 256)]
        max_texts: usize,
        /// Characters one text may have.
        #[arg(long, default_value_t = 20_000)]
        max_text_chars: usize,
        /// Bytes one request body may have.
        #[arg(long, default_value_t = 4 << 20)]
        max_body_bytes: usize,
        /// How long a request waits for others to be scored with it (0: only
        /// those already queued). BENCHMARKS.md: what the defaults buy.
        #[arg(long, default_value_t = 2)]
        max_wait_ms: u64,
        /// Texts gathered at most into one scoring (1: each request alone).
        #[arg(long, default_value_t = 256)]
        max_batch_texts: usize,
        /// Padded tokens per ONNX Runtime call. Small on a CPU: texts of a
        /// batch are padded to its longest, and padding costs compute.
        #[arg(long, default_value_t = 256)]
        batch_tokens: usize,
    },
    /// Score the trained pipeline on another labelled CSV (held-out data):
    /// scikit-learn's classification report. Columns and label mapping as in
    /// the pipeline's [ingest] section.
    Evaluate {
        #[arg(long, value_name = "FILE")]
        csv: PathBuf,
        /// Also write the report and metrics.json into DIR.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// How far two embed results are apart, row by row (e.g. an fp16 GPU
    /// run's artifacts/embed against an fp32 CPU run's).
    CompareFeatures {
        /// An embed output folder (train/val/test.parquet).
        a: PathBuf,
        /// The reference to compare against.
        b: PathBuf,
    },
    /// Time embedding passes over the current encode results (GPU check).
    #[command(hide = true)]
    EmbedBench {
        /// Passes over all rows: the first is cold, the rest warm.
        #[arg(long, default_value_t = 2)]
        passes: usize,
        /// Most padded tokens per batch (default: [embed] batch_tokens, else the device's).
        #[arg(long)]
        batch_tokens: Option<usize>,
        /// Most rows per batch (default: [embed] max_batch_rows, else the device's).
        #[arg(long)]
        max_batch_rows: Option<usize>,
        /// CUDA attention kernels: math (the stage's), auto (ONNX Runtime's
        /// choice), trt, cudnn, efficient, flash.
        #[arg(long, default_value = "math")]
        attention: embed::CudaAttention,
    },
    /// One Ray task of the embed stage (run by the Ray driver on a worker):
    /// token ids on stdin, vectors on stdout, as Arrow IPC streams.
    #[command(hide = true)]
    EmbedChunk {
        /// The model graph (model.onnx).
        #[arg(long)]
        model: PathBuf,
        /// Pooling, device, batch limits and threads, as JSON.
        #[arg(long)]
        spec: String,
    },
    /// Run every combination of `--set STAGE.KEY=V1,V2,...` lists (each
    /// variant through the cache, up to the report), then print and write
    /// (artifacts/sweeps/NAME.parquet, .html) a table ranked by validation.
    Sweep {
        /// A TOML file with a [sweep] table: "head.learning_rate" = [1e-4, 1e-3]
        /// (added to the --set lists).
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Names the sweep's files in artifacts/sweeps/.
        #[arg(long, default_value = "sweep")]
        name: String,
        /// The validation figure variants are ranked by.
        #[arg(long, value_enum, default_value = "val-loss")]
        by: crate::sweep::RankBy,
        /// `best`: make the best variant the current result, export included
        /// (default: the configuration without the swept values stays current).
        #[arg(long, value_enum)]
        select: Option<Select>,
    },
    /// Every stored run (report result), newest first: its parameters where
    /// they differ from the current configuration, and its figures.
    Runs {
        #[arg(long)]
        json: bool,
    },
    /// Two runs side by side: the parameters that differ, and the figures.
    /// A run is `current` or the first characters of its key (`runs`).
    Diff { a: String, b: String },
    /// Print the stage graph.
    Dag,
    /// Remove store entries that no current result references.
    Gc {
        #[arg(long)]
        dry_run: bool,
    },
}

/// Which sweep variant becomes current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Select {
    Best,
}

/// Parses `std::env::args` and runs; errors are printed as one message.
pub fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    exit_code(execute(&cli.global, &cli.command))
}

/// Warnings (e.g. a repaired store) on stderr; RUST_LOG=info for more.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
}

/// The process's exit code for a command's result; an error is printed
/// here, once, for every command.
pub fn exit_code(result: Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        // The reader of our output went away (`predict ... | head -1`):
        // what it wanted was written; not an error (as ripgrep does).
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

struct Context {
    loaded: config::Loaded,
    artifacts: PathBuf,
}

fn context(global: &Global) -> Result<Context> {
    context_with(global, &global.overrides)
}

/// [`context`] with other overrides than the command line's (`sweep`, whose
/// `--set`s hold value lists, loads the file without them).
fn context_with(global: &Global, overrides: &[String]) -> Result<Context> {
    let path = match &global.config {
        Some(p) => p.clone(),
        None => config::find_default()?,
    };
    let loaded = config::load(&path, overrides)?;
    let artifacts = match &global.artifacts {
        Some(dir) => std::path::absolute(dir)?,
        None => loaded.dir().join("artifacts"),
    };
    Ok(Context { loaded, artifacts })
}

pub fn execute(global: &Global, command: &Command) -> Result<ExitCode> {
    if let Command::CompareFeatures { a, b } = command {
        // Two folders, compared: no pipeline file involved.
        let mut out = std::io::stdout().lock();
        for d in crate::compare::compare_features(a, b)? {
            writeln!(
                out,
                "{:<5} {:>6} rows: relative error {:.2e} (worst row {:.2e})",
                d.split, d.rows, d.relative_error, d.worst_row_relative_error
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::EmbedChunk { model, spec } = command {
        // A worker's task: no pipeline file, no artifacts folder.
        let spec: embed::chunk_task::TaskSpec =
            serde_json::from_str(spec).context("embed-chunk --spec")?;
        embed::chunk_task::run(
            model,
            &spec,
            std::io::stdin().lock(),
            std::io::stdout().lock(),
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Command::Sweep {
        file,
        name,
        by,
        select,
    } = command
    {
        // The global `--set`s hold value lists here: the file is loaded
        // without them, each variant with its own.
        return sweep(global, file.as_deref(), name, *by, select.is_some());
    }
    let ctx = context(global)?;
    // Only run-pipeline runs the model source; every other command reads
    // results already stored, so none downloads a model.
    let pipeline = |fetch| crate::build_pipeline(&ctx.loaded, fetch);
    match command {
        Command::RunPipeline {
            force,
            until,
            dry_run,
            verify,
            no_wait,
        } => {
            let force = match force {
                None => Force::None,
                Some(None) => Force::All,
                Some(Some(stage)) => Force::Stages(vec![stage.clone()]),
            };
            let options = RunOptions {
                force,
                until: until.clone(),
                dry_run: *dry_run,
                verify: *verify,
                wait_for_lock: !no_wait,
            };
            let pipeline = pipeline(ModelFetch::Allowed)?;
            pipeline.check_options(&options)?;
            let started = Instant::now();
            // A reader that went away stops the printing, not the run: the
            // results are what the run is for (the error is returned after).
            let mut printed: std::io::Result<()> = Ok(());
            let reports = pipeline.run(&ctx.artifacts, &options, &mut |r| {
                if printed.is_ok() {
                    printed = print_report(&mut std::io::stdout().lock(), r);
                }
            })?;
            printed?;
            let count = |o: Outcome| reports.iter().filter(|r| r.outcome == o).count();
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "pipeline: {} ran, {} cached, {} restored in {:.2}s; artifacts in {}",
                count(Outcome::Ran) + count(Outcome::WouldRun),
                count(Outcome::Cached),
                count(Outcome::Restored) + count(Outcome::WouldRestore),
                started.elapsed().as_secs_f64(),
                ctx.artifacts.display()
            )?;
            let page = ctx.artifacts.join("report").join("report.html");
            if !*dry_run && reports.iter().any(|r| r.stage == "report") && page.is_file() {
                writeln!(
                    out,
                    "open {} for the report page with plots",
                    page.display()
                )?;
            }
        }
        Command::Status { json, verify } => {
            let options = RunOptions {
                dry_run: true,
                verify: *verify,
                ..RunOptions::default()
            };
            let reports =
                pipeline(ModelFetch::LocalOnly)?.run(&ctx.artifacts, &options, &mut |_| {})?;
            let mut out = std::io::stdout().lock();
            if *json {
                writeln!(out, "{}", serde_json::to_string_pretty(&reports)?)?;
            } else {
                for r in &reports {
                    let state = match r.outcome {
                        Outcome::Cached => "up to date".to_string(),
                        other => format!("{}: {}", other.label(), r.reasons.join("; ")),
                    };
                    writeln!(out, "{:<8} {state}", r.stage)?;
                }
            }
        }
        Command::Dag => write!(
            std::io::stdout().lock(),
            "{}",
            pipeline(ModelFetch::LocalOnly)?.dag_text()
        )?,
        Command::Runs { json } => {
            let runs = crate::runs::runs(&ctx.artifacts)?;
            let mut out = std::io::stdout().lock();
            if *json {
                writeln!(out, "{}", serde_json::to_string_pretty(&runs)?)?;
                return Ok(ExitCode::SUCCESS);
            }
            if runs.is_empty() {
                writeln!(out, "no runs stored in {}", ctx.artifacts.display())?;
            }
            let config = crate::current_report_params(&ctx.loaded);
            for run in &runs {
                let figures: Vec<String> = crate::runs::metric_pairs(&run.metrics)
                    .into_iter()
                    .map(|(name, value)| format!("{name} {value}"))
                    .collect();
                writeln!(
                    out,
                    "{}  {}{}  {}",
                    &run.key[..12.min(run.key.len())],
                    run.finished,
                    if run.current { "  (current)" } else { "" },
                    figures.join(", ")
                )?;
                for (key, stored, now) in crate::runs::param_diff(&run.params, &config) {
                    writeln!(
                        out,
                        "              {key}: {} (configuration: {})",
                        crate::runs::shown(stored),
                        crate::runs::shown(now)
                    )?;
                }
            }
        }
        Command::Diff { a, b } => {
            let runs = crate::runs::runs(&ctx.artifacts)?;
            let (a, b) = (crate::runs::find(&runs, a)?, crate::runs::find(&runs, b)?);
            let mut out = std::io::stdout().lock();
            let (ka, kb) = (&a.key[..12.min(a.key.len())], &b.key[..12.min(b.key.len())]);
            let diff = crate::runs::param_diff(&a.params, &b.params);
            let width = diff
                .iter()
                .map(|d| d.0.len())
                .chain(["held-out accuracy".len()])
                .max()
                .unwrap_or(0);
            writeln!(out, "{:<width$}  {ka:<24}  {kb}", "")?;
            for (key, va, vb) in &diff {
                writeln!(
                    out,
                    "{key:<width$}  {:<24}  {}",
                    crate::runs::shown(*va),
                    crate::runs::shown(*vb)
                )?;
            }
            if diff.is_empty() {
                writeln!(out, "(the same parameters)")?;
            }
            let (ma, mb) = (
                crate::runs::metric_pairs(&a.metrics),
                crate::runs::metric_pairs(&b.metrics),
            );
            for ((name, va), (_, vb)) in ma.iter().zip(&mb) {
                writeln!(out, "{name:<width$}  {va:<24}  {vb}")?;
            }
        }
        Command::EmbedBench {
            passes,
            batch_tokens,
            max_batch_rows,
            attention,
        } => crate::embed_bench::run(
            &ctx.artifacts,
            &ctx.loaded.config.embed,
            &crate::embed_bench::BenchOptions {
                passes: *passes,
                batch_tokens: *batch_tokens,
                max_batch_rows: *max_batch_rows,
                attention: *attention,
            },
        )?,
        Command::CompareFeatures { .. } | Command::EmbedChunk { .. } | Command::Sweep { .. } => {
            unreachable!("handled above")
        }
        Command::Evaluate { csv, out } => {
            let (metrics, text, used) = crate::evaluate::evaluate(
                &pipeline(ModelFetch::LocalOnly)?,
                &ctx.artifacts,
                csv,
                &ctx.loaded.config.ingest,
            )?;
            crate::predict::report_store_use(&used);
            writeln!(
                std::io::stdout().lock(),
                "{} labelled sentences from {}: accuracy {:.4}, macro F1 {:.4}\n\n{text}",
                metrics.support.iter().sum::<usize>(),
                csv.display(),
                metrics.accuracy,
                metrics.macro_f1
            )?;
            if let Some(dir) = out {
                std::fs::create_dir_all(dir)?;
                std::fs::write(dir.join("classification_report.txt"), &text)?;
                std::fs::write(
                    dir.join("metrics.json"),
                    serde_json::to_vec_pretty(&metrics)?,
                )?;
            }
        }
        Command::Predict { texts, csv } => {
            if texts.is_empty() && csv.is_none() {
                anyhow::bail!(
                    "nothing to classify: pass --text \"...\" (repeatable) or --csv FILE"
                );
            }
            let pipeline = pipeline(ModelFetch::LocalOnly)?;
            let mut predictor = crate::predict::Predictor::open(&pipeline, &ctx.artifacts)?;
            // Results only: predict's output is often piped on.
            // writeln!, not println!: a closed pipe is an error to return
            // (see `main`), where println! would panic.
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut scored = 0;
            let mut score = |window: &mut Vec<String>| -> Result<()> {
                if window.is_empty() {
                    return Ok(());
                }
                if scored == 0 {
                    writeln!(out, "label\tprobability\tsentence")?;
                }
                for (p, s) in predictor.score(window)?.iter().zip(window.iter()) {
                    writeln!(out, "{}\t{:.4}\t{s}", p.label, p.probability)?;
                }
                scored += window.len();
                window.clear();
                Ok(())
            };
            let mut window = texts.clone();
            score(&mut window)?;
            if let Some(path) = csv {
                for_each_sentence(path, &ctx.loaded.config.ingest.text_column, |sentence| {
                    window.push(sentence);
                    if window.len() == crate::predict::WINDOW {
                        score(&mut window)?;
                    }
                    Ok(())
                })?;
                score(&mut window)?;
            }
            if scored == 0 {
                anyhow::bail!(
                    "nothing to classify: {} has no rows",
                    csv.as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                );
            }
            out.flush()?;
        }
        Command::Serve {
            host,
            port,
            max_texts,
            max_text_chars,
            max_body_bytes,
            max_wait_ms,
            max_batch_texts,
            batch_tokens,
        } => {
            let pipeline = pipeline(ModelFetch::LocalOnly)?;
            let (folder, metadata) = crate::served::export_folder(&pipeline, &ctx.artifacts)?;
            let options = serve::Options {
                host: host.clone(),
                port: *port,
                limits: serve::Limits {
                    max_texts: *max_texts,
                    max_text_chars: *max_text_chars,
                    max_body_bytes: *max_body_bytes,
                },
                batching: serve::batcher::BatchPolicy {
                    max_wait: std::time::Duration::from_millis(*max_wait_ms),
                    batch_tokens: *batch_tokens,
                    max_texts: *max_batch_texts,
                },
                threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            };
            serve::serve(&folder, metadata, options)?;
        }
        Command::Gc { dry_run } => {
            // One lock for both stores: no run moves the current results
            // between what the one keeps and what the other keeps.
            let lock = runner::RunLock::acquire(&ctx.artifacts, true)?;
            let collected = runner::store::gc(&lock, &ctx.artifacts, *dry_run)?;
            print_collected(&mut std::io::stdout().lock(), &collected, *dry_run)?;
            let pruned = crate::feature_gc::gc(&lock, &ctx.artifacts, *dry_run)?;
            print_pruned(&mut std::io::stdout().lock(), pruned, *dry_run)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn sweep(
    global: &Global,
    file: Option<&std::path::Path>,
    name: &str,
    by: crate::sweep::RankBy,
    select_best: bool,
) -> Result<ExitCode> {
    let ctx = context_with(global, &[])?;
    let options = crate::sweep::SweepOptions {
        file: file.map(std::path::Path::to_path_buf),
        name: name.to_string(),
        by,
        select_best,
    };
    let crate::sweep::Sweep {
        keys,
        fixed,
        rows,
        table,
        page,
    } = crate::sweep::run(
        &ctx.loaded.path,
        &global.overrides,
        &ctx.artifacts,
        &options,
    )?;
    let mut out = std::io::stdout().lock();
    write!(out, "{}", crate::sweep::table_text(&keys, &rows))?;
    writeln!(
        out,
        "sweep {name}: {} variants, {} failed; table in {}, page {}",
        rows.len(),
        rows.iter().filter(|r| r.failure.is_some()).count(),
        table.display(),
        page.display()
    )?;
    let best = rows.iter().find(|r| r.failure.is_none());
    if let Some(best) = best {
        let flags: Vec<String> = fixed
            .iter()
            .chain(&best.sets)
            .map(|s| format!("--set '{s}'"))
            .collect();
        let what = if select_best {
            "now current; the same run"
        } else {
            "make it current with"
        };
        writeln!(
            out,
            "best by validation: variant {}, {what}: cargo xtask run-pipeline {}",
            best.variant + 1,
            flags.join(" ")
        )?;
    }
    Ok(if best.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_report(out: &mut impl Write, r: &StageReport) -> std::io::Result<()> {
    let why = if r.reasons.is_empty() {
        String::new()
    } else {
        format!("  ({})", r.reasons.join("; "))
    };
    writeln!(
        out,
        "{:<8} {:<13} {:>7.2}s{why}",
        r.stage,
        r.outcome.label(),
        r.seconds
    )?;
    for note in &r.notes {
        writeln!(out, "           {note}")?;
    }
    Ok(())
}

fn print_collected(
    out: &mut impl Write,
    collected: &runner::store::Collected,
    dry_run: bool,
) -> std::io::Result<()> {
    let total: u64 = collected.removed.iter().map(|(_, bytes)| bytes).sum();
    for (path, bytes) in &collected.removed {
        let verb = if dry_run { "would remove" } else { "removed" };
        writeln!(out, "{verb} {} ({bytes} bytes)", path.display())?;
    }
    for path in &collected.left {
        writeln!(
            out,
            "left alone {} (not a store entry: no manifest.json naming it; remove it yourself if it is not yours)",
            path.display()
        )?;
    }
    writeln!(
        out,
        "gc: {} entries, {total} bytes{}",
        collected.removed.len(),
        if dry_run { " (dry run)" } else { "" }
    )
}

fn print_pruned(
    out: &mut impl Write,
    pruned: Option<embed::store::Pruned>,
    dry_run: bool,
) -> std::io::Result<()> {
    match pruned {
        Some(pruned) => writeln!(
            out,
            "feature store: {} vectors ({} bytes) {}, {} kept",
            pruned.removed,
            pruned.bytes,
            if dry_run {
                "would be removed"
            } else {
                "removed"
            },
            pruned.kept
        ),
        None => writeln!(
            out,
            "feature store: left alone (the current embed result was not made from the \
             current encode result; run the pipeline, then gc)"
        ),
    }
}

/// Calls `each` with the `column` of every row of a CSV with a header
/// (plain, gzip or zstd, as the pipeline's input: `ingest::input`), read
/// as a stream.
fn for_each_sentence(
    path: &std::path::Path,
    column: &str,
    mut each: impl FnMut(String) -> Result<()>,
) -> Result<()> {
    let (input, _) = ingest::input::open(path)?;
    let mut reader = csv::Reader::from_reader(input);
    let headers = reader.headers()?.clone();
    let index = headers
        .iter()
        .position(|h| h.trim_start_matches('\u{feff}') == column)
        .ok_or_else(|| anyhow::anyhow!("{}:1: no column named {column:?}", path.display()))?;
    for record in reader.records() {
        let record = record.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        each(record.get(index).unwrap_or("").to_string())?;
    }
    Ok(())
}
