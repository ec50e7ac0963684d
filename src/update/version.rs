//! Version numbers, compared two ways: [`Semver`], strict semantic versions (the
//! package's `version.json`, the downgrade guard), and [`compare_loose`], the real
//! backend's comparison (the check's `requiredNodeVersion`).

use std::cmp::Ordering;

/// A semantic version (semver.org 2.0.0): `MAJOR.MINOR.PATCH[-pre][+build]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Semver {
    pub(crate) major: u64,
    pub(crate) minor: u64,
    pub(crate) patch: u64,
    /// Dot-separated pre-release identifiers (empty for a release).
    pub(crate) pre: Vec<String>,
}

impl Semver {
    /// Parses a strict semantic version; a leading `v` is not accepted.
    pub(crate) fn parse(s: &str) -> Option<Semver> {
        let core_pre = s.split_once('+').map_or(s, |(a, build)| {
            if build.is_empty() || !build.split('.').all(ident_ok) {
                ""
            } else {
                a
            }
        });
        let (core, pre) = match core_pre.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (core_pre, None),
        };
        let mut n = core.split('.').map(num);
        let (major, minor, patch) = (n.next()??, n.next()??, n.next()??);
        if n.next().is_some() {
            return None;
        }
        let pre = match pre {
            None => vec![],
            Some(p) => {
                let ids: Vec<String> = p.split('.').map(str::to_string).collect();
                let ok = ids.iter().all(|i| {
                    ident_ok(i)
                        && !(i.len() > 1
                            && i.starts_with('0')
                            && i.bytes().all(|b| b.is_ascii_digit()))
                });
                if !ok {
                    return None;
                }
                ids
            }
        };
        Some(Semver {
            major,
            minor,
            patch,
            pre,
        })
    }
}

fn ident_ok(i: &str) -> bool {
    !i.is_empty() && i.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn num(s: &str) -> Option<u64> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    s.parse().ok()
}

impl Ord for Semver {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(o.major, o.minor, o.patch))
            .then_with(|| match (self.pre.is_empty(), o.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => {
                    for (a, b) in self.pre.iter().zip(&o.pre) {
                        let c = match (a.parse::<u64>(), b.parse::<u64>()) {
                            (Ok(x), Ok(y)) => x.cmp(&y),
                            (Ok(_), Err(_)) => Ordering::Less,
                            (Err(_), Ok(_)) => Ordering::Greater,
                            (Err(_), Err(_)) => a.cmp(b),
                        };
                        if c != Ordering::Equal {
                            return c;
                        }
                    }
                    self.pre.len().cmp(&o.pre.len())
                }
            })
    }
}

impl PartialOrd for Semver {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// Compares versions as the real backend does: the numeric `major.minor.patch`,
/// pre-release tags ignored, missing or non-numeric parts as 0.
pub(crate) fn compare_loose(a: &str, b: &str) -> Ordering {
    let parts = |v: &str| -> [u64; 3] {
        let core = v.trim().trim_start_matches('v');
        let core = core.split(['-', '+']).next().unwrap_or("");
        let mut out = [0; 3];
        for (slot, p) in out.iter_mut().zip(core.split('.')) {
            *slot = p.parse().unwrap_or(0);
        }
        out
    };
    parts(a).cmp(&parts(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_parse_and_order() {
        for ok in [
            "0.0.0",
            "1.2.3",
            "10.20.30",
            "1.0.0-alpha.1",
            "1.0.0+build.5",
            "1.0.0-rc.1+b",
        ] {
            assert!(Semver::parse(ok).is_some(), "{ok}");
        }
        for bad in [
            "1.2", "1.2.3.4", "v1.2.3", "01.2.3", "1.2.x", "", "1.0.0-", "1.0.0-01", "1.0.0+",
            " 1.0.0",
        ] {
            assert!(Semver::parse(bad).is_none(), "{bad}");
        }
        let order = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.1.0",
            "2.0.0",
            "10.0.0",
        ];
        for w in order.windows(2) {
            assert!(
                Semver::parse(w[0]) < Semver::parse(w[1]),
                "{} < {}",
                w[0],
                w[1]
            );
        }
        assert_eq!(Semver::parse("1.0.0+a"), Semver::parse("1.0.0+b"));
    }

    #[test]
    fn versions_compare_like_the_backend() {
        assert_eq!(compare_loose("1.2.0", "1.10.0"), Ordering::Less);
        assert_eq!(compare_loose("1.2.0-rc1", "1.2.0"), Ordering::Equal);
        assert_eq!(compare_loose("2.0.0", "1.9.9"), Ordering::Greater);
    }
}
