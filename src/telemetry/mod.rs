//! Telemetry (docs/protocol.md §4): measure the box (`collect`), send (`send`), and keep
//! what could not be sent in a bounded on-disk queue (`queue`).
//!
//! One cycle (`send_cycle`): measure; send the queued samples oldest first (at most
//! `max_flush`), stopping at the first failure; then send the fresh sample if the
//! queue is empty, else append it to the queue so samples reach the backend in the
//! order they were measured. A person's `telemetry --once` flushes up to
//! `queue::FLUSH_BATCH`; the daemon flushes one per cycle and drains the rest with
//! `drain`, one sample per gap, the gap adapted to the backend's throttler
//! (`next_drain_gap`): the boxes of a site share one address and one budget.

pub mod collect;
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
    Error::NeverValidated(
        "no tenantId yet: the license has never been validated (run `cybersensei-agent \
         validate`); telemetry needs the tenantId the backend returns, so nothing was sent"
            .into(),
    )
}

/// The daemon's fastest pace when draining a backlog: one queued sample per gap.
pub(crate) const DRAIN_GAP: Duration = Duration::from_secs(5);
/// The gap a drain starts at (slow start: a site's boxes all come back together
/// after an outage, and speed up only while the throttler has room).
pub(crate) const DRAIN_START_GAP: Duration = Duration::from_secs(60);
/// Its slowest pace (a site with many boxes behind one address).
pub(crate) const MAX_DRAIN_GAP: Duration = Duration::from_secs(600);
/// Queued samples the daemon sends in a regular cycle (the rest drain paced).
pub(crate) const CYCLE_FLUSH: usize = 1;

/// The next gap of the paced drain, adapted to what the backend's throttler says
/// (`X-RateLimit-Remaining` of the last answer, shared by every box behind the
/// address; a 429): the site's boxes together settle near three quarters of the
/// throttler's budget, leaving the rest to fresh samples, without knowing how many
/// they are. Slow down fast (x2 when less than an eighth is left or on a 429, x1.25
/// under a quarter), speed up gently (-1/8) otherwise.
pub(crate) fn next_drain_gap(
    gap: Duration,
    budget: Option<crate::transport::RateBudget>,
    throttled: bool,
) -> Duration {
    let factor = match budget {
        _ if throttled => 2.0,
        Some(b) if b.remaining.saturating_mul(8) < b.limit => 2.0,
        Some(b) if b.remaining.saturating_mul(4) < b.limit => 1.25,
        _ => 7.0 / 8.0,
    };
    crate::backoff::Backoff::new(DRAIN_GAP, MAX_DRAIN_GAP).paced(gap, factor)
}

/// How old the application's metrics file may be: two telemetry intervals.
fn app_max_age(ctx: &Ctx) -> Duration {
    ctx.cfg.telemetry.interval.saturating_mul(2)
}

/// Measures a fresh sample for `tenant_id`, stamped with `additionalData.collectedAt`.
pub(crate) fn collect(ctx: &Ctx, collector: &mut Collector, tenant_id: String) -> TelemetryPayload {
    let s = collector.sample(
        ctx.clock,
        &ctx.cfg.install.root,
        &ctx.cfg.telemetry.app_metrics_file,
        app_max_age(ctx),
    );
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
    extra.insert("collectedAt".into(), Value::from(clock::iso8601(ctx.now())));
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

/// Builds the payload of a fresh sample without sending it (`telemetry --print`).
/// Without a cached validation the tenantId is empty, and a warning says why.
pub fn payload(ctx: &Ctx, collector: &mut Collector) -> Result<TelemetryPayload> {
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
    Ok(collect(ctx, collector, tenant))
}

/// What happened during a cycle, for status.json.
#[derive(Default)]
struct Cycle {
    report: SendReport,
    sent_any: bool,
    lost: u64,
    failure: Option<String>,
}

/// One cycle as a person runs it: flush up to `queue::FLUSH_BATCH` queued samples
/// (oldest first), then send a fresh sample (queued on failure).
pub fn send_once(ctx: &Ctx, collector: &mut Collector) -> Result<SendReport> {
    send_cycle(ctx, collector, queue::FLUSH_BATCH)
}

/// Sends up to `max` queued samples, oldest first, no fresh one (the daemon's paced
/// drain); stops at the first failure.
pub(crate) fn drain(ctx: &Ctx, max: usize) -> Result<SendReport> {
    recorded(ctx, |q, c| flush(ctx, q, c, max))
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
            c.failure = Some(e.chain().to_string());
            record(ctx, None, &c);
            return Err(e);
        }
    };
    let result = work(&mut q, &mut c);
    let queued = q.len().ok();
    c.report.queued = queued.unwrap_or(0);
    if let Err(e) = &result {
        c.failure = Some(e.chain().to_string());
    }
    record(ctx, queued, &c);
    result.map(|()| c.report)
}

/// One cycle: flush up to `max_flush` queued samples (oldest first), then send a
/// fresh sample (queued on failure, or when older samples still wait).
pub(crate) fn send_cycle(
    ctx: &Ctx,
    collector: &mut Collector,
    max_flush: usize,
) -> Result<SendReport> {
    let state_dir = &ctx.cfg.state_dir;
    let Some(tenant) = crate::license::cached_tenant_id(state_dir) else {
        let e = no_tenant_error();
        record(
            ctx,
            None,
            &Cycle {
                failure: Some(e.chain().to_string()),
                ..Default::default()
            },
        );
        return Err(e);
    };
    let fresh = collect(ctx, collector, tenant);
    recorded(ctx, |q, c| cycle(ctx, q, fresh, c, max_flush))
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
    });
    if let Err(e) = r {
        log::warn!("telemetry: cannot update status.json: {}", e.chain());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::RateBudget;

    fn b(remaining: u64) -> Option<RateBudget> {
        Some(RateBudget {
            remaining,
            limit: 60,
            reset: Some(60),
        })
    }

    #[test]
    fn the_drain_slows_down_fast_and_speeds_up_gently() {
        let g = Duration::from_secs(40);
        assert_eq!(next_drain_gap(g, b(50), false), Duration::from_secs(35));
        assert_eq!(next_drain_gap(g, b(10), false), Duration::from_secs(50));
        assert_eq!(next_drain_gap(g, b(3), false), Duration::from_secs(80));
        assert_eq!(next_drain_gap(g, b(50), true), Duration::from_secs(80));
        assert_eq!(next_drain_gap(DRAIN_GAP, None, false), DRAIN_GAP);
        assert_eq!(next_drain_gap(MAX_DRAIN_GAP, b(0), false), MAX_DRAIN_GAP);
    }
}
