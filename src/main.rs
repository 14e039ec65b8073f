//! The service binary: `aioops-mcp-iforest` serves the HTTP API; its subcommands work offline.
//! All logic lives in the library so the simulator binary and the tests share it.

use clap::{Parser, Subcommand};

use aioops_mcp_iforest::cli::{self, OfflineCommand};

#[derive(Debug, Parser)]
#[command(version, about = "Real-time log anomaly detection with per-service isolation forests.")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default when no command is given).
    Serve,
    #[command(flatten)]
    Offline(OfflineCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => Ok(()),
        Command::Offline(command) => cli::run(command),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
