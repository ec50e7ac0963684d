//! The integration tests, one binary (ripgrep's layout): a module per file of `tests/`,
//! named as the file, so `cargo test --test integration license_cli::` runs what
//! `tests/license_cli.rs` holds. One binary links the crate once instead of once per
//! file. The tests share this process: none may change its environment, working
//! directory or signal dispositions (values go to the child `Command`s instead).

mod harness;

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
mod field_proxy;
mod license_cli;
mod license_unit;
mod newcomer_cli;
mod power_cut_leftovers;
mod security_children;
mod security_packages;
mod security_process;
mod security_signing;
mod security_slow;
mod security_zip_bounds;
mod telemetry_collect;
mod telemetry_queue;
mod telemetry_sim;
mod update_download;
mod update_engine;
mod update_install;
mod update_kill;
mod update_window;
