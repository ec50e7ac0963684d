//! Telemetry (docs/protocol.md §4): measure the box (`collect`), send (`send`), and keep
//! what could not be sent in a bounded on-disk queue (`queue`).
//!
//! The application's half comes from its file or command (`app`) and the AI probe
//! (`probe`), measured before the state lock is taken (`measure`).
//!
//! A person's cycle (`telemetry --once`): the queued samples oldest first (at most
//! `queue::FLUSH_BATCH`), stopping at the first failure, then the fresh sample if the
//! queue is empty, else it joins the queue (measurement order).
//! The daemon's cycle, freshest first (docs/telemetry.md, "A fleet behind one
//! address"): the fresh sample goes first; queued ones follow only while the shared
//! throttler's window is more than half free; the gap between cycles follows the
//! window (`pace`). A fresh sample the throttler refuses (429) is dropped and counted,
//! not queued: the next one supersedes it, and a queued copy would only add load.

pub(crate) mod app;
pub mod collect;
pub mod pace;
pub(crate) mod probe;
pub mod queue;
pub mod send;

pub use collect::Collector;

use crate::clock;
use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::protocol::TelemetryPayload;
use crate::status::Status;
use queue::Queue;
use send::Delivery;
use serde_json::{Map, Value};
use std::time::Duration;

/// Result of one telemetry cycle.
#[derive(Debug, Clone, Default)]
pub struct SendReport {
    /// The fresh sample was delivered.
    pub delivered: bool,
    /// Queued samples delivered in this cycle.
    pub flushed: usize,
    /// Samples still queued.
    pub queued: usize,
}

/// The error `send_once` returns on a box that has never validated its license.
pub(crate) fn no_tenant_error() -> Error {
    Error::Other(
        "no tenantId yet: the license has never been validated (run `cybersensei-agent \
         validate`); telemetry needs the tenantId the backend returns, so nothing was sent"
            .into(),
    )
}

/// What the throttler said of the telemetry route's window, as `pace` reads it.
pub(crate) fn budget(b: Option<crate::transport::RateBudget>) -> pace::Budget {
    b.map(|b| (b.remaining, b.limit))
}

/// How old the application's metrics file may be: two telemetry intervals.
fn app_max_age(ctx: &Ctx) -> Duration {
    ctx.cfg.telemetry.interval.saturating_mul(2)
}

/// A fresh measurement, taken without the state lock (the application's file, its
/// command and the AI probe are the application's, and may take their time or try
/// to block: docs/security.md), then sent under it.
pub(crate) struct Measured {
    sample: collect::Sample,
    collected_at: f64,
    /// Where each field came from, for status.json (`TelemetryStatus::sources`).
    sources: std::collections::BTreeMap<String, String>,
}

/// Times the AI service once (the daemon calls it every `probe::PROBE_EVERY`).
pub(crate) fn probe_ai(ctx: &Ctx, collector: &mut Collector) {
    if let Some(url) = &ctx.cfg.telemetry.ai_probe_url {
        collector.probes.probe(url, ctx.clock);
    }
}

/// Measures the box and the application.
pub(crate) fn measure(ctx: &Ctx, collector: &mut Collector) -> Measured {
    let t = &ctx.cfg.telemetry;
    let mut sample = collector.sample(ctx.clock, &ctx.cfg.install.root);
    let mut sources = std::collections::BTreeMap::new();
    let mut put = |k: &str, v: String| {
        sources.insert(k.to_string(), v);
    };
    for (k, v) in [
        ("uptime", sample.uptime.is_some()),
        ("cpuUsage", sample.cpu_usage.is_some()),
        ("memoryUsage", sample.memory_usage.is_some()),
        ("diskUsage", sample.disk_usage.is_some()),
    ] {
        put(k, if v { "measured" } else { "absent (unreadable)" }.into());
    }
    let (app, origin) = if t.app_metrics_command.is_empty() {
        let r = collect::read_app_metrics(&t.app_metrics_file, ctx.now(), app_max_age(ctx));
        let what = t.app_metrics_file.display().to_string();
        (collector.app_outcome(&what, r), "file")
    } else {
        let r = app::run(&t.app_metrics_command, ctx.clock, app::COMMAND_TIMEOUT);
        let what = format!("app_metrics_command `{}`", t.app_metrics_command.join(" "));
        (collector.app_outcome(&what, r), "command")
    };
    match app {
        Ok(m) => {
            sample.app = m;
            put("activeUsers", origin.into());
            put("exercisesCompletedToday", origin.into());
            if m.ai_latency.is_some() {
                put("aiLatency", origin.into());
            }
        }
        Err(why) => {
            let v = format!("0, {origin} failed: {why}");
            put("activeUsers", v.clone());
            put("exercisesCompletedToday", v);
        }
    }
    if let Some(url) = &t.ai_probe_url {
        // The probe, when configured, is the only source of the latency.
        match collector.probes.take_median(url, ctx.clock) {
            Ok(ms) => {
                sample.app.ai_latency = Some(ms);
                put("aiLatency", "probe".into());
            }
            Err(why) => {
                sample.app.ai_latency = None;
                put("aiLatency", format!("absent, probe: {why}"));
            }
        }
    } else if sample.app.ai_latency.is_none() {
        put("aiLatency", "absent".into());
    }
    Measured {
        sample,
        collected_at: ctx.now(),
        sources,
    }
}

