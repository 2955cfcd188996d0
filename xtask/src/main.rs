//! `cargo xtask`: the pipeline's CLI, plus `test`, which prepares the Python
//! oracles (scikit-learn, pyarrow, duckdb) and runs the whole test suite,
//! `bench`, which prints timings on real data, and `gpu-bundle`, which packs
//! what the GPU benchmark (`gpu/bench.sh`) needs.

mod bench;
mod gpu_bundle;
mod test_env;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("test") => test_env::run_tests(&args[2..]),
        Some("bench") => bench::run(&args[2..]).map(|()| ExitCode::SUCCESS),
        Some("gpu-bundle") => gpu_bundle::run_bundle().map(|()| ExitCode::SUCCESS),
        _ => return pipeline::cli::main(),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}
