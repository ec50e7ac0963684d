//! Issue 23, item 9, through the real binary under libfaketime: a clock set back
//! more than 5 min keeps the validation budget's history (`license.json` `recent`),
//! where it used to drop every validation "from the future" and start afresh.

use crate::harness::{self, code, faketime, read_json, text, Node, KEY};

fn recent(node: &Node) -> usize {
    let j = read_json(&node.state_dir.join("license.json")).unwrap();
    j["recent"].as_array().map_or(0, |a| a.len())
}

#[test]
fn a_clock_set_back_keeps_the_validation_budget_history() {
    let Some(lib) = faketime() else { return };
    let sim = harness::sim();
    sim.valid_license(KEY);
    let node = Node::new(&sim);
    for _ in 0..4 {
        let o = node.run(&["validate"]);
        assert_eq!(code(&o), 0, "{}", text(&o));
    }
    assert_eq!(recent(&node), 4);
    // The clock goes back 10 minutes (more than the 5 min tolerated for NTP).
    let o = node
        .command(&["validate"])
        .env("LD_PRELOAD", &lib)
        .env("FAKETIME", "-10m")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(recent(&node), 5, "the budget's history was wiped");
}
