//! The service binary: `aioops-mcp-iforest` serves the HTTP API; its subcommands work offline.
//! All logic lives in the library so the simulator binary and the tests share it.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use aioops_mcp_iforest::app::App;
use aioops_mcp_iforest::cli::{self, OfflineCommand};
use aioops_mcp_iforest::settings::Settings;
use aioops_mcp_iforest::telemetry;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Real-time log anomaly detection with per-service isolation forests."
)]
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(),
        Command::Offline(command) => cli::run(command),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    telemetry::init(&settings.log_level, settings.log_format, std::io::stderr);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = settings.api_workers {
        runtime.worker_threads(workers);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let app = App::build(settings).await?;
        app.run_until_stopped().await
    })
}
