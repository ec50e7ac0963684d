//! How tests start the agent binary: natively, or an ARM build under an emulator.
//!
//! `CYBERSENSEI_AGENT_BIN` replaces the binary cargo built (e.g. the aarch64 build from
//! `board/build.sh`); `CYBERSENSEI_AGENT_RUNNER` is a command line put in front of it
//! (e.g. `qemu-aarch64 -L /usr/aarch64-linux-gnu`), split on whitespace.
//! `board/test-arm.sh` sets both.

use std::process::Command;

/// Variables of the test runner's environment that would change what the agent does:
/// the key, the crash hook, proxies. Tests that want one set it again.
const AGENT_ENV: &[&str] = &[
    "CYBERSENSEI_LICENSE_KEY",
    "CYBERSENSEI_TEST_CRASH_AT",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// A `Command` for the agent under test, honouring the two variables above, with the
/// runner's environment cleaned of what would change the agent's behaviour.
pub(crate) fn agent_command() -> Command {
    let mut c = bare_command();
    for v in AGENT_ENV {
        c.env_remove(v);
    }
    c
}

fn bare_command() -> Command {
    let bin = std::env::var("CYBERSENSEI_AGENT_BIN")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_cybersensei-agent").to_string());
    let runner = std::env::var("CYBERSENSEI_AGENT_RUNNER").unwrap_or_default();
    let mut parts = runner.split_whitespace();
    match parts.next() {
        Some(emulator) => {
            let mut c = Command::new(emulator);
            c.args(parts).arg(bin);
            c
        }
        None => Command::new(bin),
    }
}

/// The agent under test as a shell command line (runner, if any, then the binary),
/// for scripts that must start it themselves (a package's `bin/cybersensei-agent`).
pub(crate) fn agent_shell_words() -> String {
    let c = bare_command();
    std::iter::once(c.get_program())
        .chain(c.get_args())
        .map(|w| format!("'{}'", w.to_string_lossy().replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ")
}
