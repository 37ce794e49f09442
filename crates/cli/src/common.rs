//! Options shared by every command, errors with exit codes, and opening clients and destinations.

use std::io::IsTerminal;
use std::time::Duration;

use clap::Args;
use ots_format::ErrorKind;
use ots_wire::{ClientConfig, Credentials, OtsClient, OtsError};
use ots_writer::DestinationOptions;

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Tablestore endpoint, e.g. https://myinst.cn-hangzhou.ots.aliyuncs.com
    #[arg(long, global = true, env = "OTSARCHIVE_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Tablestore instance name.
    #[arg(long, global = true, env = "OTSARCHIVE_INSTANCE")]
    pub instance: Option<String>,
    /// Print a machine-readable JSON summary on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr; no progress.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Attempts per Tablestore request (and per failed row) before giving up.
    #[arg(long, global = true, default_value_t = 20)]
    pub retry_attempts: u32,
    /// Give up retrying one request after this many seconds.
    #[arg(long, global = true, default_value_t = 120)]
    pub retry_deadline_secs: u64,
    /// Named profile from the config file (endpoint, instance, destination, credentials).
    #[arg(long, global = true, env = "OTSARCHIVE_PROFILE")]
    pub profile: Option<String>,
    /// Config file with profiles [default: ~/.config/otsarchive/config.toml].
    #[arg(long, global = true, env = "OTSARCHIVE_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// The selected profile, loaded after parsing.
    #[arg(skip)]
    pub loaded_profile: Option<crate::config::Profile>,
}

impl GlobalArgs {
    /// Fills what flags and environment left open from the selected profile.
    pub fn apply_profile(&mut self) -> Result<(), CliError> {
        let Some(p) = crate::config::load(self)? else {
            return Ok(());
        };
        if self.endpoint.is_none() {
            self.endpoint = p.endpoint.clone();
        }
        if self.instance.is_none() {
            self.instance = p.instance.clone();
        }
        self.loaded_profile = Some(p);
        Ok(())
    }

    /// The destination URL: the flag, else the profile's `to`.
    pub fn destination(&self, flag: Option<&str>, what: &str) -> Result<String, CliError> {
        flag.map(str::to_string)
            .or_else(|| self.loaded_profile.as_ref().and_then(|p| p.to.clone()))
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "{what} is required (or set `to` in the selected --profile)"
                ))
            })
    }
}

/// Destination settings that cannot live in the URL.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Object store options")]
pub struct DestArgs {
    /// OSS region for oss:// destinations, e.g. cn-hangzhou (or ALIBABA_CLOUD_OSS_REGION).
    #[arg(long)]
    pub oss_region: Option<String>,
    /// Full OSS S3-compatible endpoint including the bucket (overrides the region-derived one).
    #[arg(long)]
    pub oss_endpoint: Option<String>,
    /// Use OSS's internal endpoint (from ECS/VPC in the same region).
    #[arg(long)]
    pub oss_internal: bool,
    /// Endpoint for s3:// destinations (S3-compatible servers); `{bucket}` is replaced.
    #[arg(long)]
    pub s3_endpoint: Option<String>,
    /// Region for s3:// destinations (else AWS_REGION or AWS_DEFAULT_REGION, else us-east-1).
    #[arg(long)]
    pub s3_region: Option<String>,
    /// Allow plain-http object-store endpoints (test servers only).
    #[arg(long)]
    pub allow_http: bool,
    /// Server-side encryption of every object written to s3:// or oss:// (x-amz-server-side-
    /// encryption): aes256 (keys managed by the store) or kms. On OSS prefer the bucket's default
    /// encryption (docs/OPERATIONS.md).
    #[arg(long, value_name = "aes256|kms")]
    pub sse: Option<String>,
    /// With --sse kms: the KMS key id (else the store's default KMS key).
    #[arg(long, value_name = "ID")]
    pub sse_kms_key_id: Option<String>,
}

