//! `cybersensei-agent`: argument parsing and exit codes; the work is in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    cybersensei_agent::security::harden_process();
    let args = std::env::args().skip(1);
    match cybersensei_agent::cli::parse(args) {
        Ok(inv) => {
            if inv.command != cybersensei_agent::cli::Command::Run {
                cybersensei_agent::security::default_sigpipe();
            }
            ExitCode::from(cybersensei_agent::commands::run(inv))
        }
        Err(e) => {
            // One line of why, one of where the usage is: not the whole usage text.
            eprintln!("error: {e}");
            eprintln!("{}", e.hint());
            ExitCode::from(cybersensei_agent::error::exit::USAGE)
        }
    }
}
