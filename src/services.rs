//! The main CyberSensei services: stop, start, health-check, argv without a shell.
//! STUB: being written in another branch.

use crate::clock::Clock;
use crate::config::Services;
use crate::error::Result;

/// Runs every `services.stop` command.
pub fn stop(s: &Services) -> Result<()> {
    let _ = s;
    Ok(())
}

/// Runs every `services.start` command.
pub fn start(s: &Services) -> Result<()> {
    let _ = s;
    Ok(())
}

/// Runs the health commands until all exit 0 or `health_timeout` passes.
pub fn health(s: &Services, clock: &dyn Clock) -> Result<()> {
    let _ = (s, clock);
    Ok(())
}
