//! `cargo xtask setup-ray`: the Python the Ray executor's driver runs on
//! (`embed::ray::default_python`), with Ray and everything it pulls in
//! pinned. `cargo xtask test` makes it too: the Ray tests start a loopback
//! cluster with its `ray`.

use std::path::PathBuf;

use anyhow::{Result, ensure};

/// `ray` and what it depends on, pinned (`pip freeze` of a fresh install).
const RAY_DEPENDENCIES: &[&str] = &[
    "attrs==26.1.0",
    "certifi==2026.10.19.post1",
    "charset-normalizer==3.5.3",
    "click==8.5.1",
    "filelock==4.3.1",
    "idna==3.20",
    "jsonschema==4.26.0",
    "jsonschema-specifications==2025.9.1",
    "msgpack==1.2.4",
    "packaging==26.4",
    "protobuf==7.36.2",
    "PyYAML==6.0.4",
    "referencing==0.37.0",
    "requests==2.34.2",
    "rpds-py==2026.9.1",
    "typing_extensions==4.16.0",
    "urllib3==2.8.0",
];

/// Makes (or checks) the venv; its Python.
pub fn ensure() -> Result<PathBuf> {
    let python = embed::ray::default_python();
    let venv = python
        .parent()
        .and_then(|bin| bin.parent())
        .expect("the venv's python is in <venv>/bin");
    let ray = format!("ray=={}", embed::ray::RAY_VERSION);
    let mut requirements = vec![ray.as_str()];
    requirements.extend_from_slice(RAY_DEPENDENCIES);
    let python = crate::test_env::ensure_venv(venv, &requirements, "Ray for the embed executor")?;
    ensure!(
        std::process::Command::new(&python)
            .args(["-c", "import ray"])
            .status()?
            .success(),
        "{} cannot import ray; remove {} and run `cargo xtask setup-ray` again",
        python.display(),
        venv.display()
    );
    Ok(python)
}

/// The command: installs, then says how to use it.
pub fn run() -> Result<()> {
    let python = ensure()?;
    let bin = python.parent().expect("in bin/");
    outln!(
        "Ray {} is installed for the embed stage's driver: {}\n\
         run on it with `cargo xtask run-pipeline --set embed.executor=ray` (a Ray instance on \
         this machine), or add `--set embed.ray_address=HOST:PORT` for a running cluster; its \
         `ray` command is {}",
        embed::ray::RAY_VERSION,
        python.display(),
        bin.join("ray").display()
    )?;
    Ok(())
}
