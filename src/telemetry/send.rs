//! `POST /telemetry` (docs/protocol.md §4): any 2xx is success; the transport retries
//! network errors, 5xx and 429; other answers are classified for the queue.

use crate::context::Ctx;
use crate::error::{Error, Result};
use crate::protocol::TelemetryPayload;

/// The telemetry route (no `/api` prefix, as docs/protocol.md says).
pub(crate) const PATH: &str = "/telemetry";

/// What became of one sample.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Delivery {
    /// A 2xx: the backend has it.
    Delivered(u16),
    /// A 4xx other than 429: the backend will never accept this sample.
    Rejected { status: u16, message: String },
    /// Unreachable after the transport's retries, or an answer that is neither
    /// success nor refusal (5xx/429 after retries, 3xx): try again later.
    Failed(String),
}

/// Sends one sample. Only a stop request is an error; everything else is a `Delivery`.
pub(crate) fn post(ctx: &Ctx, payload: &TelemetryPayload) -> Result<Delivery> {
    let body =
        serde_json::to_vec(payload).map_err(|e| Error::serialize("a telemetry sample", e))?;
    let reply = match ctx.transport.post_json(ctx.clock, PATH, &body) {
        Ok(r) => r,
        Err(Error::Interrupted) => return Err(Error::Interrupted),
        Err(e) => return Ok(Delivery::Failed(e.chain().to_string())),
    };
    let status = reply.status;
    Ok(match status {
        200..=299 => Delivery::Delivered(status),
        400..=499 if status != 429 => Delivery::Rejected {
            status,
            message: message_of(&reply),
        },
        _ => Delivery::Failed(format!(
            "POST {PATH}: backend answered {status}: {}",
            message_of(&reply)
        )),
    })
}

/// The `message` of a NestJS error body (`Reply::error_message`), or a short prefix
/// of whatever came back (both scrubbed by `server_text`).
fn message_of(reply: &crate::transport::Reply) -> String {
    let text = reply
        .error_message()
        .unwrap_or_else(|| crate::redact::server_text(String::from_utf8_lossy(&reply.body).trim()));
    text.trim().to_string()
}
