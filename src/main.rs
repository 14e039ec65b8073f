//! The service binary: `aioops-mcp-iforest` serves the HTTP API; its subcommands work offline.
//! All logic lives in the library so the simulator binary and the tests share it.

use std::process::ExitCode;

// Under 100-log batches glibc's malloc/free took about a fifth of the service's CPU (perf);
// with mimalloc, alternating runs gave 2,043 and 2,258 requests/s against glibc's 2,009 and 1,774
// (wrk -t2 -c32, bench/make_bodies.py's batch_100.json, 2 cores).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(error),
    };
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

/// Help and version go out as clap prints them; a bad command line is one `error:` line and exit
/// code 2, so scripts that call the offline commands see a single clear reason.
fn usage_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        error.exit();
    }
    // clap's first paragraph says what is wrong (a required flag may be on the next line); the
    // usage and the hint that follow are left out.
    let rendered = error.render().to_string();
    let reason: Vec<&str> = rendered
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect();
    eprintln!("{}", reason.join(" "));
    ExitCode::from(2)
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
