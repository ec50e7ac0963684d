//! `cybersensei-sim`: the development backend simulator as a process, for the demo
//! script and the qemu boot test. Prints `URL <base>` on stdout, serves until
//! SIGTERM/SIGINT (then exits 0). Requests are logged on stderr.

use cybersensei_sim::{LicenseOutcome, Sim, SimOptions, TlsVariant};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const USAGE: &str = "\
usage: cybersensei-sim [options]
  --profile P                guide | central (default: $CYBERSENSEI_SIM_PROFILE, else
                             guide); central = the real backend (docs/protocol.md)
  --rate-limit N/SECONDS     central throttler (default 60/60, the real one)
  --tls                      serve HTTPS with a throwaway CA (see --ca-out)
  --tls-variant V            good | wrong-host | expired | untrusted-ca
  --san NAME                 extra SAN for the server certificate (repeatable)
  --host H                   listen address (default 127.0.0.1)
  --port P                   listen port (default 0 = ephemeral)
  --ca-out PATH              write the CA certificate (PEM) there
  --packages DIR             serve /update/download/{id} from DIR/{id}[.zip]; without
                             --update, announce the highest DIR/<version>.zip
  --telemetry-log FILE       append each accepted telemetry body as a JSON line
  --license KEY[=OUTCOME]    OUTCOME: valid (default) | expired | inactive | invalid |
                             revoked | validfalse | expired-array | expired-upper
                             (split at the last '='; keys may contain '=')
  --license-key KEY          KEY (taken whole) is valid
  --tenant-id ID             tenant of valid licenses (default 550e8400-e29b-41d4-a716-446655440000)
  --tenant-name NAME         (default Acme Corporation)
  --expires-at ISO           (default 2099-12-31T23:59:59.000Z)
  --usage-count N / --max-usage-count N   (default 42 / 1000; central counts every
                             validation and refuses at the max; 0 = no max)
  --tenant ID                another tenant accepted by /update/check (repeatable)
  --update VERSION=ZIPPATH   announce VERSION with that package (central: the ZIP needs
                             a valid version.json, as the real upload does)
  --changelog TEXT           changelog of --update
  --no-range                 ignore Range requests
  --no-checksum              no checksum in /update/check
  --checksum-style S         prefixed | sha256 | both
  --no-checksum-header       no X-Checksum-SHA256 on downloads
  --quiet                    do not log requests on stderr
  --fail PATH=N              answer the first N requests to PATH (prefix) with 503
usage: cybersensei-sim check-box [--sums-required] STATE_DIR INSTALL_ROOT
  checks a box after a power cut (board/power-cut.sh): prints `BOX ok ...` and exits
  0, or `BOX FAIL ... :: problems` and exits 1; --sums-required: every recorded slot
  must carry SHA256SUMS or manifest.json
";

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signals() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: installing an async-signal-safe handler (an atomic store).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cybersensei-sim: {e}");
            ExitCode::from(2)
        }
    }
}

fn outcome_of(word: &str) -> Option<&'static str> {
    [
        "valid",
        "expired",
        "inactive",
        "invalid",
        "revoked",
        "validfalse",
        "expired-array",
        "expired-upper",
    ]
    .into_iter()
    .find(|w| w.eq_ignore_ascii_case(word))
}

