//! The integration tests, one binary (ripgrep's layout; `autotests = false` in
//! Cargo.toml): a module per file of `tests/`, named as the file, so
//! `cargo test --test integration license_cli::` runs what `tests/license_cli.rs`
//! holds. One binary links the crate once instead of once per file (34 before).
//!
//! The tests run as threads of this one process, so none may change what the process
//! shares: no `std::env::set_var`/`remove_var`, no `set_current_dir`, no signal
//! handler, no umask or rlimit of its own (values go to the child `Command`:
//! `.env()`, `.current_dir()`, `pre_exec`; to the simulator through `SimOptions`).
//! File descriptors a test makes by hand are close-on-exec, or another test's child
//! would inherit them. The library's in-process tests (`Daemon` on a `FakeClock`)
//! never call `signals::install`. `CYBERSENSEI_SIM_PROFILE` is read, never set: it
//! is the same for every test of a run (`scripts/test.sh` runs the modules that use
//! the simulator once per profile, by module filter).
//!
//! `shared_process` checks these rules on the sources. `harness` is the fixture
//! every module uses: the box (`Node`), how the agent is started, update packages,
//! the proxy, measured runs.

mod harness;

mod admin_api;
mod admin_page;
mod admin_proxy;
mod board_time;
mod board_update;
mod central_agent;
mod config_test;
mod daemon_cli;
mod daemon_neighbour;
mod daemon_schedule;
mod doctor_cli;
mod fault_fsync_audit;
mod fault_full_disk;
mod fault_kill_content;
mod fault_kill_matrix;
mod fault_packages;
mod fault_servers;
mod field_clock;
mod field_clock_budget;
mod field_proxy;
mod license_cli;
mod license_unit;
mod newcomer_cli;
mod power_cut_leftovers;
mod security_children;
mod security_downgrade;
mod security_key_set;
mod security_links;
mod security_packages;
mod security_process;
mod security_signing;
mod security_slow;
mod security_staging;
mod security_zip_bounds;
mod shared_process;
mod telemetry_collect;
mod telemetry_node;
mod telemetry_queue;
mod telemetry_sim;
mod update_download;
mod update_engine;
mod update_fallback;
mod update_install;
mod update_kill;
mod update_window;
