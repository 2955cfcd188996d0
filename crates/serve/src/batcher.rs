//! Dynamic batching: one thread owns the ONNX Runtime session; requests
//! that arrive while it waits (at most `max_wait` after the first) are
//! scored together, their texts sorted by length into padded batches of at
//! most `batch_tokens` tokens. A request's texts are never split from their
//! answers: each request gets its own rows back.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use export::Classifier;
use tokio::sync::oneshot;

/// One request's texts and where its probabilities go (row-major
/// [texts × classes], or an error message).
pub struct Job {
    pub texts: Vec<String>,
    pub reply: oneshot::Sender<Result<Vec<f32>, String>>,
}

/// How batches are formed.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    /// How long the first request of a batch waits for others (0: none).
    pub max_wait: Duration,
    /// Padded tokens per ONNX Runtime call.
    pub batch_tokens: usize,
    /// Texts gathered at most before scoring starts.
    pub max_texts: usize,
}

/// Counters for `GET /stats` and the serving benchmark.
#[derive(Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub texts: AtomicU64,
    /// Gatherings: requests scored together.
    pub gatherings: AtomicU64,
    /// ONNX Runtime calls.
    pub runs: AtomicU64,
}

impl Stats {
    pub fn json(&self) -> serde_json::Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (requests, texts, gatherings, runs) = (
            get(&self.requests),
            get(&self.texts),
            get(&self.gatherings),
            get(&self.runs),
        );
        serde_json::json!({
            "requests": requests,
            "texts": texts,
            "gatherings": gatherings,
            "onnx_runs": runs,
            "mean_requests_per_gathering": requests as f64 / gatherings.max(1) as f64,
            "mean_texts_per_run": texts as f64 / runs.max(1) as f64,
        })
    }
}

/// Starts the scoring thread; it ends when every sender is dropped.
pub fn start(
    mut classifier: Classifier,
    policy: BatchPolicy,
    stats: Arc<Stats>,
) -> (mpsc::Sender<Job>, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<Job>();
    let handle = std::thread::spawn(move || {
        while let Ok(first) = rx.recv() {
            let mut jobs = vec![first];
            let deadline = Instant::now() + policy.max_wait;
            let mut texts = jobs[0].texts.len();
            while texts < policy.max_texts {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    // Still take what is already queued: no wait, no cost.
                    match rx.try_recv() {
                        Ok(job) => {
                            texts += job.texts.len();
                            jobs.push(job);
                            continue;
                        }
                        Err(_) => break,
                    }
                }
                match rx.recv_timeout(left) {
                    Ok(job) => {
                        texts += job.texts.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
            stats.gatherings.fetch_add(1, Ordering::Relaxed);
            score(&mut classifier, jobs, policy, &stats);
        }
    });
    (tx, handle)
}

fn score(classifier: &mut Classifier, jobs: Vec<Job>, policy: BatchPolicy, stats: &Stats) {
    let texts: Vec<String> = jobs.iter().flat_map(|j| j.texts.iter().cloned()).collect();
    let k = classifier.labels.len();
    let result = classifier.tokenize(&texts).and_then(|ids| {
        let (probabilities, runs) = classifier.score_ids(&ids, policy.batch_tokens)?;
        stats.runs.fetch_add(runs as u64, Ordering::Relaxed);
        Ok(probabilities)
    });
    let mut start = 0;
    for job in jobs {
        let n = job.texts.len();
        let answer = match &result {
            Ok(all) => Ok(all[start * k..(start + n) * k].to_vec()),
            Err(e) => Err(format!("{e:#}")),
        };
        start += n;
        // A client that went away no longer waits for its answer.
        let _ = job.reply.send(answer);
    }
}
