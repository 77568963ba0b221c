//! Any bytes as a produce request's record set: validation (CRC, sizes, record walk,
//! bounded decompression) must return and never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use silt_broker::log::batch::{validate_record_set, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_message_bytes: 1 << 20,
        max_decompressed_bytes: 1 << 22,
        require_keys: data.first().is_some_and(|b| b & 1 == 1),
    };
    let _ = validate_record_set(data, &limits);
});
