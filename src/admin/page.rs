//! The status page at `/`: plain HTML and JS, no external asset (a technician's
//! page when the node itself is down). French, like the dashboard.

/// The page (≤ 12 KB).
pub(crate) const PAGE: &str = include_str!("page.html");
