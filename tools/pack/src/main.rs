//! `cybersensei-pack`: the vendor's side of update signing. Makes Ed25519 keys,
//! packs a directory into a signed package (manifest v2: every path with its type,
//! mode, size and SHA-256, directories included), shows what a package holds, and
//! verifies one the way a box will. Procedure: docs/security.md.

mod keys;
mod pack;
mod show;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: cybersensei-pack <command> [options]

commands:
  keygen NAME                 write NAME.key (private, PKCS#8 PEM, mode 0600) and
                              NAME.pub (base64 of the 32-byte public key)
  pack DIR -o OUT.zip --key NAME.key [--version V] [--kind full|content]
       [--delete PATH]... [--version-json --changelog TEXT [--required-node-version V (0.0.0)]]
       [--unsigned]
                              package DIR: manifest.json (v2) listing every path,
                              manifest.sig (Ed25519 over its exact bytes)
  inspect PKG                 print the manifest and the entries of a package
  verify PKG --key NAME.pub [--key OTHER.pub]...
                              check the signature, that the ZIP is exactly what the
                              manifest says (types, modes, sizes, digests), and that
                              the agent's own verification accepts it

exit: 0 ok, 1 refused or failed, 2 usage
";

/// A command-line or processing failure; `usage` ones exit 2.
pub struct Fail {
    pub msg: String,
    pub usage: bool,
}

impl Fail {
    /// A failure of the work itself (exit 1).
    pub fn new(msg: impl Into<String>) -> Fail {
        Fail {
            msg: msg.into(),
            usage: false,
        }
    }
    fn usage(msg: impl Into<String>) -> Fail {
        Fail {
            msg: msg.into(),
            usage: true,
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("cybersensei-pack: {}", f.msg);
            if f.usage {
                eprint!("{USAGE}");
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// Options after the command word: positional arguments and `--name value` pairs.
struct Opts {
    pos: Vec<String>,
    vals: Vec<(String, String)>,
    flags: Vec<String>,
}

impl Opts {
    fn parse(args: &[String], with_value: &[&str], flags: &[&str]) -> Result<Opts, Fail> {
        let mut o = Opts {
            pos: vec![],
            vals: vec![],
            flags: vec![],
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let name = if a == "-o" { "--out" } else { a.as_str() };
            if with_value.contains(&name) {
                let v = it
                    .next()
                    .ok_or_else(|| Fail::usage(format!("{a}: expected a value after it")))?;
                o.vals.push((name.to_string(), v.clone()));
            } else if flags.contains(&name) {
                o.flags.push(name.to_string());
            } else if a.starts_with('-') && a.len() > 1 {
                return Err(Fail::usage(format!("unknown option {a}")));
            } else {
                o.pos.push(a.clone());
            }
        }
        Ok(o)
    }
    fn one(&self, name: &str) -> Option<&str> {
        self.vals
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    fn all(&self, name: &str) -> Vec<String> {
        self.vals
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }
    fn single_pos(&self, what: &str) -> Result<PathBuf, Fail> {
        match self.pos.as_slice() {
            [p] => Ok(PathBuf::from(p)),
            _ => Err(Fail::usage(format!("expected exactly one {what}"))),
        }
    }
}

fn run(args: &[String]) -> Result<(), Fail> {
    let Some((cmd, rest)) = args.split_first() else {
        return Err(Fail::usage("missing command"));
    };
    match cmd.as_str() {
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
        }
        "keygen" => {
            let o = Opts::parse(rest, &[], &[])?;
            keys::keygen(&o.single_pos("NAME")?)
        }
        "pack" => {
            let o = Opts::parse(
                rest,
                &[
                    "--out",
                    "--key",
                    "--version",
                    "--kind",
                    "--delete",
                    "--changelog",
                    "--required-node-version",
                ],
                &["--version-json", "--unsigned"],
            )?;
            let dir = o.single_pos("DIR")?;
            let out = o
                .one("--out")
                .ok_or_else(|| Fail::usage("pack: -o OUT.zip is required"))?;
            let key = match (o.one("--key"), o.flag("--unsigned")) {
                (Some(k), false) => Some(keys::load_private(std::path::Path::new(k))?),
                (None, true) => None,
                _ => {
                    return Err(Fail::usage(
                        "pack: exactly one of --key NAME.key or --unsigned",
                    ))
                }
            };
            let kind = o.one("--kind").unwrap_or("full");
            if kind != "full" && kind != "content" {
                return Err(Fail::usage("pack: --kind is full or content"));
            }
            let delete = o.all("--delete");
            if !delete.is_empty() && kind != "content" {
                return Err(Fail::usage("pack: --delete needs --kind content"));
            }
            let vj = if o.flag("--version-json") {
                Some(pack::VersionJson {
                    changelog: o
                        .one("--changelog")
                        .ok_or_else(|| {
                            Fail::usage(
                                "pack: --version-json needs --changelog (the backend requires it)",
                            )
                        })?
                        .to_string(),
                    required_node_version: o
                        .one("--required-node-version")
                        .unwrap_or("0.0.0")
                        .to_string(),
                })
            } else {
                None
            };
            pack::pack(&pack::Spec {
                dir,
                out: PathBuf::from(out),
                key,
                version: o.one("--version").map(String::from),
                kind: kind.to_string(),
                delete,
                version_json: vj,
            })
        }
        "inspect" => {
            let o = Opts::parse(rest, &[], &[])?;
            show::inspect(&o.single_pos("PKG")?)
        }
        "verify" => {
            let o = Opts::parse(rest, &["--key"], &[])?;
            let pkg = o.single_pos("PKG")?;
            let paths = o.all("--key");
            if paths.is_empty() {
                return Err(Fail::usage("verify: --key NAME.pub is required"));
            }
            let mut ks = Vec::new();
            for p in &paths {
                ks.push(keys::load_public(p)?);
            }
            show::verify(&pkg, &ks)
        }
        other => Err(Fail::usage(format!("unknown command {other:?}"))),
    }
}
