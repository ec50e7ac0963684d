//! Retry-After (seconds or HTTP date) and ISO-8601 parsing on arbitrary text.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::time::{Duration, UNIX_EPOCH};

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let now = UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        if let Some(d) = cybersensei_agent::transport::parse_retry_after(s, now) {
            assert!(d <= Duration::from_secs(300), "Retry-After not capped: {d:?}");
        }
        if let Some(t) = cybersensei_agent::clock::parse_iso8601(s) {
            assert!(t.is_finite());
            let _ = cybersensei_agent::clock::iso8601(t);
        }
    }
});
