//! The Tablestore (OTS) wire protocol, API 2015-12-31.
//!
//! - [`pb`]: protobuf messages (proto2, hand-written from the protocol fact sheet).
//! - [`plainbuffer`]: the row encoding, with a zero-copy, checksum-verifying decoder.
//! - [`types`]: typed values and rows, owned and borrowed.
//! - [`auth`]: credentials, request signing (V2/V4), response signing and verification.
//! - [`client`]: the async HTTP client with verified responses, typed errors and retries.

pub mod auth;
pub mod client;
pub mod error;
pub mod pb;
pub mod plainbuffer;
pub mod retry;
pub mod types;

pub use auth::{Credentials, SignatureVersion};
pub use client::{Action, ClientConfig, ClientStats, OtsClient};
pub use error::OtsError;
pub use retry::{Idempotency, RetryPolicy};
