//! `cargo xtask bench --serve [CSV]`: the HTTP server under load on this
//! machine. Trains the default pipeline on CSV (default: the UCI reviews,
//! 2,000 rows), starts `serve` on loopback, and for 1, 8 and 32 concurrent
//! clients, each sending one review per request back to back for a fixed
//! time, prints requests/s, p50/p99 latency and how requests were batched;
//! then the same with batching off (`--max-batch-texts 1`: each request
//! scored alone), to show what batching buys.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const CLIENTS: [usize; 3] = [1, 8, 32];
const SECONDS_PER_LOAD: u64 = 10;

pub fn run(csv: Option<&Path>, overrides: &[String]) -> Result<()> {
    let csv = match csv {
        Some(p) => p.to_path_buf(),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/uci_amazon_yelp.csv"),
    };
    let (work, config, csv) = crate::bench::project(Some(&csv))?;
    outln!("CPU: {}", crate::bench::cpu_description())?;
    let mut sets = overrides.to_vec();
    sets.push("embed.device=\"cpu\"".into());
    let trained = crate::bench::time_cli(&config, &["run-pipeline"], &sets)?;
    outln!("pipeline (train and export): {trained:.1} s")?;
    let texts = Arc::new(sentences(&csv)?);
    for (mode, args) in [
        (
            "batched (the defaults: 2 ms gathering window, 256 padded tokens per ONNX run)",
            vec![],
        ),
        (
            "one request at a time (--max-batch-texts 1 --max-wait-ms 0)",
            vec!["--max-batch-texts", "1", "--max-wait-ms", "0"],
        ),
    ] {
        outln!("\n{mode}")?;
        outln!(
            "  clients  requests/s      p50       p99   requests per scoring   texts per ONNX run"
        )?;
        let server = Server::start(&config, &sets, &args)?;
        for clients in CLIENTS {
            let before = server.stats()?;
            let load = load(&server.url, clients, &texts)?;
            let after = server.stats()?;
            let delta =
                |k: &str| after[k].as_f64().unwrap_or(0.0) - before[k].as_f64().unwrap_or(0.0);
            outln!(
                "  {clients:>7}  {:>10.1}  {:>6.1} ms  {:>6.1} ms  {:>21.2}  {:>19.2}",
                load.requests as f64 / load.seconds,
                load.percentile(0.50) * 1e3,
                load.percentile(0.99) * 1e3,
                delta("requests") / delta("gatherings").max(1.0),
                delta("texts") / delta("onnx_runs").max(1.0),
            )?;
        }
        server.stop()?;
    }
    drop(work);
    Ok(())
}

fn sentences(csv: &Path) -> Result<Vec<String>> {
    let mut reader = csv::Reader::from_path(csv)?;
    let column = reader
        .headers()?
        .iter()
        .position(|h| h == "sentence")
        .context("the CSV has no `sentence` column")?;
    let mut out = Vec::new();
    for record in reader.records() {
        out.push(record?[column].to_string());
    }
    Ok(out)
}

struct Load {
    requests: usize,
    seconds: f64,
    /// Sorted, in seconds.
    latencies: Vec<f64>,
}

impl Load {
    fn percentile(&self, q: f64) -> f64 {
        let i = ((self.latencies.len() as f64 * q).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[i - 1]
    }
}

/// `clients` threads posting one text per request, back to back, for
/// [`SECONDS_PER_LOAD`] seconds.
fn load(url: &str, clients: usize, texts: &Arc<Vec<String>>) -> Result<Load> {
    let started = Instant::now();
    let until = started + Duration::from_secs(SECONDS_PER_LOAD);
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (url, texts) = (format!("{url}/predict"), texts.clone());
            std::thread::spawn(move || -> Result<Vec<f64>> {
                let agent = ureq::Agent::new_with_defaults();
                let mut latencies = Vec::new();
                let mut i = c * 7919;
                while Instant::now() < until {
                    let body =
                        serde_json::json!({ "texts": [&texts[i % texts.len()]] }).to_string();
                    let sent = Instant::now();
                    agent
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .send(body)
                        .context("a request failed")?
                        .body_mut()
                        .read_to_string()?;
                    latencies.push(sent.elapsed().as_secs_f64());
                    i += 1;
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in threads {
        latencies.extend(
            t.join()
                .map_err(|_| anyhow::anyhow!("a client panicked"))??,
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    Ok(Load {
        requests: latencies.len(),
        seconds,
        latencies,
    })
}

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(config: &Path, sets: &[String], args: &[&str]) -> Result<Server> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["serve", "--port", "0"])
            .args(args)
            .arg("--config")
            .arg(config);
        for s in sets {
            cmd.arg("--set").arg(s);
        }
        let mut child = cmd
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start serve")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let url = loop {
            match lines.next() {
                Some(line) => {
                    let line = line?;
                    if let Some(url) = line.split("listening on ").nth(1) {
                        break url.trim().to_string();
                    }
                }
                None => bail!("serve exited before listening"),
            }
        };
        // Keep draining stderr so the server never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Ok(Server { child, url })
    }

    fn stats(&self) -> Result<serde_json::Value> {
        let text = ureq::get(&format!("{}/stats", self.url))
            .call()?
            .body_mut()
            .read_to_string()?;
        Ok(serde_json::from_str(&text)?)
    }

    fn stop(mut self) -> Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        self.child.wait()?;
        Ok(())
    }
}
