//! cybersensei-agent: license validation, telemetry and A/B updates for a
//! CyberSensei node. The binary (`main.rs`) is a thin layer over these modules.

pub mod budget;
pub mod build_info;
pub mod child_output;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod context;
pub mod daemon;
pub mod doctor;
pub mod error;
pub mod fsutil;
pub mod health;
pub mod help;
pub mod hex;
pub mod leftovers;
pub mod license;
pub mod logging;
pub mod protocol;
pub mod redact;
pub mod security;
pub mod services;
pub mod signals;
pub mod status;
pub mod telemetry;
pub mod tls;
pub mod transport;
pub mod update;
