//! The daemon: one blocking loop. STUB until written.

use crate::config::Config;
use std::path::PathBuf;

/// Runs the daemon until SIGTERM/SIGINT; returns the exit code.
pub fn main(cfg: Config, config_path: PathBuf) -> u8 {
    let _ = (cfg, config_path);
    1
}
