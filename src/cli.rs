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
    /// Checks the box step by step (config, key, clock, disk, network, slots).
    Doctor,
    /// The global usage, or one command's (`help CMD`, `CMD --help`).
    Help(Option<String>),
    Version,
}

/// A command line that cannot be run: one line saying why, and where help is.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageError {
    /// The command it concerns, when one was recognised.
    pub(crate) command: Option<String>,
    /// What is wrong, naming the argument.
    pub(crate) message: String,
}

impl UsageError {
    fn new(command: Option<&str>, message: impl Into<String>) -> UsageError {
        UsageError {
            command: command.map(String::from),
            message: message.into(),
        }
    }

    /// The line after the error: where the usage of this command is.
    pub fn hint(&self) -> String {
        match &self.command {
            Some(c) => format!(
                "usage: {}  (more: cybersensei-agent help {c})",
                crate::help::synopsis(c).unwrap_or(c)
            ),
            None => "see `cybersensei-agent --help` for the commands".into(),
        }
    }
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// The whole command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub config: Option<PathBuf>,
    pub command: Command,
}

/// Usage text for `--help`.
pub(crate) const USAGE: &str = "\
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
  doctor              check config, key, clock, disk, network and slots; name
                      the first failure
  help [COMMAND]      this text, or one command's

options:
  -c, --config PATH   config file (default $CYBERSENSEI_AGENT_CONFIG, then
                      /etc/cybersensei/agent.json)
  -h, --help          this text (after a command: that command's)
  -V, --version       the agent's version
";

/// Parses arguments (without the program name). Errors name the bad argument.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Invocation, UsageError> {
    let g = Global::parse(args)?;
    let config = g.config;
    if g.help {
        // `update --help`: that command's help; a word that is no command: the global.
        let topic = g
            .words
            .first()
            .filter(|w| crate::help::synopsis(w).is_some())
            .cloned();
        return Ok(Invocation {
            config,
            command: Command::Help(topic),
        });
    }
    if g.version {
        return Ok(Invocation {
            config,
            command: Command::Version,
        });
    }
    let Some((cmd, rest)) = g.words.split_first() else {
        return Err(UsageError::new(None, "missing command"));
    };
    let command = command(cmd, rest)?;
    Ok(Invocation { config, command })
}

/// The options any command takes, wherever they stand, and the other words.
struct Global {
    config: Option<PathBuf>,
    help: bool,
    version: bool,
    words: Vec<String>,
}

impl Global {
    fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Global, UsageError> {
        let mut g = Global {
            config: None,
            help: false,
            version: false,
            words: Vec::new(),
        };
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "-c" | "--config" => {
                    let p = it.next().ok_or_else(|| {
                        UsageError::new(None, format!("{a}: expected a path after it"))
                    })?;
                    g.config = Some(PathBuf::from(p));
                }
                s if s.starts_with("--config=") => {
                    g.config = Some(PathBuf::from(&s["--config=".len()..]));
                }
                "-h" | "--help" => g.help = true,
                "-V" | "--version" => g.version = true,
                _ => g.words.push(a),
            }
        }
        Ok(g)
    }
}

/// The commands that take no argument.
fn bare(cmd: &str) -> Option<Command> {
    Some(match cmd {
        "run" => Command::Run,
        "validate" => Command::Validate,
        "check-update" => Command::CheckUpdate,
        "update" => Command::Update,
        "rollback" => Command::Rollback,
        "set-key" => Command::SetKey,
        "doctor" => Command::Doctor,
        _ => return None,
    })
}

/// The command `cmd` with its arguments `rest`.
fn command(cmd: &String, rest: &[String]) -> Result<Command, UsageError> {
    let err = |m: &str| UsageError::new(Some(cmd), format!("{cmd}: {m}"));
    let flags = |allowed: &[&str]| -> Result<Vec<String>, UsageError> {
        for r in rest {
            if !allowed.contains(&r.as_str()) {
                return Err(err(&format!("unexpected argument {r:?}")));
            }
        }
        Ok(rest.to_vec())
    };
    if let Some(c) = bare(cmd) {
        flags(&[])?;
        return Ok(c);
    }
    Ok(match cmd.as_str() {
        "install" => {
            let allow_downgrade = rest.iter().any(|a| a == "--allow-downgrade");
            let files: Vec<&String> = rest.iter().filter(|a| *a != "--allow-downgrade").collect();
            match files.as_slice() {
                [zip] if !zip.starts_with('-') => Command::Install {
                    zip: PathBuf::from(zip),
                    allow_downgrade,
                },
                _ => {
                    return Err(err(
                        "expected exactly one argument, the ZIP file (and optionally --allow-downgrade)",
                    ))
                }
            }
        }
        "telemetry" => {
            let f = flags(&["--once", "--print"])?;
            let print = f.iter().any(|x| x == "--print");
            let once = f.iter().any(|x| x == "--once");
            if print == once {
                return Err(err("expected exactly one of --once or --print"));
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
            _ => return Err(err("expected `config check`")),
        },
        "help" => match rest {
            [] => Command::Help(None),
            [c] if crate::help::synopsis(c).is_some() => Command::Help(Some(c.clone())),
            [c] => {
                return Err(UsageError::new(
                    None,
                    format!("help: unknown command {c:?}"),
                ))
            }
            _ => return Err(err("expected at most one command name")),
        },
        other => return Err(UsageError::new(None, format!("unknown command {other:?}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Invocation, String> {
        parse(s.split_whitespace().map(String::from)).map_err(|e| e.to_string())
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
        assert_eq!(
            p("update --help").unwrap().command,
            Command::Help(Some("update".into()))
        );
        assert_eq!(
            p("help update").unwrap().command,
            Command::Help(Some("update".into()))
        );
        assert_eq!(p("--help").unwrap().command, Command::Help(None));
        assert_eq!(p("help").unwrap().command, Command::Help(None));
        assert_eq!(p("doctor").unwrap().command, Command::Doctor);
    }

    #[test]
    fn usage_errors_point_at_the_command_help() {
        let e = parse(["validate".into(), "--bogus".into()]).unwrap_err();
        assert_eq!(e.command.as_deref(), Some("validate"));
        assert!(e.hint().contains("help validate"), "{}", e.hint());
        assert!(!e.hint().contains('\n'));
        let e = parse(["frobnicate".to_string()]).unwrap_err();
        assert!(e.hint().contains("--help"), "{}", e.hint());
        assert!(p("help frobnicate").unwrap_err().contains("frobnicate"));
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
