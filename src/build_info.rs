//! What `--version` says about this build: version, commit and build date.
//!
//! `board/build.sh` stamps both at compile time through the environment
//! (`CYBERSENSEI_COMMIT`, and `SOURCE_DATE_EPOCH`, the commit's date, which is also
//! the "clock not set" floor of `clock::floor`). A plain `cargo build` is
//! unstamped, and says so rather than inventing a date.

/// The commit this build was made from, when stamped (short hash, `-dirty` if the
/// tree had changes).
pub(crate) fn commit() -> Option<&'static str> {
    option_env!("CYBERSENSEI_COMMIT")
        .map(str::trim)
        .filter(|c| !c.is_empty())
}

/// The build date (UTC, `YYYY-MM-DD`), when stamped.
pub(crate) fn build_date() -> Option<String> {
    let secs = option_env!("SOURCE_DATE_EPOCH")?
        .trim()
        .parse::<u64>()
        .ok()?;
    let iso = crate::clock::iso8601(secs as f64);
    Some(iso.get(..10).unwrap_or(&iso).to_string())
}

/// The one line of `--version`: `cybersensei-agent 0.1.0 (commit 1a2b3c4d, built 2026-11-30)`.
pub(crate) fn version_line() -> String {
    let v = env!("CARGO_PKG_VERSION");
    match (commit(), build_date()) {
        (Some(c), Some(d)) => format!("cybersensei-agent {v} (commit {c}, built {d})"),
        (Some(c), None) => format!("cybersensei-agent {v} (commit {c})"),
        (None, Some(d)) => format!("cybersensei-agent {v} (built {d})"),
        (None, None) => format!(
            "cybersensei-agent {v} (unstamped development build: board/build.sh stamps commit and date)"
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_line_starts_with_name_and_version() {
        let l = super::version_line();
        assert!(
            l.starts_with(concat!(
                "cybersensei-agent ",
                env!("CARGO_PKG_VERSION"),
                " ("
            )),
            "{l}"
        );
    }
}
