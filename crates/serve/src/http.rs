//! The HTTP surface: routes, request checks and JSON errors. Every refusal
//! is a 4xx with `{"error": "..."}` naming the problem; the server goes on.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::oneshot;

use crate::Limits;
use crate::batcher::{Job, Stats};

pub struct App {
    pub jobs: std::sync::mpsc::Sender<Job>,
    pub labels: Vec<String>,
    pub metadata: serde_json::Value,
    pub limits: Limits,
    pub stats: Arc<Stats>,
}

pub fn router(app: Arc<App>) -> Router {
    let body_limit = app.limits.max_body_bytes;
    Router::new()
        .route("/predict", post(predict))
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/metadata", get(metadata))
        .route("/stats", get(stats))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(app)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictRequest {
    texts: Vec<String>,
}

async fn predict(
    State(app): State<Arc<App>>,
    body: Result<Json<PredictRequest>, JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => {
            return error(rejection.status(), explain(&rejection, &app.limits));
        }
    };
    let limits = &app.limits;
    if request.texts.is_empty() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`texts` is empty: send at least one text",
        );
    }
    if request.texts.len() > limits.max_texts {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} texts in one request; the limit is {} (--max-texts): split the request",
                request.texts.len(),
                limits.max_texts
            ),
        );
    }
    if let Some((i, text)) = request
        .texts
        .iter()
        .enumerate()
        .find(|(_, t)| t.chars().count() > limits.max_text_chars)
    {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "texts[{i}] has {} characters; the limit is {} (--max-text-chars)",
                text.chars().count(),
                limits.max_text_chars
            ),
        );
    }
    let n = request.texts.len();
    let (reply, answer) = oneshot::channel();
    let job = Job {
        texts: request.texts,
        reply,
    };
    if app.jobs.send(job).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping");
    }
    let probabilities = match answer.await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(_) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the scoring thread stopped",
            );
        }
    };
    app.stats.requests.fetch_add(1, Ordering::Relaxed);
    app.stats.texts.fetch_add(n as u64, Ordering::Relaxed);
    let k = app.labels.len();
    let predictions: Vec<serde_json::Value> = probabilities
        .chunks(k)
        .map(|p| {
            let best = export::folder::argmax(p, k)[0];
            json!({"label": app.labels[best], "class": best, "probabilities": p})
        })
        .collect();
    Json(json!({"predictions": predictions})).into_response()
}

/// What was wrong with the body, in words a client can act on.
fn explain(rejection: &JsonRejection, limits: &Limits) -> String {
    match rejection {
        _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => format!(
            "the body is over the limit of {} bytes (--max-body-bytes): split the request",
            limits.max_body_bytes
        ),
        JsonRejection::MissingJsonContentType(_) => {
            "the body must be JSON: send `Content-Type: application/json`".into()
        }
        JsonRejection::JsonSyntaxError(e) => format!("malformed JSON: {}", e.body_text()),
        JsonRejection::JsonDataError(e) => format!(
            "the JSON is not {{\"texts\": [\"...\", ...]}}: {}",
            e.body_text()
        ),
        other => other.body_text(),
    }
}

async fn metadata(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    Json(app.metadata.clone())
}

async fn stats(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    Json(app.stats.json())
}
