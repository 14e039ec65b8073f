//! aioops-mcp-iforest: real-time log anomaly detection.
//!
//! The library holds all the logic; `main.rs` and `bin/log-simulator.rs` are thin front ends.

pub mod cli;
pub mod forest;
pub mod parse;
