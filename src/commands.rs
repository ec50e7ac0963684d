//! The one-shot commands (README, "What the agent does"; docs/reference.md), over the modules. Each returns the exit code.

use crate::cli::{Command, Invocation, USAGE};
use crate::clock::{Clock, SystemClock};
use crate::config::{self, Config};
use crate::context::Ctx;
use crate::error::{exit, Error, Result};
use crate::fsutil::StateLock;
use crate::status::Status;
use crate::{license, logging, redact, telemetry, update};
use std::io::Read;
use std::time::Duration;

/// How long a command waits for another holder of `agent.lock` (default 30 s,
/// `$CYBERSENSEI_LOCK_WAIT` seconds to change it).
pub(crate) fn lock_wait() -> Duration {
    let secs = std::env::var("CYBERSENSEI_LOCK_WAIT")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(30);
    Duration::from_secs(secs.min(3600))
}

/// Runs a parsed invocation; returns the process exit code.
pub fn run(inv: Invocation) -> u8 {
    match inv.command {
        Command::Help(topic) => {
            match topic.as_deref().and_then(crate::help::text) {
                Some(t) => print!("{t}"),
                None => print!("{USAGE}"),
            }
            return exit::OK;
        }
        Command::Version => {
            println!("{}", crate::build_info::version_line());
            return exit::OK;
        }
        _ => {}
    }
    let path = config::resolve_path(inv.config.as_deref());
    // No config file: commands that only read (status, doctor, config check, telemetry
    // --print) go on with the defaults and say so; the others stop with what to do.
    let missing = match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(missing_config(&inv, &path)),
        _ => None,
    };
    // Errors before the config is known go to stderr through eprintln; the logger
    // is installed once, with the config's file, so one-shot commands log there too.
    let cfg = match load_config(&inv, &path, missing.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let level = log_level(&inv.command, &cfg);
    logging::init(&level, cfg.log.file.as_deref());
    if inv.command == Command::Run {
        return crate::daemon::main(cfg, path);
    }
    let clock = SystemClock::new();
    if let Some(m) = &missing {
        match inv.command {
            Command::Doctor => return crate::doctor::run(Some(m), cfg, &clock),
            Command::Status { json: false } => {}
            Command::ConfigCheck => {}
            _ => eprintln!("note: {m}; using the built-in defaults"),
        }
    }
    if inv.command == Command::Doctor {
        return crate::doctor::run(None, cfg, &clock);
    }
    let result = match (&inv.command, &missing) {
        (Command::Status { json }, _) => status(&cfg, *json, missing.as_deref()),
        (Command::ConfigCheck, m) => config_check(&cfg, m.as_deref()),
        _ => dispatch(&inv.command, cfg, &clock),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// The config the command runs with (the defaults for a command that only reads,
/// when there is no file), or the exit code when there is none to run with (a
/// broken config sends `doctor` straight to its checks).
fn load_config(
    inv: &Invocation,
    path: &std::path::Path,
    missing: Option<&str>,
) -> std::result::Result<Config, u8> {
    match (missing, &inv.command) {
        (
            Some(_),
            Command::Status { .. }
            | Command::Doctor
            | Command::ConfigCheck
            | Command::Telemetry { print: true },
        ) => Ok(Config::default()),
        (Some(m), _) => {
            eprintln!("error: {m}");
            eprintln!("{MISSING_CONFIG_HINT}");
            Err(exit::USAGE)
        }
        (None, _) => match Config::load(path) {
            Ok(c) => Ok(c),
            // doctor names a broken config as its first failure and checks the rest
            // with the defaults.
            Err(e) if inv.command == Command::Doctor => Err(crate::doctor::run(
                Some(&e.to_string()),
                Config::default(),
                &SystemClock::new(),
            )),
            Err(e) => {
                eprintln!("error: {e}");
                Err(e.exit_code())
            }
        },
    }
}

/// The daemon logs at the configured level; one-shot commands talk to a person on
/// stdout and keep stderr for problems unless the config asks for more.
fn log_level(cmd: &Command, cfg: &Config) -> String {
    if *cmd == Command::Run {
        return cfg.log.level.clone();
    }
    match cfg.log.level.as_str() {
        "debug" | "trace" => cfg.log.level.clone(),
        _ => "warn".into(),
    }
}

/// What to do when there is no config file (second line of the error).
const MISSING_CONFIG_HINT: &str = "hint: name the file with -c PATH (or $CYBERSENSEI_AGENT_CONFIG); \
board/install.sh installs the default one on a box; `cybersensei-agent config check` prints the defaults";

/// "no config file at P (where P came from)".
fn missing_config(inv: &Invocation, path: &std::path::Path) -> String {
    let source = if inv.config.is_some() {
        "given with -c"
    } else if std::env::var_os("CYBERSENSEI_AGENT_CONFIG").is_some_and(|v| !v.is_empty()) {
        "from $CYBERSENSEI_AGENT_CONFIG"
    } else {
        "the default path"
    };
    format!("no config file at {} ({source})", path.display())
}

fn dispatch(cmd: &Command, cfg: Config, clock: &dyn Clock) -> Result<u8> {
    match cmd {
        Command::ConfigCheck => config_check(&cfg, None),
        Command::Telemetry { print: true } => {
            let ctx = Ctx::new(cfg, clock, true)?;
            let mut col = telemetry::Collector::new();
            let p = telemetry::payload(&ctx, &mut col)?;
            let text = serde_json::to_string_pretty(&p)
                .map_err(|e| Error::Other(format!("serializing telemetry: {e}")))?;
            println!("{text}");
            Ok(exit::OK)
        }
        Command::SetKey => set_key(cfg, clock),
        _ => {
            let _lock = StateLock::acquire(&cfg.state_dir, lock_wait())?;
            let ctx = Ctx::new(cfg, clock, true)?;
            update::recover(&ctx)?;
            crate::leftovers::sweep(&ctx.cfg);
            locked(cmd, &ctx)
        }
    }
}

fn locked(cmd: &Command, ctx: &Ctx) -> Result<u8> {
    match cmd {
        Command::Validate => {
            let out = license::validate(ctx)?;
            print_license(&out);
            // The reason is on stdout already: exit with its code, not a third copy.
            Ok(out.to_error().map_or(exit::OK, |e| e.exit_code()))
        }
        Command::CheckUpdate => check_update(ctx),
        Command::Update => {
            let r = update::update_now(ctx)?;
            if r.installed {
                println!("Installed version {} in slot {}", r.version, r.slot);
            } else {
                println!("Up to date (version {})", r.version);
            }
            Ok(exit::OK)
        }
        Command::Install {
            zip,
            allow_downgrade,
        } => {
            let r = update::install_file(ctx, zip, *allow_downgrade)?;
            println!("Installed version {} in slot {}", r.version, r.slot);
            Ok(exit::OK)
        }
        Command::Rollback => {
            let r = update::rollback(ctx)?;
            println!("Rolled back to slot {} (version {})", r.slot, r.version);
            Ok(exit::OK)
        }
        Command::Telemetry { .. } => telemetry_once(ctx),
        _ => Err(Error::Other("unexpected command".into())),
    }
}

/// `check-update`: what the backend offers, for a person.
fn check_update(ctx: &Ctx) -> Result<u8> {
    let r = update::check(ctx)?;
    if r.available {
        println!(
            "Update available: {} -> {}",
            r.current_version,
            r.latest_version.as_deref().unwrap_or("?")
        );
        if let Some(n) = r.file_size {
            println!("Size: {n} bytes");
        }
        if let Some(c) = &r.changelog {
            println!("Changelog:\n{c}");
        }
    } else if r.details.node_too_old {
        println!(
            "Update not possible yet: {}",
            r.details
                .too_old_text(&r.current_version, r.latest_version.as_deref())
        );
    } else {
        println!("Up to date (version {})", r.current_version);
    }
    let d = &r.details;
    if let Some(v) = d.required_node_version.as_deref().filter(|_| r.available) {
        println!("Requires node version: {v} or later");
    }
    if d.security_update {
        println!("Security update: yes");
    }
    if d.breaking {
        println!("Breaking: yes (read the changelog before installing)");
    }
    if let Some(m) = &d.message {
        println!("Backend says: {m}");
    }
    Ok(exit::OK)
}

/// `telemetry --once`: exit 0 only when the fresh sample went out.
fn telemetry_once(ctx: &Ctx) -> Result<u8> {
    let mut col = telemetry::Collector::new();
    let r = telemetry::send_once(ctx, &mut col)?;
    if r.delivered {
        println!(
            "Telemetry delivered ({} queued sample(s) flushed, {} still queued)",
            r.flushed, r.queued
        );
        Ok(exit::OK)
    } else if r.flushed > 0 {
        // docs/reference.md, exit codes: 0 only when the fresh sample went out. Here the
        // backend is fine; the sample waits behind a backlog being drained.
        eprintln!(
                "error: this sample is queued behind a backlog ({} older sample(s) delivered now, {} still queued); the next runs send the rest",
                r.flushed, r.queued
            );
        Ok(exit::FAILURE)
    } else {
        eprintln!(
            "error: telemetry not delivered; the sample is queued ({} in queue)",
            r.queued
        );
        Ok(exit::FAILURE)
    }
}

fn print_license(out: &license::Outcome) {
    println!("License: {}", out.state.as_str());
    if let Some(n) = &out.tenant_name {
        println!("Tenant:  {n} ({})", out.tenant_id.as_deref().unwrap_or("?"));
    }
    if let Some(e) = &out.expires_at {
        match out.days_left {
            Some(d) => println!("Expires: {e} ({d} days left)"),
            None => println!("Expires: {e}"),
        }
    }
    if let Some(m) = &out.message {
        println!("Message: {m}");
    }
    for w in &out.warnings {
        println!("Warning: {w}");
    }
}

fn config_check(cfg: &Config, missing: Option<&str>) -> Result<u8> {
    // Proxy credentials are a secret too: shown as `***`.
    let mut shown = cfg.clone();
    shown.backend.proxy = shown.backend.proxy.as_deref().map(redact::url_credentials);
    let text = serde_json::to_string_pretty(&shown)
        .map_err(|e| Error::Other(format!("serializing config: {e}")))?;
    println!("{text}");
    match license::read_key(cfg) {
        Ok(k) => {
            let source = if std::env::var("CYBERSENSEI_LICENSE_KEY")
                .map(|v| !v.trim().is_empty())
                .unwrap_or(false)
            {
                "$CYBERSENSEI_LICENSE_KEY".to_string()
            } else {
                cfg.license.key_file.display().to_string()
            };
            println!("license key: {} (from {source})", redact::key(&k));
        }
        Err(e) => println!("license key: not available ({e})"),
    }
    for w in crate::security::summary(cfg).warnings {
        println!("WARNING: {w}");
    }
    if let Some(m) = missing {
        // The defaults are worth seeing, but a box without a config is not "OK":
        // the init script would refuse to start the daemon.
        return Err(Error::Config(format!(
            "{m}: the built-in defaults are shown above\n{MISSING_CONFIG_HINT}"
        )));
    }
    println!("config OK");
    Ok(exit::OK)
}

fn status(cfg: &Config, json: bool, missing_config: Option<&str>) -> Result<u8> {
    let mut s = Status::load(&cfg.state_dir);
    let (slot, version) = update::active(cfg);
    s.slot = slot;
    s.version = version;
    s.security = crate::security::summary(cfg);
    if json {
        let text = serde_json::to_string(&s)
            .map_err(|e| Error::Other(format!("serializing status: {e}")))?;
        println!("{text}");
        return Ok(exit::OK);
    }
    // The first three lines answer "is this box healthy, and if not what do I do".
    let facts = crate::health::Facts {
        missing_config: missing_config.map(String::from),
        key_available: license::read_key(cfg).is_ok(),
        expiry_warning_days: cfg.license.expiry_warning_days,
    };
    let v = crate::health::verdict(&s, &facts);
    println!("Health:    {}", v.level.as_str());
    println!("Why:       {}", v.why);
    println!("To do:     {}", v.todo);
    println!();
    match &s.slot {
        Some(slot) => println!("Version:   {} (slot {slot})", s.version),
        None => println!("Version:   {} (no slot installed yet)", s.version),
    }
    status_license(&s.license);
    status_update(&s);
    status_others(&s);
    Ok(exit::OK)
}

/// An optional value for a person: "-" when absent.
fn or_dash(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

/// The license part of `status`.
fn status_license(l: &crate::status::LicenseStatus) {
    let o = or_dash;
    println!("License:   {}", l.state.as_str());
    if l.tenant_name.is_some() || l.tenant_id.is_some() {
        println!("  tenant:  {} ({})", o(&l.tenant_name), o(&l.tenant_id));
    }
    match (l.days_left, &l.expires_at) {
        (Some(d), _) => println!("  expires: {} ({d} days left)", o(&l.expires_at)),
        (None, Some(e)) => println!("  expires: {e}"),
        (None, None) => {}
    }
    match &l.last_validated_at {
        Some(t) => println!("  checked: {t}"),
        None => println!("  checked: never (`cybersensei-agent validate`)"),
    }
    if let Some(u) = l.usage_count {
        // The backend counts every validation and refuses the license at the maximum.
        match l.max_usage_count.filter(|m| *m > 0) {
            Some(m) => println!(
                "  usage:   {u}/{m} validations ({}%)",
                u.saturating_mul(100) / m
            ),
            None => println!("  usage:   {u} validations (no maximum)"),
        }
    }
    if let Some(m) = &l.message {
        println!("  message: {m}");
    }
}

/// The update part of `status`.
fn status_update(s: &Status) {
    let o = or_dash;
    let u = &s.update;
    println!("Update:    {}", u.state.as_str());
    if u.available {
        println!("  latest:  {}", o(&u.latest_version));
    }
    if u.node_too_old == Some(true) {
        println!(
            "  blocked: {} needs this node at {} or later (it runs {})",
            o(&u.latest_version),
            o(&u.required_node_version),
            s.version
        );
    }
    if let Some(m) = &u.message {
        println!("  backend: {m}");
    }
    println!(
        "  checked: {}",
        u.last_checked_at.as_deref().unwrap_or("never")
    );
    if let Some(e) = &u.last_error {
        println!("  error:   {e}");
    }
}

/// The telemetry, security and services parts of `status`.
fn status_others(s: &Status) {
    let t = &s.telemetry;
    println!(
        "Telemetry: last sent {}, {} queued",
        t.last_sent_at.as_deref().unwrap_or("never"),
        t.queued
    );
    if let Some(e) = &t.last_error {
        println!("  error:   {e}");
    }
    if !t.sources.is_empty() {
        // Where each field of the last sample came from (docs/telemetry.md).
        let shown: Vec<String> = t.sources.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("  sources: {}", shown.join("; "));
    }
    let sec = &s.security;
    println!(
        "Security:  update signatures {}{}",
        sec.signatures,
        if sec.trusted_keys.is_empty() {
            String::new()
        } else {
            format!(
                " (keys {} from {})",
                sec.trusted_keys.join(", "),
                sec.key_source.as_deref().unwrap_or("?")
            )
        }
    );
    for w in &sec.warnings {
        println!("  WARNING: {w}");
    }
    if let Some(r) = s.services.running {
        println!(
            "Services:  {}{}",
            if r { "running" } else { "stopped" },
            s.services
                .reason
                .as_ref()
                .map(|x| format!(" ({x})"))
                .unwrap_or_default()
        );
    }
}

fn set_key(cfg: Config, clock: &dyn Clock) -> Result<u8> {
    let mut input = String::new();
    std::io::stdin()
        .take(4096)
        .read_to_string(&mut input)
        .map_err(|e| Error::Config(format!("set-key: reading stdin: {e}")))?;
    let key = input.trim().to_string();
    let _lock = StateLock::acquire(&cfg.state_dir, lock_wait())?;
    license::store_key(&cfg.license.key_file, &key)?;
    println!(
        "License key stored in {} ({})",
        cfg.license.key_file.display(),
        redact::key(&key)
    );
    // The environment would shadow the key just stored; validate what was written.
    std::env::remove_var("CYBERSENSEI_LICENSE_KEY");
    let ctx = Ctx::new(cfg, clock, true)?;
    let out = license::validate(&ctx)?;
    print_license(&out);
    match out.to_error() {
        Some(e) => Err(e),
        None => Ok(exit::OK),
    }
}