/// The payload of a measurement for `tenant_id`, stamped with `additionalData.collectedAt`.
fn payload_of(ctx: &Ctx, m: &Measured, tenant_id: String) -> TelemetryPayload {
    let s = &m.sample;
    let mut extra = Map::new();
    for (k, v) in [
        ("cpuUsage", s.cpu_usage),
        ("memoryUsage", s.memory_usage),
        ("diskUsage", s.disk_usage),
    ] {
        if let Some(v) = v {
            extra.insert(k.into(), Value::from(v));
        }
    }
    extra.insert(
        "collectedAt".into(),
        Value::from(clock::iso8601(m.collected_at)),
    );
    TelemetryPayload {
        tenant_id,
        uptime: s.uptime.or_else(collect::sysinfo_uptime).unwrap_or(0),
        active_users: s.app.active_users,
        exercises_completed_today: s.app.exercises_completed_today,
        ai_latency: s.app.ai_latency,
        version: Some(crate::update::active(&ctx.cfg).1),
        additional_data: Some(extra),
    }
}

/// `doctor`'s telemetry line: where the application's fields come from, each source
/// tried once now (read-only), and the last delivery (status.json). Err when a
/// source the config names fails; a missing metrics file without a command is what
/// a box has by default, said but not failed.
pub(crate) fn diagnose(
    cfg: &crate::config::Config,
    clock: &dyn clock::Clock,
) -> std::result::Result<String, String> {
    let t = &cfg.telemetry;
    if !t.enabled {
        return Ok("disabled (telemetry.enabled false)".into());
    }
    let mut parts = Vec::new();
    let mut failed = false;
    let counts = |m: collect::AppMetrics| {
        format!(
            "activeUsers {}, exercisesCompletedToday {}",
            m.active_users, m.exercises_completed_today
        )
    };
    if t.app_metrics_command.is_empty() {
        let f = t.app_metrics_file.display();
        match collect::read_app_metrics(
            &t.app_metrics_file,
            clock.now_unix(),
            t.interval.saturating_mul(2),
        ) {
            Ok(m) => parts.push(format!("file {f}: {}", counts(m))),
            Err(("missing", _)) => parts.push(format!(
                "file {f} missing: activeUsers and exercisesCompletedToday sent as 0 \
                 (set telemetry.app_metrics_command, e.g. board/node-metrics.sh)"
            )),
            Err((_, why)) => {
                failed = true;
                parts.push(format!("file {f}: {why}"));
            }
        }
    } else {
        let shown = t.app_metrics_command.join(" ");
        match app::run(&t.app_metrics_command, clock, app::COMMAND_TIMEOUT) {
            Ok(m) => parts.push(format!("command `{shown}`: {}", counts(m))),
            Err((_, why)) => {
                failed = true;
                parts.push(format!("command `{shown}` failed: {why}"));
            }
        }
    }
    if let Some(url) = &t.ai_probe_url {
        match probe::Target::parse(url).and_then(|p| p.time(clock, probe::PROBE_TIMEOUT)) {
            Ok(d) => parts.push(format!(
                "aiLatency probe {url}: {:.1} ms",
                d.as_secs_f64() * 1000.0
            )),
            Err(why) => {
                failed = true;
                parts.push(format!("aiLatency probe {url}: {why}"));
            }
        }
    }
    let st = Status::load(&cfg.state_dir).telemetry;
    parts.push(format!(
        "last delivery {}, {} queued",
        st.last_sent_at.as_deref().unwrap_or("never"),
        st.queued
    ));
    let text = parts.join("; ");
    if failed {
        Err(text)
    } else {
        Ok(text)
    }
}

