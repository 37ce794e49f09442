//! Compiles the hand-written Tablestore `.proto` files (see `proto/`) into
//! Rust with `protox` (pure Rust parser, no `protoc` needed) and
//! `prost-build`. The output is `$OUT_DIR/otsprotocol.rs`, included by
//! `src/pb.rs`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");

    let fds = protox::compile(
        ["proto/table_store.proto", "proto/table_store_filter.proto"],
        ["proto"],
    )?;

    prost_build::Config::new()
        // `bytes` fields become `bytes::Bytes`: decoding a response then
        // shares the input buffer instead of copying each PlainBuffer
        // payload, and the PlainBuffer decoder can borrow from it.
        .bytes(["."])
        .compile_fds(fds)?;
    Ok(())
}
