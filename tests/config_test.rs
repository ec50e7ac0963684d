//! Config loading: the guide's file verbatim, defaults, and errors that name the field.

use cybersensei_agent::config::Config;

const GUIDE: &str = r#"{
  "backend":   {"url": "https://central.cybersensei.com", "timeout": 30,
                "retry_attempts": 3, "retry_delay": 5},
  "telemetry": {"interval": 300, "enabled": true},
  "updates":   {"check_interval": 3600, "auto_download": false, "auto_install": false}
}"#;

fn err(text: &str) -> String {
    match Config::parse(text) {
        Ok(_) => panic!("accepted: {text}"),
        Err(e) => {
            assert_eq!(e.exit_code(), 2, "config errors exit 2");
            e.to_string()
        }
    }
}

#[test]
fn guide_file_is_valid_verbatim_with_defaults() {
    let c = Config::parse(GUIDE).unwrap();
    assert_eq!(c.backend.url, "https://central.cybersensei.com");
    assert_eq!(c.backend.timeout.as_secs(), 30);
    assert_eq!(c.telemetry.interval.as_secs(), 300);
    assert_eq!(c.updates.check_interval.as_secs(), 3600);
    assert!(!c.updates.auto_install);
    // The documented defaults (docs/reference.md, "Configuration") for everything the guide does not say.
    assert_eq!(
        c.license.key_file.to_str(),
        Some("/etc/cybersensei/license.key")
    );
    assert_eq!(c.license.revalidate_interval.as_secs(), 86400);
    assert_eq!(c.license.grace_period.as_secs(), 259200);
    assert_eq!(c.license.expiry_warning_days, 30);
    assert_eq!(c.telemetry.queue_max, 288);
    assert_eq!(c.updates.max_package_size, 1073741824);
    assert_eq!(c.updates.max_unpacked_size, 4294967296);
    assert_eq!(c.install.root.to_str(), Some("/opt/cybersensei"));
    assert_eq!(c.services.health_timeout.as_secs(), 120);
    assert_eq!(c.state_dir.to_str(), Some("/var/lib/cybersensei-agent"));
    assert_eq!(c.log.level, "info");
    assert!(c.backend.proxy.is_none() && c.backend.ca_file.is_none());
    assert_eq!(Config::parse("{}").unwrap(), c);
}

#[test]
fn wrong_type_names_field_and_value() {
    let e = err(r#"{"backend": {"timeout": "abc"}}"#);
    assert!(
        e.contains(r#"backend.timeout: expected a number of seconds, got "abc""#),
        "{e}"
    );
    let e = err(r#"{"telemetry": {"enabled": "yes"}}"#);
    assert!(e.contains("telemetry.enabled"), "{e}");
    let e = err(r#"{"services": {"stop": "systemctl stop x"}}"#);
    assert!(e.contains("services.stop"), "{e}");
}

#[test]
fn unknown_keys_are_named() {
    let e = err(r#"{"backend": {"timeuot": 3}}"#);
    assert!(e.contains("backend.timeuot: unknown key"), "{e}");
    let e = err(r#"{"telemetri": {}}"#);
    assert!(e.contains("telemetri: unknown key"), "{e}");
}

#[test]
fn out_of_range_is_refused() {
    let e = err(r#"{"backend": {"timeout": 0}}"#);
    assert!(e.contains("backend.timeout: 0 is out of range"), "{e}");
    let e = err(r#"{"telemetry": {"interval": -5}}"#);
    assert!(e.contains("telemetry.interval"), "{e}");
    let e = err(r#"{"log": {"level": "loud"}}"#);
    assert!(e.contains("log.level"), "{e}");
}

#[test]
fn http_needs_allow_http() {
    let e = err(r#"{"backend": {"url": "http://127.0.0.1:8080"}}"#);
    assert!(e.contains("backend.url") && e.contains("allow_http"), "{e}");
    let c = Config::parse(r#"{"backend": {"url": "http://127.0.0.1:8080/", "allow_http": true}}"#)
        .unwrap();
    assert_eq!(c.backend.url, "http://127.0.0.1:8080");
    let e = err(r#"{"backend": {"url": "ftp://x"}}"#);
    assert!(e.contains("backend.url"), "{e}");
}

#[test]
fn services_accept_one_or_many_argvs() {
    let c = Config::parse(r#"{"services": {"stop": ["systemctl", "stop", "cs"]}}"#).unwrap();
    assert_eq!(c.services.stop, vec![vec!["systemctl", "stop", "cs"]]);
    let c = Config::parse(r#"{"services": {"start": [["a", "1"], ["b"]]}}"#).unwrap();
    assert_eq!(c.services.start.len(), 2);
}

#[test]
fn broken_json_says_where() {
    let e = err("{\n  \"backend\": {,}\n}");
    assert!(e.contains("line 2"), "{e}");
}