/// Builds the payload of a fresh sample without sending it (`telemetry --print`).
/// Without a cached validation the tenantId is empty, and a warning says why.
pub fn payload(ctx: &Ctx, collector: &mut Collector) -> Result<TelemetryPayload> {
    let m = measure(ctx, collector);
    let tenant = match crate::license::cached_tenant_id(&ctx.cfg.state_dir) {
        Some(t) => t,
        None => {
            // `--print` never sends: say what the empty tenantId means, not "nothing sent".
            log::warn!(
                "no tenantId yet: the license has never been validated (run \
                 `cybersensei-agent validate`); the payload below has an empty tenantId"
            );
            String::new()
        }
    };
    Ok(payload_of(ctx, &m, tenant))
}

/// What happened during a cycle, for status.json.
#[derive(Default)]
struct Cycle {
    report: SendReport,
    sources: Option<std::collections::BTreeMap<String, String>>,
    sent_any: bool,
    lost: u64,
    failure: Option<String>,
}

/// One cycle as a person runs it: flush up to `queue::FLUSH_BATCH` queued samples
/// (oldest first), then send a fresh sample (queued on failure).
pub fn send_once(ctx: &Ctx, collector: &mut Collector) -> Result<SendReport> {
    let m = measure(ctx, collector);
    send_cycle(ctx, m, queue::FLUSH_BATCH, false)
}

/// Opens the queue, runs `work` on it, and records the cycle in status.json with
/// what is left queued and the failure, whichever step failed.
fn recorded(
    ctx: &Ctx,
    work: impl FnOnce(&mut Queue, &mut Cycle) -> Result<()>,
) -> Result<SendReport> {
    let mut c = Cycle::default();
    let mut q = match Queue::open(&ctx.cfg.state_dir, ctx.cfg.telemetry.queue_max) {
        Ok(q) => q,
        Err(e) => {
            c.failure = Some(e.to_string());
            record(ctx, None, &c);
            return Err(e);
        }
    };
    let result = work(&mut q, &mut c);
    let queued = q.len().ok();
    c.report.queued = queued.unwrap_or(0);
    if let Err(e) = &result {
        c.failure = Some(e.to_string());
    }
    record(ctx, queued, &c);
    result.map(|()| c.report)
}

/// One cycle with a fresh measurement `m` (taken before the state lock): flush up to
/// `max_flush` queued samples (oldest first), then send the fresh sample (queued on
/// failure, or when older samples still wait).
///
/// `fresh_first` (the daemon): the fresh sample goes first, and queued ones follow
/// only when it was delivered and the throttler's window has room to spare
/// (`pace::spare`): the backend always has each box's newest sample before its
/// history. Otherwise (a person's `telemetry --once`) samples go in measurement order.
pub(crate) fn send_cycle(
    ctx: &Ctx,
    m: Measured,
    max_flush: usize,
    fresh_first: bool,
) -> Result<SendReport> {
    let state_dir = &ctx.cfg.state_dir;
    let Some(tenant) = crate::license::cached_tenant_id(state_dir) else {
        let e = no_tenant_error();
        record(
            ctx,
            None,
            &Cycle {
                failure: Some(e.to_string()),
                sources: Some(m.sources),
                ..Default::default()
            },
        );
        return Err(e);
    };
    let fresh = payload_of(ctx, &m, tenant);
    recorded(ctx, |q, c| {
        c.sources = Some(m.sources);
        if fresh_first {
            cycle_fresh_first(ctx, q, fresh, c, max_flush)
        } else {
            cycle(ctx, q, fresh, c, max_flush)
        }
    })
}

fn cycle(
    ctx: &Ctx,
    q: &mut Queue,
    fresh: TelemetryPayload,
    c: &mut Cycle,
    max_flush: usize,
) -> Result<()> {
    match flush(ctx, q, c, max_flush) {
        Ok(()) => {}
        Err(e) => {
            // Stopped (signal) or local I/O trouble: keep the fresh sample anyway.
            c.lost += q.push(&fresh)?;
            return Err(e);
        }
    }
    if c.failure.is_none() && q.is_empty()? {
        match deliver(ctx, q, &fresh) {
            Ok(Delivery::Delivered(_)) => {
                c.report.delivered = true;
                c.sent_any = true;
                return Ok(());
            }
            Ok(Delivery::Rejected { status, message }) => {
                c.failure = Some(format!("backend answered {status}: {message}"));
            }
            Ok(Delivery::Failed(why)) => c.failure = Some(why),
            Err(e) => {
                c.lost += q.push(&fresh)?;
                return Err(e);
            }
        }
    }
    // Not sent, or older samples still wait: the fresh one joins the end of the queue.
    c.lost += q.push(&fresh)?;
    Ok(())
}

