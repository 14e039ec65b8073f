//! The integration tests, one binary: the real server on 127.0.0.1, port 0, over real HTTP; the
//! built binaries (`aioops-mcp-iforest`'s offline commands, `log-simulator`) as a user runs them.

mod helpers;

mod alert_drill;
mod alerts;
mod anomalies;
mod cli;
mod contract;
mod corpus;
mod detection;
mod docs;
mod edge;
mod faults;
mod hostile;
mod ingest;
mod learning;
mod limits;
mod mcp;
mod metrics;
mod otlp;
mod replicas;
mod simulator;
mod simulator_e2e;
mod storage;
