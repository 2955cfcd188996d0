//! `cargo xtask`: the pipeline's CLI, plus `test`, which prepares the Python
//! oracles (scikit-learn, pyarrow, duckdb) and Ray and runs the whole test
//! suite, `bench`, which prints timings on real data, `gpu-bundle`, which
//! packs what the GPU benchmark (`gpu/bench.sh`) needs, and `setup-ray`,
//! which installs Ray for the embed stage's Ray executor.

/// `println!` that hands a closed pipe back as an error (`?`, then success
/// in `exit_code`) where `println!` would panic (`cargo xtask bench | head`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

mod anchor;
mod bench;
mod bench_scale;
mod bench_serve;
mod gpu_bundle;
mod setup_ray;
mod test_env;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use pipeline::cli::Global;

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Sentiment classifier on frozen BERT features: a cached pipeline, and its developer tasks"
)]
struct Xtask {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    #[command(flatten)]
    Pipeline(pipeline::cli::Command),
    /// Run every test (`cargo test --workspace ARGS`), first setting up the
    /// Python oracles the tests compare against (a pinned venv in the cache).
    Test {
        /// Passed on to `cargo test`, e.g. `-p runner -- --nocapture`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cargo_test_args: Vec<String>,
    },
    /// Time every stage of the default pipeline on the CPU and print the
    /// figures; `--set` overrides a parameter.
    Bench {
        /// A labelled CSV (default: ../shared/data/sst2_train.csv).
        csv: Option<PathBuf>,
        /// Only the embed stage, local executor against Ray (a Ray instance
        /// on this machine): rows/s and Ray's cost per task.
        #[arg(long, conflicts_with = "int8")]
        ray: bool,
        /// Only the embed stage with an fp32 and an int8 graph, then the rest
        /// of the pipeline on each: speed, feature error, accuracy.
        #[arg(long)]
        int8: bool,
        /// With --int8: PyTorch fp32 and int8 on the same CSV right after
        /// (installs PyTorch, several GB, into a bench-only venv once).
        #[arg(long, requires = "int8")]
        anchor: bool,
        /// The HTTP server (`serve`) under 1, 8 and 32 concurrent clients,
        /// with batching and without (default CSV: the UCI reviews).
        #[arg(long, conflicts_with_all = ["int8", "ray"])]
        serve: bool,
        /// Every stage alone on generated data of each ROWS size (default
        /// 250000 1000000 4000000), a random 1-layer BERT of H = 384: wall
        /// time, peak memory, bytes written; CSV: where the texts come from.
        #[arg(long, num_args = 0.., value_name = "ROWS", conflicts_with_all = ["int8", "ray", "serve"])]
        scale: Option<Vec<usize>>,
    },
    /// Pack what gpu/bench.sh (the GPU check) needs into .gpubin/ and .gpu/.
    GpuBundle,
    /// Install Ray (pinned, in a venv in the cache) for `embed.executor = "ray"`.
    SetupRay,
}

fn main() -> ExitCode {
    let xtask = Xtask::parse();
    if let Task::Pipeline(command) = &xtask.command {
        pipeline::cli::init_logging();
        return pipeline::cli::exit_code(pipeline::cli::execute(&xtask.global, command));
    }
    pipeline::cli::exit_code(run_task(&xtask.global, &xtask.command))
}

fn run_task(global: &Global, task: &Task) -> Result<ExitCode> {
    // The developer tasks make their own project; a pipeline file or
    // artifacts folder given to them would be ignored, so it is refused.
    if global.config.is_some() || global.artifacts.is_some() {
        bail!(
            "--config and --artifacts apply to the pipeline's commands, not to `{}`",
            name(task)
        );
    }
    if !global.overrides.is_empty() && !matches!(task, Task::Bench { .. }) {
        bail!(
            "--set applies to the pipeline's commands and to `bench`, not to `{}`",
            name(task)
        );
    }
    match task {
        Task::Pipeline(_) => unreachable!("run by main"),
        Task::Test { cargo_test_args } => test_env::run_tests(cargo_test_args),
        Task::Bench {
            csv,
            scale: Some(sizes),
            ..
        } => bench_scale::run(csv.as_deref(), sizes, &global.overrides).map(|()| ExitCode::SUCCESS),
        Task::Bench {
            csv, serve: true, ..
        } => bench_serve::run(csv.as_deref(), &global.overrides).map(|()| ExitCode::SUCCESS),
        Task::Bench {
            csv,
            ray: false,
            int8: false,
            ..
        } => bench::run(csv.as_deref(), &global.overrides).map(|()| ExitCode::SUCCESS),
        Task::Bench {
            csv,
            int8: true,
            anchor,
            ..
        } => bench::precisions(csv.as_deref(), &global.overrides, *anchor)
            .map(|()| ExitCode::SUCCESS),
        Task::Bench { csv, ray: true, .. } => {
            let python = setup_ray::ensure()?;
            bench::executors(csv.as_deref(), &global.overrides, &python).map(|()| ExitCode::SUCCESS)
        }
        Task::GpuBundle => gpu_bundle::run_bundle().map(|()| ExitCode::SUCCESS),
        Task::SetupRay => setup_ray::run().map(|()| ExitCode::SUCCESS),
    }
}

fn name(task: &Task) -> &'static str {
    match task {
        Task::Pipeline(_) => "pipeline",
        Task::Test { .. } => "test",
        Task::Bench { .. } => "bench",
        Task::GpuBundle => "gpu-bundle",
        Task::SetupRay => "setup-ray",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Xtask::command().debug_assert();
    }

    #[test]
    fn help_lists_the_developer_tasks_beside_the_pipeline_commands() {
        let help = Xtask::command().render_help().to_string();
        for command in [
            "run-pipeline",
            "status",
            "predict",
            "test",
            "bench",
            "gpu-bundle",
            "setup-ray",
        ] {
            assert!(
                help.lines()
                    .any(|l| l.trim_start().starts_with(&format!("{command} "))),
                "{command} missing from:\n{help}"
            );
        }
    }

    #[test]
    fn tasks_take_their_arguments() {
        let parse = |args: &[&str]| Xtask::try_parse_from(args).map(|x| (x.global, x.command));
        let (global, task) = parse(&["xtask", "bench", "x.csv", "--set", "head.epochs=1"]).unwrap();
        assert!(matches!(task, Task::Bench { csv: Some(p), .. } if p == PathBuf::from("x.csv")));
        assert_eq!(global.overrides, ["head.epochs=1"]);
        let (_, task) = parse(&["xtask", "test", "-p", "runner", "--", "--nocapture"]).unwrap();
        assert!(
            matches!(&task, Task::Test { cargo_test_args } if cargo_test_args == &["-p", "runner", "--", "--nocapture"]),
            "{task:?}"
        );
        let (global, task) = parse(&["xtask", "--config", "p.toml", "gpu-bundle"]).unwrap();
        let err = run_task(&global, &task).unwrap_err();
        assert!(err.to_string().contains("not to `gpu-bundle`"), "{err}");
        assert!(parse(&["xtask", "bench", "a.csv", "b.csv"]).is_err());
    }
}
