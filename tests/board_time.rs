//! `clock::parse_iso8601` by arithmetic: same answers as humantime where humantime can
//! answer (host), and instants past 2038 everywhere (humantime refuses them on 32-bit
//! targets, which the armv7 run of the license tests caught).

use cybersensei_agent::clock::{iso8601, parse_iso8601};
use std::time::UNIX_EPOCH;

fn humantime_secs(s: &str) -> Option<f64> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_secs_f64())
}

#[test]
fn agrees_with_humantime_over_many_instants() {
    // Every ~13.7 days from 1970 to 2200: leap years, centuries, month ends.
    let mut t: u64 = 0;
    let mut n = 0;
    while t < 7_258_118_400 {
        let s = iso8601(t as f64);
        assert_eq!(parse_iso8601(&s), Some(t as f64), "{s}");
        let frac = format!("{}.25Z", &s[..19]);
        assert_eq!(parse_iso8601(&frac), Some(t as f64 + 0.25), "{frac}");
        if cfg!(target_pointer_width = "64") {
            assert_eq!(parse_iso8601(&s), humantime_secs(&s), "{s}");
            assert_eq!(parse_iso8601(&frac), humantime_secs(&frac), "{frac}");
        }
        t += 1_183_123;
        n += 1;
    }
    assert!(n > 6000);
}

#[test]
fn known_values_and_accepted_forms() {
    assert_eq!(parse_iso8601("1970-01-01T00:00:00Z"), Some(0.0));
    assert_eq!(parse_iso8601("2038-01-19T03:14:08Z"), Some(2_147_483_648.0));
    assert_eq!(
        parse_iso8601("2099-12-31T23:59:59.000Z"),
        Some(4_102_444_799.0)
    );
    assert_eq!(parse_iso8601("2000-02-29T12:00:00Z"), Some(951_825_600.0));
    assert_eq!(
        parse_iso8601("2025-12-31T23:59:59.5Z"),
        Some(1_767_225_599.5)
    );
    assert_eq!(parse_iso8601("2025-12-31 23:59:59"), Some(1_767_225_599.0));
    assert_eq!(
        parse_iso8601(" 2025-12-31T23:59:59+00:00 "),
        Some(1_767_225_599.0)
    );
    assert_eq!(parse_iso8601("2025-12-31T23:59:60Z"), Some(1_767_225_599.0));
}

#[test]
fn refuses_what_is_not_a_utc_instant() {
    for s in [
        "",
        "2025-12-31",
        "2025-12-31T23:59",
        "2025-13-01T00:00:00Z",
        "2025-02-29T00:00:00Z",
        "2025-04-31T00:00:00Z",
        "2025-00-10T00:00:00Z",
        "2025-01-00T00:00:00Z",
        "1969-12-31T23:59:59Z",
        "2025-01-01T24:00:00Z",
        "2025-01-01T00:60:00Z",
        "2025-01-01T00:00:00+02:00",
        "2025-01-01T00:00:00ZZ",
        "2025-01-01T00:00:00.12x",
        "2025/01/01T00:00:00Z",
        "+025-01-01T00:00:00Z",
        "2025-01-01T00:00:00Zé",
        "２０２５-01-01T00:00:00Z",
    ] {
        assert_eq!(parse_iso8601(s), None, "{s:?}");
    }
}

#[test]
fn formats_as_humantime_does_where_it_can() {
    let mut t: u64 = 0;
    while t < 2_147_483_000 {
        let ms = (t % 1000) as f64 / 1000.0;
        let ours = iso8601(t as f64 + ms);
        if cfg!(target_pointer_width = "64") {
            let d = std::time::Duration::from_millis(t * 1000 + t % 1000);
            let theirs = humantime::format_rfc3339_millis(UNIX_EPOCH + d).to_string();
            assert_eq!(ours, theirs, "{t}");
        }
        t += 997_613;
    }
}
