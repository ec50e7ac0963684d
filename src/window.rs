//! The install window (`updates.install_window`, `"HH:MM-HH:MM"`, local time): when an
//! automatic install may restart the services. Operators run training sessions on
//! these boxes; an update that restarts the application in the middle of one is what
//! the window prevents. A window may cross midnight (`"22:00-06:00"`); the start is
//! inside, the end is not. Pure except [`local_minute`], which reads the box's zone.

/// A daily local-time window, in minutes since local midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub(crate) start: u32,
    pub(crate) end: u32,
}

fn hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

impl Window {
    /// Parses `"HH:MM-HH:MM"` (24-hour clock).
    pub fn parse(s: &str) -> Result<Window, String> {
        let bad = || format!("{s:?} is not \"HH:MM-HH:MM\" (24-hour local time)");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let (start, end) = (hhmm(a).ok_or_else(bad)?, hhmm(b).ok_or_else(bad)?);
        if start == end {
            return Err(format!("{s:?}: start and end are the same minute"));
        }
        Ok(Window { start, end })
    }

    /// Whether `minute` (since local midnight) is inside.
    pub fn contains(&self, minute: u32) -> bool {
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

impl std::fmt::Display for Window {
    /// `HH:MM-HH:MM`, as the config writes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (s, e) = (self.start, self.end);
        write!(f, "{:02}:{:02}-{:02}:{:02}", s / 60, s % 60, e / 60, e % 60)
    }
}

/// Minutes since local midnight at `unix` seconds, in the box's time zone (TZ,
/// /etc/localtime); UTC when the zone cannot be read.
pub fn local_minute(unix: f64) -> u32 {
    // `as _`: time_t's width differs between targets (and musl versions).
    let secs = unix.floor() as i64;
    let t = secs as _;
    // SAFETY: localtime_r fills a zeroed struct we own from a time_t we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: as above; a null return (failure) is checked.
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if ok {
        (tm.tm_hour as u32) * 60 + tm.tm_min as u32
    } else {
        // Integer arithmetic: a float remainder would link fmod (4 kB) for this.
        (secs.rem_euclid(86400) / 60) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_contains() {
        let w = Window::parse("02:00-05:30").unwrap();
        assert_eq!((w.start, w.end), (120, 330));
        assert!(!w.contains(119));
        assert!(w.contains(120));
        assert!(w.contains(329));
        assert!(!w.contains(330));
        let night = Window::parse("22:00-06:00").unwrap();
        for (m, inside) in [
            (1319, false),
            (1320, true),
            (1439, true),
            (0, true),
            (359, true),
            (360, false),
            (720, false),
        ] {
            assert_eq!(night.contains(m), inside, "{m}");
        }
        for bad in [
            "",
            "2-5",
            "02:00",
            "25:00-01:00",
            "02:60-03:00",
            "02:00-02:00",
            "a:00-b:00",
            "02:00-03:000",
        ] {
            assert!(Window::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn local_minute_moves_with_the_clock() {
        let t = 1_700_000_000.0;
        let a = local_minute(t);
        assert!(a < 1440);
        assert_eq!(local_minute(t + 60.0), (a + 1) % 1440);
        assert_eq!(local_minute(t + 86400.0), a);
    }
}

#[cfg(test)]
mod config_tests {
    use crate::config::Config;

    #[test]
    fn config_keys() {
        let c = Config::parse("{}").unwrap();
        assert_eq!(c.updates.install_window, None);
        assert!(!c.updates.security_outside_window);
        assert_eq!(c.updates.hook_timeout.as_secs(), 300);
        let c = Config::parse(
            r#"{"updates": {"install_window": "22:00-06:00", "security_outside_window": true, "hook_timeout": 60}}"#,
        )
        .unwrap();
        assert_eq!(
            c.updates.install_window.map(|w| w.to_string()).as_deref(),
            Some("22:00-06:00")
        );
        assert!(c.updates.security_outside_window);
        assert_eq!(c.updates.hook_timeout.as_secs(), 60);
        let e = Config::parse(r#"{"updates": {"install_window": "night"}}"#).unwrap_err();
        assert!(e.to_string().contains("updates.install_window"), "{e}");
        assert!(Config::parse(r#"{"updates": {"hook_timeout": 0}}"#).is_err());
    }
}
