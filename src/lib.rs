//! aioops-mcp-iforest: real-time log anomaly detection.
//!
//! Logs arrive through [`api`], flow through [`pipeline`] (parse → detect → store), and teach
//! [`learn`] each service's baseline. The isolation forest itself is [`forest`]. `main.rs` and
//! `bin/log-simulator.rs` are thin front ends over this library.

pub mod alert;
pub mod api;
pub mod app;
pub mod cli;
pub mod detect;
pub mod forest;
pub mod learn;
pub mod parse;
pub mod pipeline;
pub mod settings;
pub mod signal;
pub mod simulator;
pub mod store;
mod sync;
pub mod telemetry;
