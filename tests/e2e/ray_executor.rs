//! The embed stage's Ray executor on a real Ray cluster, made on loopback by
//! the tests (`ray start --head` on 127.0.0.1 with 2 CPUs, stopped when the
//! test ends, also when it fails): the features of UCI's 2,000 reviews in
//! 4 chunks equal the local executor's and everything downstream is
//! identical, also when a worker is killed mid-chunk (Ray runs the task
//! again); a chunk whose retries are used up fails the stage naming its
//! rows and keeps every other chunk; an unreachable cluster and a Python
//! without Ray are clear errors that store nothing.
//!
//! Ray comes from `cargo xtask test` (`PIPELINE_TEST_RAY_PYTHON`, the venv
//! of `cargo xtask setup-ray`).

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{
    Background, Project, committed_chunks, largest_difference, shared_data, untimed_digests,
};

/// The Python with Ray (`cargo xtask test` sets it up).
fn ray_python() -> PathBuf {
    let python = std::env::var("PIPELINE_TEST_RAY_PYTHON").expect(
        "PIPELINE_TEST_RAY_PYTHON is unset: run the tests with `cargo xtask test`, which installs Ray",
    );
    PathBuf::from(python)
}

/// One cluster at a time on this machine: tests of this file take turns.
static ONE_CLUSTER: Mutex<()> = Mutex::new(());

