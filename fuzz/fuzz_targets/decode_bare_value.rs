//! Arbitrary bytes into the bare-variant value decoder (filter values, partition bounds).
//!
//! It must never panic, and whatever it accepts must re-encode to the input exactly: the value type
//! fixes the payload size (or its u32 length prefix does) and trailing bytes are rejected.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ots_wire::plainbuffer::{decode_bare_value, encode_bare_value};

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = decode_bare_value(data) {
        assert_eq!(
            encode_bare_value(v),
            data,
            "decoded {v:?} but the re-encoding differs from the input"
        );
    }
});
