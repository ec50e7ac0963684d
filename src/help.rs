//! Per-command help (`help CMD`, `CMD --help`): synopsis, what it does, exit codes.

/// One command's help.
struct Topic {
    name: &'static str,
    synopsis: &'static str,
    text: &'static str,
}

const TOPICS: &[Topic] = &[
    Topic {
        name: "run",
        synopsis: "cybersensei-agent [-c PATH] run",
        text: "The daemon the init script starts: validates the license at start, then sends
telemetry every telemetry.interval, checks for updates every updates.check_interval
and revalidates every license.revalidate_interval. SIGTERM/SIGINT: stop cleanly
(exit 0); SIGHUP: reload the config. A second `run` on the same state_dir exits 1.
Exit: 0 after a signal; 1 on another daemon; 2 on a bad config.",
    },
    Topic {
        name: "validate",
        synopsis: "cybersensei-agent [-c PATH] validate",
        text: "Validates the license with the backend once and prints tenant, expiry and days
left. Offline, a recent cached validation still counts (grace).
Exit: 0 valid or grace; 10 refused; 11 expired; 12 tenant inactive;
14 backend unreachable and no usable cached validation.",
    },
    Topic {
        name: "check-update",
        synopsis: "cybersensei-agent [-c PATH] check-update",
        text: "Asks the backend once whether an update exists; prints its version, size and
changelog. Downloads nothing.
Exit: 0 when the check worked (update or not); 14 backend unreachable.",
    },
    Topic {
        name: "update",
        synopsis: "cybersensei-agent [-c PATH] update",
        text: "Checks, downloads (resuming a partial download), verifies and installs an update
now, into the inactive slot; switches, runs services.health, and rolls back if the
new version is not healthy. The health commands' output is shown labelled.
Exit: 0 installed or up to date; 20 rolled back; 21 package rejected (nothing
touched); 22 not enough disk space; 14 backend unreachable.",
    },
    Topic {
        name: "install",
        synopsis: "cybersensei-agent [-c PATH] install ZIP",
        text: "Installs a local package file (USB stick, field engineer) through the same
verification and A/B switch as `update`.
Exit: as `update`.",
    },
    Topic {
        name: "rollback",
        synopsis: "cybersensei-agent [-c PATH] rollback",
        text: "Switches back to the other slot when it holds a complete installation.
Exit: 0 switched; 1 no complete other slot.",
    },
    Topic {
        name: "telemetry",
        synopsis: "cybersensei-agent [-c PATH] telemetry --once | --print",
        text: "--once   measures one sample and sends it (queued samples first); a sample that
         cannot be sent is queued on disk. Exit 0 only if it was delivered.
--print  prints the JSON payload of a fresh sample; contacts no one.",
    },
    Topic {
        name: "status",
        synopsis: "cybersensei-agent [-c PATH] status [--json]",
        text: "The box's state: the first three lines say whether it is healthy, what is wrong
and what to do; then license, version, update, telemetry, services.
--json prints status.json (what the admin interface reads). Reads state only:
works without a config file (defaults). Exit: 0.",
    },
    Topic {
        name: "config",
        synopsis: "cybersensei-agent [-c PATH] config check",
        text: "Loads and validates the config file and prints the effective config (every key,
defaults filled in) and where the license key comes from, redacted. Without a
config file it prints the defaults and exits 2.
Exit: 0 valid; 2 invalid or missing (the message names the field).",
    },
    Topic {
        name: "set-key",
        synopsis: "echo KEY | cybersensei-agent [-c PATH] set-key",
        text: "Reads a license key from stdin, writes it to license.key_file atomically with
mode 0600 (never echoed), then validates it.
Exit: as `validate`.",
    },
    Topic {
        name: "doctor",
        synopsis: "cybersensei-agent [-c PATH] doctor",
        text: "Checks, in order: config, key (present, not world-readable), clock (after the
agent's build date), disk (state_dir and install.root writable, space), the
backend (dns, tcp, tls, http, each named; through the proxy when one applies)
and the active slot (record, manifest digests). One line per check; stops
nothing, changes nothing, does not count as a license validation.
Exit: 0 all passed; else the first failure's: 2 config/key, 14 dns/tcp/tls/http,
1 clock/disk/slots.",
    },
    Topic {
        name: "help",
        synopsis: "cybersensei-agent help [COMMAND]",
        text: "The list of commands, or one command's help (same as `COMMAND --help`).",
    },
];

/// The synopsis of a command, None when `name` is not a command.
pub(crate) fn synopsis(name: &str) -> Option<&'static str> {
    TOPICS.iter().find(|t| t.name == name).map(|t| t.synopsis)
}

/// The full help of a command.
pub(crate) fn text(name: &str) -> Option<String> {
    let t = TOPICS.iter().find(|t| t.name == name)?;
    Some(format!("usage: {}\n\n{}\n", t.synopsis, t.text))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_command_of_the_usage_has_help() {
        // Command lines are indented by two spaces; continuation lines by more.
        let commands = crate::cli::USAGE
            .lines()
            .filter(|l| l.starts_with("  ") && !l.starts_with("   "));
        for line in commands {
            let w = line.split_whitespace().next().unwrap_or_default();
            if w.starts_with('-') {
                continue;
            }
            assert!(super::text(w).is_some(), "no help for {w}");
        }
    }
}
