#![no_main]
//! Publish bodies are validated without panicking, as JSON and as NDJSON.

use libfuzzer_sys::fuzz_target;
use meniscus_event::publish::{parse_json, parse_ndjson, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_event_bytes: 4096, max_batch_len: 64 };
    let _ = parse_json(data, limits);
    let _ = parse_ndjson(data, limits);
});
