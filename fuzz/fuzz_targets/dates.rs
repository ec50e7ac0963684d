//! Retry-After (delta-seconds or HTTP date) and ISO 8601 parsing on arbitrary text.
#![no_main]
use cybersensei_agent::{clock, transport};
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, UNIX_EPOCH};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let now = UNIX_EPOCH + Duration::from_secs(1_790_000_000);
    let _ = transport::parse_retry_after(s, now);
    if let Some(t) = clock::parse_iso8601(s) {
        // What we parsed must print back without a panic.
        let _ = clock::iso8601(t);
    }
});
