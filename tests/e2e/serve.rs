//! `serve` on loopback: concurrent clients get exactly what `predict` says,
//! bad requests get a 4xx JSON error and the server goes on, SIGTERM
//! answers every request already received, and there is no server without
//! an export.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Background, Project, run_python};

fn trained_project() -> Project {
    let p = Project::uci_tiny_two_classes();
    p.cli(&["run-pipeline"]).ok();
    p
}

/// Starts `serve --port 0 ARGS`; the server and its base URL.
fn start(p: &Project, args: &[&str]) -> (Background, String) {
    let mut all = vec!["serve", "--port", "0"];
    all.extend_from_slice(args);
    let mut server = Background::start(p, &all);
    let line = server.wait_for_stderr("listening on ");
    let url = line
        .split("listening on ")
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    (server, url)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// (status, JSON body) of a POST of `body` with `content_type`.
fn post(
    agent: &ureq::Agent,
    url: &str,
    content_type: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let mut response = agent
        .post(&format!("{url}/predict"))
        .header("Content-Type", content_type)
        .send(body)
        .expect("the server answers");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// The JSON body of `GET url/path`.
fn get_json(agent: &ureq::Agent, url: &str, path: &str) -> serde_json::Value {
    let text = agent
        .get(&format!("{url}/{path}"))
        .call()
        .expect("the server answers")
        .body_mut()
        .read_to_string()
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn texts_body(texts: &[&str]) -> String {
    serde_json::json!({ "texts": texts }).to_string()
}

fn sigterm(server: &Background) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The test split's sentences and what `predict` says of each (label, top probability).
fn predicted(p: &Project) -> Vec<(String, String, f64)> {
    let csv = p.path("test_sentences.csv");
    run_python(&[
        "-c",
        r#"
import csv, sys, pyarrow.parquet as pq
test = pq.read_table(sys.argv[1]).to_pylist()
with open(sys.argv[2], "w", newline="") as f:
    w = csv.writer(f); w.writerow(["sentence"]); [w.writerow([r["sentence"]]) for r in test]
"#,
        p.path("artifacts/ingest/test.parquet").to_str().unwrap(),
        csv.to_str().unwrap(),
    ]);
    let mut reader = csv::Reader::from_path(&csv).unwrap();
    let sentences: Vec<String> = reader
        .records()
        .map(|r| r.unwrap()[0].to_string())
        .collect();
    let out = p.cli(&["predict", "--csv", csv.to_str().unwrap()]);
    out.ok()
        .stdout
        .lines()
        .skip(1)
        .zip(sentences)
        .map(|(line, sentence)| {
            let mut f = line.split('\t');
            let label = f.next().unwrap().to_string();
            let top = f.next().unwrap().parse().unwrap();
            (sentence, label, top)
        })
        .collect()
}

#[test]
fn concurrent_clients_get_what_predict_says_and_bad_requests_get_4xx() {
    let p = trained_project();
    let expected = Arc::new(predicted(&p));
    assert_eq!(expected.len(), 300);
    let (server, url) = start(
        &p,
        &[
            "--max-texts",
            "8",
            "--max-text-chars",
            "2000",
            "--max-body-bytes",
            "20000",
        ],
    );

    // 32 clients × 50 requests of 1 to 3 test sentences each.
    let clients: Vec<_> = (0..32)
        .map(|c| {
            let (url, expected) = (url.clone(), expected.clone());
            std::thread::spawn(move || {
                let agent = agent();
                for r in 0..50 {
                    let picks: Vec<usize> = (0..1 + (c + r) % 3)
                        .map(|j| (c * 53 + r * 7 + j * 101) % 300)
                        .collect();
                    let texts: Vec<&str> = picks.iter().map(|&i| expected[i].0.as_str()).collect();
                    let (status, body) =
                        post(&agent, &url, "application/json", &texts_body(&texts));
                    assert_eq!(status, 200, "{body}");
                    let predictions = body["predictions"].as_array().unwrap();
                    assert_eq!(predictions.len(), picks.len());
                    for (p, &i) in predictions.iter().zip(&picks) {
                        let (sentence, label, top) = &expected[i];
                        assert_eq!(p["label"].as_str().unwrap(), label, "{sentence:?}");
                        let probabilities = p["probabilities"].as_array().unwrap();
                        let best = probabilities
                            .iter()
                            .map(|v| v.as_f64().unwrap())
                            .fold(0.0, f64::max);
                        // predict prints 4 decimals.
                        assert!((best - top).abs() < 1e-4, "{sentence:?}: {best} vs {top}");
                        assert_eq!(p["class"].as_u64().unwrap() as usize, {
                            probabilities
                                .iter()
                                .position(|v| v.as_f64().unwrap() == best)
                                .unwrap()
                        });
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a client failed");
    }
    let agent = agent();
    let stats = get_json(&agent, &url, "stats");
    assert_eq!(stats["requests"], 1600, "{stats}");
    assert!(
        stats["mean_requests_per_gathering"].as_f64().unwrap() > 1.0,
        "32 concurrent clients were never batched together: {stats}"
    );

    // Bad requests: a 4xx with a JSON error naming the problem.
    let long = "x".repeat(2001);
    let nine: Vec<&str> = vec!["ok"; 9];
    let huge = "y".repeat(30_000);
    let cases: [(&str, String, u16, &str); 8] = [
        (
            "application/json",
            texts_body(&[&huge]),
            413,
            "over the limit of 20000 bytes",
        ),
        (
            "application/json",
            "{\"texts\": [\"a\",".into(),
            400,
            "malformed JSON",
        ),
        (
            "application/json",
            "{\"sentences\": [\"a\"]}".into(),
            422,
            "texts",
        ),
        (
            "application/json",
            "{\"texts\": \"a\"}".into(),
            422,
            "texts",
        ),
        ("application/json", texts_body(&[]), 422, "empty"),
        ("application/json", texts_body(&nine), 413, "9 texts"),
        (
            "application/json",
            texts_body(&["fine", &long]),
            413,
            "texts[1] has 2001 characters",
        ),
        (
            "text/plain",
            texts_body(&["a"]),
            415,
            "Content-Type: application/json",
        ),
    ];
    for (content_type, body, status, needle) in cases {
        let (got, answer) = post(&agent, &url, content_type, &body);
        let shown: String = body.chars().take(80).collect();
        assert_eq!(got, status, "{shown}: {answer}");
        let error = answer["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{shown}: {answer}"));
        assert!(error.contains(needle), "{shown}: {error}");
    }
    // Still serving.
    let (status, body) = post(
        &agent,
        &url,
        "application/json",
        &texts_body(&["still here"]),
    );
    assert_eq!(status, 200, "{body}");
    let health = get_json(&agent, &url, "health");
    assert_eq!(health["status"], "ok", "{health}");
    let metadata = get_json(&agent, &url, "metadata");
    assert_eq!(metadata["labels"], serde_json::json!(["0", "1"]));
    assert_eq!(
        metadata["stage_keys"].as_object().unwrap().len(),
        8,
        "{metadata}"
    );
    sigterm(&server);
    server.finish().ok();
}

#[test]
fn sigterm_answers_every_request_already_received() {
    let p = trained_project();
    // A long gathering window: the requests below are received, and wait
    // in it, when SIGTERM arrives.
    let (server, url) = start(&p, &["--max-wait-ms", "1500"]);
    let clients: Vec<_> = (0..16)
        .map(|c| {
            let url = url.clone();
            std::thread::spawn(move || {
                let text = format!("review number {c} was fine");
                post(&agent(), &url, "application/json", &texts_body(&[&text]))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    sigterm(&server);
    for c in clients {
        let (status, body) = c.join().unwrap();
        assert_eq!(status, 200, "a request in flight was lost: {body}");
        assert_eq!(body["predictions"].as_array().unwrap().len(), 1);
    }
    let run = server.finish();
    run.ok();
    assert!(run.stderr.contains("\"requests\":16"), "{}", run.stderr);
    // And it is gone.
    assert!(agent().get(&format!("{url}/health")).call().is_err());
}

#[test]
fn serve_refuses_without_an_export() {
    let p = Project::uci_tiny_on_cpu();
    let run = p.cli(&["serve", "--port", "0"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("run `cargo xtask run-pipeline` first"),
        "{}",
        run.stderr
    );
    // Everything the report reads (head, audit), but not the report.
    p.cli(&["run-pipeline", "--until", "head"]).ok();
    p.cli(&["run-pipeline", "--until", "audit"]).ok();
    let run = p.cli(&["serve", "--port", "0"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("no report result")
            && run.stderr.contains("run `cargo xtask run-pipeline` first"),
        "{}",
        run.stderr
    );
}
