//! `log-simulator`: sends realistic logs with labeled anomalies to the service and reports how
//! many it caught. All logic lives in [`aioops_mcp_iforest::simulator`].

use std::process::ExitCode;

fn main() -> ExitCode {
    aioops_mcp_iforest::simulator::main()
}
