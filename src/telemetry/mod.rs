//! Telemetry (PROTOCOL.md §4). STUB: being written in another branch.

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::protocol::TelemetryPayload;

/// Keeps what consecutive samples need (CPU counters of the previous sample).
#[derive(Default)]
pub struct Collector {}

impl Collector {
    /// A collector reading the real /proc.
    pub fn new() -> Collector {
        Collector {}
    }
}

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

/// Builds the payload of a fresh sample without sending it.
pub fn payload(ctx: &Ctx, collector: &mut Collector) -> Result<TelemetryPayload> {
    let _ = (ctx, collector);
    Err(Error::Other("telemetry not implemented yet".into()))
}

/// One cycle: flush the queue (oldest first), then send a fresh sample (queued on failure).
pub fn send_once(ctx: &Ctx, collector: &mut Collector) -> Result<SendReport> {
    let _ = (ctx, collector);
    Err(Error::Other("telemetry not implemented yet".into()))
}
