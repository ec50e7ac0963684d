//! cybersensei-agent: license validation, telemetry and A/B updates for a
//! CyberSensei node. The binary (`main.rs`) is a thin layer over these modules.

pub mod budget;
pub(crate) mod build_info;
pub(crate) mod child_output;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod context;
pub mod daemon;
pub(crate) mod doctor;
pub mod error;
pub mod fsutil;
pub(crate) mod health;
pub(crate) mod help;
pub mod hex;
pub mod leftovers;
pub mod license;
pub(crate) mod logging;
pub mod protocol;
pub(crate) mod redact;
pub mod security;
pub mod services;
pub(crate) mod signals;
pub(crate) mod state_paths;
pub mod status;
pub mod telemetry;
pub(crate) mod tls;
pub mod transport;
pub mod update;
