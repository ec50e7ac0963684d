//! Memory soak of the daemon loop (scripts/measure_rss.sh runs it): the real `Daemon`
//! with an accelerated `FakeClock` against a simulator running in another process, so
//! the simulator's own memory is not counted. Prints VmRSS after N cycles.
//!
//!   soak CONFIG CYCLES...      e.g. soak /tmp/agent.json 10 10000
//!
//! A cycle is one `tick` of the loop: sleep (fake) until the next step is due, run it.

use cybersensei_agent::clock::{Clock, FakeClock};
use cybersensei_agent::config::Config;
use cybersensei_agent::daemon::Daemon;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// This process's resident set in KiB, from /proc/self/status.
fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let config = PathBuf::from(args.next().ok_or("usage: soak CONFIG CYCLES...")?);
    let marks: Vec<u64> = args
        .map(|a| a.parse::<u64>().map_err(|e| format!("{a}: {e}")))
        .collect::<Result<_, _>>()?;
    let cfg = Config::load(&config).map_err(|e| e.to_string())?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs_f64();
    let clock = FakeClock::new(now);
    let mut d = Daemon::new(cfg, config, &clock).map_err(|e| e.to_string())?;
    d.start().map_err(|e| e.to_string())?;
    let mut done = 0u64;
    for mark in marks {
        while done < mark {
            if !d.tick() {
                return Err("the loop stopped".into());
            }
            done += 1;
        }
        let k = d.counters;
        println!(
            "cycles {done:>6}  fake time {:>6.0} h  VmRSS {:>5} KiB  RssAnon {:>5} KiB  RssFile {:>5} KiB  (validations {}, telemetry {}, checks {})",
            clock.monotonic().as_secs_f64() / 3600.0,
            rss_kib("VmRSS:"),
            rss_kib("RssAnon:"),
            rss_kib("RssFile:"),
            k.validations,
            k.telemetry,
            k.checks
        );
    }
    Ok(())
}
