//! Helpers shared by the end-to-end tests: a scratch project, the CLI, the
//! Python oracles.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A throw-away project: a pipeline.toml, its data, its artifacts/.
pub struct Project {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "command failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
    /// The outcome column of the stage's (last) line in run-pipeline output:
    /// a stage decided again after a corrupt output was found has two.
    pub fn outcome(&self, stage: &str) -> String {
        let line = self
            .stdout
            .lines()
            .filter(|l| l.split_whitespace().next() == Some(stage))
            .last()
            .unwrap_or_else(|| panic!("no line for stage {stage} in:\n{}", self.stdout));
        let rest = line[stage.len()..].trim_start();
        rest.split("  ").next().unwrap().trim().to_string()
    }
}

impl Project {
    /// A project whose pipeline reads `csv_text` as data/input.csv.
    pub fn with_csv(csv_text: &[u8]) -> Project {
        let p = Project::empty();
        p.write_csv(csv_text);
        p.write_config(&format!(
            "[ingest]\ncsv = \"data/input.csv\"\n{}",
            tiny_model()
        ));
        p
    }

    pub fn empty() -> Project {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("data")).unwrap();
        Project { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write_csv(&self, bytes: &[u8]) {
        fs::write(self.path("data/input.csv"), bytes).unwrap();
    }

    pub fn write_config(&self, text: &str) {
        fs::write(self.path("pipeline.toml"), text).unwrap();
    }

    /// Runs the CLI with `--config <project>/pipeline.toml`.
    pub fn cli(&self, args: &[&str]) -> Run {
        self.cli_env(args, &[])
    }

    /// [`Project::cli`] with extra environment variables.
    pub fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let config = self.path("pipeline.toml");
        let out: Output = Command::new(env!("CARGO_BIN_EXE_pipeline-cli"))
            .args(args)
            .envs(env.iter().copied())
            .arg("--config")
            .arg(&config)
            .current_dir(self.dir.path())
            .output()
            .expect("spawn the pipeline CLI");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Every file under artifacts/ that the store would trust or show:
    /// store entries, stage links, the lock file.
    pub fn artifact_entries(&self) -> Vec<String> {
        let root = self.path("artifacts");
        let mut out = Vec::new();
        if let Ok(rd) = fs::read_dir(root.join(".store")) {
            for stage in rd.flatten() {
                for key in fs::read_dir(stage.path()).unwrap().flatten() {
                    out.push(format!(
                        ".store/{}/{}",
                        stage.file_name().to_string_lossy(),
                        key.file_name().to_string_lossy()
                    ));
                }
            }
        }
        if let Ok(rd) = fs::read_dir(&root) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') {
                    out.push(name);
                }
            }
        }
        if let Ok(rd) = fs::read_dir(root.join(".tmp")) {
            out.extend(
                rd.flatten()
                    .map(|e| format!(".tmp/{}", e.file_name().to_string_lossy())),
            );
        }
        out.sort();
        out
    }
}

/// Files whose bytes record wall-clock time (per-epoch seconds); everything
/// else a run writes must be byte-identical across runs.
pub const TIMED: [&str; 2] = ["head/history.parquet", "report/report.html"];

impl Project {
    /// The real UCI data through the tiny model on the CPU: every stage runs
    /// for real, the whole pipeline in a second or two.
    pub fn uci_tiny_on_cpu() -> Project {
        Project::uci_tiny_with("", "")
    }

    /// [`Project::uci_tiny_on_cpu`] with mean pooling and a head trained
    /// hard enough that the tiny random model's classifier predicts both
    /// classes (a test of agreement needs disagreement to be possible).
    pub fn uci_tiny_two_classes() -> Project {
        Project::uci_tiny_with(
            "pooling = \"mean\"\n",
            "[head]\nlearning_rate = 0.003\nepochs = 5\n",
        )
    }

    /// The UCI data, the tiny model, the CPU; `embed` lines added to
    /// `[embed]`, `rest` (whole sections) after the model.
    fn uci_tiny_with(embed: &str, rest: &str) -> Project {
        let p = Project::empty();
        p.write_config(&format!(
            "[ingest]\ncsv = {:?}\n[embed]\ndevice = \"cpu\"\n{embed}{}\n{rest}",
            shared_data("uci_amazon_yelp.csv").display().to_string(),
            tiny_model()
        ));
        p
    }

    /// [`untimed_digests`] of the project's artifacts/.
    pub fn untimed_output_digests(&self) -> std::collections::BTreeMap<String, String> {
        untimed_digests(&self.path("artifacts"))
    }

    /// (stage, outcome, reasons) of `status --json` (`verify`: re-hash everything).
    pub fn status(&self, verify: bool) -> Vec<(String, String, String)> {
        let mut args = vec!["status", "--json"];
        if verify {
            args.push("--verify");
        }
        let json: serde_json::Value = serde_json::from_str(&self.cli(&args).ok().stdout).unwrap();
        json.as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["stage"].as_str().unwrap().to_string(),
                    s["outcome"].as_str().unwrap().to_string(),
                    s["reasons"].to_string(),
                )
            })
            .collect()
    }
}

