//! Protobuf messages of the Tablestore (OTS) API 2015-12-31, package
//! `otsprotocol`.
//!
//! The `.proto` files in `crates/wire/proto/` are written by us from the
//! field tables of the protocol fact sheet (§3), in proto2 syntax, and
//! compiled at build time by `build.rs` (protox + prost-build). Why:
//!
//! * proto2 `required` fields (scalars and messages alike) become plain,
//!   non-`Option` fields that prost always encodes, so we can never omit
//!   one — Java's and golang/protobuf 1.3's parsers reject messages with a
//!   missing required field. `optional` fields are `Option<_>`.
//! * prost silently skips unknown fields when decoding, so newer service
//!   fields (and the Go/Java-only fields we did not declare) never break us.
//! * `bytes` fields are `bytes::Bytes`, so decoding a response shares the
//!   body buffer with the PlainBuffer payloads instead of copying them.
//!
//! Enum-typed fields are stored as `i32` (prost convention); the enum types
//! (e.g. [`RowExistenceExpectation`]) convert with `as i32` / `TryFrom<i32>`,
//! and prost generates typed getters/setters for them.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/otsprotocol.rs"));
