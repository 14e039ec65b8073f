//! `log-simulator`: sends realistic logs with labeled anomalies to the service.

fn main() {}