/// `stage/output` -> digest of every current result in `artifacts` (from
/// pipeline.lock), except the [`TIMED`] files.
pub fn untimed_digests(artifacts: &Path) -> std::collections::BTreeMap<String, String> {
    let lock = runner::manifest::LockFile::load(&artifacts.join("pipeline.lock")).unwrap();
    lock.stages
        .iter()
        .flat_map(|(stage, m)| {
            m.outputs
                .iter()
                .map(move |(name, r)| (format!("{stage}/{name}"), r.digest.clone()))
        })
        .filter(|(file, _)| !TIMED.contains(&file.as_str()))
        .collect()
}

/// `[model]` for the tiny random BERT of ../shared/models: a real
/// conversion and real embeddings, in a fraction of a second.
pub fn tiny_model() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/models/bert-tiny-random");
    assert!(
        dir.is_dir(),
        "{} is missing: the tests need ../shared beside the checkout",
        dir.display()
    );
    format!(
        "\n[model]\nsource = \"dir:{}\"\n",
        dir.canonicalize().unwrap().display()
    )
}

/// A file of ../shared/data (the real datasets every machine and CI has).
pub fn shared_data(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: the tests need ../shared/data beside the checkout",
        path.display()
    );
    path.canonicalize().unwrap()
}

/// The Python with scikit-learn, pyarrow and duckdb (`cargo xtask test` sets it up).
pub fn python() -> Command {
    let exe = std::env::var("PIPELINE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    Command::new(exe)
}

/// Runs a Python script from tests/py (or inline with `-c`) and returns stdout.
pub fn run_python(args: &[&str]) -> String {
    let out = python()
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("spawn python");
    assert!(
        out.status.success(),
        "python {args:?} failed (run the suite with `cargo xtask test`, which installs the oracles):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn py_script(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("py")
        .join(name)
        .display()
        .to_string()
}

/// A CLI run in the background whose stderr can be waited on, line by
/// line: to synchronise on what a run has said, not on a sleep.
pub struct Background {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: Vec<String>,
    /// Taken by `finish`.
    stdout: Option<std::thread::JoinHandle<String>>,
}

impl Drop for Background {
    /// A test that fails before `finish` must not leave its process (a
    /// server, a run) behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Background {
    /// Starts the CLI with `args` and `--config <project>/pipeline.toml`.
    pub fn start(p: &Project, args: &[&str]) -> Background {
        Background::start_env(p, args, &[])
    }

    /// [`Background::start`] with extra environment variables.
    pub fn start_env(p: &Project, args: &[&str], env: &[(&str, &str)]) -> Background {
        use std::io::{BufRead, Read};
        let mut child = Command::new(env!("CARGO_BIN_EXE_pipeline-cli"))
            .args(args)
            .envs(env.iter().copied())
            .arg("--config")
            .arg(p.path("pipeline.toml"))
            .current_dir(p.dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn the pipeline CLI");
        let (send, lines) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut text = String::new();
            out.read_to_string(&mut text).ok();
            text
        });
        Background {
            child,
            lines,
            stderr: Vec::new(),
            stdout: Some(stdout),
        }
    }

    /// Blocks until the run writes a stderr line containing `needle`, and
    /// returns that line. Panics if it exits first, or says nothing of the
    /// kind in 10 minutes (a hang, not a slow machine).
    pub fn wait_for_stderr(&mut self, needle: &str) -> String {
        let deadline = std::time::Duration::from_secs(600);
        loop {
            match self.lines.recv_timeout(deadline) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.stderr.push(line.clone());
                    if found {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "the run never wrote {needle:?} to stderr ({e}); it wrote:\n{}",
                    self.stderr.join("\n")
                ),
            }
        }
    }

    /// The process id (to signal it).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the run to exit; everything it wrote.
    pub fn finish(mut self) -> Run {
        let status = self.child.wait().unwrap();
        self.stderr.extend(self.lines.iter());
        Run {
            code: status.code().unwrap_or(-1),
            stdout: self.stdout.take().expect("finished once").join().unwrap(),
            stderr: self.stderr.join("\n"),
        }
    }
}

/// Runs the CLI on `p` with `args` and SIGKILLs it after `delay` (if it
/// is still running). Returns whether it was killed.
pub fn run_and_kill(p: &Project, args: &[&str], delay: std::time::Duration) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pipeline-cli"))
        .args(args)
        .arg("--config")
        .arg(p.path("pipeline.toml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let killed = matches!(child.try_wait(), Ok(None));
    child.kill().ok(); // SIGKILL on Unix
    child.wait().unwrap();
    killed
}

/// `compare-features` between `a`'s and `b`'s embed results: the largest
/// relative error it prints (NaN if it prints none, which fails any bound).
pub fn largest_difference(a: &Project, b: &Project) -> f64 {
    let run = a.cli(&[
        "compare-features",
        a.path("artifacts/embed").to_str().unwrap(),
        b.path("artifacts/embed").to_str().unwrap(),
    ]);
    run.ok()
        .stdout
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|w| w.contains('e'))
        .filter_map(|w| w.parse::<f64>().ok())
        .fold(f64::NAN, f64::max)
}

/// How many chunks the feature store of `p` holds.
pub fn committed_chunks(p: &Project) -> usize {
    fs::read_dir(p.path("artifacts/.cache/embed/chunks"))
        .map(|rd| rd.count())
        .unwrap_or(0)
}
