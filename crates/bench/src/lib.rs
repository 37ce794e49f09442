//! Shared pieces of the benchmark binaries (`ots-bench-load`, `ots-bench-scan`), driven by
//! `benches/run.py`. Not published.

use clap::Args;
use ots_wire::{ClientConfig, Credentials, OtsClient};

/// Where the benchmark table lives. Credentials come from ALIBABA_CLOUD_ACCESS_KEY_ID /
/// ALIBABA_CLOUD_ACCESS_KEY_SECRET, as for `otsarchive`.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// Tablestore endpoint, e.g. http://127.0.0.1:PORT (the emulator).
    #[arg(long)]
    pub endpoint: String,
    /// Instance name.
    #[arg(long)]
    pub instance: String,
    /// Table name.
    #[arg(long)]
    pub table: String,
}

impl Target {
    pub fn client(&self) -> Result<OtsClient, String> {
        let credentials = Credentials::from_env().map_err(|e| {
            format!(
                "no credentials: {e} (set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET)"
            )
        })?;
        let mut cfg = ClientConfig::new(&self.endpoint, &self.instance, credentials);
        cfg.request_timeout = std::time::Duration::from_secs(120);
        OtsClient::new(cfg).map_err(|e| e.to_string())
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
