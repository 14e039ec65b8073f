//! Integration tests: the real server on 127.0.0.1, port 0, over real HTTP.

mod helpers;

mod alert_drill;
mod anomalies;
mod contract;
mod detection;
mod ingest;
mod learning;
mod simulator_e2e;
