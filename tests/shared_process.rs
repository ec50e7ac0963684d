//! The rules of tests/integration.rs, checked on the sources: the tests are threads
//! of one process, so none may change what that process shares with the others.

use std::path::Path;

/// What no test may call, and why. (Split so that this file does not match itself.)
fn forbidden() -> Vec<(String, &'static str)> {
    vec![
        (
            ["set", "_var("].concat(),
            "changes the environment of every test: pass it with Command::env",
        ),
        (
            ["remove", "_var("].concat(),
            "changes the environment of every test: use Command::env_remove",
        ),
        (
            ["set_current", "_dir("].concat(),
            "moves every test: use Command::current_dir",
        ),
        (
            ["signals::", "install("].concat(),
            "takes SIGTERM/SIGINT/SIGHUP from the whole test process",
        ),
        (
            ["libc::", "pipe("].concat(),
            "not close-on-exec: other tests' children inherit it (pipe2 with O_CLOEXEC)",
        ),
        (
            ["libc::", "umask("].concat(),
            "changes the mode of every file every test creates",
        ),
        (
            ["libc::", "setrlimit("].concat(),
            "in this process it limits every test (in a child's pre_exec it is fine)",
        ),
    ]
}

#[test]
fn no_test_changes_what_the_process_shares() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut files = Vec::new();
    for sub in [dir.clone(), dir.join("harness")] {
        for e in std::fs::read_dir(&sub).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    assert!(
        files.len() > 30,
        "{} files under {}",
        files.len(),
        dir.display()
    );
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let mut prev = "";
        for (i, line) in text.lines().enumerate() {
            // Allowed in a child's pre_exec closure, whose SAFETY comment says so.
            let in_child = prev.contains("in the child before exec");
            for (what, why) in forbidden() {
                if line.contains(&what) && !in_child {
                    found.push(format!("{}:{}: {what} {why}", f.display(), i + 1));
                }
            }
            prev = line;
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}
