//! The admin API's request parser (src/admin/http.rs) on arbitrary bytes: it must
//! never panic, never accept more than its bounds, and agree with itself when the
//! bytes arrive in two reads.
#![no_main]
use cybersensei_agent::admin::http::{parse_request, MAX_BODY};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let whole = parse_request(data);
    if let Ok(Some(r)) = &whole {
        assert!(r.body.len() <= MAX_BODY);
        assert!(r.path.starts_with('/'));
    }
    // A request split anywhere: a complete first part is the same request.
    if data.len() > 1 {
        let cut = usize::from(data[0]) % data.len();
        if let Ok(Some(first)) = parse_request(&data[..cut]) {
            assert_eq!(Ok(Some(first)), whole);
        }
    }
});
