//! A protocol-faithful local Tablestore (OTS) server.
//!
//! It speaks the real wire protocol (protobuf over `POST /{Action}`, PlainBuffer rows, V2/V4 request
//! signatures, signed responses), keeps tables in memory, and can inject faults: throttling, server
//! errors, row-level BatchWriteRow failures, latency, dropped connections and a capacity budget.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ots_emulator::StartError> {
//! let emu = ots_emulator::Emulator::builder()
//!     .instance("inst")
//!     .credentials("AK", "SK")
//!     .start()
//!     .await?;
//! println!("Tablestore at {}", emu.endpoint());
//! emu.shutdown().await;
//! # Ok(()) }
//! ```

mod admin;
mod encode;
mod engine;
mod error;
mod faults;
mod filter;
mod read;
mod rows;
mod schema;
mod server;
mod store;
mod stream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use engine::PageLimits;
pub use error::ApiError;
pub use faults::{EmulatorStats, FaultConfig};
pub use server::MAX_BODY_BYTES;

use engine::Engine;
use faults::{Counters, FaultState};
use server::Shared;

/// Entry point: `Emulator::builder()`.
pub struct Emulator;

impl Emulator {
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            instance: "emulator".to_string(),
            credentials: Vec::new(),
            faults: FaultConfig::default(),
            limits: PageLimits::default(),
            stream_split_every: None,
        }
    }
}

/// Why the emulator did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "invalid instance name '{0}': use 3-16 letters, digits or '-', starting with a letter and not ending with '-'"
    )]
    InvalidInstance(String),
    #[error("no access key configured: pass an AccessKey id and secret")]
    NoCredentials,
    #[error("invalid access key id: it must be non-empty printable ASCII")]
    InvalidAccessKeyId,
    #[error("invalid fault configuration: {0}")]
    InvalidFaults(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Configures and starts an emulator.
#[derive(Clone, Debug)]
pub struct EmulatorBuilder {
    listen: SocketAddr,
    instance: String,
    credentials: Vec<(String, String)>,
    faults: FaultConfig,
    limits: PageLimits,
    stream_split_every: Option<u64>,
}

impl EmulatorBuilder {
    /// Address to bind; the default is `127.0.0.1:0` (an ephemeral port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Instance name clients must send in `x-ots-instancename` (default `emulator`).
    pub fn instance(mut self, name: impl Into<String>) -> Self {
        self.instance = name.into();
        self
    }

    /// Adds an AccessKey pair the emulator accepts. Call again to accept several.
    pub fn credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        self.credentials.push((access_key_id.into(), secret.into()));
        self
    }

    pub fn faults(mut self, faults: FaultConfig) -> Self {
        self.faults = faults;
        self
    }

    /// GetRange page caps (default 5000 rows / 4 MiB, as the service).
    pub fn page_limits(mut self, limits: PageLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Splits every open stream shard after every `n` logged records of a table (0 = never, the
    /// default), so that shard splits happen on their own during a run.
    pub fn stream_split_every(mut self, n: u64) -> Self {
        self.stream_split_every = (n > 0).then_some(n);
        self
    }

    /// Binds and starts serving on the current Tokio runtime.
    pub async fn start(self) -> Result<EmulatorHandle, StartError> {
        if !schema::is_valid_instance_name(&self.instance) {
            return Err(StartError::InvalidInstance(self.instance));
        }
        if self.credentials.is_empty() {
            return Err(StartError::NoCredentials);
        }
        if self
            .credentials
            .iter()
            .any(|(id, _)| id.is_empty() || !id.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(StartError::InvalidAccessKeyId);
        }
        self.faults.validate().map_err(StartError::InvalidFaults)?;
        let listener = TcpListener::bind(self.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: self.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: self.listen,
            source,
        })?;
        let shared = Arc::new(Shared {
            instance: self.instance.clone(),
            credentials: self.credentials.into_iter().collect::<HashMap<_, _>>(),
            engine: Engine::new(self.limits, self.stream_split_every),
            faults: FaultState::new(self.faults),
            counters: Counters::default(),
        });
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(server::serve(listener, shared.clone(), rx));
        Ok(EmulatorHandle {
            addr,
            shared,
            shutdown: tx,
            task: Some(task),
        })
    }
}

/// A running emulator. Dropping it stops the server too (without waiting).
pub struct EmulatorHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl EmulatorHandle {
    /// `http://127.0.0.1:PORT`, ready for a client's endpoint setting.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn instance(&self) -> &str {
        &self.shared.instance
    }

    /// Replaces the fault configuration (and reseeds the fault RNG) at runtime.
    pub fn set_faults(&self, faults: FaultConfig) -> Result<(), StartError> {
        faults.validate().map_err(StartError::InvalidFaults)?;
        self.shared.faults.set(faults);
        Ok(())
    }

    pub fn faults(&self) -> FaultConfig {
        self.shared.faults.config()
    }

    pub fn stats(&self) -> EmulatorStats {
        self.shared.counters.snapshot()
    }

    /// Writes rows straight into a table, bypassing HTTP, with PutRow semantics and validation
    /// (cells without a timestamp get the current time). For seeding benchmarks and demos fast.
    /// Returns how many rows were written; stops at the first invalid row.
    pub fn load_rows<I>(&self, table: &str, rows: I) -> Result<usize, ApiError>
    where
        I: IntoIterator<Item = ots_wire::types::Row>,
    {
        let t = self.shared.engine.table(table)?;
        let ignore = ots_wire::pb::Condition {
            row_existence: ots_wire::pb::RowExistenceExpectation::Ignore as i32,
            column_condition: None,
        };
        let mut written = 0;
        let mut iter = rows.into_iter().peekable();
        while iter.peek().is_some() {
            // Take the lock per chunk so that concurrent readers are not starved by a big load.
            let mut st = t.write();
            let now = engine::now_ms();
            for row in iter.by_ref().take(4096) {
                let bytes = ots_wire::plainbuffer::encode_put_row(&row);
                let op = rows::prepare(&t.def, rows::WriteKind::Put, &bytes, &ignore, None)?;
                if let Some(log) = st.stream.as_mut() {
                    log.begin_write();
                }
                rows::apply(&t.def, &mut st, op, now)?;
                written += 1;
            }
        }
        Ok(written)
    }

    /// Drops every record of `table`'s stream written before `before_us` (µs since the epoch), as
    /// retention would. Returns how many records were dropped.
    pub fn trim_stream(&self, table: &str, before_us: i64) -> Result<usize, String> {
        self.shared.engine.trim_stream(table, before_us)
    }

    /// Closes every open shard of `table`'s stream and opens two children for each (`parent_id` =
    /// the closed shard) that split its key space; later writes of one primary key go to exactly one
    /// child. Returns the new shard ids.
    pub fn split_stream_shards(&self, table: &str) -> Result<Vec<String>, String> {
        self.shared.engine.split_stream_shards(table)
    }

    /// How many records `table`'s stream keeps (all shards); `None` when it has no stream (or the
    /// table does not exist).
    pub fn stream_records(&self, table: &str) -> Option<usize> {
        self.shared.engine.stream_records(table)
    }

    /// Stops accepting, closes every connection, and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

impl std::fmt::Debug for EmulatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        f.debug_struct("EmulatorHandle")
            .field("addr", &self.addr)
            .field("instance", &self.shared.instance)
            .finish()
    }
}
