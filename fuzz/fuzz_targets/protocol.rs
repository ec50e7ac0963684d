//! The decoders of backend answers: license replies (any status, any body), update
//! check bodies and their checksum fields, telemetry error bodies.
#![no_main]
use cybersensei_agent::protocol::UpdateCheck;
use cybersensei_agent::transport::Reply;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let status = u16::from_le_bytes([data[0], data[1]]) % 600;
    let body = data[2..].to_vec();
    let reply = Reply {
        status,
        content_type: Some("application/json".into()),
        body: body.clone(),
    };
    let _ = cybersensei_agent::license::classify(&reply);
    if let Ok(c) = serde_json::from_slice::<UpdateCheck>(&body) {
        let _ = cybersensei_agent::update::check::expected_digest(&c);
    }
    if let Ok(s) = std::str::from_utf8(&body) {
        let _ = cybersensei_agent::update::check::parse_hex_digest(s);
    }
});
