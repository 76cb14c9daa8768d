#![no_main]
//! Any bytes parse (possibly with a parse_error) and convert to a draft without panicking; a
//! failed parse keeps the whole line as the message.

use libfuzzer_sys::fuzz_target;
use meniscus_event::syslog::{parse, Format};
use time::OffsetDateTime;

fuzz_target!(|data: &[u8]| {
    let parsed = parse(data, Format::Auto, OffsetDateTime::UNIX_EPOCH);
    if parsed.parse_error.is_some() {
        assert!(!parsed.message.is_empty() || data.iter().all(|b| matches!(b, b'\r' | b'\n' | 0)));
    }
    let _ = parsed.into_draft();
});
