//! License decisions and offline grace, driven by fixed replies and an injected time.

use cybersensei_agent::clock::UnixTime;
use cybersensei_agent::config::Config;
use cybersensei_agent::error::Error;
use cybersensei_agent::license::{classify, decide, normalize, Decision};
use cybersensei_agent::status::LicenseState;
use cybersensei_agent::transport::Reply;

fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        content_type: Some("application/json".into()),
        body: body.as_bytes().to_vec(),
    }
}

fn cfg(dir: &std::path::Path) -> Config {
    Config {
        state_dir: dir.to_path_buf(),
        ..Config::default()
    }
}

const VALID: &str = r#"{"valid": true, "tenantId": "550e8400-e29b-41d4-a716-446655440000",
 "tenantName": "Acme Corporation", "expiresAt": "2027-12-31T23:59:59.000Z",
 "usageCount": 42, "maxUsageCount": 1000}"#;

// 2027-01-01T00:00:00Z
const NOW: f64 = 1_798_761_600.0;

#[test]
fn messages_match_case_and_accent_insensitively() {
    assert_eq!(normalize("Licence EXPIRÉE"), "licence expiree");
    for body in [
        r#"{"statusCode": 400, "message": "Licence expirée"}"#,
        r#"{"statusCode": 400, "message": "licence EXPIREE"}"#,
        r#"{"statusCode": 400, "message": ["Licence expirée"], "error": "Bad Request"}"#,
    ] {
        assert!(
            matches!(classify(&reply(400, body)), Decision::Expired(_)),
            "{body}"
        );
    }
    assert!(matches!(
        classify(&reply(
            400,
            r#"{"statusCode":400,"message":"Tenant inactif"}"#
        )),
        Decision::Inactive(_)
    ));
    assert!(matches!(
        classify(&reply(
            404,
            r#"{"statusCode":404,"message":"Clé de licence invalide"}"#
        )),
        Decision::Invalid(_)
    ));
    assert!(matches!(
        classify(&reply(200, r#"{"valid": false}"#)),
        Decision::Invalid(_)
    ));
    assert!(matches!(classify(&reply(200, VALID)), Decision::Valid(_)));
}

#[test]
fn impostors_are_not_decisions() {
    let html = Reply {
        status: 200,
        content_type: Some("text/html".into()),
        body: b"<html><body>Welcome to the hotel wifi</body></html>".to_vec(),
    };
    assert!(matches!(
        classify(&html),
        Decision::NoDecision(Error::Protocol { .. })
    ));
    assert!(matches!(
        classify(&reply(200, r#"{"hello": 1}"#)),
        Decision::NoDecision(Error::Protocol { .. })
    ));
    assert!(matches!(
        classify(&reply(200, r#"{"valid": "yes"}"#)),
        Decision::NoDecision(Error::Protocol { .. })
    ));
    assert!(matches!(
        classify(&reply(404, "<h1>Not Found</h1>")),
        Decision::NoDecision(Error::Protocol { .. })
    ));
    assert!(matches!(
        classify(&reply(302, "")),
        Decision::NoDecision(Error::Protocol { .. })
    ));
    assert!(matches!(
        classify(&reply(401, "{}")),
        Decision::NoDecision(Error::Unreachable { .. })
    ));
}

#[test]
fn grace_then_expiry_while_offline() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.license.grace_period = std::time::Duration::from_secs(3 * 86400);
    let Decision::Valid(r) = classify(&reply(200, VALID)) else {
        panic!()
    };
    let o = decide(Decision::Valid(r), &c, UnixTime(NOW)).unwrap();
    assert_eq!(o.state, LicenseState::Valid);
    assert_eq!(o.days_left, Some(364));
    // Cache file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("license.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let off = |c: &Config, t: f64| {
        decide(
            Decision::NoDecision(Error::unreachable("down")),
            c,
            UnixTime(t),
        )
        .unwrap()
    };
    assert_eq!(off(&c, NOW + 3600.0).state, LicenseState::Grace);
    assert_eq!(
        off(&c, NOW + 3.0 * 86400.0 - 1.0).state,
        LicenseState::Grace
    );
    let past = off(&c, NOW + 3.0 * 86400.0 + 1.0);
    assert_eq!(past.state, LicenseState::Unknown);
    assert_eq!(past.into_error().unwrap().exit_code(), 14);

    // Expiry passing while offline ends grace even inside the grace period.
    c.license.grace_period = std::time::Duration::from_secs(365 * 86400);
    let exp = 1_830_297_599.0; // 2027-12-31T23:59:59Z
    assert_eq!(off(&c, exp - 10.0).state, LicenseState::Grace);
    let o = off(&c, exp + 10.0);
    assert_eq!(o.state, LicenseState::Expired);
    assert_eq!(o.into_error().unwrap().exit_code(), 11);
}

#[test]
fn never_validated_and_offline_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let o = decide(
        Decision::NoDecision(Error::unreachable("x")),
        &cfg(dir.path()),
        UnixTime(NOW),
    )
    .unwrap();
    assert_eq!(o.state, LicenseState::Unknown);
    assert_eq!(o.into_error().unwrap().exit_code(), 14);
}

#[test]
fn refusal_is_not_undone_by_going_offline() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    let Decision::Valid(r) = classify(&reply(200, VALID)) else {
        panic!()
    };
    decide(Decision::Valid(r), &c, UnixTime(NOW)).unwrap();
    let o = decide(
        Decision::Inactive("Tenant inactif".into()),
        &c,
        UnixTime(NOW + 10.0),
    )
    .unwrap();
    assert_eq!(o.state, LicenseState::Inactive);
    assert_eq!(o.into_error().unwrap().exit_code(), 12);
    let o = decide(
        Decision::NoDecision(Error::unreachable("down")),
        &c,
        UnixTime(NOW + 20.0),
    )
    .unwrap();
    assert_eq!(o.state, LicenseState::Inactive);
}

#[test]
fn warnings_near_expiry_and_usage() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    let body = r#"{"valid": true, "tenantId": "t", "tenantName": "T",
        "expiresAt": "2027-01-11T00:00:00Z", "usageCount": 950, "maxUsageCount": 1000}"#;
    let Decision::Valid(r) = classify(&reply(200, body)) else {
        panic!()
    };
    let o = decide(Decision::Valid(r), &c, UnixTime(NOW)).unwrap();
    assert_eq!(o.days_left, Some(10));
    assert!(
        o.warnings.iter().any(|w| w.contains("expires in 10 day")),
        "{:?}",
        o.warnings
    );
    assert!(
        o.warnings.iter().any(|w| w.contains("950 of 1000")),
        "{:?}",
        o.warnings
    );
}

#[test]
fn unset_clock_never_expires_nor_counts_days() {
    let dir = tempfile::tempdir().unwrap();
    let c = cfg(dir.path());
    let Decision::Valid(r) = classify(&reply(200, VALID)) else {
        panic!()
    };
    decide(Decision::Valid(r), &c, UnixTime(NOW)).unwrap();
    // Reboot without RTC: 1970.
    let o = decide(
        Decision::NoDecision(Error::unreachable("tls: not yet valid")),
        &c,
        UnixTime(60.0),
    )
    .unwrap();
    assert_eq!(o.state, LicenseState::Grace);
    assert!(o.message.unwrap().contains("clock not set"));
    assert_eq!(o.days_left, None);
}
