//! What a newcomer meets first, through the real binary: help per command, short usage
//! errors, `--version`, no config file, `status` on a fresh box and after validation.

use crate::harness::{self, agent_command, code, text, Node};
use std::process::Output;

fn run_plain(args: &[&str], config_env: Option<&std::path::Path>) -> Output {
    let mut c = agent_command();
    c.env_remove("CYBERSENSEI_AGENT_CONFIG");
    if let Some(p) = config_env {
        c.env("CYBERSENSEI_AGENT_CONFIG", p);
    }
    c.args(args).output().expect("agent runs")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn each_command_has_its_own_help() {
    for args in [&["update", "--help"][..], &["help", "update"][..]] {
        let o = run_plain(args, None);
        assert_eq!(code(&o), 0, "{args:?}: {}", text(&o));
        let t = out(&o);
        assert!(
            t.starts_with("usage: cybersensei-agent [-c PATH] update"),
            "{t}"
        );
        assert!(t.contains("rolled back"), "{t}");
        assert!(
            !t.contains("set-key"),
            "the global usage, not update's:\n{t}"
        );
    }
    let o = run_plain(&["help"], None);
    assert_eq!(code(&o), 0);
    assert!(out(&o).contains("doctor"), "{}", out(&o));
    let o = run_plain(&["help", "frobnicate"], None);
    assert_eq!(code(&o), 2, "{}", text(&o));
}

#[test]
fn usage_errors_are_two_lines_naming_the_argument_and_the_help() {
    for (args, want) in [
        (&["validate", "--bogus"][..], "--bogus"),
        (&["frobnicate"][..], "frobnicate"),
        (&["telemetry"][..], "--once"),
        (&[][..], "missing command"),
    ] {
        let o = run_plain(args, None);
        assert_eq!(code(&o), 2, "{args:?}");
        let e = err(&o);
        assert_eq!(e.lines().count(), 2, "{args:?}:\n{e}");
        assert!(e.lines().next().unwrap_or_default().contains(want), "{e}");
        assert!(e.contains("help"), "{e}");
    }
    let e = err(&run_plain(&["telemetry", "--bogus"], None));
    assert!(e.contains("help telemetry"), "{e}");
}

#[test]
fn version_names_version_and_build() {
    let o = run_plain(&["--version"], None);
    assert_eq!(code(&o), 0);
    let t = out(&o);
    assert_eq!(t.lines().count(), 1, "{t}");
    assert!(
        t.starts_with(concat!(
            "cybersensei-agent ",
            env!("CARGO_PKG_VERSION"),
            " ("
        )),
        "{t}"
    );
    // A plain cargo build is unstamped and says so; board/build.sh stamps both.
    assert!(
        t.contains("commit") || t.contains("unstamped"),
        "neither a commit nor a note: {t}"
    );
}

#[test]
fn without_a_config_file_commands_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("agent.json");
    for (args, env) in [
        (vec!["-c", missing.to_str().unwrap(), "validate"], None),
        (vec!["update"], Some(missing.as_path())),
    ] {
        let o = run_plain(&args, env);
        assert_eq!(code(&o), 2, "{args:?}: {}", text(&o));
        let e = err(&o);
        assert!(e.contains("no config file at"), "{e}");
        assert!(e.contains(missing.to_str().unwrap()), "{e}");
        assert!(
            e.contains("-c PATH") && e.contains("board/install.sh"),
            "{e}"
        );
        assert!(!e.contains("os error 2"), "bare OS error:\n{e}");
    }
    let e = err(&run_plain(&["update"], Some(&missing)));
    assert!(e.contains("$CYBERSENSEI_AGENT_CONFIG"), "{e}");
    // config check shows the defaults, and still fails (nothing to start a daemon on).
    let o = run_plain(&["-c", missing.to_str().unwrap(), "config", "check"], None);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(
        out(&o).contains("\"state_dir\": \"/var/lib/cybersensei-agent\""),
        "{}",
        out(&o)
    );
    assert!(!out(&o).contains("config OK"), "{}", out(&o));
    assert!(err(&o).contains("defaults"), "{}", err(&o));
    // status reads state only: it runs, and its first lines say what is wrong.
    let o = run_plain(&["-c", missing.to_str().unwrap(), "status"], None);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let t = out(&o);
    let head: Vec<&str> = t.lines().take(3).collect();
    assert!(head[0].contains("NOT HEALTHY"), "{t}");
    assert!(head[1].contains("no config file"), "{t}");
    assert!(head[2].contains("board/install.sh"), "{t}");
}

