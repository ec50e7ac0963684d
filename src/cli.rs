//! The command line: raw arguments parsed into a checked `Invocation`.

use std::path::PathBuf;

/// One parsed command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Run,
    Validate,
    CheckUpdate,
    Update,
    Install {
        zip: PathBuf,
        /// `--allow-downgrade`: a version lower than the highest installed is accepted.
        allow_downgrade: bool,
    },
    Rollback,
    Telemetry {
        print: bool,
    },
    Status {
        json: bool,
    },
    ConfigCheck,
    SetKey,
    Help,
    Version,
}

/// The whole command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub config: Option<PathBuf>,
    pub command: Command,
}

/// Usage text for `--help`.
pub const USAGE: &str = "\
usage: cybersensei-agent [-c|--config PATH] <command> [options]

commands:
  run                 the daemon: license, telemetry and update checks on a schedule
  validate            validate the license once
  check-update        ask the backend once whether an update exists
  update              check, download, verify and install now
  install ZIP [--allow-downgrade]
                      install a local package file (same verification, A/B);
                      lower than the highest version installed only with the flag
  rollback            switch back to the other slot if it is complete
  telemetry --once    send one sample (queued samples first)
  telemetry --print   print the payload of a fresh sample, send nothing
  status [--json]     print the node's state
  config check        validate the config and print the effective one
  set-key             read a license key from stdin and store it (mode 0600)

options:
  -c, --config PATH   config file (default $CYBERSENSEI_AGENT_CONFIG, then
                      /etc/cybersensei/agent.json)
  -h, --help          this text
  -V, --version       the agent's version
";

/// Parses arguments (without the program name). Errors name the bad argument.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Invocation, String> {
    let mut config = None;
    let mut words: Vec<String> = Vec::new();
    let mut it = args.into_iter();
    let mut help = false;
    let mut version = false;
    while let Some(a) = it.next() {
        match a.as_str() {
            "-c" | "--config" => {
                let p = it
                    .next()
                    .ok_or_else(|| format!("{a}: expected a path after it"))?;
                config = Some(PathBuf::from(p));
            }
            s if s.starts_with("--config=") => {
                config = Some(PathBuf::from(&s["--config=".len()..]));
            }
            "-h" | "--help" => help = true,
            "-V" | "--version" => version = true,
            _ => words.push(a),
        }
    }
    if help {
        return Ok(Invocation {
            config,
            command: Command::Help,
        });
    }
    if version {
        return Ok(Invocation {
            config,
            command: Command::Version,
        });
    }
    let Some((cmd, rest)) = words.split_first() else {
        return Err("missing command (try --help)".into());
    };
    let flags = |allowed: &[&str]| -> Result<Vec<String>, String> {
        for r in rest {
            if !allowed.contains(&r.as_str()) {
                return Err(format!("{cmd}: unexpected argument {r:?}"));
            }
        }
        Ok(rest.to_vec())
    };
    let command = match cmd.as_str() {
        "run" => {
            flags(&[])?;
            Command::Run
        }
        "validate" => {
            flags(&[])?;
            Command::Validate
        }
        "check-update" => {
            flags(&[])?;
            Command::CheckUpdate
        }
        "update" => {
            flags(&[])?;
            Command::Update
        }
        "install" => {
            let allow_downgrade = rest.iter().any(|a| a == "--allow-downgrade");
            let files: Vec<&String> = rest.iter().filter(|a| *a != "--allow-downgrade").collect();
            match files.as_slice() {
                [zip] if !zip.starts_with('-') => Command::Install {
                    zip: PathBuf::from(zip),
                    allow_downgrade,
                },
                _ => {
                    return Err("install: expected exactly one argument, the ZIP file (and optionally --allow-downgrade)".into())
                }
            }
        }
        "rollback" => {
            flags(&[])?;
            Command::Rollback
        }
        "telemetry" => {
            let f = flags(&["--once", "--print"])?;
            let print = f.iter().any(|x| x == "--print");
            let once = f.iter().any(|x| x == "--once");
            if print == once {
                return Err("telemetry: expected exactly one of --once or --print".into());
            }
            Command::Telemetry { print }
        }
        "status" => {
            let f = flags(&["--json"])?;
            Command::Status {
                json: !f.is_empty(),
            }
        }
        "config" => match rest {
            [c] if c == "check" => Command::ConfigCheck,
            _ => return Err("config: expected `config check`".into()),
        },
        "set-key" => {
            flags(&[])?;
            Command::SetKey
        }
        other => return Err(format!("unknown command {other:?} (try --help)")),
    };
    Ok(Invocation { config, command })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Invocation, String> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn parses_commands() {
        assert_eq!(
            p("-c /x.json validate").unwrap().config,
            Some("/x.json".into())
        );
        assert_eq!(
            p("telemetry --once").unwrap().command,
            Command::Telemetry { print: false }
        );
        assert_eq!(
            p("status --json").unwrap().command,
            Command::Status { json: true }
        );
        assert_eq!(
            p("install a.zip").unwrap().command,
            Command::Install {
                zip: "a.zip".into(),
                allow_downgrade: false
            }
        );
        assert_eq!(p("config check").unwrap().command, Command::ConfigCheck);
        assert_eq!(p("update --help").unwrap().command, Command::Help);
    }

    #[test]
    fn errors_name_the_argument() {
        assert!(p("").unwrap_err().contains("missing command"));
        assert!(p("validate --bogus").unwrap_err().contains("--bogus"));
        assert!(p("frobnicate").unwrap_err().contains("frobnicate"));
        assert!(p("telemetry").unwrap_err().contains("--once"));
        assert!(p("install").unwrap_err().contains("ZIP"));
        assert!(p("-c").unwrap_err().contains("-c"));
    }
}
