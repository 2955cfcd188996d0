//! serve: an exported classifier folder (the export stage's output) over
//! HTTP. ONNX Runtime scores it (no burn, no pipeline at serving time);
//! concurrent requests are batched together ([`batcher`]); bad requests get
//! a 4xx JSON error ([`http`]); SIGTERM or Ctrl-C stops accepting, answers
//! every request already received, and returns.
//!
//! Routes: `POST /predict {"texts": [...]}` → `{"predictions": [{"label",
//! "class", "probabilities"}]}`; `GET /health`; `GET /metadata`; `GET /stats`
//! (requests, texts, how they were batched).

pub mod batcher;
mod http;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

/// What one request may carry.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_texts: usize,
    pub max_text_chars: usize,
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub host: String,
    /// 0: any free port (printed when listening).
    pub port: u16,
    pub limits: Limits,
    pub batching: batcher::BatchPolicy,
    /// ONNX Runtime threads.
    pub threads: usize,
}

/// Serves `folder` until SIGTERM / Ctrl-C; `metadata` (a JSON object),
/// with the folder's `labels` added, is `GET /metadata`'s body. Prints
/// `listening on http://HOST:PORT` once bound (on stderr), and a summary
/// when stopped.
pub fn serve(folder: &Path, mut metadata: serde_json::Value, options: Options) -> Result<()> {
    let classifier = export::Classifier::open(folder, options.threads)?;
    let labels = classifier.labels.clone();
    metadata["labels"] = serde_json::json!(labels);
    let stats = Arc::new(batcher::Stats::default());
    let (jobs, scorer) = batcher::start(classifier, options.batching, stats.clone());
    let app = Arc::new(http::App {
        jobs,
        labels,
        metadata,
        limits: options.limits,
        stats: stats.clone(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let address = format!("{}:{}", options.host, options.port);
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let bound: SocketAddr = listener.local_addr()?;
        eprintln!("listening on http://{bound}");
        axum::serve(listener, http::router(app))
            .with_graceful_shutdown(stop_signal())
            .await
            .context("the HTTP server failed")
    })?;
    // The router (and with it the last job sender) is gone: the scorer
    // finishes what it holds and ends.
    runtime.shutdown_timeout(Duration::from_secs(5));
    scorer
        .join()
        .map_err(|_| anyhow::anyhow!("the scoring thread panicked"))?;
    eprintln!("stopped after {}", stats.json());
    Ok(())
}

async fn stop_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!("stopping: answering the requests already received");
}