impl DestArgs {
    /// Flags first, then the profile's settings.
    pub fn options(&self, g: &GlobalArgs) -> Result<DestinationOptions, CliError> {
        let p = g.loaded_profile.clone().unwrap_or_default();
        let sse = ots_writer::ServerSideEncryption::parse(
            self.sse.as_deref(),
            self.sse_kms_key_id.as_deref(),
        )
        .map_err(CliError::Usage)?;
        Ok(DestinationOptions {
            oss_region: self.oss_region.clone().or(p.oss_region),
            oss_endpoint: self.oss_endpoint.clone().or(p.oss_endpoint),
            oss_internal: self.oss_internal || p.oss_internal.unwrap_or(false),
            s3_endpoint: self.s3_endpoint.clone().or(p.s3_endpoint),
            s3_region: self.s3_region.clone().or(p.s3_region),
            allow_http: self.allow_http,
            client_options: None,
            create_local: false,
            sse,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad flags, bad destination, bad input: exit 2.
    #[error("{0}")]
    Usage(String),
    /// Verification found a mismatch: exit 3.
    #[error("{0}")]
    Mismatch(String),
    /// Anything else: exit 1.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// A library error, by its kind: the one place where errors become exit codes.
    pub fn from_kind(kind: ErrorKind, message: String) -> Self {
        match kind {
            ErrorKind::Usage => CliError::Usage(message),
            ErrorKind::Mismatch => CliError::Mismatch(message),
            ErrorKind::Failure => CliError::Failed(message),
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Failed(_) => 1,
            CliError::Usage(_) => 2,
            CliError::Mismatch(_) => 3,
        }
    }
}

impl From<ots_writer::DestinationError> for CliError {
    fn from(e: ots_writer::DestinationError) -> Self {
        CliError::Usage(e.to_string())
    }
}

impl From<ots_manifest::ManifestError> for CliError {
    fn from(e: ots_manifest::ManifestError) -> Self {
        CliError::from_kind(e.kind(), e.to_string())
    }
}

impl From<OtsError> for CliError {
    fn from(e: OtsError) -> Self {
        let kind = if e.is_usage() {
            ErrorKind::Usage
        } else {
            ErrorKind::Failure
        };
        CliError::from_kind(kind, e.to_string())
    }
}

impl From<ots_backup::BackupError> for CliError {
    fn from(e: ots_backup::BackupError) -> Self {
        CliError::from_kind(e.kind(), e.to_string())
    }
}

pub fn init_logging(g: &GlobalArgs) {
    let level = if g.quiet {
        tracing::Level::ERROR
    } else {
        match g.verbose {
            0 => tracing::Level::WARN,
            1 => tracing::Level::INFO,
            2 => tracing::Level::DEBUG,
            _ => tracing::Level::TRACE,
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: not in files, pipes or CI logs.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// A client from the global options and credentials from the environment.
pub fn client(g: &GlobalArgs) -> Result<OtsClient, CliError> {
    let endpoint = g.endpoint.clone().ok_or_else(|| {
        CliError::Usage("--endpoint is required (or set OTSARCHIVE_ENDPOINT)".into())
    })?;
    let instance = g.instance.clone().ok_or_else(|| {
        CliError::Usage("--instance is required (or set OTSARCHIVE_INSTANCE)".into())
    })?;
    // The environment first, then the profile; never the command line.
    let from_profile = g.loaded_profile.as_ref().and_then(|p| p.credentials());
    let mut origin = ots_wire::client::ENV_CREDENTIALS_ORIGIN.to_string();
    let credentials = match (Credentials::from_env(), from_profile) {
        (Ok(c), _) => c,
        (Err(_), Some(c)) => {
            origin = format!(
                "access_key_id / access_key_secret (and security_token for STS) of profile '{}'{}",
                g.profile.as_deref().unwrap_or_default(),
                g.config
                    .as_ref()
                    .map(|p| format!(" in {}", p.display()))
                    .unwrap_or_default()
            );
            c
        }
        (Err(e), None) => {
            return Err(CliError::Usage(format!(
                "no Tablestore credentials: {e} (set ALIBABA_CLOUD_ACCESS_KEY_ID and ALIBABA_CLOUD_ACCESS_KEY_SECRET, \
                 plus ALIBABA_CLOUD_SECURITY_TOKEN for STS, or put them in a --profile)"
            )));
        }
    };
    let mut cfg = ClientConfig::new(endpoint, instance, credentials);
    cfg.credentials_origin = origin;
    cfg.request_timeout = Duration::from_secs(120);
    if g.retry_attempts == 0 {
        return Err(CliError::Usage(
            "--retry-attempts must be at least 1".into(),
        ));
    }
    if g.retry_deadline_secs == 0 {
        return Err(CliError::Usage(
            "--retry-deadline-secs must be at least 1".into(),
        ));
    }
    cfg.retry.max_attempts = g.retry_attempts;
    cfg.retry.deadline = Duration::from_secs(g.retry_deadline_secs);
    OtsClient::new(cfg).map_err(|e| CliError::Usage(e.to_string()))
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