fn run() -> Result<(), String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("check-box") {
        let sums = argv.get(1).map(String::as_str) == Some("--sums-required");
        let [state, root] = &argv[1 + usize::from(sums)..] else {
            return Err(format!("check-box wants STATE_DIR INSTALL_ROOT\n{USAGE}"));
        };
        let r = cybersensei_sim::boxcheck::check_box(state.as_ref(), root.as_ref(), sums);
        println!("{}", r.line());
        if r.problems.is_empty() {
            return Ok(());
        }
        std::process::exit(1);
    }
    // SimOptions::default() reads the profile variable and panics on a bad one.
    if let Ok(v) = std::env::var(cybersensei_sim::PROFILE_ENV) {
        if !v.trim().is_empty() && cybersensei_sim::Profile::parse(&v).is_none() {
            return Err(format!(
                "{}={v:?}: expected guide or central",
                cybersensei_sim::PROFILE_ENV
            ));
        }
    }
    let mut args = argv.into_iter();
    let mut opts = SimOptions {
        log_requests: true,
        ..Default::default()
    };
    let mut host = "127.0.0.1".to_string();
    let mut port = "0".to_string();
    let mut ca_out: Option<PathBuf> = None;
    let mut licenses: Vec<(String, &'static str)> = Vec::new();
    let mut tenant_id = cybersensei_sim::DEFAULT_TENANT_ID.to_string();
    let mut tenant_name = cybersensei_sim::DEFAULT_TENANT_NAME.to_string();
    let mut expires_at = cybersensei_sim::DEFAULT_EXPIRES_AT.to_string();
    let (mut usage, mut max_usage) = (42u64, 1000u64);
    let mut tenants = Vec::new();
    let mut update: Option<(String, PathBuf)> = None;
    let mut changelog = "- Correctifs de sécurité\n- Améliorations".to_string();
    let mut checksum_style = cybersensei_sim::ChecksumStyle::Prefixed;
    let mut fails: Vec<(String, usize)> = Vec::new();
    let mut rate_limit: Option<(u32, u64)> = None;
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            "--tls" => opts.tls = true,
            "--profile" => {
                let v = val(&a)?;
                opts.profile = cybersensei_sim::Profile::parse(&v)
                    .ok_or(format!("unknown --profile {v} (guide | central)"))?;
            }
            "--rate-limit" => {
                let v = val(&a)?;
                let parsed = v
                    .split_once('/')
                    .and_then(|(n, s)| Some((n.parse().ok()?, s.parse().ok()?)));
                rate_limit = Some(parsed.ok_or("--rate-limit wants N/SECONDS")?);
            }
            "--tls-variant" => {
                opts.tls_variant = match val(&a)?.as_str() {
                    "good" => TlsVariant::Good,
                    "wrong-host" => TlsVariant::WrongHost,
                    "expired" => TlsVariant::Expired,
                    "untrusted-ca" => TlsVariant::UntrustedCa,
                    v => return Err(format!("unknown --tls-variant {v}")),
                }
            }
            "--san" => opts.extra_sans.push(val(&a)?),
            "--host" => host = val(&a)?,
            "--port" => port = val(&a)?,
            "--ca-out" => ca_out = Some(PathBuf::from(val(&a)?)),
            "--packages" => opts.packages_dir = Some(PathBuf::from(val(&a)?)),
            "--telemetry-log" => opts.telemetry_log = Some(PathBuf::from(val(&a)?)),
            "--license" => {
                let v = val(&a)?;
                match v
                    .rsplit_once('=')
                    .and_then(|(k, o)| Some((k, outcome_of(o)?)))
                {
                    Some((k, o)) => licenses.push((k.to_string(), o)),
                    None => licenses.push((v, "valid")),
                }
            }
            "--license-key" => licenses.push((val(&a)?, "valid")),
            "--tenant-id" => tenant_id = val(&a)?,
            "--tenant-name" => tenant_name = val(&a)?,
            "--expires-at" => expires_at = val(&a)?,
            "--usage-count" => usage = val(&a)?.parse().map_err(|e| format!("{a}: {e}"))?,
            "--max-usage-count" => max_usage = val(&a)?.parse().map_err(|e| format!("{a}: {e}"))?,
            "--tenant" => tenants.push(val(&a)?),
            "--update" => {
                let v = val(&a)?;
                let (ver, path) = v.split_once('=').ok_or("--update wants VERSION=ZIPPATH")?;
                update = Some((ver.to_string(), PathBuf::from(path)));
            }
            "--changelog" => changelog = val(&a)?,
            "--no-range" => opts.range_support = false,
            "--no-checksum" => opts.checksum_in_check = false,
            "--checksum-style" => {
                checksum_style = match val(&a)?.as_str() {
                    "prefixed" => cybersensei_sim::ChecksumStyle::Prefixed,
                    "sha256" => cybersensei_sim::ChecksumStyle::Sha256Field,
                    "both" => cybersensei_sim::ChecksumStyle::Both,
                    v => return Err(format!("unknown --checksum-style {v}")),
                }
            }
            "--no-checksum-header" => opts.checksum_header = false,
            "--quiet" => opts.log_requests = false,
            "--fail" => {
                let v = val(&a)?;
                let (path, n) = v.rsplit_once('=').ok_or("--fail wants PATH=N")?;
                let n = n.parse().map_err(|e| format!("{a}: {e}"))?;
                fails.push((path.to_string(), n));
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    opts.bind = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let sim = Sim::start(opts).map_err(|e| format!("start: {e}"))?;
    if let Some(p) = &ca_out {
        sim.write_ca(p)
            .map_err(|e| format!("--ca-out {}: {e}", p.display()))?;
    }
    sim.set_checksum_style(checksum_style);
    if let Some((n, secs)) = rate_limit {
        sim.set_rate_limit(n, Duration::from_secs(secs));
    }
    eprintln!("cybersensei-sim: profile {}", sim.profile().name());
    sim.add_tenant(&tenant_id);
    for t in &tenants {
        sim.add_tenant(t);
    }
    for (key, o) in licenses {
        let outcome = match o {
            "valid" => LicenseOutcome::Valid {
                tenant_id: tenant_id.clone(),
                tenant_name: tenant_name.clone(),
                expires_at: expires_at.clone(),
                usage_count: usage,
                max_usage_count: max_usage,
            },
            "expired" => LicenseOutcome::Expired,
            "inactive" => LicenseOutcome::Inactive,
            "invalid" => LicenseOutcome::Invalid,
            "revoked" => LicenseOutcome::Revoked,
            "validfalse" => LicenseOutcome::ValidFalse,
            "expired-array" => LicenseOutcome::ExpiredMessageArray,
            _ => LicenseOutcome::ExpiredUpperUnaccented,
        };
        sim.set_license(&key, outcome);
    }
    if let Some((ver, path)) = update {
        let zip = std::fs::read(&path).map_err(|e| format!("--update {}: {e}", path.display()))?;
        let id = sim
            .try_publish_update(&ver, zip, &changelog)
            .map_err(|e| format!("--update {}: refused: {e}", path.display()))?;
        eprintln!("cybersensei-sim: update {ver} published as {id}");
    }
    for (path, n) in fails {
        for _ in 0..n {
            sim.push_fault(&path, cybersensei_sim::Fault::Status(503, "{}".into()));
        }
    }
    install_signals();
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "URL {}", sim.url());
        let _ = out.flush();
    }
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(sim);
    Ok(())
}
