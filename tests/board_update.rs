//! A full backend update through the real binary (the ARM subset runs this under
//! qemu-user too, see board/test-arm.sh): validate, check, download, verify, install
//! into slot a; then an update that fails its health check and is rolled back.

use crate::harness::package::*;
use crate::harness::*;

#[test]
fn update_from_backend_then_unhealthy_update_rolls_back() {
    let sim = tls_sim();
    let rig = Node::updates(&sim);

    let v1 = app("1.0.0");
    sim.publish_update("1.0.0", zip(&v1), "- first");
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
    assert_eq!(tree(&rig.slot("a")), expected_tree(&v1));
    let st = rig.status();
    assert_eq!(st["version"], "1.0.0");
    assert_eq!(st["license"]["state"], "valid");
    assert_eq!(st["update"]["state"], "idle");
    let checks = sim.requests_to("/update/check");
    assert_eq!(checks[0].param("version"), Some("0.0.0"));
    assert_eq!(sim.count("/update/download/"), 1);

    let mut v2 = app("2.0.0");
    v2.push(file("unhealthy", b"1"));
    sim.publish_update("2.0.0", zip(&v2), "- second");
    let o = rig.run(&["update"]);
    assert_eq!(code(&o), 20, "{}", text(&o));
    let checks = sim.requests_to("/update/check");
    assert_eq!(checks.last().unwrap().param("version"), Some("1.0.0"));
    assert_eq!(sim.count("/update/download/"), 2);
    assert_eq!(rig.current().as_deref(), Some("slots/a"));
    assert_eq!(tree(&rig.slot("a")), expected_tree(&v1), "old slot intact");
    let st = rig.status();
    assert_eq!(st["version"], "1.0.0");
    assert_eq!(st["update"]["state"], "rolled-back");
    let log = rig.services_log();
    let a = rig.slot("a").display().to_string();
    let b = rig.slot("b").display().to_string();
    assert!(
        log.ends_with(&format!("stop {a}\nstart {b}\nstop {b}\nstart {a}\n")),
        "{log}"
    );
}
