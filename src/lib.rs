//! aioops-mcp-iforest: real-time log anomaly detection.
//!
//! Logs arrive through `api` and enter by `ingest`, the one way in: its pipeline parses, judges
//! (`detect`) and stores ([`store`]) them, `alert` counts them toward rate alerts, and `learn`
//! learns each service's baseline from them. The isolation forest itself is [`forest`].
//! `main.rs` and `bin/log-simulator.rs` are thin front ends over this library; `docs/architecture.md`
//! has the map.
//!
//! Public are the modules the binaries, the integration tests and the benchmarks use; the rest
//! is `pub(crate)`.

pub(crate) mod alert;
pub(crate) mod api;
pub mod app;
pub mod cli;
pub(crate) mod detect;
pub mod forest;
pub(crate) mod ingest;
pub(crate) mod learn;
pub mod metrics;
pub mod parse;
mod rfc3339;
pub(crate) mod server;
pub mod settings;
pub(crate) mod signal;
pub mod simulator;
pub mod store;
mod sync;
pub mod telemetry;
