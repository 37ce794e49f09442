//! The Tablestore (OTS) wire protocol, API 2015-12-31.
//!
//! - [`pb`]: protobuf messages (proto2, hand-written from the protocol fact sheet).
//! - [`plainbuffer`]: the row encoding, with a zero-copy, checksum-verifying decoder.
//! - [`types`]: typed values and rows, owned and borrowed.
//! - [`auth`]: credentials, request signing (V2/V4), response signing and verification.
//! - [`client`]: the async HTTP client with verified responses, typed errors and retries.

pub mod plainbuffer;
pub mod types;
pub mod pb;
