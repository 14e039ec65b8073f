//! aioops-mcp-iforest: real-time log anomaly detection.
//!
//! Logs arrive through [`api`] and enter by [`ingest`], the one way in: its pipeline parses,
//! judges and stores them, [`alert`] counts them toward rate alerts, and [`learn`] learns each
//! service's baseline from them. The isolation forest itself is [`forest`]. `main.rs` and
//! `bin/log-simulator.rs` are thin front ends over this library.

pub mod alert;
pub mod api;
pub mod app;
pub mod cli;
pub mod detect;
pub mod forest;
pub mod ingest;
pub mod learn;
pub mod parse;
mod rfc3339;
pub mod settings;
pub mod signal;
pub mod simulator;
pub mod store;
mod sync;
pub mod telemetry;
