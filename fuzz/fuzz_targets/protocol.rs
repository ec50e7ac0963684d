//! Every decoder of a backend answer (and of the local files shaped like them) on
//! arbitrary bytes: license classification, update check, error bodies, the update
//! manifest and app metrics.
#![no_main]
use cybersensei_agent::protocol::{ErrorBody, UpdateCheck};
use cybersensei_agent::transport::Reply;
use cybersensei_agent::{license, telemetry, update};
use libfuzzer_sys::fuzz_target;

const STATUSES: [u16; 8] = [200, 400, 401, 403, 404, 429, 500, 503];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let reply = Reply {
        status: STATUSES[usize::from(sel) % STATUSES.len()],
        content_type: Some("application/json".into()),
        body: body.to_vec(),
    };
    let _ = license::classify(&reply);
    if let Ok(c) = serde_json::from_slice::<UpdateCheck>(body) {
        let _ = update::checksum::expected_digest(&c);
    }
    if let Ok(e) = serde_json::from_slice::<ErrorBody>(body) {
        let _ = e.message.map(|m| m.text());
    }
    let _ = update::verify::parse_manifest(body);
    let _ = update::version_json::parse(body);
    let _ = telemetry::collect::parse_app_metrics(body);
    if let Ok(s) = std::str::from_utf8(body) {
        let _ = update::checksum::parse_hex_digest(s);
        let _ = update::verify::check_version(s, "fuzz");
        let _ = update::version::Semver::parse(s);
        let _ = update::window::Window::parse(s);
        let _ = update::verify::parse_public_key(s);
    }
});
