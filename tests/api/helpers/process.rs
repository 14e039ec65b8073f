//! The service binary as an operator runs it, in its own process: for tests that kill it, restart
//! it, or read its memory (`VmHWM`, the peak resident set, from `/proc/PID/status`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

pub const BIN: &str = env!("CARGO_BIN_EXE_aioops-mcp-iforest");

/// The running binary; killed when dropped.
pub struct ServiceProcess {
    pub base: String,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Child,
}

impl ServiceProcess {
    /// Starts the binary on a free port with `data_dir`, test defaults and `vars`, and waits
    /// until `/health` answers 200 (at most 30 s). Its log goes to `log`.
    pub async fn start(data_dir: &Path, log: &Path, vars: &[(&str, &str)]) -> Self {
        let port = free_port().await.port();
        let mut command = Command::new(BIN);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("API_HOST", "127.0.0.1")
            .env("API_PORT", port.to_string())
            .env("DATA_DIR", data_dir)
            .env("RETRAIN_INTERVAL_SECONDS", "0")
            .env("LOG_FORMAT", "text");
        for (name, value) in vars {
            command.env(name, value);
        }
        let log_file = std::fs::File::create(log).expect("log file");
        let child = command
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("the service starts");
        let service = Self {
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("client"),
            data_dir: data_dir.to_path_buf(),
            log: log.to_path_buf(),
            child,
        };
        service.wait_healthy().await;
        service
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `/health` answers 200; panics after 30 s with the service's log.
    pub async fn wait_healthy(&self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(response) = self.client.get(self.url("/health")).send().await
                && response.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the service did not become healthy in 30 s; its log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// The process's peak resident set so far, in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        peak_rss_bytes(self.pid())
    }

    /// SIGKILL, and waits for the process to go.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `VmHWM` of process `pid`, in bytes.
pub fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kib| kib * 1024)
        .expect("VmHWM in /proc/PID/status")
}
