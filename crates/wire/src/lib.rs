//! The Tablestore (OTS) wire protocol, API 2015-12-31.
//!
//! - [`pb`]: protobuf messages (proto2, hand-written from the protocol fact sheet).
//! - [`plainbuffer`]: the row encoding, with a zero-copy, checksum-verifying decoder.
//! - [`types`]: typed values and rows, owned and borrowed.
//! - [`date`]: UTC calendar math and the date formats (`x-ots-date`, RFC 3339, Unix millis).
//! - [`auth`]: credentials, request signing (V2/V4) and response verification; with the
//!   `server` feature also request verification and response signing.
//! - `client`, `error`, `retry` (default feature `client`): the async HTTP client with verified
//!   responses, typed errors and retries. Without it the crate needs neither tokio nor reqwest.

pub mod auth;
#[cfg(feature = "client")]
mod body;
#[cfg(feature = "client")]
pub mod client;
mod crc8;
pub mod date;
#[cfg(feature = "client")]
pub mod error;
#[cfg(feature = "client")]
mod md5_lanes;
pub mod pb;
pub mod plainbuffer;
#[cfg(feature = "client")]
pub mod retry;
pub mod types;

pub use auth::{Credentials, SignatureVersion};
#[cfg(feature = "client")]
pub use client::{
    Action, ClientConfig, ClientStats, OtsClient, PreparedBatchWrite, prepare_batch_writes,
};
#[cfg(feature = "client")]
pub use error::OtsError;
#[cfg(feature = "client")]
pub use retry::{Idempotency, RetryPolicy};
