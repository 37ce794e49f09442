//! Writing snapshot data: destinations on top of `object_store`, and zstd Parquet files streamed
//! to them with their SHA-256 and size computed on the way.
//!
//! - [`destination`]: URL → store + prefix (local, OSS, S3, GCS, Azure), failing fast on bad input.
//! - [`parquet_file`]: one streamed Parquet file with its checksum.

pub mod destination;
mod encoding_choice;
pub mod parquet_file;

pub use destination::{
    Destination, DestinationError, DestinationOptions, ServerSideEncryption, open_destination,
};
pub use parquet_file::{ParquetFileWriter, ParquetOptions, WriteError, WrittenFile};
