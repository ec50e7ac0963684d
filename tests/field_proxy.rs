//! Corporate proxies: `backend.proxy` and the proxy environment variables, through a
//! real CONNECT proxy on loopback, with the real binary and the simulator over TLS.

use crate::harness::proxy::Proxy;
use crate::harness::{self, code, text, Node, KEY};
use serde_json::json;
use std::net::TcpListener;

const CREDS: &str = "corp-user:Pr0xyS3cret";

fn log_of(node: &Node) -> String {
    std::fs::read_to_string(&node.log_file).unwrap_or_default()
}

/// The key must never reach the proxy: only a CONNECT line with host:port.
fn assert_proxy_never_saw_key(proxy: &Proxy) {
    for s in proxy.seen() {
        assert!(s.request_line.starts_with("CONNECT "), "{s:?}");
        assert!(!s.request_line.contains(KEY), "{s:?}");
        assert!(!s.request_line.contains("validate"), "{s:?}");
    }
}

#[test]
fn validate_through_configured_proxy_tunnels_tls() {
    let sim = harness::sim();
    sim.valid_license(KEY);
    let proxy = Proxy::start(None);
    let mut node = Node::new(&sim);
    node.set("backend", "proxy", json!(proxy.url(None)));
    let o = node.run(&["validate"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let seen = proxy.seen();
    let port = sim.url().rsplit(':').next().unwrap().to_string();
    assert!(
        seen.iter()
            .any(|s| s.request_line.starts_with("CONNECT ") && s.request_line.contains(&port)),
        "the proxy saw no CONNECT to the backend: {seen:?}"
    );
    assert_proxy_never_saw_key(&proxy);
    // The backend got the request (through the tunnel), key intact.
    assert_eq!(sim.count("/api/license/validate"), 1);
}

#[test]
fn proxy_credentials_are_sent_but_never_logged() {
    let sim = harness::sim();
    sim.valid_license(KEY);
    let proxy = Proxy::start(Some(CREDS));
    let mut node = Node::new(&sim);
    node.set("backend", "proxy", json!(proxy.url(Some(CREDS))));
    node.set("log", "level", json!("debug"));
    let o = node.run(&["validate"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(
        proxy.seen().iter().any(|s| s
            .proxy_authorization
            .as_deref()
            .is_some_and(|a| a.starts_with("Basic "))),
        "no Proxy-Authorization reached the proxy"
    );
    assert_proxy_never_saw_key(&proxy);
    // `config check` shows the config: the proxy password must not be in it either.
    let shown = node.run(&["config", "check"]);
    assert_eq!(code(&shown), 0, "{}", text(&shown));
    let everything = format!("{}{}{}", text(&o), text(&shown), log_of(&node));
    assert!(!everything.contains("Pr0xyS3cret"), "{everything}");
    for f in harness::all_files(&node.state_dir) {
        let data = std::fs::read(&f).unwrap();
        assert!(
            !String::from_utf8_lossy(&data).contains("Pr0xyS3cret"),
            "proxy password in {}",
            f.display()
        );
    }
}

#[test]
fn proxy_refusing_with_407_is_a_clear_unreachable_error() {
    let sim = harness::sim();
    sim.valid_license(KEY);
    let proxy = Proxy::start(Some(CREDS));
    let mut node = Node::new(&sim);
    // No credentials configured: the proxy answers 407.
    node.set("backend", "proxy", json!(proxy.url(None)));
    let o = node.run(&["validate"]);
    let out = text(&o);
    assert_eq!(code(&o), 14, "{out}");
    let named = format!("127.0.0.1:{}", proxy.port);
    assert!(out.contains(&named), "error does not name the proxy: {out}");
    assert!(out.contains("407"), "error does not say 407: {out}");
    // The usual retry rules: one CONNECT per attempt, no request reached the backend.
    assert_eq!(proxy.seen().len(), 3, "{:?}", proxy.seen());
    assert_eq!(sim.count("/api/license/validate"), 0);
    assert_eq!(node.status()["license"]["state"], "unknown");
}

#[test]
fn proxy_down_is_a_clear_unreachable_error() {
    let sim = harness::sim();
    sim.valid_license(KEY);
    // A port nobody listens on.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut node = Node::new(&sim);
    node.set(
        "backend",
        "proxy",
        json!(format!("http://127.0.0.1:{port}")),
    );
    let o = node.run(&["validate"]);
    let out = text(&o);
    assert_eq!(code(&o), 14, "{out}");
    assert!(
        out.contains(&format!("via proxy 127.0.0.1:{port}")),
        "error does not name the proxy: {out}"
    );
    assert_eq!(sim.count("/api/license/validate"), 0);
}

#[test]
fn https_proxy_variable_applies_when_config_has_none() {
    let sim = harness::sim();
    sim.valid_license(KEY);
    let proxy = Proxy::start(None);
    let node = Node::new(&sim);
    let o = node
        .command(&["validate"])
        .env("HTTPS_PROXY", proxy.url(None))
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(!proxy.seen().is_empty(), "HTTPS_PROXY was not used");
    assert_proxy_never_saw_key(&proxy);

    // The lower-case spelling, with NO_PROXY naming the backend host: direct.
    let host = sim
        .url()
        .trim_start_matches("https://")
        .rsplit_once(':')
        .unwrap()
        .0
        .to_string();
    let before = proxy.seen().len();
    let o = node
        .command(&["validate"])
        .env("https_proxy", proxy.url(None))
        .env("NO_PROXY", format!("example.com,{host}"))
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(
        proxy.seen().len(),
        before,
        "NO_PROXY host went through the proxy"
    );
    assert_eq!(sim.count("/api/license/validate"), 2);
}

#[test]
fn configured_proxy_wins_over_environment() {
    let sim = harness::sim();
    sim.valid_license(KEY);
    let configured = Proxy::start(None);
    let from_env = Proxy::start(None);
    let mut node = Node::new(&sim);
    node.set("backend", "proxy", json!(configured.url(None)));
    let o = node
        .command(&["validate"])
        .env("HTTPS_PROXY", from_env.url(None))
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(!configured.seen().is_empty());
    assert!(from_env.seen().is_empty(), "{:?}", from_env.seen());
}
