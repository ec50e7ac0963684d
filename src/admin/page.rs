//! The status page at `/`: plain HTML and JS, no external asset (a technician's
//! page when the node itself is down). French, like the dashboard.

/// The page (≤ 12 KB).
pub(crate) const PAGE: &str = include_str!("page.html");

#[cfg(test)]
mod tests {
    #[test]
    fn small_and_self_contained() {
        assert!(
            super::PAGE.len() <= 12 * 1024,
            "{} bytes",
            super::PAGE.len()
        );
        for external in ["src=\"http", "href=\"http", "@import", "url("] {
            assert!(!super::PAGE.contains(external), "{external}");
        }
    }
}