/// A Ray head node on 127.0.0.1 (`ray start --head --block`), stopped when
/// dropped: SIGTERM to `ray start`, which stops what it started.
struct Cluster {
    process: Child,
    address: String,
    /// Its authentication token (Ray's token mode, as a secured cluster):
    /// every client of it gets [`Cluster::env`].
    token: String,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let ray = ray_python().with_file_name("ray");
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        let token = format!("{:016x}{port:05}", {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(dir.path())
        });
        let process = Command::new(&ray)
            .args(["start", "--head", "--block", "--node-ip-address=127.0.0.1"])
            .arg(format!("--port={port}"))
            .args([
                "--num-cpus=2",
                "--include-dashboard=false",
                "--disable-usage-stats",
            ])
            .arg(format!("--temp-dir={}", dir.path().join("ray").display()))
            .envs(Cluster::env_with(&token))
            // Workers keep their copies of the program here: gone with the test.
            .env("TMPDIR", dir.path().join("tmp"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("ray-start.log")).unwrap())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", ray.display()));
        let address = format!("127.0.0.1:{port}");
        let mut cluster = Cluster {
            process,
            address,
            token,
            _dir: dir,
        };
        cluster.wait_until_up(&ray);
        cluster
    }

    fn wait_until_up(&mut self, ray: &Path) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.process.try_wait() {
                panic!("ray start exited ({status})");
            }
            let up = Command::new(ray)
                .args(["status", "--address", &self.address])
                .envs(self.env())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if up {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!(
            "the Ray head at {} did not come up in 2 minutes",
            self.address
        );
    }

    /// The environment of the cluster and of its clients.
    fn env(&self) -> [(&'static str, &str); 3] {
        Cluster::env_with(&self.token)
    }

    fn env_with(token: &str) -> [(&'static str, &str); 3] {
        [
            // Loopback only: without this Ray binds to every interface.
            ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0"),
            // A token of the test's own, never ~/.ray/auth_token.
            ("RAY_AUTH_MODE", "token"),
            ("RAY_AUTH_TOKEN", token),
        ]
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let pid = self.process.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.process.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // It would not stop: kill its whole process group.
        let _ = Command::new("kill")
            .args(["-KILL", &format!("-{pid}")])
            .status();
        let _ = self.process.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// UCI's 2,000 reviews through the default model (all-MiniLM-L6-v2) on the
/// CPU; `embed` adds to the `[embed]` table.
fn uci_project(embed: &str) -> Project {
    let p = Project::empty();
    p.write_config(&format!(
        "[ingest]\ncsv = {:?}\n[embed]\ndevice = \"cpu\"\n{embed}",
        shared_data("uci_amazon_yelp.csv").display().to_string(),
    ));
    p
}

/// `[embed]` lines for the Ray executor at `address`, 500-row chunks:
/// UCI's 1,983 distinct reviews make 4 tasks.
fn on_ray(address: &str, max_retries: u32) -> String {
    format!(
        "executor = \"ray\"\nray_address = {address:?}\nray_python = {:?}\nchunk_rows = 500\n\
         max_retries = {max_retries}\n",
        ray_python().display().to_string()
    )
}

/// Pids of Ray workers running an embed task now.
fn embed_task_workers() -> Vec<String> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
            && cmdline.starts_with(b"ray::embed_chunk")
        {
            pids.push(name);
        }
    }
    pids
}

/// Runs `p`'s pipeline on `cluster`, SIGKILLing the first Ray worker seen
/// running an embed task; the run, and whether a worker was killed.
fn run_killing_a_worker(p: &Project, cluster: &Cluster) -> (common::Run, bool) {
    let run = Background::start_env(p, &["run-pipeline"], &cluster.env());
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut killed = false;
    while !killed && Instant::now() < deadline {
        if let Some(pid) = embed_task_workers().first() {
            killed = Command::new("kill")
                .args(["-KILL", pid])
                .status()
                .unwrap()
                .success();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (run.finish(), killed)
}

#[test]
fn a_killed_worker_is_retried_and_the_run_equals_the_local_executor() {
    let _turn = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let local = uci_project("");
    local.cli(&["run-pipeline"]).ok();

    let cluster = Cluster::start();
    let ray = uci_project(&on_ray(&cluster.address, 3));
    let (run, killed) = run_killing_a_worker(&ray, &cluster);
    run.ok();
    assert!(killed, "no Ray worker was seen running an embed task");
    assert!(
        run.stdout.contains("4 tasks of ≤500 rows"),
        "{}",
        run.stdout
    );
    // The four tasks' chunks, shadowed by the three outputs, are gone.
    assert_eq!(committed_chunks(&ray), 3);

    let difference = largest_difference(&ray, &local);
    assert!(difference <= 1e-5, "features differ by {difference}");
    // Every output but the two that record seconds is byte-identical:
    // splits, tokens, features, the head, its predictions, the metrics.
    assert_eq!(
        untimed_digests(&ray.path("artifacts")),
        untimed_digests(&local.path("artifacts"))
    );
}

#[test]
fn a_chunk_out_of_retries_fails_the_stage_naming_its_rows_and_keeps_the_others() {
    let _turn = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::start();
    let p = uci_project(&on_ray(&cluster.address, 0));
    let (run, killed) = run_killing_a_worker(&p, &cluster);
    assert!(killed, "no Ray worker was seen running an embed task");
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("1 of 4 Ray tasks failed after up to 0 retries")
            && run
                .stderr
                .contains("the 3 chunks that finished are in the feature store"),
        "{}",
        run.stderr
    );
    // "chunk I (N rows, data rows 12, 57, …)": the rows it names.
    let failed_rows: usize = run
        .stderr
        .split(" rows, data rows ")
        .next()
        .and_then(|before| before.rsplit('(').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no failed rows named in:\n{}", run.stderr));
    assert_eq!(committed_chunks(&p), 3);
    assert!(
        !p.artifact_entries()
            .iter()
            .any(|e| e.starts_with(".store/embed")),
        "{:?}",
        p.artifact_entries()
    );

    // The rerun embeds only the failed chunk's rows.
    let rerun = p.cli_env(&["run-pipeline"], &cluster.env());
    rerun.ok();
    assert!(
        rerun
            .stdout
            .contains(&format!("embedded now ({failed_rows} distinct inputs)")),
        "{failed_rows} rows failed; the rerun said:\n{}",
        rerun.stdout
    );
    assert_eq!(committed_chunks(&p), 3, "the outputs are the chunks");
}

#[test]
fn an_unreachable_cluster_is_a_clear_error_and_stores_nothing() {
    let p = uci_project(&on_ray(&format!("127.0.0.1:{}", free_port()), 3));
    let started = Instant::now();
    let run = p.cli(&["run-pipeline"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr
            .contains("cannot reach the Ray cluster at 127.0.0.1:")
            && run.stderr.contains("check embed.ray_address")
            && run.stderr.contains("Nothing was embedded"),
        "{}",
        run.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "the error took {:?}",
        started.elapsed()
    );
    assert_eq!(committed_chunks(&p), 0);
    assert!(
        !p.artifact_entries()
            .iter()
            .any(|e| e.starts_with(".store/embed")),
        "{:?}",
        p.artifact_entries()
    );
    // The job folder is gone too.
    let leftovers: Vec<_> = std::fs::read_dir(p.path("artifacts/.cache/embed"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ray-job-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_python_without_ray_is_told_how_to_install_it() {
    // The test oracles' Python has no Ray.
    let python = std::env::var("PIPELINE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let p = uci_project(&format!("executor = \"ray\"\nray_python = {python:?}\n"));
    let run = p.cli(&["run-pipeline"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("needs Python with Ray 2.")
            && run.stderr.contains("`cargo xtask setup-ray`")
            && run.stderr.contains("embed.ray_python"),
        "{}",
        run.stderr
    );
    assert_eq!(committed_chunks(&p), 0);
}

#[test]
fn without_an_address_ray_starts_on_this_machine() {
    let _turn = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let p = Project::uci_tiny_on_cpu();
    let config = std::fs::read_to_string(p.path("pipeline.toml")).unwrap();
    p.write_config(&config.replace(
        "[embed]\n",
        &format!(
            "[embed]\nexecutor = \"ray\"\nray_python = {:?}\ncpus_per_task = 1\n",
            ray_python().display().to_string()
        ),
    ));
    let home_token = Path::new(&std::env::var("HOME").unwrap()).join(".ray/auth_token");
    let had_token = home_token.exists();
    let run = p.cli(&["run-pipeline"]);
    run.ok();
    assert!(
        run.stdout.contains("1 task of ≤4096 rows"),
        "{}",
        run.stdout
    );
    // Its token stayed in the run's environment: no file in $HOME that
    // would turn on authentication for later clusters of this machine.
    assert!(
        had_token || !home_token.exists(),
        "{} was written",
        home_token.display()
    );
    // The next run takes everything from the store and starts no Ray.
    let local = p.cli(&[
        "run-pipeline",
        "--force",
        "embed",
        "--set",
        "embed.executor=local",
    ]);
    assert!(
        local.ok().stdout.contains("0 embedded now"),
        "{}",
        local.stdout
    );
}
