//! Any bytes as a request frame body: header and request decoding, and for Produce the batch
//! validation, must return (an error is fine) and never panic, abort or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = silt_broker::api::decode_request(bytes::Bytes::copy_from_slice(data));
});