#[test]
fn status_on_a_fresh_box_says_never_validated_and_what_to_run() {
    let sim = harness::sim();
    sim.valid_license(harness::KEY);
    let node = Node::new(&sim);
    let o = node.run(&["status"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let t = out(&o);
    let head: Vec<&str> = t.lines().take(3).collect();
    assert_eq!(head[0], "Health:    NOT HEALTHY", "{t}");
    assert!(head[1].contains("never validated"), "{t}");
    assert!(head[2].contains("cybersensei-agent validate"), "{t}");
    assert!(
        !t.contains("slot -)") && !t.contains("tenant:  - (-)"),
        "{t}"
    );
    // After a validation: healthy, with the tenant.
    assert_eq!(code(&node.run(&["validate"])), 0);
    let t = out(&node.run(&["status"]));
    let head: Vec<&str> = t.lines().take(3).collect();
    assert_eq!(head[0], "Health:    healthy", "{t}");
    assert!(head[1].contains("Acme Corporation"), "{t}");
    assert_eq!(head[2], "To do:     nothing", "{t}");
    // Backend gone, never validated: the reason and doctor.
    let sim2 = harness::sim();
    let mut node2 = Node::new(&sim2);
    node2.set("backend", "retry_attempts", 1.into());
    sim2.set_down(true);
    assert_eq!(code(&node2.run(&["validate"])), 14);
    let t = out(&node2.run(&["status"]));
    let head: Vec<&str> = t.lines().take(3).collect();
    assert!(head[0].contains("NOT HEALTHY"), "{t}");
    assert!(head[2].contains("doctor"), "{t}");
}

#[test]
fn telemetry_print_on_a_fresh_box_does_not_talk_of_sending() {
    let sim = harness::sim();
    let node = Node::new(&sim);
    let o = node.run(&["telemetry", "--print"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let all = text(&o);
    assert!(!all.contains("nothing was sent"), "{all}");
    assert!(all.contains("never been validated"), "{all}");
    assert!(out(&o).contains("\"tenantId\""), "{}", out(&o));
}

#[test]
fn health_check_output_is_labelled() {
    use crate::harness::package::{app, zip};
    let mut rig = Node::offline();
    rig.set(
        "services",
        "health",
        serde_json::json!([["/bin/sh", "-c", "echo all good; echo from-stderr >&2"]]),
    );
    let o = rig.install(&zip(&app("1.0.0")));
    assert_eq!(code(&o), 0, "{}", text(&o));
    let e = err(&o);
    let label = "[health `/bin/sh -c echo all good; echo from-stderr >&2`]";
    assert!(e.contains(&format!("{label} all good")), "{e}");
    assert!(e.contains(&format!("{label} from-stderr")), "{e}");
    assert!(
        !out(&o).contains("all good"),
        "unlabelled on stdout:\n{}",
        out(&o)
    );
}

#[test]
fn check_update_on_a_fresh_offline_box_says_why_it_needs_a_validation() {
    // A fresh box (never validated) whose backend is down: the check needs the tenant id
    // of a first validation, and says so instead of only naming the validate URL.
    let rig = Node::offline();
    let o = rig.run(&["check-update"]);
    assert_eq!(code(&o), 14, "{}", text(&o));
    let e = err(&o);
    assert!(e.contains("never validated its license"), "{e}");
    assert!(e.contains("tenant id"), "{e}");
}

/// Issue 24, item 4: an error's cause is in `source()` only, and the CLI prints the
/// chain once: what failed, then why (the OS error), each a single time.
#[test]
fn an_error_and_its_cause_are_printed_once() {
    let node = Node::offline();
    let missing = node.dir.path().join("no-such-package.zip");
    let o = node.run(&["install", missing.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    let e = err(&o);
    let cause = std::io::Error::from_raw_os_error(libc::ENOENT).to_string();
    assert_eq!(e.matches(&cause).count(), 1, "the cause once:\n{e}");
    assert_eq!(
        e.matches("no-such-package.zip").count(),
        1,
        "what failed once:\n{e}"
    );
    assert_eq!(e.lines().count(), 1, "one line:\n{e}");
    assert!(e.starts_with("error: "), "{e}");
}
