//! `cybersensei-agent`: argument parsing and exit codes; the work is in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = std::env::args().skip(1);
    match cybersensei_agent::cli::parse(args) {
        Ok(inv) => ExitCode::from(cybersensei_agent::commands::run(inv)),
        Err(e) => {
            // One line of why, one of where the usage is: not the whole usage text.
            eprintln!("error: {e}");
            eprintln!("{}", e.hint());
            ExitCode::from(cybersensei_agent::error::exit::USAGE)
        }
    }
}