/// The daemon's cycle: the fresh sample first; queued ones after it only with room
/// to spare in the throttler's window; a fresh sample not delivered is queued.
fn cycle_fresh_first(
    ctx: &Ctx,
    q: &mut Queue,
    fresh: TelemetryPayload,
    c: &mut Cycle,
    max_flush: usize,
) -> Result<()> {
    match deliver(ctx, q, &fresh) {
        Ok(Delivery::Delivered(_)) => {
            c.report.delivered = true;
            c.sent_any = true;
            // The backlog in the room left, the window checked after each answer.
            for _ in 0..max_flush {
                if !pace::spare(budget(ctx.transport.rate_budget())) {
                    break;
                }
                let before = c.report.flushed;
                flush(ctx, q, c, 1)?;
                if c.report.flushed == before {
                    break;
                }
            }
            return Ok(());
        }
        Ok(Delivery::Rejected { status, message }) => {
            c.failure = Some(format!("backend answered {status}: {message}"));
        }
        Ok(Delivery::Failed(why)) => {
            if ctx.transport.throttled(ctx.clock, send::PATH).is_some() {
                // Refused by the shared throttler: superseded by the next sample.
                log::warn!("telemetry: sample refused by the backend's rate limit (429); dropped, the next one replaces it");
                q.add_dropped(1)?;
                c.lost += 1;
                c.failure = Some(why);
                return Ok(());
            }
            c.failure = Some(why)
        }
        Err(e) => {
            c.lost += q.push(&fresh)?;
            return Err(e);
        }
    }
    c.lost += q.push(&fresh)?;
    Ok(())
}

/// Sends up to `max` (at most `FLUSH_BATCH`) queued samples, oldest first, until
/// the first failure.
fn flush(ctx: &Ctx, q: &Queue, c: &mut Cycle, max: usize) -> Result<()> {
    for seq in q.oldest()?.into_iter().take(max) {
        let p = match q.read(seq) {
            Ok(p) => p,
            Err(why) => {
                log::warn!("telemetry queue: entry #{seq} {why}; skipped and removed");
                q.add_dropped(1)?;
                q.remove(seq)?;
                c.lost += 1;
                continue;
            }
        };
        match deliver(ctx, q, &p)? {
            Delivery::Delivered(_) => {
                q.remove(seq)?;
                c.report.flushed += 1;
                c.sent_any = true;
            }
            Delivery::Rejected { status, message } => {
                // The backend will never take it; keeping it would block the queue.
                log::warn!(
                    "telemetry queue: sample #{seq} (collected {}) refused with {status} ({message}); dropped",
                    collected_at(&p)
                );
                q.remove(seq)?;
                c.lost += 1;
            }
            Delivery::Failed(why) => {
                c.failure = Some(why);
                break;
            }
        }
    }
    Ok(())
}

/// Sends one sample, adding `droppedSamples` when samples were lost since the last
/// report; the count is cleared only once a 2xx confirms it arrived.
fn deliver(ctx: &Ctx, q: &Queue, p: &TelemetryPayload) -> Result<Delivery> {
    let dropped = q.pending_dropped();
    let d = if dropped > 0 {
        let mut p = p.clone();
        p.additional_data
            .get_or_insert_with(Map::new)
            .insert("droppedSamples".into(), Value::from(dropped));
        send::post(ctx, &p)?
    } else {
        send::post(ctx, p)?
    };
    if dropped > 0 && matches!(d, Delivery::Delivered(_)) {
        q.reported_dropped(dropped)?;
    }
    Ok(d)
}

fn collected_at(p: &TelemetryPayload) -> &str {
    p.additional_data
        .as_ref()
        .and_then(|m| m.get("collectedAt"))
        .and_then(|v| v.as_str())
        .unwrap_or("?")
}

/// Reports the cycle in status.json; a status that cannot be written is logged only,
/// since it must never cost a sample.
fn record(ctx: &Ctx, queued: Option<usize>, c: &Cycle) {
    let now = ctx.now();
    let r = Status::modify(&ctx.cfg.state_dir, now, |s| {
        let t = &mut s.telemetry;
        if c.sent_any {
            t.last_sent_at = Some(clock::iso8601(now));
        }
        if let Some(n) = queued {
            t.queued = n as u64;
        }
        t.last_error = c.failure.clone();
        t.dropped = t.dropped.saturating_add(c.lost);
        if let Some(src) = &c.sources {
            t.sources = src.clone();
        }
    });
    if let Err(e) = r {
        log::warn!("telemetry: cannot update status.json: {e}");
    }
}
