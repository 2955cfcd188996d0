//! The pipeline CLI, as `cargo xtask` runs it, for the end-to-end tests.
fn main() -> std::process::ExitCode {
    pipeline::cli::main()
}
