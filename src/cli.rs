//! Offline commands of the service binary: `score-csv`, `train` and `score`.

use clap::Subcommand;

/// Commands that work on CSV files and model files, without the HTTP service.
#[derive(Debug, Subcommand)]
pub enum OfflineCommand {}

/// Runs one offline command.
///
/// # Errors
/// Any failure, as one line for the operator.
pub fn run(command: OfflineCommand) -> anyhow::Result<()> {
    match command {}
}
