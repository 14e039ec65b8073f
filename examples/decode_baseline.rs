//! The throughput benchmark's baseline: an axum server that only decodes the ingest body (HTTP +
//! JSON cost alone) and answers one `{"score","is_anomaly"}` per log. `bench/throughput.sh` runs it
//! beside the real service so our throughput can be read as a share of it.
//!
//! `cargo run --release --example decode_baseline -- 127.0.0.1:8100`

use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use aioops_mcp_iforest::parse::RawLog;

#[derive(Deserialize)]
struct IngestRequest {
    logs: Vec<RawLog>,
}

#[derive(Serialize)]
struct Result {
    score: Option<f64>,
    is_anomaly: u8,
}

async fn decode_only(Json(request): Json<IngestRequest>) -> Json<Vec<Result>> {
    Json(
        request
            .logs
            .iter()
            .map(|_| Result {
                score: None,
                is_anomaly: 0,
            })
            .collect(),
    )
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8100".to_owned());
    let app = Router::new().route("/api/v1/stream/multi-source", post(decode_only));
    let listener = tokio::net::TcpListener::bind(&address).await?;
    axum::serve(listener, app).await
}
