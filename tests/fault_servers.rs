//! Hostile and broken servers against the real binary over TLS: each answer is a
//! clear "unreachable" (never a license decision) within timeout × attempts, the
//! cached validation and status.json stay intact, the key never goes to another
//! host, and the agent's memory stays bounded. Prints a table (`--nocapture`).

mod harness;

use cybersensei_sim::{Fault, LicenseOutcome, Sim, SimOptions, TlsVariant};
use harness::{code, text, Node, KEY};
use serde_json::json;
use std::io::Read;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const VALIDATE: &str = "/api/license/validate";
/// backend.timeout × retry_attempts in these tests.
const TIMEOUT: u64 = 2;
const ATTEMPTS: u64 = 2;

/// A TCP listener that records every byte sent to it: where a redirect would lead.
struct Recorder {
    port: u16,
    got: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    fn start() -> Recorder {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = Vec::new();
                let _ = (&c).take(1 << 20).read_to_end(&mut buf);
                g.lock().unwrap().extend(buf);
            }
        });
        Recorder { port, got }
    }
}

/// A node with a cached good validation and short timeouts.
fn validated_node(sim: &Sim) -> Node {
    sim.valid_license(KEY);
    let mut node = Node::new(sim);
    node.set("backend", "timeout", TIMEOUT.into());
    node.set("backend", "retry_attempts", ATTEMPTS.into());
    let o = node.run(&["validate"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    node
}

/// The agent's data (heap and private mappings) is capped here: an answer read
/// without a bound would make it abort instead of exiting 0. (A child's ru_maxrss is
/// no use: Linux carries the parent's peak over the fork/exec into it.)
const DATA_LIMIT: u64 = 32 << 20;

/// `validate` under RLIMIT_DATA.
fn validate_bounded(node: &Node) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut c = node.command(&["validate"]);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        c.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: DATA_LIMIT as libc::rlim_t,
                rlim_max: DATA_LIMIT as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_DATA, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c.output().unwrap()
}

struct Row {
    case: &'static str,
    secs: f64,
    said: String,
}

/// Runs `validate` on a validated node against a sticky fault; checks the common
/// invariants; returns the row for the table.
fn against(case: &'static str, sim: &Sim, node: &Node, expect: &str) -> Row {
    let cache = std::fs::read(node.state_dir.join("license.json")).unwrap();
    let t = Instant::now();
    let o = validate_bounded(node);
    let secs = t.elapsed().as_secs_f64();
    let out = text(&o);
    // The cache keeps the box in grace: a hostile answer is not a license decision.
    assert_eq!(code(&o), 0, "{case}: {out}");
    let st = node.status();
    assert_eq!(st["license"]["state"], "grace", "{case}: {st}");
    let msg = st["license"]["message"].as_str().unwrap_or("").to_string();
    assert!(
        msg.to_lowercase().contains(&expect.to_lowercase()),
        "{case}: message {msg:?} lacks {expect:?}"
    );
    assert_eq!(
        std::fs::read(node.state_dir.join("license.json")).unwrap(),
        cache,
        "{case}: the cached validation changed"
    );
    let bound = (TIMEOUT * ATTEMPTS) as f64 + 3.0;
    assert!(secs < bound, "{case}: {secs:.1} s, more than {bound} s");
    assert!(!out.contains(KEY), "{case}: key in output");
    sim.set_sticky_fault(VALIDATE, None);
    sim.clear_faults();
    Row {
        case,
        secs,
        said: msg,
    }
}

#[test]
fn hostile_answers_are_unreachable_in_bounded_time_and_memory() {
    let sim = harness::sim();
    let node = validated_node(&sim);
    let rec = Recorder::start();
    let mut rows = vec![];
    let custom = |body: String| LicenseOutcome::Custom { status: 200, body };
    let valid_body =
        json!({"valid": true, "tenantId": "t-1", "expiresAt": "2099-01-01T00:00:00Z"}).to_string();

    let faults: Vec<(&'static str, Fault, &str)> = vec![
        (
            "slow drip (1 byte / 300 ms)",
            Fault::SlowBody {
                chunk: 1,
                delay_ms: 300,
            },
            "timed out",
        ),
        (
            "endless body, no Content-Length",
            Fault::Oversized {
                bytes: 1 << 40,
                content_length: false,
            },
            "larger than",
        ),
        (
            "huge declared body",
            Fault::Oversized {
                bytes: 1 << 40,
                content_length: true,
            },
            "refused",
        ),
        (
            "huge headers (64 KiB)",
            Fault::Raw(
                format!(
                    "HTTP/1.1 200 OK\r\nX-Junk: {}\r\nContent-Length: 2\r\n\r\n{{}}",
                    "a".repeat(64 * 1024)
                )
                .into_bytes(),
            ),
            "unreachable",
        ),
        (
            "garbage instead of HTTP",
            Fault::Raw(b"\x00\x01\x02 hello there\r\n\r\n".to_vec()),
            "unreachable",
        ),
        (
            "redirect to plain http elsewhere",
            Fault::Redirect {
                code: 302,
                location: format!(
                    "http://127.0.0.1:{}/api/license/validate?key={KEY}",
                    rec.port
                ),
            },
            "redirect",
        ),
        (
            "redirect loop",
            Fault::Redirect {
                code: 301,
                location: format!("{}{VALIDATE}", sim.url()),
            },
            "redirect",
        ),
        (
            "HTML captive portal",
            Fault::Html,
            "not the license protocol",
        ),
        ("reset", Fault::Reset, "unreachable"),
    ];
    for (case, fault, expect) in faults {
        sim.set_sticky_fault(VALIDATE, Some(fault));
        rows.push(against(case, &sim, &node, expect));
    }

    let bodies: Vec<(&'static str, String, &str)> = vec![
        ("invalid JSON", "{\"valid\": tru".into(), "not the license protocol"),
        (
            "JSON with wrong types",
            json!({"valid": "yes", "tenantId": 42}).to_string(),
            "not the license protocol",
        ),
        (
            "huge numbers",
            "{\"valid\": true, \"tenantId\": \"t\", \"usageCount\": 1e999999, \"maxUsageCount\": 123456789012345678901234567890}".into(),
            "not the license protocol",
        ),
        ("deep nesting (100k [)", "[".repeat(100_000), "not the license protocol"),
        (
            "valid JSON, missing tenantId",
            json!({"valid": true}).to_string(),
            "no tenantId",
        ),
    ];
    for (case, body, expect) in bodies {
        sim.set_license(KEY, custom(body));
        rows.push(against(case, &sim, &node, expect));
        sim.set_license(KEY, custom(valid_body.clone()));
    }

    assert!(
        rec.got.lock().unwrap().is_empty(),
        "a redirect target received: {:?}",
        String::from_utf8_lossy(&rec.got.lock().unwrap())
    );
    println!("{:<36} {:>6}  status message", "case", "secs");
    for r in &rows {
        println!("{:<36} {:>6.2}  {}", r.case, r.secs, r.said);
    }
    println!("every run under RLIMIT_DATA = {} MiB", DATA_LIMIT >> 20);
}

#[test]
fn bad_certificates_are_refused_and_the_key_never_sent() {
    let mut rows = vec![];
    for (case, variant, expect) in [
        (
            "TLS: wrong hostname",
            TlsVariant::WrongHost,
            "not valid for name",
        ),
        (
            "TLS: expired certificate",
            TlsVariant::Expired,
            "certificate expired",
        ),
        (
            "TLS: untrusted CA",
            TlsVariant::UntrustedCa,
            "UnknownIssuer",
        ),
    ] {
        let sim = Sim::start(SimOptions {
            tls: true,
            tls_variant: variant,
            ..Default::default()
        })
        .unwrap();
        sim.valid_license(KEY);
        let mut node = Node::new(&sim);
        node.set("backend", "timeout", TIMEOUT.into());
        node.set("backend", "retry_attempts", ATTEMPTS.into());
        let t = Instant::now();
        let o = node.run(&["validate"]);
        let out = text(&o);
        assert_eq!(code(&o), 14, "{case}: {out}");
        assert!(
            out.to_lowercase().contains(&expect.to_lowercase()),
            "{case}: {out}"
        );
        assert!(
            sim.requests().is_empty(),
            "{case}: a request (with the key) got through: {:?}",
            sim.requests()
        );
        assert!(!out.contains(KEY));
        rows.push((case, t.elapsed().as_secs_f64()));
    }
    for (case, secs) in rows {
        println!("{case:<28} {secs:.2} s  exit 14, no request");
    }
}
